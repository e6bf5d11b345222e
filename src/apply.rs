//! Stage 4: executing a rule's planned statements. Each rule gets a runtime (resolved tables,
//! attribute numbers, type facts, SPI plans prepared once and kept) cached per backend, and
//! dropped when the relcache says one of its tables changed.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CString;
use std::rc::Rc;

use data_sync_core::catalog::TableInfo;
use data_sync_core::plan::{Planner, RulePlan};
use data_sync_core::validate::Rule;
use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;

use crate::catalog;

/// Type facts for building arrays of key values and copying them.
#[derive(Clone, Copy)]
pub struct KeyType {
    pub oid: Oid,
    pub array_oid: Oid,
    pub len: i16,
    pub byval: bool,
    pub align: std::ffi::c_char,
}

pub struct RuleRuntime {
    pub rule: Rule,
    pub plan: RulePlan,
    pub source: TableInfo,
    pub target: TableInfo,
    pub target_owner: Oid,
    /// Bidirectional rules write the source as its owner.
    pub source_owner: Oid,
    pub log_owner: Oid,
    /// The rule's tables as the log writes them (formatted once, not per log row).
    pub source_text: String,
    pub target_text: String,
    pub source_key_attnums: Vec<i32>,
    pub target_key_attnums: Vec<i32>,
    pub fill_attnums: Vec<i32>,
    /// Whether the fill lookup takes the new row and its old version's tid.
    pub fill_takes_row: bool,
    pub key_types: Vec<KeyType>,
    /// Copy rules: the source columns a single-row propagation takes from the row trigger's
    /// NEW tuple (`RulePlan::flush_row`), and their types.
    pub row_attnums: Vec<i32>,
    pub row_types: Vec<KeyType>,
    /// Columns whose change the row triggers act on (their `UPDATE OF` lists): watched source
    /// columns, target columns whose change re-fills a row, copied target columns (the way back).
    pub watched_attnums: Vec<i32>,
    pub refill_attnums: Vec<i32>,
    pub copied_target_attnums: Vec<i32>,
    /// Whether a source key maintains at most one target row: the match columns are unique in
    /// the target, or `latest_by` picks one (rows tied for latest are rare; a conflict on a tied
    /// row may then go uncounted in the log, never unhandled).
    pub one_target_row_per_key: bool,
    plans: RefCell<HashMap<String, Plan>>,
}

/// Whether a statement with parameters of these types prepares without error.
fn compiles(sql: &str, types: &[u32]) -> bool {
    let types: Vec<Oid> = types.iter().map(|&t| Oid::from(t)).collect();
    try_prepare(sql, &types).is_ok_and(|prepared| prepared)
}

/// Prepares (and frees) a statement in a subtransaction: the error, if it does not compile.
pub fn try_prepare(sql: &str, types: &[Oid]) -> Result<bool, crate::subxact::Caught> {
    let query = CString::new(sql).expect("planned SQL has no NUL");
    crate::subxact::try_catch(|| {
        with_spi(|| unsafe {
            let plan = pg_sys::SPI_prepare(query.as_ptr(), types.len() as i32, types.as_ptr() as *mut Oid);
            if !plan.is_null() {
                pg_sys::SPI_freeplan(plan);
            }
            !plan.is_null()
        })
    })
}

/// An SPI plan kept in CacheMemoryContext for the life of the runtime.
struct Plan(pg_sys::SPIPlanPtr);

impl Drop for Plan {
    fn drop(&mut self) {
        unsafe {
            pg_sys::SPI_freeplan(self.0);
        }
    }
}

thread_local! {
    static RUNTIMES: RefCell<HashMap<String, Rc<RuleRuntime>>> = RefCell::new(HashMap::new());
    /// Relations the relcache reported as changed; applied lazily, never inside the callback.
    static STALE: RefCell<Vec<Oid>> = const { RefCell::new(Vec::new()) };
    static ALL_STALE: Cell<bool> = const { Cell::new(false) };
    /// Counts relcache invalidations: caches of catalog facts compare it to know they may be
    /// stale.
    static RELCACHE_GENERATION: Cell<u64> = const { Cell::new(0) };
}

/// Changes whenever a relation may have changed (see `relcache_changed`).
pub fn relcache_generation() -> u64 {
    RELCACHE_GENERATION.with(|g| g.get())
}

