//! Re-establishing rules: `sync_all`, the generated `sync_all_<entity>_data` functions and
//! their comprehensive variants, and `check` (drift, read-only). Every SQL-callable function pins
//! `search_path`.

use std::collections::HashMap;

use data_sync_core::catalog::TableInfo;
use data_sync_core::operation::Operation;
use data_sync_core::plan::Planner;
use data_sync_core::plan::Statement;
use data_sync_core::rules::RuleKind;
use data_sync_core::validate::{Entity, Rule};
use data_sync_core::Error;
use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;
use pgrx::{AnyElement, GucContext, GucFlags, GucRegistry, GucSetting};

use crate::error::{deny, raise, reject};
use crate::runtime::{self, RuleRuntime};
use crate::{catalog, propagate, registry, spi, subxact};

pub static BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(10_000);

pub fn register_gucs() {
    GucRegistry::define_int_guc(
        c"data_sync.progress_every",
        c"Batches between two progress NOTICEs of sync_all (0: none).",
        c"Progress also shows in data_sync.running_syncs.",
        &PROGRESS_EVERY,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"data_sync.batch_size",
        c"Source rows per statement in sync_all and sync_all_*_data.",
        c"Re-syncs work in batches of this many source keys so memory stays flat on large tables.",
        &BATCH_SIZE,
        1,
        10_000_000,
        GucContext::Userset,
        GucFlags::default(),
    );
}

/// What a caller wants to do with rules through data_sync's functions.
#[derive(Clone, Copy)]
enum Access {
    /// Re-apply rules: allowed to whoever may UPDATE the source or the target table, since a
    /// writer of either side can already cause (or undo) the same propagation.
    Sync,
    /// Count drift: reveals something about both tables, so needs SELECT on both.
    Check,
}

fn require_access(rule: &Rule, source: &TableInfo, target: &TableInfo, access: Access) {
    // (as has_table_privilege(oid, privilege) does, without a query per check)
    let has = |table: &TableInfo, privilege: pg_sys::AclMode| unsafe {
        pg_sys::pg_class_aclcheck(Oid::from(table.oid), pg_sys::GetUserId(), privilege)
            == pg_sys::AclResult::ACLCHECK_OK
    };
    let (update, select) = (pg_sys::ACL_UPDATE as pg_sys::AclMode, pg_sys::ACL_SELECT as pg_sys::AclMode);
    // Re-syncs and checks read and write as the tables' owners: row-level security that would
    // hide rows from the caller does not apply there, so a caller it applies to is refused
    // rather than shown (or made to rewrite) rows it cannot see.
    for table in [source, target] {
        let rls = unsafe { pg_sys::check_enable_rls(Oid::from(table.oid), pg_sys::InvalidOid, true) };
        if rls == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32 {
            raise(
                &Error::privilege(format!(
                    "rule \"{}\": permission denied: row-level security of {} applies to this role, \
                     and re-syncs and checks see every row",
                    rule.name, table.name
                ))
                .with_hint("Run it as the table's owner or as a role with BYPASSRLS."),
            );
        }
    }
    let needs = match access {
        Access::Sync if has(source, update) || has(target, update) => return,
        Access::Check if has(source, select) && has(target, select) => return,
        Access::Sync => format!("re-syncing needs UPDATE privilege on {} or {}", source.name, target.name),
        Access::Check => format!("checking needs SELECT privilege on {} and {}", source.name, target.name),
    };
    deny(&format!("rule \"{}\": permission denied: {needs}", rule.name));
}

/// The runtimes of the enabled rules a call is about (one by name, or all that `wanted`
/// selects), after checking the caller may do `access` with each of them.
fn enabled_runtimes(
    rule_name: Option<&str>,
    access: Access,
    wanted: impl Fn(&Rule) -> bool,
) -> Vec<std::rc::Rc<RuleRuntime>> {
    runtimes_of(&registry::installed_rules(), rule_name, access, wanted)
}

