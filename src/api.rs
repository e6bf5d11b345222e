//! The SQL surface in schema `data_sync`. Every function pins `search_path`.

use std::collections::HashMap;

use data_sync_core::catalog::{Catalog, TableInfo};
use data_sync_core::citus::Placement;
use data_sync_core::plan::{ident, literal, Planner};
use data_sync_core::rules::{self, EntitySpec, RuleKind, RuleSpec};
use data_sync_core::validate::{self, Entity, Rule};
use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;
use pgrx::{AnyElement, GucContext, GucFlags, GucRegistry, GucSetting, JsonB};

use crate::apply::{self, RuleRuntime};
use crate::{catalog, subxact, triggers};

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

fn reject(message: &str) -> ! {
    let code = if message.contains("must be owner") || message.contains("permission denied") {
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE
    } else {
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
    };
    ereport!(ERROR, code, format!("data_sync: {message}"));
    #[allow(unreachable_code)]
    {
        unreachable!("ereport(ERROR) does not return")
    }
}

/// Replaces the installed rules (and entities, when given) with a new set, atomically: the
/// whole set is validated before anything changes, and any error aborts the transaction.
fn apply_rule_set(specs: Vec<RuleSpec>, entity_specs: Option<Vec<EntitySpec>>) -> Vec<(String, String, String)> {
    // 1. resolve every table the set mentions
    let mut cat = Catalog::new();
    let written = specs.iter().flat_map(|s| [&s.source, &s.target]);
    let written = written.chain(entity_specs.iter().flatten().map(|e| &e.table));
    for name in written {
        if !cat.contains_key(name) {
            cat.insert(name.clone(), catalog::resolve(name));
        }
    }
    // 2. validate rules, entities and the graph they form. A disabled rule kept exactly as
    //    installed is not re-validated: a schema change may have disabled it (see ddl.rs), and
    //    it must not stand in the way of changes to other rules.
    let installed = catalog::installed_rules();
    let mut rules = Vec::new();
    for spec in &specs {
        match installed.iter().find(|r| !r.enabled && r.name == spec.name && spec_of(r) == *spec) {
            Some(kept) => rules.push(kept.clone()),
            None => rules.push(validate::validate_rule(spec, &cat).unwrap_or_else(|e| reject(&e.message))),
        }
    }
    validate::check_cycles(&rules).unwrap_or_else(|e| reject(&e.message));
    let entities: Option<Vec<Entity>> = entity_specs.as_ref().map(|list| {
        list.iter().map(|e| validate::validate_entity(e, list, &cat).unwrap_or_else(|e| reject(&e.message))).collect()
    });
    // (the tables of every validated rule resolved)
    let infos: HashMap<&str, (&TableInfo, &TableInfo)> = specs
        .iter()
        .filter_map(|s| match (&cat[&s.source], &cat[&s.target]) {
            (Ok(source), Ok(target)) => Some((s.name.as_str(), (source, target))),
            _ => None,
        })
        .collect();

    // 3. what changes, and whether the caller may change it: only the rules a change touches
    //    are checked, so other roles' installed rules never stand in the way
    let touched: Vec<&Rule> = rules.iter().filter(|r| !installed.contains(r)).collect();
    let gone: Vec<&Rule> = installed.iter().filter(|r| !rules.contains(r)).collect();
    for rule in &touched {
        let (source, target) = infos[rule.name.as_str()];
        let label = format!("rule \"{}\"", rule.name);
        validate::require_owner(&label, "source table", source).unwrap_or_else(|e| reject(&e.message));
        validate::require_owner(&label, "target table", target).unwrap_or_else(|e| reject(&e.message));
    }
    for old in &gone {
        require_ownership_of(old);
    }
    // 4. let the server check what the core cannot: the `where` predicates, every statement,
    //    and that the target's owner (who propagation runs as) may read the source
    for rule in &touched {
        let (source, target) = infos[rule.name.as_str()];
        check_where(rule);
        check_statements(rule, source, target);
        check_target_owner_reads_source(rule, source, target);
        if let Some(reason) = cross_owner_policies(rule, source, target) {
            ereport!(ERROR, PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED, format!("data_sync: {reason}"));
        }
        check_citus_placement(rule, source, target);
    }
    // (after each rule's own checks, so that an error in a rule is reported as such)
    validate::check_overlaps(&rules).unwrap_or_else(|e| reject(&e.message));

    // 5. apply the difference
    catalog::quietly(|| apply_difference(&rules, &installed, &touched, &gone, &infos, entities, &cat))
}

