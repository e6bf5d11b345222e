//! The sync log. One row per rule per propagating statement (never per row), written
//! as the log table's owner so that writers need no privileges on it.

use crate::compat;
use crate::runtime::RuleRuntime;
use data_sync_core::operation::Operation;
use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};
use std::ffi::CString;

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

/// `NOTIFY` channel for propagation events; empty (the default) sends none.
pub static NOTIFY_CHANNEL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// These settings weaken or widen what the DBA promised (every propagation logged, a failing one
/// retried, events announced), so only a superuser sets them: per database or role (`ALTER
/// DATABASE … SET`, `ALTER ROLE … SET`) or in postgresql.conf, not any writer for its own session.
pub fn register_gucs() {
    GucRegistry::define_enum_guc(
        c"data_sync.log_level",
        c"Which propagations are written to data_sync.sync_log.",
        c"all: every propagation and failure; failures: only failures; none: nothing.",
        &LOG_LEVEL,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"data_sync.notify_channel",
        c"Channel on which each propagation is announced with NOTIFY (empty: none).",
        c"The payload is a JSON object: rule, operation, status, source, target, rows, changed, key.",
        &NOTIFY_CHANNEL,
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// What caused a log row: the operation, its direction, how many source rows, whose write.
pub struct Outcome {
    pub operation: Operation,
    /// A bidirectional rule's way back: the target is where the change came from.
    pub reverse: bool,
    pub source_rows: i64,
    pub role: Oid,
    /// 1 for the first try; retries from the queue count on.
    pub attempt: i32,
}

/// Logs a successful propagation. Must be called inside an SPI connection.
pub fn propagation(rt: &RuleRuntime, outcome: &Outcome, source_key: Option<String>, rows_changed: i64) {
    notify(rt, outcome, "ok", rows_changed);
    if LOG_LEVEL.get() == LogLevel::All {
        write(rt, outcome, source_key, outcome.source_rows, rows_changed, "ok", None);
    }
}

/// Logs target rows a last-write-wins rule left alone because they were newer (`source_rows`
/// counts them). Conflicts are logged unless logging is off.
pub fn conflict(rt: &RuleRuntime, outcome: &Outcome, source_key: Option<String>, skipped: i64) {
    notify(rt, outcome, "conflict", 0);
    if LOG_LEVEL.get() != LogLevel::None {
        write(rt, outcome, source_key, skipped, 0, "conflict", None);
    }
}

fn write(
    rt: &RuleRuntime,
    outcome: &Outcome,
    source_key: Option<String>,
    source_rows: i64,
    rows_changed: i64,
    status: &str,
    error: Option<&crate::subxact::Caught>,
) {
    let (from, to) =
        if outcome.reverse { (&rt.target_text, &rt.source_text) } else { (&rt.source_text, &rt.target_text) };
    crate::spi::as_role(rt.log_owner, || unsafe {
        insert_row(
            [
                Some(text_datum(&rt.rule.name)),
                Some(text_datum(outcome.operation.as_str())),
                Some(text_datum(from)),
                source_key.as_deref().map(|k| text_datum(k)),
                Some(Datum::from(source_rows)),
                Some(text_datum(to)),
                Some(Datum::from(rows_changed)),
                Some(text_datum(status)),
                error.map(|e| text_datum(&e.sqlstate)),
                error.map(|e| text_datum(bounded(&e.message))),
                Some(Datum::from(outcome.attempt)),
                Some(name_datum(outcome.role)),
            ],
            status != "ok",
        )
    });
}

/// Longest error message stored in `sync_log` and `data_sync.queue`: a message can carry any
/// amount of a failing row's data (or of an attacker's choosing), and the log is kept for long.
pub const MAX_ERROR_MESSAGE: usize = 1000;

/// An error message cut to `MAX_ERROR_MESSAGE` bytes (at a character boundary).
pub fn bounded(message: &str) -> &str {
    if message.len() <= MAX_ERROR_MESSAGE {
        return message;
    }
    let mut end = MAX_ERROR_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

unsafe fn text_datum(s: &str) -> Datum {
    Datum::from(pg_sys::cstring_to_text_with_len(s.as_ptr() as *const std::ffi::c_char, s.len() as i32))
}

unsafe fn name_datum(role: Oid) -> Datum {
    let name = pg_sys::GetUserNameFromId(role, false);
    let buf = pg_sys::palloc0(pg_sys::NAMEDATALEN as usize) as *mut std::ffi::c_char;
    pg_sys::strlcpy(buf, name, pg_sys::NAMEDATALEN as usize);
    Datum::from(buf)
}

/// The sync_log columns data_sync writes, in the order `insert_row` takes their values.
const LOG_COLUMNS: [&str; 15] = [
    "id",
    "logged_at",
    "txid",
    "rule_name",
    "operation",
    "source_table",
    "source_key",
    "source_rows",
    "target_table",
    "rows_changed",
    "status",
    "sqlstate",
    "error_message",
    "attempt",
    "role_name",
];

/// sync_log as found once per backend: its oid, its identity sequence, and the attribute index
/// of each of `LOG_COLUMNS`.
#[derive(Clone)]
struct LogRelation {
    relid: Oid,
    sequence: Oid,
    positions: Vec<Option<usize>>,
    /// The primary key on `id` and the partial index on `logged_at` of the rows whose status
    /// is not `ok`, when they are the log's only indexes (as installed): then a row goes
    /// straight into them, skipping the executor's index set-up (which compiles the partial
    /// index's predicate again for every row). With any other set of indexes, the executor's
    /// way. Their IndexInfos are built once, in TopMemoryContext.
    direct_indexes: Option<[(Oid, *mut pg_sys::IndexInfo); 2]>,
}

thread_local! {
    static LOG_RELATION: std::cell::RefCell<Option<LogRelation>> = const { std::cell::RefCell::new(None) };
}

/// Registered once in `_PG_init`: sync_log's cached layout is dropped when the relcache says the
/// table changed.
pub fn register_callbacks() {
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(relcache_changed), Datum::from(0));
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn relcache_changed(_arg: Datum, relid: Oid) {
    forget_log_relation(relid);
}

/// sync_log may have changed shape.
fn forget_log_relation(relid: Oid) {
    LOG_RELATION.with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            if relid == pg_sys::InvalidOid || c.as_ref().is_some_and(|l| l.relid == relid) {
                *c = None;
            }
        }
    });
}

