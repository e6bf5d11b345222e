//! Installing rules: `load_rules`, `add_rule`, `drop_rule`, enabling and disabling, the checks
//! a rule set must pass on the server before anything changes, and `explain`. Every SQL-callable
//! function pins `search_path`.

use std::collections::HashMap;

use data_sync_core::catalog::{Catalog, TableInfo};
use data_sync_core::citus::Placement;
use data_sync_core::plan::{Params, Planner, Statement};
use data_sync_core::rules::{self, EntitySpec, RuleKind, RuleSpec};
use data_sync_core::sql::{ident, literal};
use data_sync_core::validate::{self, Entity, Rule};
use data_sync_core::Error;
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use pgrx::JsonB;

use crate::error::{deny, kind_of, raise, reject, unless_transactions};
use crate::runtime;
use crate::{catalog, registry, subxact};

/// Replaces the installed rules (and entities, when given) with a new set, atomically: the
/// whole set is validated before anything changes, and any error aborts the transaction.
fn install_rule_set(specs: Vec<RuleSpec>, entity_specs: Option<Vec<EntitySpec>>) -> Vec<(String, String, String)> {
    // 1. resolve every table the set mentions
    let mut cat = Catalog::new();
    let written = specs.iter().flat_map(|s| [&s.source, &s.target]);
    let written = written.chain(entity_specs.iter().flatten().map(|e| &e.table));
    for name in written {
        if !cat.contains_key(name) {
            cat.insert(name.clone(), catalog::resolve(name));
        }
    }
    // 2. validate rules, entities and the graph they form (rules disabled by a schema change
    //    and kept as installed are not validated again, see ddl.rs)
    registry::lock_rules();
    let installed = registry::installed_rules();
    let (rules, entities) =
        validate::validate_set(&specs, entity_specs.as_deref(), &installed, &cat).unwrap_or_else(|e| raise(&e));
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
    let (touched, gone) = validate::difference(&rules, &installed);
    for rule in &touched {
        let (source, target) = infos[rule.name.as_str()];
        let label = format!("rule \"{}\"", rule.name);
        validate::require_owner(&label, "source table", source).unwrap_or_else(|e| raise(&e));
        validate::require_owner(&label, "target table", target).unwrap_or_else(|e| raise(&e));
    }
    for old in &gone {
        require_ownership_of(old);
    }
    // 4. let the server check what the core cannot: the `where` predicates, every statement,
    //    and that the target's owner (who propagation runs as) may read the source
    for rule in &touched {
        let (source, target) = infos[rule.name.as_str()];
        // (first: Citus would fail the other checks' statements with errors of its own)
        check_citus_placement(rule, source, target);
        check_where(rule);
        check_statements(rule, source, target).unwrap_or_else(|e| raise(&e));
        check_target_owner_reads_source(rule, source, target);
        if let Some(reason) = cross_owner_policies(rule, source, target) {
            raise(&Error::unsupported(reason));
        }
    }
    // (after each rule's own checks, so that an error in a rule is reported as such)
    validate::check_overlaps(&rules).unwrap_or_else(|e| raise(&e));

    // 5. apply the difference
    catalog::quietly(|| install_difference(&rules, &installed, &touched, &gone, &infos, entities, &cat))
}

/// Step 5 of `install_rule_set`: drop, replace and install rules and entities.
fn install_difference(
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
        registry::delete_rule(&old.name);
        if !rules.iter().any(|r| r.name == old.name) {
            // what a dropped rule owed is moot
            crate::queue::forget_rule(&old.name);
            summary.push(("rule".into(), old.name.clone(), "removed".into()));
        }
    }
    for &rule in touched {
        registry::insert_rule(rule);
        if rule.enabled {
            let (source, target) = infos[rule.name.as_str()];
            for ddl in (Planner { rule, source, target }).triggers() {
                Spi::run(&ddl).unwrap_or_else(|e| reject(&format!("rule \"{}\": {e}", rule.name)));
            }
            crate::queue::resume_rule(&rule.name);
        }
        let action = if installed.iter().any(|r| r.name == rule.name) { "changed" } else { "added" };
        summary.push(("rule".into(), rule.name.clone(), action.into()));
    }
    if let Some(entities) = entities {
        summary.extend(install_entities(&entities, cat));
    }
    runtime::invalidate_all();
    summary.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    summary
}