/// Step 5 of `apply_rule_set`: drop, replace and install rules and entities.
fn apply_difference(
    rules: &[Rule],
    installed: &[Rule],
    touched: &[&Rule],
    gone: &[&Rule],
    infos: &HashMap<&str, (&TableInfo, &TableInfo)>,
    entities: Option<Vec<Entity>>,
    cat: &Catalog,
) -> Vec<(String, String, String)> {
    let mut summary = Vec::new();
    for old in installed {
        if !gone.contains(&old) {
            // A rule installed by an earlier build still has its triggers of then: they work,
            // but cost more; its owner re-loading it gets the current ones.
            let owned = infos.get(old.name.as_str()).filter(|(s, t)| s.caller_owns && t.caller_owns);
            if let Some(&(source, target)) = owned.filter(|_| old.enabled && catalog::has_legacy_triggers(&old.name)) {
                drop_triggers(old);
                for ddl in (Planner { rule: old, source, target }).triggers() {
                    Spi::run(&ddl).unwrap_or_else(|e| reject(&format!("rule \"{}\": {e}", old.name)));
                }
            }
            summary.push(("rule".into(), old.name.clone(), "unchanged".into()));
            continue;
        }
        drop_triggers(old);
        catalog::delete_rule(&old.name);
        if !rules.iter().any(|r| r.name == old.name) {
            // what a dropped rule owed is moot
            crate::queue::forget_rule(&old.name);
            summary.push(("rule".into(), old.name.clone(), "removed".into()));
        }
    }
    for &rule in touched {
        catalog::insert_rule(rule);
        if rule.enabled {
            let (source, target) = infos[rule.name.as_str()];
            for ddl in (Planner { rule, source, target }).triggers() {
                Spi::run(&ddl).unwrap_or_else(|e| reject(&format!("rule \"{}\": {e}", rule.name)));
            }
        }
        let action = if installed.iter().any(|r| r.name == rule.name) { "changed" } else { "added" };
        summary.push(("rule".into(), rule.name.clone(), action.into()));
    }
    if let Some(entities) = entities {
        summary.extend(apply_entities(&entities, cat));
    }
    apply::invalidate_all();
    summary.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    summary
}

fn require_ownership_of(rule: &Rule) {
    for table in [&rule.source, &rule.target] {
        if let Some(info) = catalog::lookup(table) {
            if !info.caller_owns {
                reject(&format!(
                    "rule \"{}\": must be owner of table {} to change or remove the rule",
                    rule.name, table
                ));
            }
        }
    }
}

/// A `where` predicate is pasted into the generated statements inside parentheses, so it must
/// be exactly one expression: `status = 'lost') OR (true` would otherwise escape them and make
/// the rule rewrite every target row. The server's own grammar decides what one expression is.
fn check_where(rule: &Rule) {
    if let Some(predicate) = &rule.where_clause {
        let over = if rule.kind == RuleKind::Append { "the source's columns" } else { "the target's columns" };
        check_expression(&format!("rule \"{}\": where", rule.name), predicate, over);
    }
    for value in &rule.values {
        let label = format!("rule \"{}\": values.{}", rule.name, value.target);
        check_expression(&label, &value.source, "the source's columns");
    }
}

fn check_expression(label: &str, expression: &str, over: &str) {
    let Ok(sql) = std::ffi::CString::new(format!("SELECT {expression}")) else {
        reject(&format!("{label}: contains a NUL character"));
    };
    match subxact::try_catch(|| unsafe { is_single_expression(&sql) }) {
        Ok(true) => {}
        Ok(false) => reject(&format!("{label}: must be a single SQL expression over {over}")),
        Err(message) => reject(&format!("{label}: {message}")),
    }
}