unsafe fn log_relation(rel: pg_sys::Relation) -> LogRelation {
    let relid = (*rel).rd_id;
    if let Some(found) = LOG_RELATION.with(|c| c.borrow().clone()).filter(|l| l.relid == relid) {
        return found;
    }
    let desc = (*rel).rd_att;
    let names: Vec<Option<String>> = (0..(*desc).natts as usize)
        .map(|i| {
            let att = compat::attribute(desc, i);
            (!(*att).attisdropped)
                .then(|| std::ffi::CStr::from_ptr((*att).attname.data.as_ptr()).to_string_lossy().into_owned())
        })
        .collect();
    let positions = LOG_COLUMNS.iter().map(|c| names.iter().position(|n| n.as_deref() == Some(*c))).collect();
    let list = pg_sys::RelationGetIndexList(rel);
    let indexes: Vec<Oid> = if list.is_null() {
        Vec::new()
    } else {
        (0..(*list).length as usize).map(|i| (*(*list).elements.add(i)).oid_value).collect()
    };
    let namespace = (*(*rel).rd_rel).relnamespace;
    let pkey = pg_sys::get_relname_relid(c"sync_log_pkey".as_ptr(), namespace);
    let failed = pg_sys::get_relname_relid(c"sync_log_failed_idx".as_ptr(), namespace);
    let heap = (*(*rel).rd_rel).relam == pg_sys::HEAP_TABLE_AM_OID;
    // Only B-trees: their insert keeps no per-statement state (from PostgreSQL 17 on, an index
    // method may want `index_insert_cleanup` after its inserts; a B-tree has no cleanup), so
    // the direct path is the same on every major. Any other shape goes through the executor.
    let btree = |index: Oid| {
        let index_rel = pg_sys::index_open(index, pg_sys::AccessShareLock as i32);
        let btree = (*(*index_rel).rd_rel).relam == pg_sys::BTREE_AM_OID;
        pg_sys::index_close(index_rel, pg_sys::AccessShareLock as i32);
        btree
    };
    let direct_indexes = (heap
        && indexes.len() == 2
        && indexes.contains(&pkey)
        && indexes.contains(&failed)
        && btree(pkey)
        && btree(failed))
    .then_some([(pkey, std::ptr::null_mut()), (failed, std::ptr::null_mut())]);
    let found = LogRelation { relid, sequence: compat::identity_sequence(rel, 1), positions, direct_indexes };
    LOG_RELATION.with(|c| *c.borrow_mut() = Some(found.clone()));
    found
}

