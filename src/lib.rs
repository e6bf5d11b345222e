//! data_sync: declarative propagation rules that keep copied columns in sync across tables.
//!
//! The pipeline: rules → plan (the pure core, `data_sync_core`) → triggers → apply → log.
//! This crate is the thin Postgres shell around the core.
//!
//! Nobody gains rights through a rule: code a role controls (a rule's expressions, its tables'
//! types, operators, policies, triggers, defaults) runs as that role or not at all, under a pinned
//! `search_path`. Every switch of role is `apply::as_role`; the README's Security section lists
//! each one, what runs inside it and why. Trigger functions act only in the triggers data_sync
//! installed for their rule (`apply::RuleRuntime::layout`).

use pgrx::prelude::*;

mod api;
mod apply;
mod catalog;
mod ddl;
mod log;
mod queue;
mod subxact;
mod triggers;
mod worker;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
extension_sql_file!(
    "../sql/monitoring.sql",
    name = "monitoring",
    requires = ["bootstrap", queue::process_queue, queue::retry_failed, queue::clear_failed]
);
extension_sql_file!("../sql/ddl.sql", name = "ddl", requires = ["bootstrap", ddl::revalidate_rules]);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    log::register_gucs();
    api::register_gucs();
    triggers::register_gucs();
    queue::register_gucs();
    worker::register_gucs();
    worker::register_workers();
    apply::register_callbacks();
    triggers::register_callbacks();
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

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