/// Registered once in `_PG_init`.
pub fn register_callbacks() {
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(relcache_changed), Datum::from(0));
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn relcache_changed(_arg: Datum, relid: Oid) {
    crate::log::forget_log_relation(relid);
    RELCACHE_GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
    if relid == pg_sys::InvalidOid {
        ALL_STALE.with(|a| a.set(true));
        return;
    }
    let noted = STALE.with(|s| s.try_borrow_mut().map(|mut s| s.push(relid)).is_ok());
    if !noted {
        ALL_STALE.with(|a| a.set(true));
    }
}

/// Forgets every cached runtime (after rules change in this backend).
pub fn invalidate_all() {
    ALL_STALE.with(|a| a.set(true));
}

fn apply_invalidations() {
    let all = ALL_STALE.with(|a| a.replace(false));
    let stale: Vec<Oid> = STALE.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if !all && stale.is_empty() {
        return;
    }
    RUNTIMES.with(|r| {
        let mut r = r.borrow_mut();
        if all {
            r.clear();
        } else {
            r.retain(|_, rt| !stale.iter().any(|&o| o.to_u32() == rt.source.oid || o.to_u32() == rt.target.oid));
        }
    });
}

/// The runtime of an enabled rule, built on first use. `None` when the rule is gone or disabled
/// (a trigger left behind by a concurrent change finds nothing to do).
pub fn runtime(name: &str) -> Option<Rc<RuleRuntime>> {
    apply_invalidations();
    if let Some(rt) = RUNTIMES.with(|r| r.borrow().get(name).cloned()) {
        return Some(rt);
    }
    let rule = catalog::installed_rule(name)?;
    if !rule.enabled {
        return None;
    }
    let rt = Rc::new(build(rule)?);
    RUNTIMES.with(|r| r.borrow_mut().insert(name.to_string(), rt.clone()));
    Some(rt)
}

fn build(rule: Rule) -> Option<RuleRuntime> {
    let source = catalog::lookup(&rule.source)?;
    let target = catalog::lookup(&rule.target)?;
    let planner = Planner { rule: &rule, source: &source, target: &target };
    let mut plan = planner.plan();
    // An append rule's one-row statement reads a derived table shaped like the source: `values`
    // or `where` that need the table itself (system columns, a function of the table's row type)
    // do not compile against it; such rules keep reading the row from the table.
    if rule.kind == data_sync_core::rules::RuleKind::Append && !compiles(&plan.flush_row, &plan.row_types) {
        plan.flush_row.clear();
    }
    let fill_takes_row = planner.fill_takes_row();
    let attnum = |t: &TableInfo, c: &str| t.column(c).map(|c| c.attnum as i32);
    let source_key_attnums = rule.source_key.iter().map(|c| attnum(&source, c)).collect::<Option<Vec<_>>>()?;
    // append rules have no match keys and fill nothing
    let target_key_attnums = rule.keys.iter().map(|p| attnum(&target, &p.target)).collect::<Option<Vec<_>>>()?;
    let fill_attnums = rule.copies.iter().map(|p| attnum(&target, &p.target)).collect::<Option<Vec<_>>>()?;
    let type_facts = |types: &[u32]| -> Vec<KeyType> {
        types
            .iter()
            .map(|&t| unsafe {
                let oid = Oid::from(t);
                let mut kt = KeyType { oid, array_oid: pg_sys::get_array_type(oid), len: 0, byval: false, align: 0 };
                pg_sys::get_typlenbyvalalign(oid, &mut kt.len, &mut kt.byval, &mut kt.align);
                kt
            })
            .collect()
    };
    let key_types = type_facts(&plan.key_types);
    let row_types = type_facts(&plan.row_types);
    let row_attnums = planner.row_columns().iter().map(|c| attnum(&source, c)).collect::<Option<Vec<_>>>()?;
    let watched_attnums =
        rule.watched_source_columns().into_iter().map(|c| attnum(&source, c)).collect::<Option<Vec<_>>>()?;
    let copied_target_attnums = fill_attnums.clone();
    let target_keys: Vec<&str> = rule.keys.iter().map(|p| p.target.as_str()).collect();
    let one_target_row_per_key = rule.latest_by.is_some()
        || target.unique_keys.iter().any(|uk| !uk.is_empty() && uk.iter().all(|c| target_keys.contains(&c.as_str())));
    let refill_attnums = planner.refill_columns().iter().map(|c| attnum(&target, c)).collect::<Option<Vec<_>>>()?;
    let owner = |oid: u32| -> Option<Oid> {
        Spi::get_one_with_args::<Oid>(
            "SELECT relowner FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1",
            &[Oid::from(oid).into()],
        )
        .ok()?
    };
    let log_owner = Spi::get_one::<Oid>(
        "SELECT relowner FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) 'data_sync.sync_log'::pg_catalog.regclass",
    )
    .ok()??;
    Some(RuleRuntime {
        target_owner: owner(target.oid)?,
        source_owner: owner(source.oid)?,
        log_owner,
        source_text: rule.source.to_string(),
        target_text: rule.target.to_string(),
        rule,
        plan,
        source,
        target,
        source_key_attnums,
        target_key_attnums,
        fill_attnums,
        fill_takes_row,
        key_types,
        row_types,
        row_attnums,
        watched_attnums,
        refill_attnums,
        copied_target_attnums,
        one_target_row_per_key,
        plans: RefCell::new(HashMap::new()),
    })
}