/// Writes one sync_log row straight into the table and its indexes, as logical replication's
/// apply worker does: this runs for every propagating statement, and an INSERT statement through
/// SPI costs several times more. `values` follow `LOG_COLUMNS` from `rule_name` on; `id`,
/// `logged_at` and `txid` get what their defaults would give. The log's own triggers, if a DBA
/// adds any, do not fire. Runs as the caller (the log's owner).
unsafe fn insert_row(values: [Option<Datum>; 12], failed: bool) {
    // known after the first row (the relcache callback forgets it when sync_log changes)
    let relid = LOG_RELATION.with(|c| c.borrow().as_ref().map(|l| l.relid)).unwrap_or_else(|| {
        let namespace = pg_sys::get_namespace_oid(c"data_sync".as_ptr(), false);
        pg_sys::get_relname_relid(c"sync_log".as_ptr(), namespace)
    });
    let rel = pg_sys::table_open(relid, pg_sys::RowExclusiveLock as i32);
    let log = log_relation(rel);
    let desc = (*rel).rd_att;
    let natts = (*desc).natts as usize;
    let mut row = vec![Datum::from(0); natts];
    let mut nulls = vec![true; natts];
    let id = pgrx::direct_function_call_as_datum(pg_sys::nextval_oid, &[log.sequence.into_datum()]);
    let defaults = [
        id,
        Some(Datum::from(pg_sys::GetCurrentTimestamp())),
        Some(Datum::from(pg_sys::GetTopFullTransactionId().value)),
    ];
    for (value, position) in defaults.into_iter().chain(values).zip(&log.positions) {
        if let (Some(value), Some(i)) = (value, position) {
            row[*i] = value;
            nulls[*i] = false;
        }
    }
    let tuple = pg_sys::heap_form_tuple(desc, row.as_mut_ptr(), nulls.as_mut_ptr());
    if let Some(indexes) = log.direct_indexes {
        pg_sys::simple_heap_insert(rel, tuple);
        // (id) for every row; (logged_at) for the rows whose status is not 'ok'
        let keys = [row[log.positions[0].expect("id")], row[log.positions[1].expect("logged_at")]];
        let used = if failed { 2 } else { 1 };
        for (n, ((index, info), key)) in indexes.into_iter().zip(keys).enumerate().take(used) {
            let index_rel = pg_sys::index_open(index, pg_sys::RowExclusiveLock as i32);
            let info = if info.is_null() { index_info(n, index_rel) } else { info };
            let mut value = [key];
            let mut isnull = [false];
            let unique = if n == 0 {
                pg_sys::IndexUniqueCheck::UNIQUE_CHECK_YES
            } else {
                pg_sys::IndexUniqueCheck::UNIQUE_CHECK_NO
            };
            pg_sys::index_insert(
                index_rel,
                value.as_mut_ptr(),
                isnull.as_mut_ptr(),
                &mut (*tuple).t_self,
                rel,
                unique,
                false,
                info,
            );
            pg_sys::index_close(index_rel, pg_sys::NoLock as i32);
        }
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
        return;
    }
    let estate = pg_sys::CreateExecutorState();
    let result_rel = pg_sys::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>()) as *mut pg_sys::ResultRelInfo;
    pg_sys::InitResultRelInfo(result_rel, rel, 1, std::ptr::null_mut(), 0);
    pg_sys::ExecOpenIndices(result_rel, false);
    let slot = pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsHeapTuple);
    pg_sys::ExecStoreHeapTuple(tuple, slot, false);
    pg_sys::simple_table_tuple_insert(rel, slot);
    compat::insert_index_tuples(result_rel, slot, estate);
    pg_sys::ExecDropSingleTupleTableSlot(slot);
    pg_sys::ExecCloseIndices(result_rel);
    pg_sys::FreeExecutorState(estate);
    pg_sys::table_close(rel, pg_sys::NoLock as i32);
}

/// The IndexInfo of the n-th direct index, built once in TopMemoryContext and remembered.
unsafe fn index_info(n: usize, index_rel: pg_sys::Relation) -> *mut pg_sys::IndexInfo {
    let old = pg_sys::CurrentMemoryContext;
    pg_sys::CurrentMemoryContext = pg_sys::TopMemoryContext;
    let info = pg_sys::BuildIndexInfo(index_rel);
    pg_sys::CurrentMemoryContext = old;
    LOG_RELATION.with(|c| {
        if let Some(indexes) = c.borrow_mut().as_mut().and_then(|l| l.direct_indexes.as_mut()) {
            indexes[n].1 = info;
        }
    });
    info
}

/// Logs a failed propagation (unless logging is off). Must be called inside an SPI connection.
pub fn failure(rt: &RuleRuntime, outcome: &Outcome, source_key: Option<String>, error: &crate::subxact::Caught) {
    notify(rt, outcome, "failed", 0);
    if LOG_LEVEL.get() != LogLevel::None {
        write(rt, outcome, source_key, outcome.source_rows, 0, "failed", Some(error));
    }
}

unsafe extern "C" {
    /// `NOTIFY channel, payload` (commands/async.h; not in pgrx's bindings). Queued until commit,
    /// dropped on rollback, and duplicates within a transaction are folded.
    fn Async_Notify(channel: *const std::ffi::c_char, payload: *const std::ffi::c_char);
}

/// Announces one propagation outcome on `data_sync.notify_channel`, if set. Without the source
/// key: any session may LISTEN on any channel, and a key is data of the source table; a
/// listener that may read `data_sync.sync_log` finds it there.
pub fn notify(rt: &RuleRuntime, outcome: &Outcome, status: &str, changed: i64) {
    let Some(channel) = NOTIFY_CHANNEL.get() else { return };
    if channel.is_empty() {
        return;
    }
    let (from, to) =
        if outcome.reverse { (&rt.rule.target, &rt.rule.source) } else { (&rt.rule.source, &rt.rule.target) };
    let payload = serde_json::json!({
        "rule": rt.rule.name,
        "operation": outcome.operation.as_str(),
        "status": status,
        "source": from.to_string(),
        "target": to.to_string(),
        "rows": outcome.source_rows,
        "changed": changed,
    });
    let payload = CString::new(payload.to_string()).expect("JSON has no NUL");
    unsafe { Async_Notify(channel.as_ptr(), payload.as_ptr()) }
}
