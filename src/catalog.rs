//! Reads the facts the core needs from the system catalogs, and reads/writes data_sync's own
//! catalog tables (`data_sync.rules`, `data_sync.entities`).

use data_sync_core::catalog::{ColumnInfo, TableInfo, TableName};
use data_sync_core::rules::{RuleKind, SyncMode};
use data_sync_core::validate::{Entity, Pair, Rule};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use data_sync_core::plan::{trigger_name, LEGACY_TRIGGER_SUFFIXES, TRIGGER_SUFFIXES};

use crate::subxact;

/// Resolves a table name as written in a rule (`public.users`, `"Clinic"."Owners"`).
/// Unqualified names are refused: extension functions run with a pinned `search_path`, so the
/// caller's path cannot be honoured, and a rule must not change meaning with it.
pub fn resolve(written: &str) -> Result<TableInfo, String> {
    let parts = subxact::try_catch(|| {
        Spi::get_one_with_args::<Vec<String>>("SELECT pg_catalog.parse_ident($1)", &[written.into()])
    })
    .map_err(|e| format!("table name \"{written}\" is not valid: {e}"))?
    .map_err(|e| format!("table name \"{written}\" is not valid: {e}"))?
    .unwrap_or_default();
    match parts.as_slice() {
        [schema, name] => lookup(&TableName::new(schema.clone(), name.clone()))
            .ok_or_else(|| format!("table \"{written}\" does not exist")),
        [_] => Err(format!("table name \"{written}\" must be schema-qualified (e.g. public.{written})")),
        _ => Err(format!("table name \"{written}\" is not of the form schema.table")),
    }
}

/// Facts about one table, or `None` when it does not exist.
pub fn lookup(name: &TableName) -> Option<TableInfo> {
    Spi::connect(|client| {
        let row = client
            .select(
                "SELECT c.oid, c.reltype, c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'p']::pg_catalog.\"char\"[]),
                        pg_catalog.pg_has_role(c.relowner, 'USAGE'),
                        ARRAY(SELECT i.inhrelid::pg_catalog.regclass::pg_catalog.text FROM pg_catalog.pg_inherits i
                              JOIN pg_catalog.pg_class k ON k.oid OPERATOR(pg_catalog.=) i.inhrelid
                              WHERE i.inhparent OPERATOR(pg_catalog.=) c.oid AND NOT k.relispartition
                              ORDER BY 1),
                        c.relispartition OR EXISTS (SELECT FROM pg_catalog.pg_inherits i
                                                    WHERE i.inhrelid OPERATOR(pg_catalog.=) c.oid),
                        EXISTS (SELECT FROM pg_catalog.pg_trigger t
                                JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) t.tgfoid
                                WHERE t.tgrelid OPERATOR(pg_catalog.=) ANY (
                                          ARRAY(SELECT relid FROM pg_catalog.pg_partition_tree(c.oid))
                                          OPERATOR(pg_catalog.||) c.oid)
                                  AND NOT t.tgisinternal
                                  -- ROW (1), BEFORE (2), UPDATE (16)
                                  AND (t.tgtype OPERATOR(pg_catalog.&) 19::pg_catalog.int2)
                                      OPERATOR(pg_catalog.=) 19::pg_catalog.int2
                                  AND p.pronamespace OPERATOR(pg_catalog.<>)
                                      (SELECT e.extnamespace FROM pg_catalog.pg_extension e
                                       WHERE e.extname OPERATOR(pg_catalog.=) 'data_sync')),
                        EXISTS (SELECT FROM pg_catalog.pg_trigger t
                                JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) t.tgfoid
                                WHERE t.tgrelid OPERATOR(pg_catalog.=) ANY (
                                          ARRAY(SELECT relid FROM pg_catalog.pg_partition_tree(c.oid))
                                          OPERATOR(pg_catalog.||) c.oid)
                                  AND NOT t.tgisinternal
                                  -- ROW (1), BEFORE (2), INSERT (4)
                                  AND (t.tgtype OPERATOR(pg_catalog.&) 7::pg_catalog.int2)
                                      OPERATOR(pg_catalog.=) 7::pg_catalog.int2
                                  AND p.pronamespace OPERATOR(pg_catalog.<>)
                                      (SELECT e.extnamespace FROM pg_catalog.pg_extension e
                                       WHERE e.extname OPERATOR(pg_catalog.=) 'data_sync'))
                 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                 WHERE n.nspname OPERATOR(pg_catalog.=) $1 AND c.relname OPERATOR(pg_catalog.=) $2",
                None,
                &[name.schema.as_str().into(), name.name.as_str().into()],
            )
            .ok()?;
        let row = row.first();
        let oid: pg_sys::Oid = row.get(1).ok()??;
        let row_type: pg_sys::Oid = row.get(2).ok()??;
        let is_table: bool = row.get(3).ok()??;
        let caller_owns: bool = row.get(4).ok()??;
        let inheritance_children: Vec<String> = row.get(5).ok()??;
        let is_child: bool = row.get(6).ok()??;
        let before_update_triggers: bool = row.get(7).ok()??;
        let before_insert_triggers: bool = row.get(8).ok()??;
        Some(TableInfo {
            name: name.clone(),
            oid: oid.to_u32(),
            row_type_oid: row_type.to_u32(),
            is_table,
            caller_owns,
            columns: columns(client, oid),
            unique_keys: unique_keys(client, oid),
            inheritance_children,
            is_child,
            before_update_triggers,
            before_insert_triggers,
        })
    })
}

