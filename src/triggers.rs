//! The trigger functions every rule installs (see `data_sync_core::plan::Planner::triggers`).
//!
//! Source side: an AFTER ROW trigger, filtered by `UPDATE OF` (and a check that a watched value
//! really changed), notes the row's key; the AFTER STATEMENT trigger of the same statement then
//! propagates every noted key with one set-based statement (in a logical replication worker,
//! which fires no statement triggers, the row trigger propagates at once). Target side: a
//! BEFORE ROW trigger fills the copied columns of inserted rows in place (no second write); an
//! AFTER ROW trigger notes the match keys of re-parented rows, which the AFTER STATEMENT
//! trigger re-fills in one statement (bidirectional rules fill them in place, see
//! `Planner::triggers`); the statement trigger also logs how many rows were filled.

use std::cell::RefCell;
use std::collections::HashMap;

use data_sync_core::operation::Operation;
use data_sync_core::plan::Statement;
use pgrx::pg_sys::{self, Datum};
use pgrx::prelude::*;
use pgrx::PgTupleDesc;

use data_sync_core::rules::SyncMode;

use crate::propagate::{self, Rows};
use crate::runtime::{self, Layout, RuleRuntime, Side, SourceRow};
use crate::{compat, log, spi};

/// A re-parented target row: its new match key, its tid and table (see `Rows::Moved`).
type MovedRow = (Vec<Datum>, (pg_sys::ItemPointerData, pg_sys::Oid));

/// Keys noted by row triggers, per rule, waiting for their statement trigger. Values are
/// copied into TopTransactionContext and the lists are cleared at transaction end.
#[derive(Default)]
struct Pending {
    keys: HashMap<String, Vec<Vec<Datum>>>,
    /// Rules some of whose noted source rows appeared under a key (inserted, or key changed).
    new_keys: std::collections::HashSet<String>,
    /// The first noted row's values per rule (copy rules): a statement that changed exactly
    /// one source row propagates from them, without reading the source again.
    rows: HashMap<String, SourceRow>,
    /// Bidirectional rules: target match keys whose rows flow back to the source.
    reverse_keys: HashMap<String, Vec<Vec<Datum>>>,
    /// Re-parented target rows (their new match key and tid), re-filled by the target's
    /// statement trigger.
    refill_rows: HashMap<String, Vec<MovedRow>>,
    /// `latest_by` rules: match keys whose newest row may have changed (a row of the key was
    /// deleted, or left it, or stopped being the newest): re-filled as a whole key.
    refill_keys: HashMap<String, Vec<Vec<Datum>>>,
    fills: HashMap<String, u64>,
}

/// Adds one noted item to a rule's list (the name is copied only for a statement's first row).
fn note<T>(lists: &mut HashMap<String, Vec<T>>, rule: &str, item: T) {
    match lists.get_mut(rule) {
        Some(list) => list.push(item),
        None => _ = lists.insert(rule.to_string(), vec![item]),
    }
}

thread_local! {
    static PENDING: RefCell<Pending> = RefCell::new(Pending::default());
}

