-- denorm's statement triggers on lost_pets re-fire on the zero-row UPDATE of its own destination
-- query and recurse until "stack depth limit exceeded": drop them, keeping the triggers on users
-- (and the INSERT trigger on lost_pets, which fills new rows and does not recurse).
DROP TRIGGER lost_pets_phone__upd__lost_pets ON lost_pets;
DROP TRIGGER lost_pets_phone__del__lost_pets ON lost_pets;
DROP FUNCTION lost_pets_phone__chg2__lost_pets();
