//! data_sync: declarative propagation rules that keep copied columns in sync across tables.
//!
//! The pipeline: rules → validate → plan (the pure core, `data_sync_core`), then this crate, the
//! thin Postgres shell around it. Its rooms, each importing only the ones below it:
//!
//! - `install` (load, add, drop, enable rules; the server-side checks; `explain`), `resync`
//!   (`sync_all`, entities, `check`), `ddl` (re-checks after schema changes), `processor`
//!   (`process_queue`, retries) and `worker` (the background worker): the SQL surface;
//! - `triggers`: the trigger entry points and what a statement's row triggers noted;
//! - `propagate`: the engine the triggers, re-syncs and the processor share;
//! - `queue` (the table) and `log` (sync_log, NOTIFY);
//! - `runtime`: a rule's cached plans, layouts and statement execution;
//! - `registry` (data_sync's own tables of rules and entities) and `catalog` (facts about the
//!   server's tables, and data_sync's triggers on them);
//! - `spi`, `subxact`, `error`, `compat`: running SQL as a role under pinned settings, catching
//!   errors, raising them; the server API that differs between PostgreSQL majors.
//!
//! Nobody gains rights through a rule: code a role controls (a rule's expressions, its tables'
//! types, operators, policies, triggers, defaults) runs as that role or not at all, under a pinned
//! `search_path`. Every switch of role is `spi::as_role`; the README's Security section lists
//! each one, what runs inside it and why. Trigger functions act only in the triggers data_sync
//! installed for their rule (`runtime::RuleRuntime::layout`).

use pgrx::prelude::*;

mod catalog;
mod compat;
mod ddl;
mod error;
mod install;
mod log;
mod processor;
mod propagate;
mod queue;
mod registry;
mod resync;
mod runtime;
mod spi;
mod subxact;
mod triggers;
mod worker;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
extension_sql_file!(
    "../sql/monitoring.sql",
    name = "monitoring",
    requires = ["bootstrap", processor::process_queue, processor::retry_failed, processor::clear_failed]
);
extension_sql_file!("../sql/ddl.sql", name = "ddl", requires = ["bootstrap", ddl::revalidate_rules]);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    log::register_gucs();
    resync::register_gucs();
    propagate::register_gucs();
    queue::register_gucs();
    worker::register_gucs();
    worker::register_workers();
    runtime::register_callbacks();
    log::register_callbacks();
    triggers::register_callbacks();
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn error_kinds_raise_their_sqlstate() {
        use data_sync_core::ErrorKind;
        for (kind, code) in [
            (ErrorKind::InvalidParameterValue, PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE),
            (ErrorKind::InsufficientPrivilege, PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE),
            (ErrorKind::FeatureNotSupported, PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED),
        ] {
            assert_eq!(crate::error::code_of(kind.sqlstate()), code, "{kind:?}");
        }
    }

    #[pg_test]
    fn rules_catalog_starts_empty() {
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM data_sync.rules").unwrap(), Some(0));
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
