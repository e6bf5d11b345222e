//! data_sync's own catalog tables: the installed rules (`data_sync.rules`) and entities
//! (`data_sync.entities`), read and written as their owner.

use data_sync_core::catalog::TableName;
use data_sync_core::rules::{RuleKind, SyncMode};
use data_sync_core::validate::{Entity, Pair, Rule};
use pgrx::prelude::*;

/// Runs `f` as the owner of data_sync's catalog tables. Nobody else may read or write them
/// directly; the SQL functions check the caller's rights on the rules' tables instead, and
/// triggers fired by any writer must be able to read the rule they serve.
pub fn as_catalog_owner<T>(f: impl FnOnce() -> T) -> T {
    let owner = Spi::get_one::<pg_sys::Oid>(
        "SELECT relowner FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) 'data_sync.rules'::pg_catalog.regclass",
    )
    .expect("data_sync.rules exists")
    .expect("data_sync.rules has an owner");
    crate::spi::as_role(owner, f)
}

const RULE_COLUMNS: &str = "name, source_schema::pg_catalog.text, source_table::pg_catalog.text,
    target_schema::pg_catalog.text, target_table::pg_catalog.text, target_keys, source_keys, target_columns,
    source_columns, where_clause, enabled, kind, latest_by, bidirectional, source_timestamp, target_timestamp,
    value_columns, value_expressions, watch_columns, on_insert, mode, fire_on_replica";

/// The installed rules, in name order, as committed now (see `read_rules`).
pub fn installed_rules() -> Vec<Rule> {
    read_rules(None)
}

/// One installed rule, as committed now.
pub fn installed_rule(name: &str) -> Option<Rule> {
    read_rules(Some(name)).pop()
}

/// Serializes changes of the rule set: each reads the installed rules, then writes the new set,
/// and two at once would both write from what they read (a rule inserted twice, or a change
/// lost). Reads are not blocked.
pub fn lock_rules() {
    as_catalog_owner(|| Spi::run("LOCK TABLE data_sync.rules IN SHARE ROW EXCLUSIVE MODE"))
        .expect("data_sync.rules can be locked");
}

/// Waits for a change of the rule set in progress, and keeps the next one waiting until this
/// transaction ends (the queue processor parking a disabled rule's items, see `processor::park`).
pub fn lock_rules_shared() {
    as_catalog_owner(|| Spi::run("LOCK TABLE data_sync.rules IN SHARE MODE")).expect("data_sync.rules can be locked");
}

/// Reads `data_sync.rules` like a system catalog: on the latest snapshot, never the
/// transaction's. A trigger that fires is the latest catalog state, and a REPEATABLE READ or
/// SERIALIZABLE transaction whose snapshot predates its rule (or the rule's enabling, or its new
/// definition) would otherwise not see it, and its writes would go unpropagated. A change of the
/// set, having waited in `lock_rules` for another, must read what that one committed.
fn read_rules(name: Option<&str>) -> Vec<Rule> {
    as_catalog_owner(|| {
        Spi::connect(|_client| unsafe {
            let filter = if name.is_some() { "WHERE name OPERATOR(pg_catalog.=) $1" } else { "" };
            let sql =
                std::ffi::CString::new(format!("SELECT {RULE_COLUMNS} FROM data_sync.rules {filter} ORDER BY name"))
                    .expect("no NUL");
            let mut types = [pg_sys::TEXTOID];
            let plan = pg_sys::SPI_prepare(sql.as_ptr(), name.is_some() as i32, types.as_mut_ptr());
            if plan.is_null() {
                error!("data_sync: could not read data_sync.rules");
            }
            let mut args = [name.into_datum().unwrap_or(pg_sys::Datum::from(0))];
            let nulls = [b' ' as std::ffi::c_char];
            // (this transaction's own changes so far included, as a foreign-key check does)
            pg_sys::CommandCounterIncrement();
            // read-only with a given snapshot: exactly that snapshot
            let rc = pg_sys::SPI_execute_snapshot(
                plan,
                args.as_mut_ptr(),
                nulls.as_ptr(),
                pg_sys::GetLatestSnapshot(),
                std::ptr::null_mut(),
                true,
                false,
                0,
            );
            if rc != pg_sys::SPI_OK_SELECT as i32 {
                error!("data_sync: could not read data_sync.rules (SPI code {rc})");
            }
            let table = pg_sys::SPI_tuptable;
            let rules = (0..pg_sys::SPI_processed as usize)
                .map(|i| rule_from_row(&RawRow { tuple: *(*table).vals.add(i), desc: (*table).tupdesc }))
                .collect();
            pg_sys::SPI_freeplan(plan);
            rules
        })
    })
}