/// Whether `sql` parses as `SELECT <one expression>` and nothing else.
unsafe fn is_single_expression(sql: &std::ffi::CStr) -> bool {
    let statements = pg_sys::raw_parser(sql.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
    if statements.is_null() || (*statements).length != 1 {
        return false;
    }
    let raw = (*(*statements).elements).ptr_value as *mut pg_sys::RawStmt;
    let node = (*raw).stmt;
    if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_SelectStmt {
        return false;
    }
    let select = &*(node as *mut pg_sys::SelectStmt);
    let bare = select.distinctClause.is_null()
        && select.intoClause.is_null()
        && select.fromClause.is_null()
        && select.whereClause.is_null()
        && select.groupClause.is_null()
        && select.havingClause.is_null()
        && select.windowClause.is_null()
        && select.valuesLists.is_null()
        && select.sortClause.is_null()
        && select.limitOffset.is_null()
        && select.limitCount.is_null()
        && select.lockingClause.is_null()
        && select.withClause.is_null()
        && select.op == pg_sys::SetOperation::SETOP_NONE;
    if !bare || select.targetList.is_null() || (*select.targetList).length != 1 {
        return false;
    }
    let target = (*(*select.targetList).elements).ptr_value as *mut pg_sys::ResTarget;
    (*target).name.is_null()
}

/// Propagation runs as the target's owner, who must be able to read the source columns it
/// joins on and copies (and, for bidirectional rules, the other way round); refusing the rule
/// now beats a permission error on every write later.
/// With Citus installed, only rules Citus can run shard by shard are accepted (see core's
/// `citus` module).
fn check_citus_placement(rule: &Rule, source: &TableInfo, target: &TableInfo) {
    let citus = Spi::get_one::<bool>("SELECT pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL");
    if citus != Ok(Some(true)) {
        return;
    }
    let placement = |table: &TableInfo| -> Option<Placement> {
        Spi::connect(|client| {
            let row = client
                .select(
                    "SELECT p.partmethod::pg_catalog.text,
                            CASE WHEN p.partkey IS NOT NULL
                                 THEN pg_catalog.column_to_column_name(p.logicalrelid, p.partkey) END,
                            p.colocationid
                     FROM pg_catalog.pg_dist_partition p
                     WHERE p.logicalrelid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass",
                    Some(1),
                    &[Oid::from(table.oid).into()],
                )
                .expect("pg_dist_partition is readable");
            let row = row.into_iter().next()?;
            let method: String = row.get(1).ok()??;
            Some(match method.as_str() {
                "h" => Placement::Distributed {
                    column: row.get(2).ok().flatten().unwrap_or_default(),
                    colocation: row.get(3).ok().flatten().unwrap_or_default(),
                },
                "n" => Placement::Reference,
                other => Placement::Other(other.chars().next().unwrap_or('?')),
            })
        })
    };
    data_sync_core::citus::check_placement(rule, placement(source).as_ref(), placement(target).as_ref())
        .unwrap_or_else(|e| reject(&e.message));
}

/// Why a rule would run one table owner's row-level-security policies as another role, if it
/// would: a propagation of many rows (and a re-sync) reads the source as the target's owner, and
/// the fill of a `latest_by` rule and the way back of a bidirectional one read the target as the
/// source's owner. Policies are code of their table's owner; data_sync runs code a role controls
/// as that role or not at all, so such rules are refused (and disabled if RLS is enabled later).
pub(crate) fn cross_owner_policies(rule: &Rule, source: &TableInfo, target: &TableInfo) -> Option<String> {
    let facts = |t: &TableInfo| {
        Spi::get_two_with_args::<Oid, bool>(
            "SELECT relowner, relrowsecurity FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1",
            &[Oid::from(t.oid).into()],
        )
        .ok()
    };
    let (Some((Some(source_owner), Some(source_rls))), Some((Some(target_owner), Some(target_rls)))) =
        (facts(source), facts(target))
    else {
        return None;
    };
    if source_owner == target_owner {
        return None;
    }
    let target_read_by_source_owner = rule.bidirectional || rule.latest_by.is_some();
    let (table, reader) = if source_rls && rule.kind == RuleKind::Copy {
        (&source.name, "the target's owner")
    } else if target_rls && target_read_by_source_owner {
        (&target.name, "the source's owner")
    } else {
        return None;
    };
    Some(format!(
        "rule \"{}\": {table} has row-level security and the rule's tables have different owners: \
         propagation reads it as {reader}, which would run its owner's policies as another role \
         (give both tables one owner, or disable row-level security on {table})",
        rule.name
    ))
}

fn check_target_owner_reads_source(rule: &Rule, source: &TableInfo, target: &TableInfo) {
    // the owner each side is read as must be able to reach the other side's schema
    let mut schemas = vec![(target, source)];
    if rule.bidirectional || rule.latest_by.is_some() {
        schemas.push((source, target));
    }
    for (writer, read) in schemas {
        let allowed = Spi::get_one_with_args::<bool>(
            "SELECT pg_catalog.has_schema_privilege(c.relowner, $2, 'USAGE')
             FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $1",
            &[Oid::from(writer.oid).into(), read.name.schema.as_str().into()],
        );
        if allowed != Ok(Some(true)) {
            reject(&format!(
                "rule \"{}\": permission denied: role \"{}\", owner of {}, has no USAGE on schema {}; \
                 propagation into a table runs as its owner (GRANT USAGE ON SCHEMA first)",
                rule.name,
                owner_name(writer),
                writer.name,
                ident(&read.name.schema)
            ));
        }
    }

    let mut needs: Vec<(&TableInfo, &TableInfo, &str)> = Vec::new();
    let source_columns =
        rule.source_key.iter().map(String::as_str).chain(rule.copies.iter().map(|p| p.source.as_str()));
    needs.extend(source_columns.map(|c| (target, source, c)));
    if rule.bidirectional {
        let target_columns = rule.keys.iter().chain(&rule.copies).map(|p| p.target.as_str());
        needs.extend(target_columns.map(|c| (source, target, c)));
    }
    // the fill runs as the source's owner; with latest_by it reads the target's other rows
    if let Some(by) = &rule.latest_by {
        let target_columns = rule.keys.iter().map(|p| p.target.as_str()).chain([by.as_str()]);
        needs.extend(target_columns.map(|c| (source, target, c)));
    }
    for (writer, read, column) in needs {
        let allowed = Spi::get_one_with_args::<bool>(
            "SELECT pg_catalog.has_column_privilege(c.relowner, $2, $3, 'SELECT')
             FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $1",
            &[Oid::from(writer.oid).into(), Oid::from(read.oid).into(), column.into()],
        );
        if allowed != Ok(Some(true)) {
            let owner = owner_name(writer);
            reject(&format!(
                "rule \"{}\": permission denied: role \"{owner}\", owner of {}, cannot read {}.{}; \
                 propagation into a table runs as its owner (GRANT SELECT first)",
                rule.name, writer.name, read.name, column
            ));
        }
    }
}

fn owner_name(table: &TableInfo) -> String {
    Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.pg_get_userbyid(relowner)::pg_catalog.text FROM pg_catalog.pg_class
         WHERE oid OPERATOR(pg_catalog.=) $1",
        &[Oid::from(table.oid).into()],
    )
    .ok()
    .flatten()
    .unwrap_or_default()
}