pub fn register_callbacks() {
    unsafe {
        pg_sys::RegisterXactCallback(Some(transaction_ended), std::ptr::null_mut());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn transaction_ended(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    if matches!(
        event,
        pg_sys::XactEvent::XACT_EVENT_COMMIT
            | pg_sys::XactEvent::XACT_EVENT_ABORT
            | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT
            | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT
            | pg_sys::XactEvent::XACT_EVENT_PREPARE
    ) {
        PENDING.with(|p| {
            if let Ok(mut p) = p.try_borrow_mut() {
                p.keys.clear();
                p.new_keys.clear();
                p.rows.clear();
                p.reverse_keys.clear();
                p.refill_rows.clear();
                p.refill_keys.clear();
                p.fills.clear();
            }
        });
        propagate::forget_chain();
    }
}

/// The rule a trigger belongs to: its only argument (borrowed, not copied: this runs for every
/// row).
fn rule_name<'a>(trigger: &'a PgTrigger<'a>) -> &'a str {
    let data = trigger.trigger_data();
    let name = unsafe {
        let t = data.tg_trigger;
        ((*t).tgnargs == 1).then(|| std::ffi::CStr::from_ptr(*(*t).tgargs).to_str().ok()).flatten()
    };
    name.unwrap_or_else(|| {
        error!("data_sync: trigger \"{}\" must have the rule name as its only argument", trigger.name().unwrap_or("?"))
    })
}

/// The tuple a row trigger is about: NEW for INSERT and UPDATE.
fn new_tuple(data: &pg_sys::TriggerData) -> *mut pg_sys::HeapTupleData {
    let event = data.tg_event;
    if event & pg_sys::TRIGGER_EVENT_OPMASK == pg_sys::TRIGGER_EVENT_UPDATE {
        data.tg_newtuple
    } else {
        data.tg_trigtuple
    }
}

/// Whether the row version an AFTER row trigger is about was already updated or deleted (the
/// trigger reads it from the heap, header included): by the users' own AFTER trigger that fired
/// first, say, which writes the row again. Its values are then stale, and the propagation must
/// read the row's current version instead of carrying them. A row only locked (a fill's FOR
/// SHARE) is not superseded; an update in an aborted subtransaction may count as one, which
/// only costs the read.
fn superseded(tuple: *mut pg_sys::HeapTupleData) -> bool {
    let infomask = unsafe { (*(*tuple).t_data).t_infomask } as u32;
    let locked_only = infomask & pg_sys::HEAP_XMAX_LOCK_ONLY != 0
        || infomask & (pg_sys::HEAP_XMAX_IS_MULTI | pg_sys::HEAP_LOCK_MASK) == pg_sys::HEAP_XMAX_EXCL_LOCK;
    infomask & pg_sys::HEAP_XMAX_INVALID == 0 && !locked_only
}

/// Reads the given attributes; `None` if any is NULL (a NULL key matches nothing).
unsafe fn attributes(
    tuple: *mut pg_sys::HeapTupleData,
    desc: pg_sys::TupleDesc,
    attnums: &[i32],
) -> Option<Vec<Datum>> {
    let mut out = Vec::with_capacity(attnums.len());
    for &a in attnums {
        let mut isnull = false;
        let d = pg_sys::heap_getattr(tuple, a, desc, &mut isnull);
        if isnull {
            return None;
        }
        out.push(d);
    }
    Some(out)
}

unsafe extern "C" {
    /// Not in pgrx's bindings; exported by the server (utils/datum.h). Fails only when out of
    /// memory, so no error-boundary guard is needed.
    fn datumCopy(value: Datum, typByVal: bool, typLen: std::ffi::c_int) -> Datum;
    /// utils/datum.h, likewise: compares the bytes of two non-NULL values.
    fn datumIsEqual(value1: Datum, value2: Datum, typByVal: bool, typLen: std::ffi::c_int) -> bool;
}

/// Whether an UPDATE left every one of these columns as it was (binary equality: a value
/// rewritten with the same bytes). Triggers fire for their `UPDATE OF` columns being assigned,
/// changed or not; an unchanged row is no change to act on. (A value changed to an equal one
/// with other bytes, like numeric 1.0 -> 1.00, propagates, and the propagation's own
/// IS DISTINCT FROM test finds nothing to write.)
fn update_changed_nothing(trigger: &PgTrigger<'_>, attnums: &[i32]) -> bool {
    let data = trigger.trigger_data();
    if data.tg_event & pg_sys::TRIGGER_EVENT_OPMASK != pg_sys::TRIGGER_EVENT_UPDATE {
        return false;
    }
    unsafe {
        let desc = (*data.tg_relation).rd_att;
        attnums.iter().all(|&a| {
            let att = compat::attribute(desc, (a - 1) as usize);
            let (mut old_null, mut new_null) = (false, false);
            let old = pg_sys::heap_getattr(data.tg_trigtuple, a, desc, &mut old_null);
            let new = pg_sys::heap_getattr(data.tg_newtuple, a, desc, &mut new_null);
            match (old_null, new_null) {
                (true, true) => true,
                (false, false) => datumIsEqual(old, new, (*att).attbyval, (*att).attlen as i32),
                _ => false,
            }
        })
    }
}

/// Whether a row trigger's UPDATE left these columns as they were; false for an INSERT.
fn update_changed_nothing_or_insert(trigger: &PgTrigger<'_>, attnums: &[i32]) -> bool {
    let data = trigger.trigger_data();
    data.tg_event & pg_sys::TRIGGER_EVENT_OPMASK == pg_sys::TRIGGER_EVENT_UPDATE
        && update_changed_nothing(trigger, attnums)
}

/// AFTER INSERT / AFTER UPDATE OF … FOR EACH ROW on the source: note the row's key.
#[pg_trigger]
fn source_row_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByRust>>, std::convert::Infallible> {
    let name = rule_name(trigger);
    if propagate::is_echo(name, true) {
        return Ok(None); // the rule writing its own source back
    }
    let Some(rt) = runtime::runtime(name) else { return Ok(None) };
    let layout = rt.layout(trigger.trigger_data(), Side::Source, true);
    if update_changed_nothing(trigger, &layout.watched) {
        return Ok(None);
    }
    if let Some(key) = note_key(trigger, &rt, &layout.key) {
        // an inserted row, or one whose key changed (see `RuleRuntime::lock_keys`)
        let new_key = !update_changed_nothing_or_insert(trigger, &layout.key);
        PENDING.with(|p| {
            let mut p = p.borrow_mut();
            if new_key && !p.new_keys.contains(name) {
                p.new_keys.insert(name.to_string());
            }
            let first = p.keys.get(name).is_none_or(|keys| keys.is_empty());
            if first && rt.plan.sql(Statement::FlushRow).is_some() && !superseded(new_tuple(trigger.trigger_data())) {
                let row = source_row(trigger, &rt, &layout);
                p.rows.insert(name.to_string(), row);
            }
            note(&mut p.keys, name, key);
        });
        if flush_now(trigger, &rt.source) {
            flush_source(name, statement_operation(trigger));
        }
    }
    Ok(None)
}

/// Whether what a row trigger noted must be propagated by the row trigger itself, because no
/// statement trigger of the rule's table will follow: in a logical replication worker, whose
/// changes fire row triggers only (except for the initial copy's COPY; only rules with
/// `fire_on_replica` fire there), for a row of a partition of a partitioned rule table (its
/// statement triggers are on the partitioned table, and fire only for statements naming it), and
/// for every row of a rule table that is itself a partition or an inheritance child (a statement
/// naming its parent fires its row triggers, never its statement triggers).
fn flush_now(trigger: &PgTrigger<'_>, rule_table: &data_sync_core::catalog::TableInfo) -> bool {
    unsafe {
        pg_sys::IsLogicalWorker()
            || rule_table.is_child
            || (*trigger.trigger_data().tg_relation).rd_id.to_u32() != rule_table.oid
    }
}

/// The row's values at `layout.values` (NULLs allowed), copied into TopTransactionContext.
fn source_row(trigger: &PgTrigger<'_>, rt: &RuleRuntime, layout: &Layout) -> SourceRow {
    let data = trigger.trigger_data();
    unsafe {
        let desc = (*data.tg_relation).rd_att;
        let tuple = new_tuple(data);
        let old = pg_sys::CurrentMemoryContext;
        pg_sys::CurrentMemoryContext = pg_sys::TopTransactionContext;
        let mut row = SourceRow {
            values: Vec::with_capacity(layout.values.len()),
            nulls: Vec::with_capacity(layout.values.len()),
            subxact: pg_sys::GetCurrentSubTransactionId(),
            copied: Vec::with_capacity(layout.values.len()),
        };
        for (&attnum, t) in layout.values.iter().zip(&rt.row_types) {
            let mut isnull = false;
            let d = pg_sys::heap_getattr(tuple, attnum, desc, &mut isnull);
            row.values.push(if isnull { Datum::from(0) } else { datumCopy(d, t.byval, t.len as i32) });
            row.nulls.push(isnull);
            row.copied.push(!isnull && !t.byval);
        }
        pg_sys::CurrentMemoryContext = old;
        row
    }
}

/// The row's values at `attnums`, copied into TopTransactionContext so they survive until
/// the statement trigger; `None` if one is NULL (a NULL key matches nothing).
fn note_key(trigger: &PgTrigger<'_>, rt: &RuleRuntime, attnums: &[i32]) -> Option<Vec<Datum>> {
    note_key_of(trigger, rt, attnums, new_tuple(trigger.trigger_data()))
}

/// `note_key` of the given tuple of the trigger's row (the old version, say).
fn note_key_of(
    trigger: &PgTrigger<'_>,
    rt: &RuleRuntime,
    attnums: &[i32],
    tuple: *mut pg_sys::HeapTupleData,
) -> Option<Vec<Datum>> {
    let data = trigger.trigger_data();
    unsafe {
        let desc = (*data.tg_relation).rd_att;
        let key = attributes(tuple, desc, attnums)?;
        let old = pg_sys::CurrentMemoryContext;
        pg_sys::CurrentMemoryContext = pg_sys::TopTransactionContext;
        let key: Vec<Datum> =
            key.iter().zip(&rt.key_types).map(|(&d, kt)| datumCopy(d, kt.byval, kt.len as i32)).collect();
        pg_sys::CurrentMemoryContext = old;
        Some(key)
    }
}

/// AFTER UPDATE OF <copied columns> / AFTER INSERT … FOR EACH ROW on the target of a
/// bidirectional rule: note the row's match key, whose maintained row flows back.
#[pg_trigger]
fn reverse_row_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByRust>>, std::convert::Infallible> {
    let name = rule_name(trigger);
    if propagate::is_echo(name, false) {
        return Ok(None); // the rule's own forward write
    }
    let Some(rt) = runtime::runtime(name) else { return Ok(None) };
    let layout = rt.layout(trigger.trigger_data(), Side::Target, true);
    if update_changed_nothing(trigger, &layout.values) {
        return Ok(None);
    }
    if let Some(key) = note_key(trigger, &rt, &layout.key) {
        PENDING.with(|p| note(&mut p.borrow_mut().reverse_keys, name, key));
        if flush_now(trigger, &rt.target) {
            flush_reverse(name, statement_operation(trigger));
        }
    }
    Ok(None)
}

/// AFTER UPDATE OF <copied columns> / AFTER INSERT … FOR EACH STATEMENT on the target of a
/// bidirectional rule: propagate the noted keys back, in one statement.
#[pg_trigger]
fn reverse_statement_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByRust>>, std::convert::Infallible> {
    if let Some(name) = statement_trigger_rule(trigger, Side::Target) {
        flush_reverse(name, statement_operation(trigger));
    }
    Ok(None)
}

/// Propagates the target keys noted for a bidirectional rule back, in one statement.
fn flush_reverse(name: &str, operation: Operation) {
    let keys = PENDING.with(|p| p.borrow_mut().reverse_keys.remove(name)).unwrap_or_default();
    if keys.is_empty() {
        return;
    }
    let Some(rt) = runtime::runtime(name) else { return };
    propagate::propagate_back(&rt, &keys, operation);
}

/// `insert` or `update`: what the statement that fired a trigger did (the log's `operation`).
fn statement_operation(trigger: &PgTrigger<'_>) -> Operation {
    if trigger.trigger_data().tg_event & pg_sys::TRIGGER_EVENT_OPMASK == pg_sys::TRIGGER_EVENT_INSERT {
        Operation::Insert
    } else {
        Operation::Update
    }
}

/// AFTER INSERT / AFTER UPDATE OF … FOR EACH STATEMENT on the source: propagate noted keys.
#[pg_trigger]
fn source_statement_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByRust>>, std::convert::Infallible> {
    if let Some(name) = statement_trigger_rule(trigger, Side::Source) {
        flush_source(name, statement_operation(trigger));
    }
    Ok(None)
}

/// The rule of a statement trigger, once the trigger is known to be one data_sync installed for
/// it (see `RuleRuntime::layout`); `None` when the rule is gone or disabled.
fn statement_trigger_rule<'a>(trigger: &'a PgTrigger<'a>, side: Side) -> Option<&'a str> {
    let name = rule_name(trigger);
    let rt = runtime::runtime(name)?;
    rt.layout(trigger.trigger_data(), side, false);
    Some(name)
}

/// Propagates the source keys noted for a rule, in one statement.
fn flush_source(name: &str, operation: Operation) {
    let (keys, row, new_keys) = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        (p.keys.remove(name).unwrap_or_default(), p.rows.remove(name), p.new_keys.remove(name))
    });
    if keys.is_empty() {
        return;
    }
    let Some(rt) = runtime::runtime(name) else { return };
    if new_keys && rt.rule.kind == data_sync_core::rules::RuleKind::Copy && propagate::mode_of(&rt) != SyncMode::Async {
        rt.lock_keys(&keys, true);
    }
    // the row's values stand for the source only if they are this statement's one row
    let current = unsafe { pg_sys::GetCurrentSubTransactionId() };
    let usable = row.as_ref().filter(|r| keys.len() == 1 && r.subxact == current);
    propagate::run_and_log(&rt, &keys, usable.map_or(Rows::Keys, Rows::One), operation, false);
    // (copied into TopTransactionContext: a loop of one-row statements must not pile them up)
    if let Some(row) = row {
        row.free();
    }
}

