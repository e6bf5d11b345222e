//! Stage 5: the sync log. One row per rule per propagating statement (never per row), written
//! as the log table's owner so that writers need no privileges on it.

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;
use std::ffi::CString;

use data_sync_core::rules::SyncMode;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};

use crate::apply::RuleRuntime;

#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum LogLevel {
    #[name = c"all"]
    All,
    #[name = c"failures"]
    Failures,
    #[name = c"none"]
    None,
}

pub static LOG_LEVEL: GucSetting<LogLevel> = GucSetting::<LogLevel>::new(LogLevel::All);

/// The default mode of rules that name none (`data_sync.failure_mode`); see `SyncMode`.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum FailureMode {
    #[name = c"strict"]
    Strict,
    #[name = c"isolated"]
    Isolated,
    #[name = c"async"]
    Async,
}

pub static FAILURE_MODE: GucSetting<FailureMode> = GucSetting::<FailureMode>::new(FailureMode::Isolated);

/// `NOTIFY` channel for propagation events; empty (the default) sends none.
pub static NOTIFY_CHANNEL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// The mode a rule runs in: its own, else the setting's.
pub fn mode_of(rt: &RuleRuntime) -> SyncMode {
    rt.rule.mode.unwrap_or(match FAILURE_MODE.get() {
        FailureMode::Strict => SyncMode::Strict,
        FailureMode::Isolated => SyncMode::Isolated,
        FailureMode::Async => SyncMode::Async,
    })
}

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
        c"When propagations run and what a failing one does to the write that caused it.",
        c"isolated: the propagation alone is rolled back, logged as failed and queued, and the write commits; \
strict: the writing statement fails; async: propagations are queued and applied by data_sync.process_queue.",
        &FAILURE_MODE,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"data_sync.notify_channel",
        c"Channel on which each propagation is announced with NOTIFY (empty: none).",
        c"The payload is a JSON object: rule, operation, status, source, target, rows, changed, key.",
        &NOTIFY_CHANNEL,
        GucContext::Userset,
        GucFlags::default(),
    );
}

const INSERT: &str = "INSERT INTO data_sync.sync_log
    (rule_name, operation, source_table, source_key, source_rows, target_table, rows_changed, status, role_name,
     attempt)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $9, pg_catalog.pg_get_userbyid($8), $10)";

/// What caused a log row: the operation, its direction, how many source rows, whose write.
pub struct Outcome<'a> {
    pub operation: &'a str,
    /// A bidirectional rule's way back: the target is where the change came from.
    pub reverse: bool,
    pub source_rows: i64,
    pub role: Oid,
    /// 1 for the first try; retries from the queue count on.
    pub attempt: i32,
}

/// Logs a successful propagation. Must be called inside an SPI connection.
pub fn propagation(rt: &RuleRuntime, outcome: &Outcome, source_key: Option<String>, rows_changed: i64) {
    notify(rt, outcome, source_key.as_deref(), "ok", rows_changed);
    if LOG_LEVEL.get() == LogLevel::All {
        write(rt, outcome, source_key, outcome.source_rows, rows_changed, "ok");
    }
}

/// Logs target rows a last-write-wins rule left alone because they were newer (`source_rows`
/// counts them). Conflicts are logged unless logging is off.
pub fn conflict(rt: &RuleRuntime, outcome: &Outcome, source_key: Option<String>, skipped: i64) {
    notify(rt, outcome, source_key.as_deref(), "conflict", 0);
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
    let args: [Datum; 10] = [
        text(&rt.rule.name),
        text(outcome.operation),
        text(&from.to_string()),
        source_key.as_deref().map(text).unwrap_or(Datum::from(0)),
        source_rows.into_datum().unwrap(),
        text(&to.to_string()),
        rows_changed.into_datum().unwrap(),
        outcome.role.into_datum().unwrap(),
        text(status),
        outcome.attempt.into_datum().unwrap(),
    ];
    let mut nulls = [false; 10];
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
        pg_sys::INT4OID,
    ];
    crate::apply::as_role(rt.log_owner, || rt.execute("log", INSERT, &types, &args, &nulls));
}

const FAILED: &str = "INSERT INTO data_sync.sync_log
    (rule_name, operation, source_table, source_key, source_rows, target_table, rows_changed, status, sqlstate,
     error_message, role_name, attempt)
    VALUES ($1, $2, $3, $4, $5, $6, 0, 'failed', $7, $8, pg_catalog.pg_get_userbyid($9), $10)";

/// Logs a failed propagation (unless logging is off). Must be called inside an SPI connection.
pub fn failure(rt: &RuleRuntime, outcome: &Outcome, source_key: Option<String>, error: &crate::subxact::Caught) {
    notify(rt, outcome, source_key.as_deref(), "failed", 0);
    if LOG_LEVEL.get() == LogLevel::None {
        return;
    }
    let text = |s: &str| s.into_datum().unwrap();
    let (from, to) =
        if outcome.reverse { (&rt.rule.target, &rt.rule.source) } else { (&rt.rule.source, &rt.rule.target) };
    let args: [Datum; 10] = [
        text(&rt.rule.name),
        text(outcome.operation),
        text(&from.to_string()),
        source_key.as_deref().map(text).unwrap_or(Datum::from(0)),
        outcome.source_rows.into_datum().unwrap(),
        text(&to.to_string()),
        text(&error.sqlstate),
        text(&error.message),
        outcome.role.into_datum().unwrap(),
        outcome.attempt.into_datum().unwrap(),
    ];
    let mut nulls = [false; 10];
    nulls[3] = source_key.is_none();
    let t = pg_sys::TEXTOID;
    let types = [t, t, t, t, pg_sys::INT8OID, t, t, t, pg_sys::OIDOID, pg_sys::INT4OID];
    crate::apply::as_role(rt.log_owner, || rt.execute("log_failed", FAILED, &types, &args, &nulls));
}

unsafe extern "C" {
    /// `NOTIFY channel, payload` (commands/async.h; not in pgrx's bindings). Queued until commit,
    /// dropped on rollback, and duplicates within a transaction are folded.
    fn Async_Notify(channel: *const std::ffi::c_char, payload: *const std::ffi::c_char);
}

/// NOTIFY payloads must stay under 8000 bytes: a longer single key is left out.
const MAX_NOTIFIED_KEY: usize = 1000;

/// Announces one propagation outcome on `data_sync.notify_channel`, if set.
pub fn notify(rt: &RuleRuntime, outcome: &Outcome, source_key: Option<&str>, status: &str, changed: i64) {
    let Some(channel) = NOTIFY_CHANNEL.get() else { return };
    if channel.is_empty() {
        return;
    }
    let (from, to) =
        if outcome.reverse { (&rt.rule.target, &rt.rule.source) } else { (&rt.rule.source, &rt.rule.target) };
    let payload = serde_json::json!({
        "rule": rt.rule.name,
        "operation": outcome.operation,
        "status": status,
        "source": from.to_string(),
        "target": to.to_string(),
        "rows": outcome.source_rows,
        "changed": changed,
        "key": source_key.filter(|k| k.len() <= MAX_NOTIFIED_KEY),
    });
    let payload = CString::new(payload.to_string()).expect("JSON has no NUL");
    unsafe { Async_Notify(channel.as_ptr(), payload.as_ptr()) }
}