/// Prepares (and discards) every statement of the rule, turning a server error into a
/// rejection that names the rule: this is what catches a bad `where` predicate.
pub(crate) fn check_statements(rule: &Rule, source: &TableInfo, target: &TableInfo) {
    let planner = Planner { rule, source, target };
    let plan = planner.plan();
    let scalars: Vec<Oid> = plan.key_types.iter().map(|&t| Oid::from(t)).collect();
    let arrays: Vec<Oid> = scalars.iter().map(|&t| unsafe { pg_sys::get_array_type(t) }).collect();
    let mut fill_types = scalars.clone();
    if planner.fill_takes_row() {
        fill_types.push(Oid::from(target.row_type_oid));
        fill_types.push(pg_sys::TIDOID);
    }
    let none = Vec::new();
    let row_types: Vec<Oid> = plan.row_types.iter().map(|&t| Oid::from(t)).collect();
    let optional = |sql: &Option<String>| sql.clone().unwrap_or_default();
    let statements = [
        (plan.flush_one.clone(), &scalars),
        // (an append rule whose one-row statement does not compile reads the row from the table
        // instead, see `apply::build`)
        (if rule.kind == RuleKind::Append { String::new() } else { plan.flush_row.clone() }, &row_types),
        (plan.flush_many.clone(), &arrays),
        (plan.fill_lookup.clone(), &fill_types),
        (plan.lock_one.clone(), &scalars),
        (plan.lock_many.clone(), &arrays),
        (plan.check.clone(), &none),
        (optional(&plan.conflicts_one), &scalars),
        (optional(&plan.conflicts_many), &arrays),
        (optional(&plan.reverse_one), &scalars),
        (optional(&plan.reverse_many), &arrays),
        (optional(&plan.reverse_conflicts_one), &scalars),
        (optional(&plan.reverse_conflicts_many), &arrays),
    ];
    for (sql, types) in statements {
        if sql.is_empty() {
            continue;
        }
        if let Err(message) = apply::try_prepare(&sql, types) {
            let field = if rule.where_clause.is_some() {
                "where"
            } else if !rule.values.is_empty() {
                "values"
            } else {
                "statement"
            };
            reject(&format!("rule \"{}\": {field}: {message}", rule.name));
        }
    }
}