/// BEFORE INSERT [OR UPDATE OF <match columns>] FOR EACH ROW on the target: fill the copied
/// columns from the matching source row, if there is one. AFTER UPDATE OF <match columns> FOR
/// EACH ROW: note the re-parented row's match key for the statement trigger.
#[pg_trigger]
fn target_fill_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    let data = trigger.trigger_data();
    if data.tg_event & pg_sys::TRIGGER_EVENT_TIMINGMASK == pg_sys::TRIGGER_EVENT_AFTER {
        note_refill(trigger);
        return Ok(None);
    }
    let tuple = new_tuple(data);
    let unchanged = || unsafe {
        Some(PgHeapTuple::from_heap_tuple(PgTupleDesc::from_pg_unchecked((*data.tg_relation).rd_att), tuple))
    };
    let name = rule_name(trigger);
    let Some(rt) = runtime::runtime(name) else { return Ok(unchanged()) };
    let layout = rt.layout(data, Side::Target, true);
    if update_changed_nothing(trigger, &layout.watched) {
        return Ok(unchanged());
    }
    unsafe {
        let desc = (*data.tg_relation).rd_att;
        let Some(mut args) = attributes(tuple, desc, &layout.key) else { return Ok(unchanged()) };
        // A bidirectional rule fills only what the writer left NULL: a value written into the
        // target is a change that flows back, not one to overwrite.
        let fill: Vec<usize> = (0..layout.values.len())
            .filter(|&i| !rt.rule.bidirectional || pg_sys::heap_attisnull(tuple, layout.values[i], desc))
            .collect();
        if fill.is_empty() {
            return Ok(unchanged());
        }
        let mut types = rt.key_scalar_types();
        let mut nulls = vec![false; args.len()];
        if rt.fill_takes_row {
            args.push(match layout.to_table {
                // a partition's row, as a row of the rule's table (the statement's parameter type)
                Some((map, table_desc)) => {
                    let row = if map.is_null() { tuple } else { pg_sys::execute_attr_map_tuple(tuple, map) };
                    pg_sys::heap_copy_tuple_as_datum(row, table_desc)
                }
                None => pg_sys::heap_copy_tuple_as_datum(tuple, desc),
            });
            types.push(pgrx::pg_sys::Oid::from(rt.target.row_type_oid));
            // the row's old version, on UPDATE, is not "another row" newer than itself
            let updating = data.tg_event & pg_sys::TRIGGER_EVENT_OPMASK == pg_sys::TRIGGER_EVENT_UPDATE;
            let tid = if updating { Datum::from(&mut (*data.tg_trigtuple).t_self as *mut _) } else { Datum::from(0) };
            args.push(tid);
            types.push(pg_sys::TIDOID);
            nulls.extend([false, !updating]);
        }
        rt.lock_keys(std::slice::from_ref(&args[..rt.key_types.len()].to_vec()), false);
        let caller_context = pg_sys::CurrentMemoryContext;
        let filled = spi::with_spi(|| {
            // as the source's owner, who may lock its rows (as foreign-key checks do)
            let found = runtime::naming_rule(&rt, "filling a row of", || {
                spi::as_role(rt.source_owner, || rt.execute(Statement::FillLookup, &types, &args, &nulls))
            });
            if found == 0 {
                return None;
            }
            let table = pg_sys::SPI_tuptable;
            let row = *(*table).vals;
            let n = fill.len();
            let mut values = Vec::with_capacity(n);
            let mut nulls = Vec::with_capacity(n);
            let mut attnums = Vec::with_capacity(n);
            for &i in &fill {
                let mut isnull = false;
                values.push(pg_sys::SPI_getbinval(row, (*table).tupdesc, (i + 1) as i32, &mut isnull));
                nulls.push(isnull);
                attnums.push(layout.values[i]);
            }
            // The new tuple must outlive SPI: build it in the caller's (executor's) context.
            let spi_context = pg_sys::CurrentMemoryContext;
            pg_sys::CurrentMemoryContext = caller_context;
            let new = pg_sys::heap_modify_tuple_by_cols(
                tuple,
                desc,
                n as i32,
                attnums.as_ptr() as *mut i32,
                values.as_mut_ptr(),
                nulls.as_mut_ptr(),
            );
            pg_sys::CurrentMemoryContext = spi_context;
            Some(new)
        });
        match filled {
            Some(new) => {
                PENDING.with(|p| {
                    let mut p = p.borrow_mut();
                    match p.fills.get_mut(name) {
                        Some(filled) => *filled += 1,
                        None => _ = p.fills.insert(name.to_string(), 1),
                    }
                });
                if flush_now(trigger, &rt.target) {
                    log_fills(name);
                }
                Ok(Some(PgHeapTuple::from_heap_tuple(PgTupleDesc::from_pg_unchecked(desc), new)))
            }
            None => Ok(unchanged()),
        }
    }
}