fn require_ownership_of(rule: &Rule) {
    for table in [&rule.source, &rule.target] {
        if let Some(info) = catalog::lookup(table) {
            if !info.caller_owns {
                deny(&format!("rule \"{}\": must be owner of table {} to change or remove the rule", rule.name, table));
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
        Err(caught) => {
            let caught = unless_transactions(caught);
            raise(&Error::of(kind_of(&caught), format!("{label}: {caught}")))
        }
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

/// With Citus installed, a rule on a table Citus manages is refused (see core's `citus` module).
fn check_citus_placement(rule: &Rule, source: &TableInfo, target: &TableInfo) {
    let citus = Spi::get_one::<bool>("SELECT pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL");
    if citus != Ok(Some(true)) {
        return;
    }
    let placement = |table: &TableInfo| -> Option<Placement> {
        Spi::connect(|client| {
            let row = client
                .select(
                    "SELECT p.partmethod::pg_catalog.text, p.repmodel::pg_catalog.text,
                            CASE WHEN p.partkey IS NOT NULL
                                 THEN pg_catalog.column_to_column_name(p.logicalrelid, p.partkey) END
                     FROM pg_catalog.pg_dist_partition p
                     WHERE p.logicalrelid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass",
                    Some(1),
                    &[Oid::from(table.oid).into()],
                )
                .expect("pg_dist_partition is readable");
            let row = row.into_iter().next()?;
            let method: String = row.get(1).ok()??;
            let replication: Option<String> = row.get(2).ok()?;
            Some(match (method.as_str(), replication.as_deref()) {
                ("h", _) => Placement::Distributed { column: row.get(3).ok().flatten().unwrap_or_default() },
                ("n", Some("t")) => Placement::Reference,
                ("n", _) => Placement::Local,
                (other, _) => Placement::Other(other.chars().next().unwrap_or('?')),
            })
        })
    };
    data_sync_core::citus::check_placement(rule, placement(source).as_ref(), placement(target).as_ref())
        .unwrap_or_else(|e| raise(&e));
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

/// Propagation runs as the target's owner, who must be able to read the source columns it
/// joins on and copies (and, for bidirectional rules, the other way round); refusing the rule
/// now beats a permission error on every write later.
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
            deny(&format!(
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
        let target_columns = rule.matches.iter().chain(&rule.copies).map(|p| p.target.as_str());
        needs.extend(target_columns.map(|c| (source, target, c)));
    }
    // the fill runs as the source's owner; with latest_by it reads the target's other rows
    if let Some(by) = &rule.latest_by {
        let target_columns = rule.matches.iter().map(|p| p.target.as_str()).chain([by.as_str()]);
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
            deny(&format!(
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
pub(crate) fn check_statements(rule: &Rule, source: &TableInfo, target: &TableInfo) -> Result<(), Error> {
    let planner = Planner { rule, source, target };
    let plan = planner.plan();
    let scalars: Vec<Oid> = plan.key_types.iter().map(|&t| Oid::from(t)).collect();
    let arrays: Vec<Oid> = scalars.iter().map(|&t| unsafe { pg_sys::get_array_type(t) }).collect();
    let mut fill_types = scalars.clone();
    if planner.fill_takes_row() {
        fill_types.push(Oid::from(target.row_type_oid));
        fill_types.push(pg_sys::TIDOID);
    }
    let row_types: Vec<Oid> = plan.row_types.iter().map(|&t| Oid::from(t)).collect();
    for statement in Statement::CHECKED_AT_LOAD {
        // (an append rule whose one-row statement does not compile reads the row from the table
        // instead, see `runtime::build`)
        if statement == Statement::FlushRow && rule.kind == RuleKind::Append {
            continue;
        }
        let Some(sql) = plan.sql(statement) else { continue };
        let types = match statement.params() {
            Params::Key => &scalars,
            Params::KeyArrays => &arrays,
            Params::Row => &row_types,
            Params::Fill => &fill_types,
            Params::Nothing => &Vec::new(),
            other => unreachable!("{statement:?} takes {other:?} and is not checked at load"),
        };
        if let Err(caught) = runtime::try_prepare(sql, types) {
            let caught = unless_transactions(caught);
            let field = if rule.where_clause.is_some() {
                "where"
            } else if !rule.values.is_empty() {
                "values"
            } else {
                "statement"
            };
            return Err(Error::of(kind_of(&caught), format!("rule \"{}\": {field}: {caught}", rule.name)));
        }
    }
    Ok(())
}

/// Drops the rule's triggers wherever they are now (a table may have been renamed or dropped).
fn drop_triggers(rule: &Rule) {
    catalog::drop_rule_triggers(&rule.name);
}

fn install_entities(entities: &[Entity], cat: &Catalog) -> Vec<(String, String, String)> {
    let mut summary = Vec::new();
    let installed = registry::installed_entities();
    for old in &installed {
        let new = entities.iter().find(|e| e.name == old.name);
        if new == Some(old) {
            summary.push(("entity".into(), old.name.clone(), "unchanged".into()));
            continue;
        }
        if catalog::lookup(&old.table).is_some_and(|t| !t.caller_owns) {
            deny(&format!(
                "entity \"{}\": must be owner of table {} to change or remove the entity",
                old.name, old.table
            ));
        }
        for function in [old.function_name(), old.comprehensive_function_name()] {
            Spi::run(&format!("DROP FUNCTION IF EXISTS {}.{}", ident(&old.table.schema), ident(&function)))
                .expect("drop entity function");
        }
        registry::delete_entity(&old.name);
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
        validate::require_owner(&format!("entity \"{}\"", entity.name), "table", info).unwrap_or_else(|e| raise(&e));
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
        registry::insert_entity(entity);
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

/// The installed rules as specs, so that a single change is validated together with the rest;
/// read under the rule-set lock, as the change installs the whole set again.
fn installed_specs() -> Vec<RuleSpec> {
    registry::lock_rules();
    registry::installed_rules().into_iter().map(|r| r.spec()).collect()
}

/// Validates a whole rules document (TOML) and makes it the installed rule set.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn load_rules(
    document: &str,
) -> TableIterator<'static, (name!(kind, String), name!(name, String), name!(action, String))> {
    let doc = rules::parse_document(document).unwrap_or_else(|e| raise(&e));
    let entities = doc.entity.into_values().collect();
    TableIterator::new(install_rule_set(doc.rule, Some(entities)))
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
    .unwrap_or_else(|e| raise(&e));
    let mut specs = installed_specs();
    if specs.iter().any(|s| s.name == spec.name) {
        reject(&format!(
            "rule \"{}\": already exists (drop it first, or use load_rules to replace the set)",
            spec.name
        ));
    }
    specs.push(spec);
    TableIterator::new(install_rule_set(specs, None).into_iter().filter(|r| r.2 != "unchanged"))
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
    TableIterator::new(install_rule_set(specs, None).into_iter().filter(|r| r.2 != "unchanged"))
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
    TableIterator::new(install_rule_set(specs, None).into_iter().filter(|r| r.2 != "unchanged"))
}

/// The SQL a rule installs and runs.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn explain(rule_name: &str) -> TableIterator<'static, (name!(step, String), name!(statement, String))> {
    let Some(rule) = registry::installed_rule(rule_name) else {
        reject(&format!("rule \"{rule_name}\" does not exist"));
    };
    let (Some(source), Some(target)) = (catalog::lookup(&rule.source), catalog::lookup(&rule.target)) else {
        reject(&format!("rule \"{rule_name}\": its tables no longer exist"));
    };
    let planner = Planner { rule: &rule, source: &source, target: &target };
    let plan = planner.plan();
    let mut rows: Vec<(String, String)> = planner.triggers().into_iter().map(|t| ("trigger".to_string(), t)).collect();
    rows.extend(
        Statement::EXPLAINED
            .iter()
            .filter_map(|&(statement, step)| plan.sql(statement).map(|sql| (step.to_string(), sql.to_string()))),
    );
    rows.retain(|(_, sql)| !sql.is_empty());
    TableIterator::new(rows)
}