/// Drops the rule's triggers wherever they are now (a table may have been renamed or dropped).
fn drop_triggers(rule: &Rule) {
    catalog::drop_rule_triggers(&rule.name);
}

fn apply_entities(entities: &[Entity], cat: &Catalog) -> Vec<(String, String, String)> {
    let mut summary = Vec::new();
    let installed = catalog::installed_entities();
    for old in &installed {
        let new = entities.iter().find(|e| e.name == old.name);
        if new == Some(old) {
            summary.push(("entity".into(), old.name.clone(), "unchanged".into()));
            continue;
        }
        if catalog::lookup(&old.table).is_some_and(|t| !t.caller_owns) {
            reject(&format!(
                "entity \"{}\": must be owner of table {} to change or remove the entity",
                old.name, old.table
            ));
        }
        for function in [old.function_name(), old.comprehensive_function_name()] {
            Spi::run(&format!("DROP FUNCTION IF EXISTS {}.{}", ident(&old.table.schema), ident(&function)))
                .expect("drop entity function");
        }
        catalog::delete_entity(&old.name);
        if new.is_none() {
            summary.push(("entity".into(), old.name.clone(), "removed".into()));
        }
    }
    for entity in entities {
        let old = installed.iter().find(|e| e.name == entity.name);
        if old == Some(entity) {
            continue;
        }
        let info = cat.values().flatten().find(|t| t.name == entity.table).expect("entity table resolved");
        validate::require_owner(&format!("entity \"{}\"", entity.name), "table", info)
            .unwrap_or_else(|e| reject(&e.message));
        let key_type = info.column(&entity.key).expect("validated key").type_oid;
        let key_type = Spi::get_one_with_args::<String>(
            "SELECT $1::pg_catalog.regtype::pg_catalog.text",
            &[Oid::from(key_type).into()],
        )
        .expect("regtype")
        .expect("type name");
        let functions = [
            (
                entity.function_name(),
                "sync_entity",
                format!(
                    "data_sync: re-applies every rule whose source is {} for the rows with this {}",
                    entity.table, entity.key
                ),
            ),
            (
                entity.comprehensive_function_name(),
                "sync_entity_comprehensive",
                format!(
                    "data_sync: like {}, then the same for its related entities ({}), transitively",
                    entity.function_name(),
                    if entity.related.is_empty() {
                        "none declared".to_string()
                    } else {
                        entity.related.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                ),
            ),
        ];
        for (function, implementation, comment) in functions {
            // (data_sync's own were dropped above; this one is somebody else's)
            let signature = format!("{}.{}({key_type})", ident(&entity.table.schema), ident(&function));
            let taken = Spi::get_one_with_args::<bool>(
                "SELECT pg_catalog.to_regprocedure($1) IS NOT NULL",
                &[signature.as_str().into()],
            );
            if taken == Ok(Some(true)) {
                reject(&format!(
                    "entity \"{}\": function {signature} already exists and was not made by data_sync; \
                     drop or rename it, or rename the entity",
                    entity.name
                ));
            }
            let body = format!("SELECT data_sync.{implementation}({}, $1)", literal(&entity.name));
            Spi::run(&format!(
                "CREATE FUNCTION {}.{}(key {key_type}) RETURNS bigint LANGUAGE sql VOLATILE \
                 SET search_path = pg_catalog, pg_temp AS {}",
                ident(&entity.table.schema),
                ident(&function),
                literal(&body)
            ))
            .unwrap_or_else(|e| reject(&format!("entity \"{}\": {e}", entity.name)));
            depend_on_extension(&signature);
            Spi::run(&format!(
                "COMMENT ON FUNCTION {}.{}({key_type}) IS {}",
                ident(&entity.table.schema),
                ident(&function),
                literal(&comment)
            ))
            .expect("comment");
        }
        catalog::insert_entity(entity);
        let action = if old.is_some() { "changed" } else { "added" };
        summary.push(("entity".into(), entity.name.clone(), action.into()));
    }
    summary
}

/// Makes a generated function go with the extension: `DROP EXTENSION data_sync` (CASCADE or not)
/// drops it too, instead of leaving a function that calls into a schema that is gone. An
/// automatic dependency, not membership: the function stays the table owner's, in its schema.
fn depend_on_extension(signature: &str) {
    let function =
        Spi::get_one_with_args::<Oid>("SELECT pg_catalog.to_regprocedure($1)::pg_catalog.oid", &[signature.into()])
            .ok()
            .flatten()
            .unwrap_or_else(|| reject(&format!("function {signature} was not created")));
    unsafe {
        let depender =
            pg_sys::ObjectAddress { classId: pg_sys::ProcedureRelationId, objectId: function, objectSubId: 0 };
        let extension = pg_sys::ObjectAddress {
            classId: pg_sys::ExtensionRelationId,
            objectId: pg_sys::get_extension_oid(c"data_sync".as_ptr(), false),
            objectSubId: 0,
        };
        pg_sys::recordDependencyOn(&depender, &extension, pg_sys::DependencyType::DEPENDENCY_AUTO);
    }
}

/// The installed rules as specs, so a single change can be validated together with the rest.
fn installed_specs() -> Vec<RuleSpec> {
    catalog::installed_rules().into_iter().map(|r| spec_of(&r)).collect()
}

pub(crate) fn spec_of(rule: &Rule) -> RuleSpec {
    let map = |pairs: &[validate::Pair]| pairs.iter().map(|p| (p.target.clone(), p.source.clone())).collect();
    let append = rule.kind == RuleKind::Append;
    RuleSpec {
        name: rule.name.clone(),
        kind: rule.kind,
        source: rule.source.sql(),
        target: rule.target.sql(),
        match_columns: map(&rule.keys),
        set: map(&rule.copies),
        where_clause: rule.where_clause.clone(),
        enabled: rule.enabled,
        latest_by: rule.latest_by.clone(),
        bidirectional: rule.bidirectional,
        source_timestamp: rule.timestamps.as_ref().map(|t| t.0.clone()),
        target_timestamp: rule.timestamps.as_ref().map(|t| t.1.clone()),
        values: map(&rule.values),
        watch: append.then(|| rule.watch.clone()),
        on_insert: rule.on_insert,
        mode: rule.mode,
        fire_on_replica: rule.fire_on_replica,
    }
}

/// Validates a whole rules document (TOML) and makes it the installed rule set.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn load_rules(
    document: &str,
) -> TableIterator<'static, (name!(kind, String), name!(name, String), name!(action, String))> {
    let doc = rules::parse_document(document).unwrap_or_else(|e| reject(&e.message));
    let entities = doc.entity.into_values().collect();
    TableIterator::new(apply_rule_set(doc.rule, Some(entities)))
}