/// Notes the match key of a re-parented target row (AFTER UPDATE OF <match columns>), or of an
/// inserted one on a target that fills after insert (`Planner::fills_after_insert`).
fn note_refill(trigger: &PgTrigger<'_>) {
    // (also inside the rule's own propagation: the target's own triggers may change other rows then)
    let name = rule_name(trigger);
    let Some(rt) = runtime::runtime(name) else { return };
    let layout = rt.layout(trigger.trigger_data(), Side::Target, true);
    if update_changed_nothing(trigger, &layout.watched) {
        return;
    }
    let data = trigger.trigger_data();
    let operation = data.tg_event & pg_sys::TRIGGER_EVENT_OPMASK;
    if rt.rule.latest_by.is_some() && operation != pg_sys::TRIGGER_EVENT_INSERT {
        // The row's old key may have a new newest row now, never filled while another was newer.
        if let Some(old) = note_key_of(trigger, &rt, &layout.key, data.tg_trigtuple) {
            PENDING.with(|p| note(&mut p.borrow_mut().refill_keys, name, old));
        }
    }
    if operation == pg_sys::TRIGGER_EVENT_DELETE {
        if flush_now(trigger, &rt.target) {
            refill(name);
        }
        return;
    }
    let Some(key) = note_key(trigger, &rt, &layout.key) else { return };
    // (an inserted row, when the target fills after insert, or a re-parented one)
    let tid = unsafe { ((*new_tuple(data)).t_self, (*data.tg_relation).rd_id) };
    PENDING.with(|p| note(&mut p.borrow_mut().refill_rows, name, (key, tid)));
    if flush_now(trigger, &rt.target) {
        refill(name);
    }
}