/// The statements that write propagated values (see `RuleRuntime::execute`).
const PROPAGATIONS: [&str; 5] = ["flush_one", "flush_many", "flush_row", "reverse_one", "reverse_many"];

impl RuleRuntime {
    /// Runs a planned statement (prepared on first use) and returns the number of rows it
    /// processed. Must be called inside an SPI connection.
    /// `which` names the statement in the plan cache (and in errors).
    pub fn execute(&self, which: &str, sql: &str, arg_types: &[Oid], args: &[Datum], nulls: &[bool]) -> u64 {
        let cached = self.plans.borrow().get(which).map(|p| p.0);
        let plan = cached.unwrap_or_else(|| {
            let plan = prepare(sql, arg_types);
            self.plans.borrow_mut().insert(which.to_string(), Plan(plan));
            plan
        });
        let nulls: Vec<std::ffi::c_char> = nulls.iter().map(|&n| if n { b'n' as _ } else { b' ' as _ }).collect();
        unsafe {
            let rc = if pg_sys::XactIsoLevel >= pg_sys::XACT_REPEATABLE_READ as i32 && PROPAGATIONS.contains(&which) {
                // Under REPEATABLE READ the transaction's snapshot misses target rows that others
                // committed since (a lost pet inserted, and filled from the old phone, while this
                // transaction waited on the users row): the propagation would skip them and leave
                // them stale. As a foreign-key check does, run it on the latest snapshot and
                // cross-check against the transaction's: touching such a row then fails with a
                // serialization error (40001, retry) instead of leaving drift.
                pg_sys::CommandCounterIncrement();
                pg_sys::SPI_execute_snapshot(
                    plan,
                    args.as_ptr() as *mut Datum,
                    nulls.as_ptr(),
                    pg_sys::GetLatestSnapshot(),
                    pg_sys::GetTransactionSnapshot(),
                    false,
                    true,
                    0,
                )
            } else {
                pg_sys::SPI_execute_plan(plan, args.as_ptr() as *mut Datum, nulls.as_ptr(), false, 0)
            };
            if rc < 0 {
                error!("data_sync: rule \"{}\": {which} failed (SPI code {rc})", self.rule.name);
            }
            pg_sys::SPI_processed
        }
    }

    pub fn key_array_types(&self) -> Vec<Oid> {
        self.key_types.iter().map(|k| k.array_oid).collect()
    }

    pub fn key_scalar_types(&self) -> Vec<Oid> {
        self.key_types.iter().map(|k| k.oid).collect()
    }

    /// Propagates the current values of the given source rows (by key) to their targets, as
    /// one set-based statement (an INSERT for append rules). Returns the number of target rows
    /// changed.
    pub fn flush(&self, keys: &[Vec<Datum>]) -> u64 {
        self.run_keyed(("flush_one", &self.plan.flush_one), ("flush_many", &self.plan.flush_many), keys)
    }