fn columns(client: &SpiClient<'_>, rel: pg_sys::Oid) -> Vec<ColumnInfo> {
    let rows = client
        .select(
            "SELECT a.attname::pg_catalog.text, a.attnum, a.atttypid, a.atttypmod, pg_catalog.format_type(a.atttypid, a.atttypmod),
                    a.attcollation
             FROM pg_catalog.pg_attribute a
             WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
            None,
            &[rel.into()],
        )
        .expect("pg_attribute is readable");
    let mut out = Vec::new();
    for row in rows {
        let type_oid: pg_sys::Oid = row.get(3).unwrap().unwrap();
        out.push(ColumnInfo {
            name: row.get(1).unwrap().unwrap(),
            attnum: row.get(2).unwrap().unwrap(),
            type_oid: type_oid.to_u32(),
            typmod: row.get(4).unwrap().unwrap(),
            type_name: row.get(5).unwrap().unwrap(),
            eq_schema: equality_schema(client, type_oid),
            collation: row.get::<pg_sys::Oid>(6).unwrap().unwrap().to_u32(),
        });
    }
    out
}

/// Schema of the type's default equality operator (the one the type cache picks for
/// hashing, grouping and `IS DISTINCT FROM` semantics), or `None` when it has none.
fn equality_schema(client: &SpiClient<'_>, type_oid: pg_sys::Oid) -> Option<String> {
    let eq = unsafe {
        let entry = pg_sys::lookup_type_cache(type_oid, pg_sys::TYPECACHE_EQ_OPR as i32);
        (*entry).eq_opr
    };
    if eq == pg_sys::InvalidOid {
        return None;
    }
    client
        .select(
            "SELECT n.nspname::pg_catalog.text FROM pg_catalog.pg_operator o
             JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) o.oprnamespace
             WHERE o.oid OPERATOR(pg_catalog.=) $1",
            None,
            &[eq.into()],
        )
        .ok()?
        .first()
        .get(1)
        .ok()?
}

fn unique_keys(client: &SpiClient<'_>, rel: pg_sys::Oid) -> Vec<Vec<String>> {
    let rows = client
        .select(
            "SELECT pg_catalog.array_agg(a.attname::pg_catalog.text ORDER BY a.attnum)
             FROM pg_catalog.pg_index i
             JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid
                  AND a.attnum OPERATOR(pg_catalog.=) ANY (i.indkey::pg_catalog.int2[])
             WHERE i.indrelid OPERATOR(pg_catalog.=) $1 AND i.indisunique AND i.indpred IS NULL
               AND i.indexprs IS NULL AND i.indisvalid
             GROUP BY i.indexrelid, i.indisprimary
             ORDER BY i.indisprimary DESC, pg_catalog.count(*), i.indexrelid",
            None,
            &[rel.into()],
        )
        .expect("pg_index is readable");
    rows.into_iter().filter_map(|r| r.get::<Vec<String>>(1).ok().flatten()).collect()
}