/// Adds one rule to the installed set.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn add_rule(
    name: Option<&str>,
    source: Option<&str>,
    target: Option<&str>,
    match_columns: Option<JsonB>,
    set_columns: Option<JsonB>,
    where_clause: default!(Option<&str>, "NULL"),
    options: default!(Option<JsonB>, "NULL"),
) -> TableIterator<'static, (name!(kind, String), name!(name, String), name!(action, String))> {
    let spec = rules::rule_from_args(rules::RuleArgs {
        name,
        source,
        target,
        match_columns: match_columns.map(|j| j.0),
        set_columns: set_columns.map(|j| j.0),
        where_clause,
        options: options.map(|j| j.0),
    })
    .unwrap_or_else(|e| reject(&e.message));
    let mut specs = installed_specs();
    if specs.iter().any(|s| s.name == spec.name) {
        reject(&format!(
            "rule \"{}\": already exists (drop it first, or use load_rules to replace the set)",
            spec.name
        ));
    }
    specs.push(spec);
    TableIterator::new(apply_rule_set(specs, None).into_iter().filter(|r| r.2 != "unchanged"))
}

fn change_rule(
    name: &str,
    change: impl FnOnce(&mut Vec<RuleSpec>, usize),
) -> TableIterator<'static, (name!(kind, String), name!(name, String), name!(action, String))> {
    let mut specs = installed_specs();
    let Some(i) = specs.iter().position(|s| s.name == name) else {
        reject(&format!("rule \"{name}\" does not exist"));
    };
    change(&mut specs, i);
    TableIterator::new(apply_rule_set(specs, None).into_iter().filter(|r| r.2 != "unchanged"))
}

/// Removes a rule and its triggers.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn drop_rule(name: &str) -> TableIterator<'static, (name!(kind, String), name!(name, String), name!(action, String))> {
    change_rule(name, |specs, i| {
        specs.remove(i);
    })
}

/// Re-installs a disabled rule's triggers. Rows written meanwhile are not re-synced: run
/// `data_sync.sync_all(name)` for that.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn enable_rule(
    name: &str,
) -> TableIterator<'static, (name!(kind, String), name!(name, String), name!(action, String))> {
    change_rule(name, |specs, i| specs[i].enabled = true)
}