    /// Propagates one source row from its values (`row_attnums` of the row trigger's NEW
    /// tuple) instead of reading it again. Returns the number of target rows changed.
    pub fn flush_row(&self, row: &SourceRow) -> u64 {
        let types: Vec<Oid> = self.row_types.iter().map(|t| t.oid).collect();
        self.execute("flush_row", &self.plan.flush_row, &types, &row.values, &row.nulls)
    }

    pub fn conflicts_row(&self, row: &SourceRow) -> Option<u64> {
        let sql = self.plan.conflicts_row.as_ref()?;
        let types: Vec<Oid> = self.row_types.iter().map(|t| t.oid).collect();
        if self.execute("conflicts_row", sql, &types, &row.values, &row.nulls) == 0 {
            return Some(0);
        }
        Some(unsafe { count_of_result() })
    }

    /// Locks the source rows of these keys FOR SHARE (re-syncs, before `flush`).
    pub fn lock_sources(&self, keys: &[Vec<Datum>]) {
        if !self.plan.lock_one.is_empty() {
            self.run_keyed(("lock_one", &self.plan.lock_one), ("lock_many", &self.plan.lock_many), keys);
        }
    }

    /// Last-write-wins rules: how many target rows of these source rows are newer than the
    /// source and were left alone.
    pub fn conflicts(&self, keys: &[Vec<Datum>]) -> Option<u64> {
        let (one, many) = (self.plan.conflicts_one.as_ref()?, self.plan.conflicts_many.as_ref()?);
        Some(self.count_keyed(("conflicts_one", one), ("conflicts_many", many), keys))
    }

    /// Bidirectional rules: carries the maintained target rows of these match keys back to
    /// their source rows. Returns the number of source rows changed.
    pub fn flush_reverse(&self, keys: &[Vec<Datum>]) -> u64 {
        let (Some(one), Some(many)) = (&self.plan.reverse_one, &self.plan.reverse_many) else { return 0 };
        self.run_keyed(("reverse_one", one), ("reverse_many", many), keys)
    }

    pub fn reverse_conflicts(&self, keys: &[Vec<Datum>]) -> Option<u64> {
        let (one, many) = (self.plan.reverse_conflicts_one.as_ref()?, self.plan.reverse_conflicts_many.as_ref()?);
        Some(self.count_keyed(("reverse_conflicts_one", one), ("reverse_conflicts_many", many), keys))
    }

    /// Runs the one-key or the many-key (arrays) form of a statement.
    fn run_keyed(&self, one: (&str, &str), many: (&str, &str), keys: &[Vec<Datum>]) -> u64 {
        match keys.len() {
            0 => 0,
            1 => self.execute(one.0, one.1, &self.key_scalar_types(), &keys[0], &vec![false; keys[0].len()]),
            _ => {
                let arrays = self.key_arrays(keys);
                self.execute(many.0, many.1, &self.key_array_types(), &arrays, &vec![false; arrays.len()])
            }
        }
    }

    /// Re-fills the target rows at `tids` (re-parented by one statement) from the source rows
    /// of their new match `keys` (one per row). Returns the number of target rows changed.
    pub fn refill(&self, keys: &[Vec<Datum>], tids: &[(pg_sys::ItemPointerData, Oid)]) -> u64 {
        let (types, args) = self.refill_args(keys, tids);
        self.execute("refill", &self.plan.refill, &types, &args, &vec![false; args.len()])
    }

    /// Last-write-wins rules: how many of those rows `refill` skipped as newer.
    pub fn refill_conflicts(&self, keys: &[Vec<Datum>], tids: &[(pg_sys::ItemPointerData, Oid)]) -> Option<u64> {
        let sql = self.plan.refill_conflicts.as_ref()?;
        let (types, args) = self.refill_args(keys, tids);
        if self.execute("refill_conflicts", sql, &types, &args, &vec![false; args.len()]) == 0 {
            return Some(0);
        }
        Some(unsafe { count_of_result() })
    }

    /// One array per key column of the keys' values.
    fn key_arrays(&self, keys: &[Vec<Datum>]) -> Vec<Datum> {
        self.key_types
            .iter()
            .enumerate()
            .map(|(col, kt)| {
                let mut elems: Vec<Datum> = keys.iter().map(|k| k[col]).collect();
                unsafe {
                    Datum::from(pg_sys::construct_array(
                        elems.as_mut_ptr(),
                        elems.len() as i32,
                        kt.oid,
                        kt.len as i32,
                        kt.byval,
                        kt.align,
                    ))
                }
            })
            .collect()
    }

