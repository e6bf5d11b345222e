CREATE EXTENSION data_sync;
SELECT count(*) FROM data_sync.add_rule('phone', 'public.users', 'public.lost_pets',
                                        '{"owner_id": "id"}', '{"contact_phone": "phone"}');