/// Keeps the rule in the catalog but removes its triggers.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn disable_rule(
    name: &str,
) -> TableIterator<'static, (name!(kind, String), name!(name, String), name!(action, String))> {
    change_rule(name, |specs, i| specs[i].enabled = false)
}

/// Makes rules fire for rows that logical replication's apply worker writes (their triggers
/// `ENABLE ALWAYS`), or only for local writes again (`enabled => false`, the default state). For
/// a subscriber that receives only the source tables and runs the rules itself. `rule_name`
/// NULL: every installed rule.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn fire_on_replica(
    enabled: default!(bool, true),
    rule_name: default!(Option<&str>, "NULL"),
) -> TableIterator<'static, (name!(kind, String), name!(name, String), name!(action, String))> {
    let mut specs = installed_specs();
    if let Some(name) = rule_name {
        if !specs.iter().any(|s| s.name == name) {
            reject(&format!("rule \"{name}\" does not exist"));
        }
    }
    for spec in specs.iter_mut().filter(|s| rule_name.is_none_or(|name| s.name == name)) {
        spec.fire_on_replica = enabled;
    }
    TableIterator::new(apply_rule_set(specs, None).into_iter().filter(|r| r.2 != "unchanged"))
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
            pg_sys::panic::ErrorReport::new(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!(
                    "data_sync: rule \"{}\": permission denied: row-level security of {} applies to this role, \
                     and re-syncs and checks see every row",
                    rule.name, table.name
                ),
                "data_sync",
            )
            .set_hint("Run it as the table's owner or as a role with BYPASSRLS.")
            .report(PgLogLevel::ERROR);
        }
    }
    let needs = match access {
        Access::Sync if has(source, update) || has(target, update) => return,
        Access::Check if has(source, select) && has(target, select) => return,
        Access::Sync => format!("re-syncing needs UPDATE privilege on {} or {}", source.name, target.name),
        Access::Check => format!("checking needs SELECT privilege on {} and {}", source.name, target.name),
    };
    reject(&format!("rule \"{}\": permission denied: {needs}", rule.name));
}