/// The owner of a relation; `None` when it is gone.
pub fn owner_of(relation: pg_sys::Oid) -> Option<pg_sys::Oid> {
    Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT relowner FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1",
        &[relation.into()],
    )
    .ok()
    .flatten()
}

/// Runs `f` as the owner of data_sync's catalog tables. Nobody else may read or write them
/// directly; the SQL functions check the caller's rights on the rules' tables instead, and
/// triggers fired by any writer must be able to read the rule they serve.
pub fn as_catalog_owner<T>(f: impl FnOnce() -> T) -> T {
    let owner = Spi::get_one::<pg_sys::Oid>(
        "SELECT relowner FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) 'data_sync.rules'::pg_catalog.regclass",
    )
    .expect("data_sync.rules exists")
    .expect("data_sync.rules has an owner");
    crate::apply::as_role(owner, f)
}

/// The installed rules, in name order.
pub fn installed_rules() -> Vec<Rule> {
    as_catalog_owner(|| {
        Spi::connect(|client| {
            let rows = client
                .select(
                    "SELECT name, source_schema::pg_catalog.text, source_table::pg_catalog.text, target_schema::pg_catalog.text, target_table::pg_catalog.text,
                        target_keys, source_keys, target_columns, source_columns, where_clause, enabled,
                        kind, latest_by, bidirectional, source_timestamp, target_timestamp,
                        value_columns, value_expressions, watch_columns, on_insert, mode, fire_on_replica
                 FROM data_sync.rules ORDER BY name",
                    None,
                    &[],
                )
                .expect("data_sync.rules is readable");
            rows.into_iter().map(|r| rule_from_row(&r)).collect()
        })
    })
}

pub fn installed_rule(name: &str) -> Option<Rule> {
    installed_rules().into_iter().find(|r| r.name == name)
}

fn rule_from_row(r: &pgrx::spi::SpiHeapTupleData<'_>) -> Rule {
    let text = |i: usize| -> String { r.get(i).unwrap().unwrap() };
    let list = |i: usize| -> Vec<String> { r.get(i).unwrap().unwrap() };
    let pairs = |t: Vec<String>, s: Vec<String>| -> Vec<Pair> {
        t.into_iter().zip(s).map(|(target, source)| Pair { target, source }).collect()
    };
    let kind = if text(12) == "append" { RuleKind::Append } else { RuleKind::Copy };
    let keys = pairs(list(6), list(7));
    let source_key = list(7);
    let timestamps = match (r.get::<String>(15).unwrap(), r.get::<String>(16).unwrap()) {
        (Some(s), Some(t)) => Some((s, t)),
        _ => None,
    };
    Rule {
        name: text(1),
        kind,
        source: TableName::new(text(2), text(3)),
        target: TableName::new(text(4), text(5)),
        keys: if kind == RuleKind::Append { Vec::new() } else { keys },
        copies: pairs(list(8), list(9)),
        where_clause: r.get(10).unwrap(),
        enabled: r.get(11).unwrap().unwrap(),
        latest_by: r.get(13).unwrap(),
        bidirectional: r.get(14).unwrap().unwrap(),
        timestamps,
        values: pairs(list(17), list(18)),
        watch: list(19),
        on_insert: r.get(20).unwrap().unwrap(),
        mode: r.get::<String>(21).unwrap().and_then(|m| SyncMode::parse(&m)),
        fire_on_replica: r.get(22).unwrap().unwrap(),
        source_key,
    }
}

pub fn insert_rule(rule: &Rule) {
    let tk: Vec<String> = rule.keys.iter().map(|p| p.target.clone()).collect();
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

thread_local! {
    /// Set while data_sync itself creates or drops triggers: its own DDL needs no re-check.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether data_sync's own trigger DDL is under way (`quietly`).
pub fn quiet() -> bool {
    QUIET.with(|q| q.get())
}

/// Runs `f` (data_sync's own trigger DDL) without the DDL event trigger re-checking every rule
/// after each of its commands.
pub fn quietly<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            QUIET.with(|q| q.set(self.0));
        }
    }
    let _reset = Reset(QUIET.with(|q| q.replace(true)));
    f()
}