/// `enabled_runtimes` from rules already read from the catalog.
fn runtimes_of(
    rules: &[Rule],
    rule_name: Option<&str>,
    access: Access,
    wanted: impl Fn(&Rule) -> bool,
) -> Vec<std::rc::Rc<RuleRuntime>> {
    if let Some(name) = rule_name {
        match rules.iter().find(|r| r.name == name) {
            None => reject(&format!("rule \"{name}\" does not exist")),
            Some(r) if !r.enabled => reject(&format!("rule \"{name}\" is disabled")),
            Some(_) => {}
        }
    }
    rules
        .iter()
        // append rules keep history, which a re-sync cannot replay and drift does not apply to
        .filter(|r| r.enabled && r.kind == RuleKind::Copy && rule_name.is_none_or(|n| n == r.name) && wanted(r))
        .map(|r| {
            let rt = runtime::runtime(&r.name)
                .unwrap_or_else(|| reject(&format!("rule \"{}\": its tables or columns no longer exist", r.name)));
            require_access(&rt.rule, &rt.source, &rt.target, access);
            rt
        })
        .collect()
}

/// Reads the current SPI result into key rows (datums point into the result's memory).
unsafe fn result_keys() -> (Vec<Vec<Datum>>, *mut pg_sys::SPITupleTable) {
    let table = pg_sys::SPI_tuptable;
    let n = pg_sys::SPI_processed as usize;
    let ncols = (*(*table).tupdesc).natts;
    let mut keys = Vec::with_capacity(n);
    for i in 0..n {
        let row = *(*table).vals.add(i);
        let mut key = Vec::with_capacity(ncols as usize);
        let mut has_null = false;
        for c in 1..=ncols {
            let mut isnull = false;
            key.push(pg_sys::SPI_getbinval(row, (*table).tupdesc, c, &mut isnull));
            has_null |= isnull;
        }
        if !has_null {
            keys.push(key);
        }
    }
    (keys, table)
}

/// Re-applies rules to every row (or one rule), in batches of `data_sync.batch_size` source
/// keys, optionally only to the source keys from `from_key` to `to_key` (inclusive; one rule
/// with a single-column key) so a big table can be re-synced in chunks. Returns the number of
/// target rows changed. Progress shows in `data_sync.running_syncs` and, every
/// `data_sync.progress_every` batches, as a NOTICE.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn sync_all(
    rule_name: default!(Option<&str>, "NULL"),
    from_key: default!(Option<&str>, "NULL"),
    to_key: default!(Option<&str>, "NULL"),
) -> i64 {
    let range = (from_key.is_some() || to_key.is_some()).then_some((from_key, to_key));
    if range.is_some() && rule_name.is_none() {
        reject("sync_all: a key range (from_key, to_key) needs a rule_name: rules have different keys");
    }
    let mut total = 0i64;
    for rt in enabled_runtimes(rule_name, Access::Sync, |_| true) {
        total += resync(&rt, range);
    }
    total
}

pub static PROGRESS_EVERY: GucSetting<i32> = GucSetting::<i32>::new(10);