/// A row of `data_sync.rules`, read straight from `SPI_tuptable`.
struct RawRow {
    tuple: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
}

impl RawRow {
    fn col<T: FromDatum>(&self, i: usize) -> Option<T> {
        unsafe {
            let mut null = false;
            let datum = pg_sys::SPI_getbinval(self.tuple, self.desc, i as i32, &mut null);
            T::from_polymorphic_datum(datum, null, pg_sys::SPI_gettypeid(self.desc, i as i32))
        }
    }
}

fn rule_from_row(r: &RawRow) -> Rule {
    let text = |i: usize| -> String { r.col(i).expect("NOT NULL") };
    let list = |i: usize| -> Vec<String> { r.col(i).expect("NOT NULL") };
    let pairs = |t: Vec<String>, s: Vec<String>| -> Vec<Pair> {
        t.into_iter().zip(s).map(|(target, source)| Pair { target, source }).collect()
    };
    let kind = if text(12) == "append" { RuleKind::Append } else { RuleKind::Copy };
    let keys = pairs(list(6), list(7));
    let source_key = list(7);
    let timestamps = match (r.col::<String>(15), r.col::<String>(16)) {
        (Some(s), Some(t)) => Some((s, t)),
        _ => None,
    };
    Rule {
        name: text(1),
        kind,
        source: TableName::new(text(2), text(3)),
        target: TableName::new(text(4), text(5)),
        matches: if kind == RuleKind::Append { Vec::new() } else { keys },
        copies: pairs(list(8), list(9)),
        where_clause: r.col(10),
        enabled: r.col(11).expect("NOT NULL"),
        latest_by: r.col(13),
        bidirectional: r.col(14).expect("NOT NULL"),
        timestamps,
        values: pairs(list(17), list(18)),
        watch: list(19),
        on_insert: r.col(20).expect("NOT NULL"),
        mode: r.col::<String>(21).and_then(|m| SyncMode::parse(&m)),
        fire_on_replica: r.col(22).expect("NOT NULL"),
        source_key,
    }
}