/// Drops the triggers of a rule wherever they are (found by name and by being data_sync's), as
/// the owner of each table: the DDL event trigger disables rules on behalf of whoever changed
/// one of their tables, who may not own the other.
pub fn drop_rule_triggers(rule: &str) {
    for (trigger, table, owner) in rule_triggers(rule, false) {
        // regclass output is already quoted as needed
        let ddl = format!("DROP TRIGGER {} ON {table}", data_sync_core::plan::ident(&trigger));
        crate::apply::as_role(owner, || Spi::run(&ddl)).expect("drop trigger");
    }
}

/// The rule's triggers on its two tables as `Planner::trigger_shapes` describes them (name, on
/// INSERT, on UPDATE, on DELETE, UPDATE filtered by columns), in name order.
pub fn installed_trigger_shapes(rule: &str, tables: [u32; 2]) -> Vec<(String, bool, bool, bool, bool)> {
    let names: Vec<String> = TRIGGER_SUFFIXES.iter().map(|(suffix, _)| trigger_name(rule, suffix)).collect();
    Spi::connect(|client| {
        client
            .select(
                "SELECT t.tgname::pg_catalog.text,
                        (t.tgtype OPERATOR(pg_catalog.&) 4::pg_catalog.int2) OPERATOR(pg_catalog.<>) 0::pg_catalog.int2,
                        (t.tgtype OPERATOR(pg_catalog.&) 16::pg_catalog.int2) OPERATOR(pg_catalog.<>) 0::pg_catalog.int2,
                        (t.tgtype OPERATOR(pg_catalog.&) 8::pg_catalog.int2) OPERATOR(pg_catalog.<>) 0::pg_catalog.int2,
                        pg_catalog.cardinality(t.tgattr::pg_catalog.int2[]) OPERATOR(pg_catalog.>) 0
                 FROM pg_catalog.pg_trigger t
                 WHERE t.tgname OPERATOR(pg_catalog.=) ANY ($1)
                   AND t.tgrelid OPERATOR(pg_catalog.=) ANY ($2)
                 ORDER BY 1",
                None,
                &[names.into(), tables.map(pg_sys::Oid::from).to_vec().into()],
            )
            .expect("pg_trigger is readable")
            .map(|r| {
                let flag = |i: usize| -> bool { r.get(i).unwrap().unwrap() };
                (r.get(1).unwrap().unwrap(), flag(2), flag(3), flag(4), flag(5))
            })
            .collect()
    })
}

/// Whether a rule still has triggers an earlier build installed (see `LEGACY_TRIGGER_SUFFIXES`).
pub fn has_legacy_triggers(rule: &str) -> bool {
    !rule_triggers(rule, true).is_empty()
}

/// The data_sync triggers of a rule (all, or only the legacy ones): name, table, table owner.
fn rule_triggers(rule: &str, legacy_only: bool) -> Vec<(String, String, pg_sys::Oid)> {
    let legacy = LEGACY_TRIGGER_SUFFIXES.iter().copied();
    let names: Vec<String> = if legacy_only {
        legacy.map(|suffix| trigger_name(rule, suffix)).collect()
    } else {
        TRIGGER_SUFFIXES.iter().map(|(suffix, _)| *suffix).chain(legacy).map(|s| trigger_name(rule, s)).collect()
    };
    Spi::connect(|client| {
        client
            .select(
                "SELECT t.tgname::pg_catalog.text, t.tgrelid::pg_catalog.regclass::pg_catalog.text, c.relowner
                 FROM pg_catalog.pg_trigger t
                 JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.tgrelid
                 JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) t.tgfoid
                 WHERE t.tgname OPERATOR(pg_catalog.=) ANY ($1)
                   -- a partition's clone of a partitioned table's trigger goes with its parent
                   AND t.tgparentid OPERATOR(pg_catalog.=) 0::pg_catalog.oid
                   AND p.pronamespace OPERATOR(pg_catalog.=) 'data_sync'::pg_catalog.regnamespace",
                None,
                &[names.into()],
            )
            .expect("pg_trigger is readable")
            .map(|r| (r.get(1).unwrap().unwrap(), r.get(2).unwrap().unwrap(), r.get(3).unwrap().unwrap()))
            .collect()
    })
}