/// Re-syncs one rule, batch by batch in key order, reporting progress.
fn resync(rt: &RuleRuntime, range: Option<(Option<&str>, Option<&str>)>) -> i64 {
    let name = &rt.rule.name;
    let batch = BATCH_SIZE.get() as i64;
    // the range's bounds as key values (NULL: open)
    let bounds: Option<[Option<Datum>; 2]> = range.map(|(from, to)| {
        if rt.plan.sql(Statement::KeysRangeFirst).is_none() {
            reject(&format!(
                "rule \"{name}\": a key range needs a single-column source key (this rule's is ({}))",
                rt.rule.source_key.join(", ")
            ));
        }
        [("from_key", from), ("to_key", to)].map(|(field, bound)| {
            bound.map(|text| {
                let key = vec![text.to_string()];
                subxact::try_catch(std::panic::AssertUnwindSafe(|| rt.keys_from_text(&[&key], false, false)[0][0]))
                    .unwrap_or_else(|e| reject(&format!("rule \"{name}\": {field}: {e}")))
            })
        })
    });
    let key_type = rt.key_types[0].oid;
    let with_bounds = |prefix: Vec<Datum>, bounds: &[Option<Datum>]| -> (Vec<Oid>, Vec<Datum>, Vec<bool>) {
        let mut types: Vec<Oid> = vec![pg_sys::INT8OID; prefix.len()];
        let mut args = prefix;
        let mut nulls = vec![false; args.len()];
        for b in bounds {
            types.push(key_type);
            args.push(b.unwrap_or(Datum::from(0)));
            nulls.push(b.is_none());
        }
        (types, args, nulls)
    };
    spi::with_spi(|| unsafe {
        // single-column keys count with (optional) bounds, others without
        let (types, args, nulls) = match bounds {
            Some(b) => with_bounds(vec![], &b),
            None if rt.plan.sql(Statement::KeysRangeFirst).is_some() => with_bounds(vec![], &[None, None]),
            None => (vec![], vec![], vec![]),
        };
        spi::as_role(rt.source_owner, || rt.execute(Statement::KeysCount, &types, &args, &nulls));
        let rows = spi::count_of_result() as i64;
        let mut changed = 0i64;
        let (mut done, mut batches) = (0i64, 0i64);
        let mut previous: Option<(Vec<Datum>, *mut pg_sys::SPITupleTable)> = None;
        // (source keys are read as the source's owner, like every read of the source)
        report_activity(name, done, rows);
        loop {
            let found = match (&previous, &bounds) {
                (None, None) => spi::as_role(rt.source_owner, || {
                    rt.execute(Statement::KeysFirst, &[pg_sys::INT8OID], &[batch.into()], &[false])
                }),
                (Some((last, _)), None) => {
                    let mut types = vec![pg_sys::INT8OID];
                    types.extend(rt.key_scalar_types());
                    let mut args = vec![Datum::from(batch)];
                    args.extend(last.iter().copied());
                    let nulls = vec![false; args.len()];
                    spi::as_role(rt.source_owner, || rt.execute(Statement::KeysAfter, &types, &args, &nulls))
                }
                (None, Some(b)) => {
                    let (types, args, nulls) = with_bounds(vec![Datum::from(batch)], b);
                    spi::as_role(rt.source_owner, || rt.execute(Statement::KeysRangeFirst, &types, &args, &nulls))
                }
                (Some((last, _)), Some(b)) => {
                    let (types, args, nulls) = with_bounds(vec![Datum::from(batch)], &[Some(last[0]), b[1]]);
                    spi::as_role(rt.source_owner, || rt.execute(Statement::KeysRangeAfter, &types, &args, &nulls))
                }
            };
            if let Some((_, table)) = previous.take() {
                pg_sys::SPI_freetuptable(table);
            }
            if found == 0 {
                break;
            }
            let (keys, table) = result_keys();
            changed += propagate::propagate(rt, &keys, Operation::Sync) as i64;
            done += found as i64;
            batches += 1;
            report_activity(name, done, rows);
            let every = PROGRESS_EVERY.get() as i64;
            if every > 0 && batches % every == 0 {
                notice!("data_sync: re-sync of rule \"{name}\": {done} of {rows} source rows, {changed} target rows changed");
            }
            match keys.last() {
                Some(last) if found as i64 == batch => previous = Some((last.clone(), table)),
                _ => {
                    pg_sys::SPI_freetuptable(table);
                    break;
                }
            }
        }
        changed
    })
}

/// Shows a re-sync's progress as the backend's current activity (`pg_stat_activity.query`),
/// which `data_sync.running_syncs` reads: other sessions see it while the transaction runs.
fn report_activity(rule: &str, done: i64, rows: i64) {
    let text = format!("data_sync re-sync: rule {rule} done {done} of {rows}");
    let text = std::ffi::CString::new(text).unwrap_or_default();
    unsafe { pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, text.as_ptr()) }
}