    /// Arrays of the keys (per key column), then the arrays of tids and of their tables.
    fn refill_args(&self, keys: &[Vec<Datum>], tids: &[(pg_sys::ItemPointerData, Oid)]) -> (Vec<Oid>, Vec<Datum>) {
        let mut args = self.key_arrays(keys);
        let mut tables: Vec<Datum> = tids.iter().map(|(_, table)| Datum::from(*table)).collect();
        let mut tids: Vec<Datum> = tids.iter().map(|(tid, _)| Datum::from(tid as *const _)).collect();
        args.push(unsafe {
            // tid: 6 bytes, passed by reference, short alignment
            Datum::from(pg_sys::construct_array(
                tids.as_mut_ptr(),
                tids.len() as i32,
                pg_sys::TIDOID,
                std::mem::size_of::<pg_sys::ItemPointerData>() as i32,
                false,
                pg_sys::TYPALIGN_SHORT as std::ffi::c_char,
            ))
        });
        args.push(unsafe {
            Datum::from(pg_sys::construct_array(
                tables.as_mut_ptr(),
                tables.len() as i32,
                pg_sys::OIDOID,
                4,
                true,
                pg_sys::TYPALIGN_INT as std::ffi::c_char,
            ))
        });
        let mut types = self.key_array_types();
        types.push(unsafe { pg_sys::get_array_type(pg_sys::TIDOID) });
        types.push(unsafe { pg_sys::get_array_type(pg_sys::OIDOID) });
        (types, args)
    }

    /// Like `run_keyed` for a `SELECT count(*)`: returns the count.
    fn count_keyed(&self, one: (&str, &str), many: (&str, &str), keys: &[Vec<Datum>]) -> u64 {
        if keys.is_empty() || self.run_keyed(one, many, keys) == 0 {
            return 0;
        }
        unsafe { count_of_result() }
    }

    /// Text form of one source key, for the log: `42`, or `(7,abc)` for composite keys.
    pub fn key_text(&self, key: &[Datum]) -> String {
        key_display(&self.key_parts(key))
    }

    /// The keys as JSON for the retry queue: one array of text values per row.
    pub fn keys_json(&self, keys: &[Vec<Datum>]) -> serde_json::Value {
        keys.iter().map(|k| serde_json::Value::from(self.key_parts(k))).collect()
    }

    /// The inverse of `keys_json`: key values read back from their text form (queue items).
    pub fn keys_from_text(&self, keys: &[&Vec<String>]) -> Vec<Vec<Datum>> {
        let inputs: Vec<(Oid, Oid)> = self
            .key_types
            .iter()
            .map(|kt| unsafe {
                let (mut input, mut ioparam) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
                pg_sys::getTypeInputInfo(kt.oid, &mut input, &mut ioparam);
                (input, ioparam)
            })
            .collect();
        keys.iter()
            .map(|key| {
                if key.len() != inputs.len() {
                    error!(
                        "data_sync: rule \"{}\": queued key {key:?} has {} values, the rule's key has {}",
                        self.rule.name,
                        key.len(),
                        inputs.len()
                    );
                }
                key.iter()
                    .zip(&inputs)
                    .map(|(text, &(input, ioparam))| {
                        let text = CString::new(text.as_str()).unwrap_or_default();
                        unsafe { pg_sys::OidInputFunctionCall(input, text.as_ptr() as *mut _, ioparam, -1) }
                    })
                    .collect()
            })
            .collect()
    }

    fn key_parts(&self, key: &[Datum]) -> Vec<String> {
        key.iter()
            .zip(&self.key_types)
            .map(|(&d, kt)| unsafe {
                let mut out = pg_sys::InvalidOid;
                let mut varlena = false;
                pg_sys::getTypeOutputInfo(kt.oid, &mut out, &mut varlena);
                let s = pg_sys::OidOutputFunctionCall(out, d);
                std::ffi::CStr::from_ptr(s).to_string_lossy().into_owned()
            })
            .collect()
    }
}

