//! The queue of propagations owed to their targets: failed ones (isolated mode, retried with
//! exponential backoff) and deferred ones (async mode). This room writes and removes items and
//! computes the backoff; `processor` applies them.

use data_sync_core::operation::Operation;
use pgrx::pg_sys::{self, Datum};
use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

use crate::runtime::RuleRuntime;
use crate::subxact::Caught;
use crate::{log, spi};

pub static MAX_RETRIES: GucSetting<i32> = GucSetting::<i32>::new(3);

pub static RETRY_DELAY: GucSetting<i32> = GucSetting::<i32>::new(1000);

pub static RETRY_DELAY_MAX: GucSetting<i32> = GucSetting::<i32>::new(30_000);

pub fn register_gucs() {
    GucRegistry::define_int_guc(
        c"data_sync.max_retries",
        c"Retries of a failed propagation before its queue item is marked dead.",
        c"Retry n waits data_sync.retry_delay * 2^(n-1), at most data_sync.retry_delay_max.",
        &MAX_RETRIES,
        0,
        1000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"data_sync.retry_delay",
        c"Wait before the first retry of a failed propagation; each further retry waits twice as long.",
        c"",
        &RETRY_DELAY,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"data_sync.retry_delay_max",
        c"Longest wait between two retries of a failed propagation.",
        c"",
        &RETRY_DELAY_MAX,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
}

/// Wait before the next try of an item that has failed `attempts` times: 1 s, 2 s, 4 s … by
/// default (the seeds' `2^retryCount * 1000`), capped.
pub fn backoff_ms(attempts: i32) -> f64 {
    let base = RETRY_DELAY.get() as f64;
    let exponent = (attempts.max(1) - 1).min(62);
    (base * 2f64.powi(exponent)).min(RETRY_DELAY_MAX.get() as f64)
}

const ENQUEUE: &str = "INSERT INTO data_sync.queue
    (rule_name, reverse, operation, keys, attempts, next_attempt_at, sqlstate, last_error)
    VALUES ($1, $2, $3, $4::pg_catalog.jsonb, $5,
            pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $6), $7, $8)";

/// Queues the keys of one propagation: a failed one (`error` given, to be retried after the
/// first backoff) or a deferred one (async mode, due at once). Must be called inside an SPI
/// connection.
pub fn enqueue(rt: &RuleRuntime, keys: &[Vec<Datum>], reverse: bool, operation: Operation, error: Option<&Caught>) {
    let text = |s: &str| s.into_datum().unwrap();
    let attempts = i32::from(error.is_some());
    let delay_secs = if error.is_some() { backoff_ms(1) / 1000.0 } else { 0.0 };
    let args: [Datum; 8] = [
        text(&rt.rule.name),
        reverse.into_datum().unwrap(),
        text(operation.as_str()),
        text(&rt.keys_json(keys).to_string()),
        attempts.into_datum().unwrap(),
        delay_secs.into_datum().unwrap(),
        error.map(|e| text(&e.sqlstate)).unwrap_or(Datum::from(0)),
        error.map(|e| text(log::bounded(&e.message))).unwrap_or(Datum::from(0)),
    ];
    let nulls = [false, false, false, false, false, false, error.is_none(), error.is_none()];
    let t = pg_sys::TEXTOID;
    let types = [t, pg_sys::BOOLOID, t, t, pg_sys::INT4OID, pg_sys::FLOAT8OID, t, t];
    spi::as_role(rt.log_owner, || rt.execute_other("enqueue", ENQUEUE, &types, &args, &nulls));
}

/// What a parked item of a disabled rule says (see `processor::park`).
pub const PARKED: &str = "rule is disabled";

/// Makes the parked items of a rule enabled again due now: they waited for the rule, not for a
/// backoff. Items a processor holds are skipped: it is applying them, or parking them and then
/// finding the rule enabled (`processor::park`); waiting for it could deadlock with it.
pub fn resume_rule(rule: &str) {
    spi::as_role(log_owner(), || {
        Spi::run_with_args(
            "UPDATE data_sync.queue SET next_attempt_at = pg_catalog.clock_timestamp()
             WHERE id OPERATOR(pg_catalog.=) ANY (ARRAY(
                 SELECT id FROM data_sync.queue
                 WHERE rule_name OPERATOR(pg_catalog.=) $1 AND last_error OPERATOR(pg_catalog.=) $2
                 FOR UPDATE SKIP LOCKED))",
            &[rule.into(), PARKED.into()],
        )
    })
    .expect("data_sync.queue is writable");
}

/// Removes the queue items of a rule being dropped.
pub fn forget_rule(rule: &str) {
    spi::as_role(log_owner(), || {
        Spi::run_with_args("DELETE FROM data_sync.queue WHERE rule_name OPERATOR(pg_catalog.=) $1", &[rule.into()])
    })
    .expect("data_sync.queue is writable");
}

/// The owner of data_sync.queue (and sync_log): queue items are written and read as it.
pub fn log_owner() -> pg_sys::Oid {
    Spi::get_one::<pg_sys::Oid>(
        "SELECT relowner FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) 'data_sync.queue'::pg_catalog.regclass",
    )
    .expect("data_sync.queue exists")
    .expect("data_sync.queue has an owner")
}
