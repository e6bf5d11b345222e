//! Guarding rules against schema changes. An event trigger (sql/ddl.sql) calls
//! `revalidate_rules` after every ALTER TABLE, DROP TABLE and similar command: an enabled rule
//! whose tables or columns are gone, renamed or no longer fit is disabled (its triggers dropped),
//! with a WARNING and a `disabled` log row saying why, instead of failing every later write.
//! Loading the corrected rules enables them again.

use data_sync_core::catalog::Catalog;
use data_sync_core::validate;
use pgrx::prelude::*;

use crate::{catalog, install, registry, runtime, spi, subxact};

/// Why an installed rule no longer fits the catalog, if it does not.
fn breakage(rule: &validate::Rule) -> Option<String> {
    let spec = rule.spec();
    let mut cat = Catalog::new();
    for (what, name, written) in [("source", &rule.source, &spec.source), ("target", &rule.target, &spec.target)] {
        let resolved = catalog::resolve(written);
        if resolved.is_err() {
            return Some(format!("{what} table {name} does not exist"));
        }
        cat.insert(written.clone(), resolved);
    }
    let checked = validate::revalidate(rule, &spec, cat.clone()).map(|_| ());
    if let Err(e) = checked {
        return Some(e.message);
    }
    // expressions (where, values) name columns too: the statements must still prepare
    let (Some(Ok(source)), Some(Ok(target))) = (cat.get(&spec.source), cat.get(&spec.target)) else { return None };
    // as the target's owner, not whoever changed a table (maybe a superuser): parsing the rule's
    // expressions may call its tables' owners' code
    let owner = catalog::owner_of(pgrx::pg_sys::Oid::from(target.oid))?;
    if let Err(e) = spi::as_role(owner, || install::check_statements(rule, source, target)) {
        return Some(e.message);
    }
    install::cross_owner_policies(rule, source, target)
}

const DISABLE: &str = "UPDATE data_sync.rules SET enabled = false, disabled_reason = $2
                       WHERE name OPERATOR(pg_catalog.=) $1";

const LOG: &str = "INSERT INTO data_sync.sync_log
    (rule_name, operation, source_table, source_rows, target_table, rows_changed, status, error_message, role_name)
    VALUES ($1, 'ddl', $2, 0, $3, 0, 'disabled', $4, CURRENT_USER)";

/// Re-creates the rule's triggers when the plan wants others than those installed: a table gained
/// (or lost) BEFORE row triggers of its own, which may change watched columns an UPDATE does not
/// name, or run after data_sync's fill of an inserted row (see `Planner::triggers_by_side`).
/// As each table's owner, like dropping them.
fn reinstall_if_needed(rule: &validate::Rule) {
    let (Some(source), Some(target)) = (catalog::lookup(&rule.source), catalog::lookup(&rule.target)) else { return };
    let planner = data_sync_core::plan::Planner { rule, source: &source, target: &target };
    let mut wanted = planner.trigger_shapes();
    wanted.sort();
    let installed = catalog::installed_trigger_shapes(&rule.name, [source.oid, target.oid]);
    // Only triggers that are all there, in another shape (or with one the plan no longer wants),
    // are re-created. One missing: somebody is creating or replacing them right now (pg_restore,
    // an earlier build's set being put back): leave them.
    let complete = wanted.iter().all(|w| installed.iter().any(|i| i.0 == w.0));
    if installed == wanted || !complete || catalog::has_legacy_triggers(&rule.name) {
        return;
    }
    let owner = |oid: u32| catalog::owner_of(pgrx::pg_sys::Oid::from(oid)).expect("a table has an owner");
    let (source_owner, target_owner) = (owner(source.oid), owner(target.oid));
    catalog::quietly(|| {
        catalog::drop_rule_triggers(&rule.name);
        for (side, ddl) in planner.triggers_by_side() {
            let role = if side == 's' { source_owner } else { target_owner };
            spi::as_role(role, || Spi::run(&ddl)).expect("re-create a rule's trigger");
        }
    });
    runtime::invalidate_all();
}

/// Disables the rule if it no longer fits its tables; whether it did. A rule that still fits gets
/// its triggers re-created if what they must watch changed.
fn disable_if_broken(rule: &validate::Rule) -> bool {
    let Some(reason) = breakage(rule) else {
        reinstall_if_needed(rule);
        return false;
    };
    let reason = reason.trim_start_matches(&format!("rule \"{}\": ", rule.name)).to_string();
    registry::as_catalog_owner(|| {
        Spi::run_with_args(DISABLE, &[rule.name.as_str().into(), reason.as_str().into()])?;
        Spi::run_with_args(
            LOG,
            &[
                rule.name.as_str().into(),
                rule.source.to_string().into(),
                rule.target.to_string().into(),
                format!("rule disabled: {reason}").into(),
            ],
        )
    })
    .expect("data_sync catalog is writable");
    catalog::quietly(|| catalog::drop_rule_triggers(&rule.name));
    pgrx::pg_sys::panic::ErrorReport::new(
        PgSqlErrorCode::ERRCODE_WARNING,
        format!("data_sync: rule \"{}\" disabled: {reason}", rule.name),
        "data_sync",
    )
    .set_hint("Load the corrected rule (data_sync.load_rules or data_sync.add_rule) to enable it again.")
    .report(PgLogLevel::WARNING);
    true
}

/// Disables every enabled rule that no longer fits its tables; returns how many. Called by the
/// `data_sync_ddl` event trigger; harmless to call by hand.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn revalidate_rules() -> i64 {
    if catalog::quiet() {
        return 0;
    }
    let mut disabled = 0;
    for rule in registry::installed_rules().iter().filter(|r| r.enabled) {
        // One rule that cannot be checked or disabled must not make every schema change in the
        // database fail: it is reported, and the others are still checked.
        match subxact::try_catch(std::panic::AssertUnwindSafe(|| disable_if_broken(rule))) {
            Ok(true) => disabled += 1,
            Ok(false) => {}
            // (a serialization failure, a deadlock, a lock timeout, a cancel, a shutdown, running out
            // of resources, an internal error: not the rule's, and the transaction must not go on
            // as if checked)
            Err(e) if crate::error::concerns_transaction(&e.sqlstate) => e.rethrow(),
            Err(e) => pgrx::pg_sys::panic::ErrorReport::new(
                PgSqlErrorCode::ERRCODE_WARNING,
                format!("data_sync: rule \"{}\" could not be re-checked after this change: {}", rule.name, e.message),
                "data_sync",
            )
            .report(PgLogLevel::WARNING),
        }
    }
    if disabled > 0 {
        runtime::invalidate_all();
    }
    disabled
}