/// The values of one source row, taken from a row trigger's tuple: what `flush_row` sends.
pub struct SourceRow {
    pub values: Vec<Datum>,
    pub nulls: Vec<bool>,
    /// The subtransaction the row was written in: a row from a rolled-back one must not be used.
    pub subxact: pg_sys::SubTransactionId,
    /// Which values were copied (passed by reference, not NULL).
    pub copied: Vec<bool>,
}

impl SourceRow {
    /// Frees the copied values.
    pub fn free(self) {
        for (value, copied) in self.values.into_iter().zip(self.copied) {
            if copied {
                unsafe { pg_sys::pfree(value.cast_mut_ptr()) }
            }
        }
    }
}

/// A key's text values as the log shows them: `42`, or `(7,abc)` for composite keys.
pub fn key_display(parts: &[String]) -> String {
    match parts {
        [one] => one.clone(),
        _ => format!("({})", parts.join(",")),
    }
}

/// The count a `SELECT count(*)` just returned (in `SPI_tuptable`).
pub unsafe fn count_of_result() -> u64 {
    let table = pg_sys::SPI_tuptable;
    let mut isnull = false;
    let d = pg_sys::SPI_getbinval(*(*table).vals, (*table).tupdesc, 1, &mut isnull);
    i64::from_datum(d, isnull).unwrap_or(0) as u64
}

fn prepare(sql: &str, arg_types: &[Oid]) -> pg_sys::SPIPlanPtr {
    let query = CString::new(sql).expect("generated SQL has no NUL");
    unsafe {
        let plan = pg_sys::SPI_prepare(query.as_ptr(), arg_types.len() as i32, arg_types.as_ptr() as *mut Oid);
        if plan.is_null() {
            error!("data_sync: could not prepare: {sql}");
        }
        pg_sys::SPI_keepplan(plan);
        plan
    }
}

/// Runs `f` as `role` in a restricted security context, the way foreign-key actions and
/// REFRESH MATERIALIZED VIEW do: the writer needs no privileges on the target, and code that
/// runs meanwhile (the target's own triggers) cannot change session state.
pub fn as_role<T>(role: Oid, f: impl FnOnce() -> T) -> T {
    let mut prev_user = pg_sys::InvalidOid;
    let mut prev_context = 0;
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut prev_user, &mut prev_context);
        pg_sys::SetUserIdAndSecContext(
            role,
            prev_context | (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION) as i32,
        );
    }
    // On error the (sub)transaction abort restores user and context.
    let result = f();
    unsafe {
        pg_sys::SetUserIdAndSecContext(prev_user, prev_context);
    }
    result
}

/// Runs `f` inside an SPI connection (nested connections are fine in triggers).
pub fn with_spi<T>(f: impl FnOnce() -> T) -> T {
    unsafe {
        if pg_sys::SPI_connect() < 0 {
            error!("data_sync: SPI_connect failed");
        }
    }
    let result = f();
    unsafe {
        pg_sys::SPI_finish();
    }
    result
}

/// Runs `f`, re-raising any error with the rule and the target named (SQLSTATE, detail and
/// hint kept), so a failing write says which propagation failed and why. The transaction is
/// aborting anyway; this only adds context.
pub fn naming_rule<T>(rt: &RuleRuntime, what: &str, f: impl FnOnce() -> T) -> T {
    let rule = rt.rule.name.as_str();
    let target = rt.rule.target.to_string();
    PgTryBuilder::new(std::panic::AssertUnwindSafe(f))
        .catch_others(|caught| {
            let report = match &caught {
                pg_sys::panic::CaughtError::PostgresError(e) | pg_sys::panic::CaughtError::ErrorReport(e) => e,
                pg_sys::panic::CaughtError::RustPanic { ereport, .. } => ereport,
            };
            let mut error = pg_sys::panic::ErrorReport::new(
                report.sql_error_code(),
                // a failure further down a chain already says "data_sync: rule …": keep one prefix
                format!(
                    "data_sync: rule \"{rule}\": {what} {target} failed: {}",
                    report.message().trim_start_matches("data_sync: ")
                ),
                "data_sync",
            );
            if let Some(detail) = report.detail() {
                error = error.set_detail(detail.to_string());
            }
            if let Some(hint) = report.hint() {
                error = error.set_hint(hint.to_string());
            }
            error.report(PgLogLevel::ERROR);
            unreachable!("ereport(ERROR) does not return")
        })
        .execute()
}