pub fn insert_rule(rule: &Rule) {
    let tk: Vec<String> = rule.matches.iter().map(|p| p.target.clone()).collect();
    let sk = rule.source_key.clone();
    let (tc, sc): (Vec<String>, Vec<String>) = rule.copies.iter().map(|p| (p.target.clone(), p.source.clone())).unzip();
    let (vc, ve): (Vec<String>, Vec<String>) = rule.values.iter().map(|p| (p.target.clone(), p.source.clone())).unzip();
    let (sts, tts) = match &rule.timestamps {
        Some((s, t)) => (Some(s.clone()), Some(t.clone())),
        None => (None, None),
    };
    // the role defining the rule, not the catalog owner it is written as
    let defined_by =
        Spi::get_one::<String>("SELECT CURRENT_USER::pg_catalog.text").expect("current_user").expect("a user");
    as_catalog_owner(|| {
        Spi::run_with_args(
            "INSERT INTO data_sync.rules (name, source_schema, source_table, target_schema, target_table,
                                          target_keys, source_keys, target_columns, source_columns, where_clause,
                                          enabled, defined_by, kind, latest_by, bidirectional, source_timestamp,
                                          target_timestamp, value_columns, value_expressions, watch_columns, on_insert,
                                          mode, fire_on_replica)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21,
                     $22, $23)",
            &[
                rule.name.as_str().into(),
                rule.source.schema.as_str().into(),
                rule.source.name.as_str().into(),
                rule.target.schema.as_str().into(),
                rule.target.name.as_str().into(),
                tk.into(),
                sk.into(),
                tc.into(),
                sc.into(),
                rule.where_clause.clone().into(),
                rule.enabled.into(),
                defined_by.into(),
                rule.kind.as_str().into(),
                rule.latest_by.clone().into(),
                rule.bidirectional.into(),
                sts.into(),
                tts.into(),
                vc.into(),
                ve.into(),
                rule.watch.clone().into(),
                rule.on_insert.into(),
                rule.mode.map(|m| m.as_str()).into(),
                rule.fire_on_replica.into(),
            ],
        )
    })
    .expect("insert into data_sync.rules");
}

pub fn delete_rule(name: &str) {
    as_catalog_owner(|| {
        Spi::run_with_args("DELETE FROM data_sync.rules WHERE name OPERATOR(pg_catalog.=) $1", &[name.into()])
    })
    .expect("delete from data_sync.rules");
}

pub fn installed_entities() -> Vec<Entity> {
    as_catalog_owner(|| {
        Spi::connect(|client| {
            let rows = client
                .select(
                    "SELECT name, table_schema::pg_catalog.text, table_name::pg_catalog.text, key_column, related
                 FROM data_sync.entities ORDER BY name",
                    None,
                    &[],
                )
                .expect("data_sync.entities is readable");
            rows.into_iter()
                .map(|r| Entity {
                    name: r.get(1).unwrap().unwrap(),
                    table: TableName::new(r.get::<String>(2).unwrap().unwrap(), r.get::<String>(3).unwrap().unwrap()),
                    key: r.get(4).unwrap().unwrap(),
                    related: related_from_json(r.get::<pgrx::JsonB>(5).unwrap().unwrap().0),
                })
                .collect()
        })
    })
}

/// `{"pet": {"owner_id": "id"}}` <-> related entity -> (its column = our column) pairs.
fn related_from_json(value: serde_json::Value) -> std::collections::BTreeMap<String, Vec<Pair>> {
    let map: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> =
        serde_json::from_value(value).unwrap_or_default();
    map.into_iter()
        .map(|(name, cols)| (name, cols.into_iter().map(|(target, source)| Pair { target, source }).collect()))
        .collect()
}

fn related_to_json(entity: &Entity) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = entity
        .related
        .iter()
        .map(|(name, pairs)| {
            let cols = pairs.iter().map(|p| (p.target.clone(), serde_json::Value::String(p.source.clone()))).collect();
            (name.clone(), serde_json::Value::Object(cols))
        })
        .collect();
    serde_json::Value::Object(map)
}

pub fn insert_entity(entity: &Entity) {
    as_catalog_owner(|| {
        Spi::run_with_args(
            "INSERT INTO data_sync.entities (name, table_schema, table_name, key_column, function_schema, related)
             VALUES ($1, $2, $3, $4, $2, $5)",
            &[
                entity.name.as_str().into(),
                entity.table.schema.as_str().into(),
                entity.table.name.as_str().into(),
                entity.key.as_str().into(),
                pgrx::JsonB(related_to_json(entity)).into(),
            ],
        )
    })
    .expect("insert into data_sync.entities");
}

pub fn delete_entity(name: &str) {
    as_catalog_owner(|| {
        Spi::run_with_args("DELETE FROM data_sync.entities WHERE name OPERATOR(pg_catalog.=) $1", &[name.into()])
    })
    .expect("delete from data_sync.entities");
}
