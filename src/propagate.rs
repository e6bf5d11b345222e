//! The propagation engine the triggers, re-syncs and the queue processor share: carries the
//! rows of some keys over (or back), in the rule's failure mode, and logs the outcome. Also the
//! chain of propagations under way in this backend (`ChainEntry`).

use std::cell::RefCell;

use data_sync_core::operation::Operation;
use pgrx::pg_sys::{self, Datum};
use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};

use data_sync_core::rules::SyncMode;

use crate::runtime::{self, RuleRuntime, SourceRow};
use crate::{log, spi};

thread_local! {
    /// The propagations under way in this backend, outermost first: (rule, reverse?, trigger
    /// depth when it began).
    static CHAIN: RefCell<Vec<(String, bool, i32)>> = const { RefCell::new(Vec::new()) };
}

/// At transaction end (see `triggers::transaction_ended`): an error may have left entries behind.
pub fn forget_chain() {
    CHAIN.with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            c.clear();
        }
    });
}

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

/// The mode a rule runs in: its own, else the setting's.
pub fn mode_of(rt: &RuleRuntime) -> SyncMode {
    rt.rule.mode.unwrap_or(match FAILURE_MODE.get() {
        FailureMode::Strict => SyncMode::Strict,
        FailureMode::Isolated => SyncMode::Isolated,
        FailureMode::Async => SyncMode::Async,
    })
}

pub static MAX_DEPTH: GucSetting<i32> = GucSetting::<i32>::new(16);