/// Re-fills the noted re-parented target rows (only them: the new parent's other rows may hold
/// a value written by hand) from their new source rows, logged as `fill`.
fn refill(name: &str) {
    let (rows, keys) = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        (p.refill_rows.remove(name).unwrap_or_default(), p.refill_keys.remove(name).unwrap_or_default())
    });
    if rows.is_empty() && keys.is_empty() {
        return;
    }
    let Some(rt) = runtime::runtime(name) else { return };
    let all: Vec<Vec<Datum>> = keys.iter().cloned().chain(rows.iter().map(|(k, _)| k.clone())).collect();
    rt.lock_keys(&all, false);
    if !keys.is_empty() {
        // every maintained (newest) row of these keys: the other rows of a `latest_by` key are
        // not maintained, so no hand-written value is overwritten
        propagate::run_and_log(&rt, &keys, Rows::Keys, Operation::Fill, false);
    }
    if rows.is_empty() {
        return;
    }
    let (keys, mut tids): (Vec<Vec<Datum>>, Vec<(pg_sys::ItemPointerData, pg_sys::Oid)>) = rows.into_iter().unzip();
    runtime::follow_updates(&mut tids);
    propagate::run_and_log(&rt, &keys, Rows::Moved(&tids), Operation::Fill, false);
}

/// AFTER INSERT OR UPDATE OF <match columns> FOR EACH STATEMENT on the target: one log row for
/// the rows the BEFORE trigger filled, and the re-fill of re-parented rows.
#[pg_trigger]
fn target_statement_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByRust>>, std::convert::Infallible> {
    if let Some(name) = statement_trigger_rule(trigger, Side::Target) {
        log_fills(name);
        refill(name);
    }
    Ok(None)
}

/// One log row for the target rows filled for a rule since the last one.
fn log_fills(name: &str) {
    let filled = PENDING.with(|p| p.borrow_mut().fills.remove(name)).unwrap_or(0);
    if filled == 0 {
        return;
    }
    let Some(rt) = runtime::runtime(name) else { return };
    let role = unsafe { pg_sys::GetUserId() };
    let outcome =
        log::Outcome { operation: Operation::Fill, reverse: false, source_rows: filled as i64, role, attempt: 1 };
    spi::with_spi(|| log::propagation(&rt, &outcome, None, filled as i64));
}