/// The runtimes of the enabled rules a call is about (one by name, or all that `wanted`
/// selects), after checking the caller may do `access` with each of them.
fn enabled_runtimes(
    rule_name: Option<&str>,
    access: Access,
    wanted: impl Fn(&Rule) -> bool,
) -> Vec<std::rc::Rc<RuleRuntime>> {
    runtimes_of(&catalog::installed_rules(), rule_name, access, wanted)
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
            let rt = apply::runtime(&r.name)
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
        if rt.plan.keys_range_first.is_none() {
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
    apply::with_spi(|| unsafe {
        // single-column keys count with (optional) bounds, others without
        let (types, args, nulls) = match bounds {
            Some(b) => with_bounds(vec![], &b),
            None if rt.plan.keys_range_first.is_some() => with_bounds(vec![], &[None, None]),
            None => (vec![], vec![], vec![]),
        };
        apply::as_role(rt.source_owner, || rt.execute("keys_count", &rt.plan.keys_count, &types, &args, &nulls));
        let rows = apply::count_of_result() as i64;
        let mut changed = 0i64;
        let (mut done, mut batches) = (0i64, 0i64);
        let mut previous: Option<(Vec<Datum>, *mut pg_sys::SPITupleTable)> = None;
        // (source keys are read as the source's owner, like every read of the source)
        report_activity(name, done, rows);
        loop {
            let found = match (&previous, &bounds) {
                (None, None) => apply::as_role(rt.source_owner, || {
                    rt.execute("keys_first", &rt.plan.keys_first, &[pg_sys::INT8OID], &[batch.into()], &[false])
                }),
                (Some((last, _)), None) => {
                    let mut types = vec![pg_sys::INT8OID];
                    types.extend(rt.key_scalar_types());
                    let mut args = vec![Datum::from(batch)];
                    args.extend(last.iter().copied());
                    let nulls = vec![false; args.len()];
                    apply::as_role(rt.source_owner, || {
                        rt.execute("keys_after", &rt.plan.keys_after, &types, &args, &nulls)
                    })
                }
                (None, Some(b)) => {
                    let (types, args, nulls) = with_bounds(vec![Datum::from(batch)], b);
                    let sql = rt.plan.keys_range_first.as_deref().unwrap();
                    apply::as_role(rt.source_owner, || rt.execute("keys_range_first", sql, &types, &args, &nulls))
                }
                (Some((last, _)), Some(b)) => {
                    let (types, args, nulls) = with_bounds(vec![Datum::from(batch)], &[Some(last[0]), b[1]]);
                    let sql = rt.plan.keys_range_after.as_deref().unwrap();
                    apply::as_role(rt.source_owner, || rt.execute("keys_range_after", sql, &types, &args, &nulls))
                }
            };
            if let Some((_, table)) = previous.take() {
                pg_sys::SPI_freetuptable(table);
            }
            if found == 0 {
                break;
            }
            let (keys, table) = result_keys();
            changed += triggers::propagate(rt, &keys, "sync") as i64;
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
    let entities = catalog::installed_entities();
    let ent = find_entity(&entities, entity);
    sync_entity_key(&catalog::installed_rules(), ent, key.datum(), key.oid())
}

/// `sync_entity`, then the same for every related entity's rows (declared with `related`),
/// transitively; each row (entity and key) is visited once per call. Called by the generated
/// `sync_all_<entity>_data_comprehensive(key)` functions.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn sync_entity_comprehensive(entity: &str, key: AnyElement) -> i64 {
    let entities = catalog::installed_entities();
    let mut walk = Walk { entities: &entities, rules: catalog::installed_rules(), visited: Default::default() };
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
    /// relation changes (`apply::relcache_generation`).
    static RELATED_QUERIES: std::cell::RefCell<RelatedQueries> =
        std::cell::RefCell::new((0, HashMap::new()));
}

/// The query of the keys of `other`'s rows related to one row of `ent`, and their type.
fn related_query(ent: &Entity, name: &str, other: &Entity, pairs: &[data_sync_core::validate::Pair]) -> (String, Oid) {
    let link = format!("{}\u{0}{}\u{0}{}\u{0}{}\u{0}{:?}", ent.table, ent.key, other.table, other.key, pairs);
    let generation = apply::relcache_generation();
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
        apply::with_spi(|| unsafe {
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
        apply::with_spi(|| unsafe {
            apply::as_role(rt.source_owner, || {
                rt.execute(&format!("entity_keys {}", ent.key), &sql, &[key_type], &[key], &[false])
            });
            let (keys, table) = result_keys();
            for chunk in keys.chunks(batch) {
                total += triggers::propagate(&rt, chunk, "sync") as i64;
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
        let drifted = apply::with_spi(|| unsafe {
            apply::as_role(rt.target_owner, || rt.execute("check", &rt.plan.check, &[], &[], &[]));
            let table = pg_sys::SPI_tuptable;
            let mut isnull = false;
            let d = pg_sys::SPI_getbinval(*(*table).vals, (*table).tupdesc, 1, &mut isnull);
            i64::from_datum(d, isnull).unwrap_or(0)
        });
        out.push((rt.rule.name.clone(), rt.rule.target.to_string(), drifted));
    }
    TableIterator::new(out)
}

/// The SQL a rule installs and runs.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn explain(rule_name: &str) -> TableIterator<'static, (name!(step, String), name!(statement, String))> {
    let Some(rule) = catalog::installed_rule(rule_name) else {
        reject(&format!("rule \"{rule_name}\" does not exist"));
    };
    let (Some(source), Some(target)) = (catalog::lookup(&rule.source), catalog::lookup(&rule.target)) else {
        reject(&format!("rule \"{rule_name}\": its tables no longer exist"));
    };
    let planner = Planner { rule: &rule, source: &source, target: &target };
    let plan = planner.plan();
    let mut rows: Vec<(String, String)> = planner.triggers().into_iter().map(|t| ("trigger".to_string(), t)).collect();
    rows.extend([
        ("propagate one source row".to_string(), plan.flush_one),
        ("propagate many source rows".to_string(), plan.flush_many),
        ("fill a target row".to_string(), plan.fill_lookup),
        ("check".to_string(), plan.check),
        ("sync_all first batch".to_string(), plan.keys_first),
        ("sync_all next batch".to_string(), plan.keys_after),
    ]);
    let optional = [
        ("count conflicts of one source row", plan.conflicts_one),
        ("count conflicts of many source rows", plan.conflicts_many),
        ("propagate one target row back", plan.reverse_one),
        ("propagate many target rows back", plan.reverse_many),
        ("count conflicts of one target row", plan.reverse_conflicts_one),
        ("count conflicts of many target rows", plan.reverse_conflicts_many),
    ];
    rows.extend(optional.into_iter().filter_map(|(step, sql)| sql.map(|sql| (step.to_string(), sql))));
    rows.retain(|(_, sql)| !sql.is_empty());
    TableIterator::new(rows)
}
