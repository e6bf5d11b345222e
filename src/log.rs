//! Stage 5: the sync log. One row per rule per propagating statement (never per row), written
//! as the log table's owner so that writers need no privileges on it.

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};

use crate::apply::RuleRuntime;

#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum LogLevel {
    All,
    Failures,
    None,
}

pub static LOG_LEVEL: GucSetting<LogLevel> = GucSetting::<LogLevel>::new(LogLevel::All);

/// What a failing propagation does to the write that caused it.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum FailureMode {
    /// The writing statement fails, like a foreign key.
    Strict,
    /// The propagation is rolled back alone (one subtransaction per rule per statement), logged
    /// as failed and queued; the write commits.
    Isolated,
}

pub static FAILURE_MODE: GucSetting<FailureMode> = GucSetting::<FailureMode>::new(FailureMode::Isolated);

pub fn register_gucs() {
    GucRegistry::define_enum_guc(
        c"data_sync.log_level",
        c"Which propagations are written to data_sync.sync_log.",
        c"all: every propagation and failure; failures: only failures; none: nothing.",
        &LOG_LEVEL,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"data_sync.failure_mode",
        c"What a failing propagation does to the write that caused it.",
        c"isolated: the propagation alone is rolled back, logged as failed and queued, and the write commits; \
strict: the writing statement fails.",
        &FAILURE_MODE,
        GucContext::Userset,
        GucFlags::default(),
    );
}

const INSERT: &str = "INSERT INTO data_sync.sync_log
    (rule_name, operation, source_table, source_key, source_rows, target_table, rows_changed, status, role_name)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $9, pg_catalog.pg_get_userbyid($8))";

/// What caused a log row: the operation, its direction, how many source rows, whose write.
pub struct Outcome<'a> {
    pub operation: &'a str,
    /// A bidirectional rule's way back: the target is where the change came from.
    pub reverse: bool,
    pub source_rows: i64,
    pub role: Oid,
}

/// Logs a successful propagation. Must be called inside an SPI connection.
pub fn propagation(rt: &RuleRuntime, outcome: &Outcome, source_key: Option<String>, rows_changed: i64) {
    if LOG_LEVEL.get() == LogLevel::All {
        write(rt, outcome, source_key, outcome.source_rows, rows_changed, "ok");
    }
}

/// Logs target rows a last-write-wins rule left alone because they were newer (`source_rows`
/// counts them). Conflicts are logged unless logging is off.
pub fn conflict(rt: &RuleRuntime, outcome: &Outcome, source_key: Option<String>, skipped: i64) {
    if LOG_LEVEL.get() != LogLevel::None {
        write(rt, outcome, source_key, skipped, 0, "conflict");
    }
}

fn write(
    rt: &RuleRuntime,
    outcome: &Outcome,
    source_key: Option<String>,
    source_rows: i64,
    rows_changed: i64,
    status: &str,
) {
    let text = |s: &str| s.into_datum().unwrap();
    let (from, to) =
        if outcome.reverse { (&rt.rule.target, &rt.rule.source) } else { (&rt.rule.source, &rt.rule.target) };
    let args: [Datum; 9] = [
        text(&rt.rule.name),
        text(outcome.operation),
        text(&from.to_string()),
        source_key.as_deref().map(text).unwrap_or(Datum::from(0)),
        source_rows.into_datum().unwrap(),
        text(&to.to_string()),
        rows_changed.into_datum().unwrap(),
        outcome.role.into_datum().unwrap(),
        text(status),
    ];
    let mut nulls = [false; 9];
    nulls[3] = source_key.is_none();
    let types = [
        pg_sys::TEXTOID,
        pg_sys::TEXTOID,
        pg_sys::TEXTOID,
        pg_sys::TEXTOID,
        pg_sys::INT8OID,
        pg_sys::TEXTOID,
        pg_sys::INT8OID,
        pg_sys::OIDOID,
        pg_sys::TEXTOID,
    ];
    crate::apply::as_role(rt.log_owner, || rt.execute("log", INSERT, &types, &args, &nulls));
}

const FAILED: &str = "INSERT INTO data_sync.sync_log
    (rule_name, operation, source_table, source_key, source_rows, target_table, rows_changed, status, sqlstate,
     error_message, role_name)
    VALUES ($1, $2, $3, $4, $5, $6, 0, 'failed', $7, $8, pg_catalog.pg_get_userbyid($9))";

const ENQUEUE: &str = "INSERT INTO data_sync.queue (rule_name, reverse, operation, keys, sqlstate, last_error)
    VALUES ($1, $2, $3, $4::pg_catalog.jsonb, $5, $6)";

/// Isolated mode: records a failed propagation in the log (unless logging is off) and queues
/// its keys for a retry (always: no write may be lost).
pub fn failure(
    rt: &RuleRuntime,
    outcome: &Outcome,
    source_key: Option<String>,
    keys: serde_json::Value,
    error: &crate::subxact::Caught,
) {
    let text = |s: &str| s.into_datum().unwrap();
    let (from, to) =
        if outcome.reverse { (&rt.rule.target, &rt.rule.source) } else { (&rt.rule.source, &rt.rule.target) };
    crate::apply::as_role(rt.log_owner, || {
        if LOG_LEVEL.get() != LogLevel::None {
            let args: [Datum; 9] = [
                text(&rt.rule.name),
                text(outcome.operation),
                text(&from.to_string()),
                source_key.as_deref().map(text).unwrap_or(Datum::from(0)),
                outcome.source_rows.into_datum().unwrap(),
                text(&to.to_string()),
                text(&error.sqlstate),
                text(&error.message),
                outcome.role.into_datum().unwrap(),
            ];
            let mut nulls = [false; 9];
            nulls[3] = source_key.is_none();
            let t = pg_sys::TEXTOID;
            let types = [t, t, t, t, pg_sys::INT8OID, t, t, t, pg_sys::OIDOID];
            rt.execute("log_failed", FAILED, &types, &args, &nulls);
        }
        let args: [Datum; 6] = [
            text(&rt.rule.name),
            outcome.reverse.into_datum().unwrap(),
            text(outcome.operation),
            text(&keys.to_string()),
            text(&error.sqlstate),
            text(&error.message),
        ];
        let t = pg_sys::TEXTOID;
        rt.execute("enqueue", ENQUEUE, &[t, pg_sys::BOOLOID, t, t, t, t], &args, &[false; 6]);
    });
}
