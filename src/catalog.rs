//! The facts the core needs about the server's tables, read from the system catalogs (see
//! `data_sync_core::catalog`), and the triggers data_sync installed on them.

use crate::subxact;
use data_sync_core::catalog::{ColumnInfo, TableInfo, TableName};
use data_sync_core::plan::{trigger_name, LEGACY_TRIGGER_SUFFIXES, TRIGGER_SUFFIXES};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

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
        let ddl = format!("DROP TRIGGER {} ON {table}", data_sync_core::sql::ident(&trigger));
        crate::spi::as_role(owner, || Spi::run(&ddl)).expect("drop trigger");
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