/// Re-applies every rule whose source is the entity's table, for the rows whose entity key
/// equals `key`. Called by the generated `sync_all_<entity>_data(key)` functions.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn sync_entity(entity: &str, key: AnyElement) -> i64 {
    let entities = registry::installed_entities();
    let ent = find_entity(&entities, entity);
    sync_entity_key(&registry::installed_rules(), ent, key.datum(), key.oid())
}

/// `sync_entity`, then the same for every related entity's rows (declared with `related`),
/// transitively; each row (entity and key) is visited once per call. Called by the generated
/// `sync_all_<entity>_data_comprehensive(key)` functions.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn sync_entity_comprehensive(entity: &str, key: AnyElement) -> i64 {
    let entities = registry::installed_entities();
    let mut walk = Walk { entities: &entities, rules: registry::installed_rules(), visited: Default::default() };
    walk.visited.insert((entity.to_string(), value_text(key.datum(), key.oid())));
    sync_related(&mut walk, find_entity(&entities, entity), key.datum(), key.oid())
}

/// What one comprehensive re-sync reads once and reuses for every row it visits.
struct Walk<'e> {
    entities: &'e [Entity],
    rules: Vec<Rule>,
    /// Rows already re-synced, as (entity, key in its text form): a row reached twice (a pet of
    /// two related users, a link back to where the walk came from) is done once.
    visited: std::collections::HashSet<(String, String)>,
}

/// A value's text form (its type's output function), to recognise a row already visited.
fn value_text(value: Datum, type_oid: Oid) -> String {
    unsafe {
        let (mut output, mut varlena) = (pg_sys::InvalidOid, false);
        pg_sys::getTypeOutputInfo(type_oid, &mut output, &mut varlena);
        let text = pg_sys::OidOutputFunctionCall(output, value);
        std::ffi::CStr::from_ptr(text).to_string_lossy().into_owned()
    }
}

/// Related-entity links (see `related_query`) and what they were planned into, with the
/// relcache generation they were planned at.
type RelatedQueries = (u64, HashMap<String, (String, Oid)>);

thread_local! {
    /// Per related-entity link (as declared: tables, keys, column pairs), the query of the
    /// related keys and their type: planning it reads the catalog for both tables. Kept until a
    /// relation changes (`runtime::relcache_generation`).
    static RELATED_QUERIES: std::cell::RefCell<RelatedQueries> =
        std::cell::RefCell::new((0, HashMap::new()));
}

/// The query of the keys of `other`'s rows related to one row of `ent`, and their type.
fn related_query(ent: &Entity, name: &str, other: &Entity, pairs: &[data_sync_core::validate::Pair]) -> (String, Oid) {
    let link = format!("{}\u{0}{}\u{0}{}\u{0}{}\u{0}{:?}", ent.table, ent.key, other.table, other.key, pairs);
    let generation = runtime::relcache_generation();
    let cached = RELATED_QUERIES.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != generation {
            *c = (generation, HashMap::new());
        }
        c.1.get(&link).cloned()
    });
    if let Some(found) = cached {
        return found;
    }
    let (Some(info), Some(other_info)) = (catalog::lookup(&ent.table), catalog::lookup(&other.table)) else {
        reject(&format!("entity \"{}\": related.{name}: a table no longer exists", ent.name));
    };
    let sql = data_sync_core::plan::related_keys(&info, &ent.key, &other_info, &other.key, pairs)
        .unwrap_or_else(|e| reject(&format!("entity \"{}\": related.{name}: {e}", ent.name)));
    let other_type = other_info.column(&other.key).map(|c| Oid::from(c.type_oid)).unwrap_or(pg_sys::InvalidOid);
    let found = (sql, other_type);
    // (under the count read before looking the tables up: an invalidation seen meanwhile makes
    // the next call plan again)
    RELATED_QUERIES.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != generation {
            *c = (generation, HashMap::new());
        }
        c.1.insert(link, found.clone());
    });
    found
}