pub fn register_gucs() {
    GucRegistry::define_int_guc(
        c"data_sync.max_depth",
        c"Longest chain of propagations one write may cause.",
        c"A propagation that would nest deeper fails with an error naming the chain.",
        &MAX_DEPTH,
        1,
        1000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"data_sync.failure_mode",
        c"When propagations run and what a failing one does to the write that caused it.",
        c"isolated: the propagation alone is rolled back, logged as failed and queued, and the write commits; \
strict: the writing statement fails; async: propagations are queued and applied by data_sync.process_queue.",
        &FAILURE_MODE,
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// `pg_trigger_depth()`: how many triggers are running, this one included.
fn trigger_depth() -> i32 {
    unsafe { pgrx::direct_function_call::<i32>(pg_sys::pg_trigger_depth, &[]) }.unwrap_or(0)
}

/// Whether a row trigger (the caller) fires for the given direction of a rule's own write: the
/// rows the propagation writes are not changes to carry back the other way (the echo would be a
/// no-op anyway). Only rows of the propagation's own statement are: their triggers fire one level
/// below the one the propagation began at. A row the other table's own triggers write meanwhile
/// (one level further down) is a change like any other, and flows back.
pub fn is_echo(rule: &str, reverse: bool) -> bool {
    CHAIN.with(|c| {
        let c = c.borrow();
        if !c.iter().any(|(r, d, _)| r == rule && *d == reverse) {
            return false;
        }
        let depth = trigger_depth();
        c.iter().any(|(r, d, at)| r == rule && *d == reverse && depth == at + 1)
    })
}

/// Keeps a propagation on `CHAIN` while it runs (popped on unwind too).
pub struct ChainEntry;

impl ChainEntry {
    pub fn enter(rule: &str, reverse: bool) -> ChainEntry {
        let depth = CHAIN.with(|c| {
            let mut c = c.borrow_mut();
            c.push((rule.to_string(), reverse, trigger_depth()));
            c.len()
        });
        let max = MAX_DEPTH.get() as usize;
        if depth > max {
            let chain = CHAIN.with(|c| {
                c.borrow()
                    .iter()
                    .map(|(r, back, _)| if *back { format!("{r} (back)") } else { r.clone() })
                    .collect::<Vec<_>>()
                    .join(" -> ")
            });
            CHAIN.with(|c| c.borrow_mut().clear());
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_STATEMENT_TOO_COMPLEX,
                format!("data_sync: propagation chain deeper than data_sync.max_depth ({max}): {chain}")
            );
        }
        ChainEntry
    }
}

impl Drop for ChainEntry {
    fn drop(&mut self) {
        CHAIN.with(|c| {
            c.borrow_mut().pop();
        });
    }
}

/// Carries target rows back to their source rows and logs the outcome (tables swapped: the
/// target is where the change came from).
pub fn propagate_back(rt: &RuleRuntime, keys: &[Vec<Datum>], operation: Operation) -> u64 {
    run_and_log(rt, keys, Rows::Keys, operation, true)
}

/// Propagates source keys and logs the outcome. Shared by triggers and re-syncs.
pub fn propagate(rt: &RuleRuntime, keys: &[Vec<Datum>], operation: Operation) -> u64 {
    run_and_log(rt, keys, Rows::Keys, operation, false)
}

/// Which rows a propagation carries over.
#[derive(Clone, Copy)]
pub enum Rows<'a> {
    /// Every row of the keys, read from the source.
    Keys,
    /// The statement's one changed source row, from its values.
    One(&'a SourceRow),
    /// Only the target rows at these tids of these tables (re-parented), from their keys'
    /// source rows.
    Moved(&'a [(pg_sys::ItemPointerData, pg_sys::Oid)]),
}

/// The propagation itself, without logging: carries the rows of these keys over (or back, for
/// a bidirectional rule's way back; from `row`'s values when given). Returns rows changed and,
/// for last-write-wins rules, rows skipped as newer. Must be called inside an SPI connection.
/// `lock`: lock the source rows first (re-syncs, re-fills and queue items always do): a
/// propagation that does not run inside the write that changed the rows must not read a version
/// that a writer still holding them is replacing. It would write that older value after the
/// writer's own propagation (a lost update in READ COMMITTED); locking waits for the writer and
/// then reads what it committed.
pub fn carry(
    rt: &RuleRuntime,
    keys: &[Vec<Datum>],
    rows: Rows<'_>,
    operation: Operation,
    reverse: bool,
    lock: bool,
) -> (u64, Option<u64>) {
    // A last-write-wins rule counts the rows it skipped as newer, for the log; that takes a
    // second statement, unneeded when one key changed its one maintained row.
    let counted = |changed: u64, one_row_per_key: bool, count: &dyn Fn() -> Option<u64>| {
        if keys.len() == 1 && changed > 0 && one_row_per_key {
            Some(0)
        } else {
            count()
        }
    };
    if reverse {
        // the source key is unique: one source row per key
        let (changed, conflicts) = runtime::naming_rule(rt, "propagation back from", || {
            spi::as_role(rt.source_owner, || {
                let changed = rt.flush_reverse(keys);
                (changed, counted(changed, true, &|| rt.reverse_conflicts(keys)))
            })
        });
        if conflicts.is_some_and(|n| n > 0) {
            // Last write wins on both sides: the source is newer than the target rows that came
            // back, so they lose and take the source's values (a source write that committed
            // while such a row was not yet visible to it could not reach it). As the rule's own
            // forward write, which does not flow back again.
            let _forward = ChainEntry::enter(&rt.rule.name, false);
            runtime::naming_rule(rt, "propagation to", || spi::as_role(rt.target_owner, || rt.flush(keys)));
        }
        return (changed, conflicts);
    }
    if lock || operation.reads_source_afresh() {
        // As the source's owner, who may lock its rows. A re-fill locks like the fill of an
        // inserted row (see `fill_lookup`): an update of the source row racing it waits, or is
        // waited for, and so sees the re-parented row.
        let doing = match operation {
            Operation::Fill => "filling rows of",
            Operation::Sync => "re-sync of",
            _ => "propagation to",
        };
        runtime::naming_rule(rt, doing, || spi::as_role(rt.source_owner, || rt.lock_sources(keys)));
    }
    let (changed, conflicts) = runtime::naming_rule(rt, "propagation to", || {
        spi::as_role(rt.target_owner, || match rows {
            Rows::One(row) => {
                let changed = rt.flush_row(row);
                (changed, counted(changed, rt.one_target_row_per_key, &|| rt.conflicts_row(row)))
            }
            Rows::Moved(tids) => {
                let changed = rt.refill(keys, tids);
                (changed, counted(changed, true, &|| rt.refill_conflicts(keys, tids)))
            }
            Rows::Keys => {
                let changed = rt.flush(keys);
                (changed, counted(changed, rt.one_target_row_per_key, &|| rt.conflicts(keys)))
            }
        })
    });
    if rt.rule.bidirectional && conflicts.is_some_and(|n| n > 0) {
        // the newer target rows win: the source takes their values (see above)
        let _back = ChainEntry::enter(&rt.rule.name, true);
        runtime::naming_rule(rt, "propagation back from", || spi::as_role(rt.source_owner, || rt.flush_reverse(keys)));
    }
    (changed, conflicts)
}

/// Logs (and announces) a propagation's outcome: one `ok` row, and a `conflict` row for the
/// rows a last-write-wins rule left alone. Must be called inside an SPI connection.
pub fn record(rt: &RuleRuntime, outcome: &log::Outcome, key: Option<String>, changed: u64, conflicts: Option<u64>) {
    let conflicts = conflicts.unwrap_or(0);
    if changed > 0 || conflicts == 0 {
        log::propagation(rt, outcome, key.clone(), changed as i64);
    }
    if conflicts > 0 {
        log::conflict(rt, outcome, key, conflicts as i64);
    }
}

/// Errors that concern the whole transaction (serialization failures, deadlocks, cancels,
/// resources, internal errors): not the rule's to absorb; the application retries them.
const TRANSACTION_LEVEL: [&str; 5] = ["40", "53", "57", "58", "XX"];

/// Runs one propagation and logs its outcome, as the rule's mode says. Strict: errors fail the
/// statement. Isolated: the propagation runs in a subtransaction of its own, one per rule per
/// statement; on failure only it is rolled back, a `failed` log row and a queue item are
/// written, and the caller's write goes on. Async: the keys are queued, nothing else (re-syncs
/// run at once, as isolated).
pub fn run_and_log(rt: &RuleRuntime, keys: &[Vec<Datum>], rows: Rows<'_>, operation: Operation, reverse: bool) -> u64 {
    let mode = mode_of(rt);
    // re-syncs and re-fills of re-parented rows are not deferred: a filled row is complete
    if mode == SyncMode::Async && !operation.reads_source_afresh() {
        spi::with_spi(|| crate::queue::enqueue(rt, keys, reverse, operation, None));
        return 0;
    }
    let role = unsafe { pg_sys::GetUserId() };
    let _entry = ChainEntry::enter(&rt.rule.name, reverse);
    spi::with_spi(|| {
        let key = (keys.len() == 1).then(|| rt.key_text(&keys[0]));
        let outcome = log::Outcome { operation, reverse, source_rows: keys.len() as i64, role, attempt: 1 };
        let work = || carry(rt, keys, rows, operation, reverse, false);
        let (changed, conflicts) = if mode == SyncMode::Strict {
            work()
        } else {
            match crate::subxact::try_catch(std::panic::AssertUnwindSafe(work)) {
                Ok(result) => result,
                Err(error) if TRANSACTION_LEVEL.iter().any(|c| error.sqlstate.starts_with(c)) => error.rethrow(),
                Err(error) => {
                    log::failure(rt, &outcome, key, &error);
                    crate::queue::enqueue(rt, keys, reverse, operation, Some(&error));
                    return 0;
                }
            }
        };
        record(rt, &outcome, key, changed, conflicts);
        changed
    })
}