fn find_entity<'e>(entities: &'e [Entity], name: &str) -> &'e Entity {
    entities.iter().find(|e| e.name == name).unwrap_or_else(|| reject(&format!("entity \"{name}\" does not exist")))
}

fn sync_related(walk: &mut Walk<'_>, ent: &Entity, key: Datum, key_type: Oid) -> i64 {
    let mut total = sync_entity_key(&walk.rules, ent, key, key_type);
    for (name, pairs) in &ent.related {
        let other = find_entity(walk.entities, name);
        let (sql, other_type) = related_query(ent, name, other, pairs);
        spi::with_spi(|| unsafe {
            // read as the caller: related rows the caller cannot see are not re-synced
            let query = std::ffi::CString::new(sql.as_str()).unwrap();
            let mut types = [key_type];
            let mut args = [key];
            let rc = pg_sys::SPI_execute_with_args(
                query.as_ptr(),
                1,
                types.as_mut_ptr(),
                args.as_mut_ptr(),
                std::ptr::null(),
                false,
                0,
            );
            if rc < 0 {
                reject(&format!("entity \"{}\": related.{name}: query failed", ent.name));
            }
            let (keys, table) = result_keys();
            for k in &keys {
                if walk.visited.insert((name.clone(), value_text(k[0], other_type))) {
                    total += sync_related(walk, other, k[0], other_type);
                }
            }
            pg_sys::SPI_freetuptable(table);
        });
    }
    total
}

/// Re-applies every rule whose source is the entity's table, for the rows whose entity key
/// equals `key`.
fn sync_entity_key(rules: &[Rule], ent: &Entity, key: Datum, key_type: Oid) -> i64 {
    let batch = BATCH_SIZE.get() as usize;
    let mut total = 0i64;
    for rt in runtimes_of(rules, None, Access::Sync, |r| r.source == ent.table) {
        let Some(column) = rt.source.column(&ent.key) else {
            reject(&format!("entity \"{}\": key column \"{}\" no longer exists", ent.name, ent.key));
        };
        if column.type_oid != key_type.to_u32() {
            reject(&format!("entity \"{}\": key must be of type {}", ent.name, column.type_name));
        }
        let sql = Planner { rule: &rt.rule, source: &rt.source, target: &rt.target }.entity_keys(&ent.key);
        spi::with_spi(|| unsafe {
            spi::as_role(rt.source_owner, || {
                rt.execute_other(&format!("entity_keys {}", ent.key), &sql, &[key_type], &[key], &[false])
            });
            let (keys, table) = result_keys();
            for chunk in keys.chunks(batch) {
                total += propagate::propagate(&rt, chunk, Operation::Sync) as i64;
            }
            pg_sys::SPI_freetuptable(table);
        });
    }
    total
}

/// How many target rows currently differ from what each rule says (changes nothing).
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn check(
    rule_name: default!(Option<&str>, "NULL"),
) -> TableIterator<'static, (name!(rule_name, String), name!(target_table, String), name!(drifted_rows, i64))> {
    let mut out = Vec::new();
    for rt in enabled_runtimes(rule_name, Access::Check, |_| true) {
        let drifted = spi::with_spi(|| unsafe {
            spi::as_role(rt.target_owner, || rt.execute(Statement::Check, &[], &[], &[]));
            let table = pg_sys::SPI_tuptable;
            let mut isnull = false;
            let d = pg_sys::SPI_getbinval(*(*table).vals, (*table).tupdesc, 1, &mut isnull);
            i64::from_datum(d, isnull).unwrap_or(0)
        });
        out.push((rt.rule.name.clone(), rt.rule.target.to_string(), drifted));
    }
    TableIterator::new(out)
}
