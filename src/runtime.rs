//! Executing a rule's planned statements. Each rule gets a runtime (resolved tables,
//! attribute numbers, type facts, SPI plans prepared once and kept) cached per backend, and
//! dropped when the relcache says one of its tables changed.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CString;
use std::rc::Rc;

use data_sync_core::catalog::TableInfo;
use data_sync_core::plan::{Planner, RulePlan, Statement};
use data_sync_core::validate::Rule;
use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;

use crate::spi::{self, with_pinned_search_path, with_spi};
use crate::{catalog, registry};

/// Type facts for building arrays of key values and copying them.
#[derive(Clone, Copy)]
pub struct KeyType {
    pub oid: Oid,
    pub array_oid: Oid,
    pub len: i16,
    pub byval: bool,
    pub align: std::ffi::c_char,
}

/// Attribute numbers of a rule's columns in one relation its triggers fire on: the rule's own
/// table, or a partition of it, whose columns may be numbered differently (columns
/// dropped before it was created, or a table attached as a partition). Source side: the source key, the values
/// `flush_row` takes, the watched columns. Target side: the match key, the copied columns, the
/// columns whose change re-fills a row.
pub struct Layout {
    pub key: Vec<i32>,
    pub values: Vec<i32>,
    pub watched: Vec<i32>,
    /// A target partition: turns one of its rows into a row of the rule's table (whose row type
    /// the fill lookup takes). The map is NULL when the two are laid out alike. Both live in
    /// TopMemoryContext.
    pub to_table: Option<(*mut pg_sys::TupleConversionMap, pg_sys::TupleDesc)>,
}

impl Layout {
    fn of(columns: &[Vec<String>; 3], attnum: impl Fn(&String) -> Option<i32>) -> Option<Layout> {
        let find = |list: &Vec<String>| list.iter().map(&attnum).collect::<Option<Vec<i32>>>();
        Some(Layout {
            key: find(&columns[0])?,
            values: find(&columns[1])?,
            watched: find(&columns[2])?,
            to_table: None,
        })
    }
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
    /// Where the rule's columns are in its own tables (see `Layout`).
    source_layout: Rc<Layout>,
    target_layout: Rc<Layout>,
    /// Layouts of partitions the rule's triggers fired on, by relation oid.
    /// (Keyed by relation and side: a rule may go from a table to one of its own partitions.)
    partition_layouts: RefCell<HashMap<(Oid, bool), Rc<Layout>>>,
    /// The column names `Layout`s are made of, per side.
    source_columns: [Vec<String>; 3],
    target_columns: [Vec<String>; 3],
    /// Whether the fill lookup takes the new row and its old version's tid.
    pub fill_takes_row: bool,
    pub key_types: Vec<KeyType>,
    /// The source key columns' collations (for hashing keys, see `lock_keys`).
    key_collations: Vec<Oid>,
    pub row_types: Vec<KeyType>,
    /// Whether the rule has expressions its definer wrote (`where`, `values`): its statements
    /// are prepared and run under data_sync's pinned `search_path`, never the writer's.
    pinned: bool,
    /// Whether a source key maintains at most one target row: the match columns are unique in
    /// the target, or `latest_by` picks one (rows tied for latest are rare; a conflict on a tied
    /// row may then go uncounted in the log, never unhandled).
    pub one_target_row_per_key: bool,
    /// The rule's prepared statements, by `Statement`.
    plans: RefCell<[Option<Plan>; Statement::COUNT]>,
    /// Prepared statements run for the rule that are not its own (the queue's insert, an
    /// entity's key look-up), by name.
    other_plans: RefCell<HashMap<String, Plan>>,
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

fn drop_stale_runtimes() {
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
            r.retain(|_, rt| {
                let partitions = rt.partition_layouts.borrow();
                !stale.iter().any(|&o| {
                    o.to_u32() == rt.source.oid
                        || o.to_u32() == rt.target.oid
                        || partitions.contains_key(&(o, true))
                        || partitions.contains_key(&(o, false))
                })
            });
        }
    });
}

/// The runtime of an enabled rule, built on first use. `None` when the rule is gone or disabled
/// (a trigger left behind by a concurrent change finds nothing to do).
pub fn runtime(name: &str) -> Option<Rc<RuleRuntime>> {
    drop_stale_runtimes();
    if let Some(rt) = RUNTIMES.with(|r| r.borrow().get(name).cloned()) {
        return Some(rt);
    }
    // Catalog look-ups and planning under the pinned path: this may run inside a write, under
    // the writer's search_path, as another rule's target owner (a chain).
    let rt = with_pinned_search_path(|| {
        let rule = registry::installed_rule(name)?;
        if !rule.enabled {
            return None;
        }
        build(rule)
    });
    let rt = Rc::new(rt?);
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
    if rule.kind == data_sync_core::rules::RuleKind::Append
        && !plan.sql(Statement::FlushRow).is_some_and(|sql| compiles(sql, &plan.row_types))
    {
        plan.remove(Statement::FlushRow);
    }
    let fill_takes_row = planner.fill_takes_row();
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
    let key_collations =
        rule.source_key.iter().map(|c| source.column(c).map(|c| Oid::from(c.collation))).collect::<Option<Vec<_>>>()?;
    let row_types = type_facts(&plan.row_types);
    let names = |list: &[&str]| list.iter().map(|c| c.to_string()).collect::<Vec<String>>();
    let source_columns = [
        rule.source_key.clone(),
        planner.row_columns(),
        names(&rule.watched_source_columns().into_iter().collect::<Vec<_>>()),
    ];
    // append rules have no match keys and fill nothing
    let target_columns = [
        rule.matches.iter().map(|p| p.target.clone()).collect(),
        rule.copies.iter().map(|p| p.target.clone()).collect(),
        planner.refill_columns(),
    ];
    let by_table = |t: &TableInfo, c: &String| t.column(c).map(|c| c.attnum as i32);
    let source_layout = Rc::new(Layout::of(&source_columns, |c| by_table(&source, c))?);
    let target_layout = Rc::new(Layout::of(&target_columns, |c| by_table(&target, c))?);
    let target_keys: Vec<&str> = rule.matches.iter().map(|p| p.target.as_str()).collect();
    let one_target_row_per_key = rule.latest_by.is_some()
        || target.unique_keys.iter().any(|uk| !uk.is_empty() && uk.iter().all(|c| target_keys.contains(&c.as_str())));
    let owner = |oid: u32| catalog::owner_of(Oid::from(oid));
    let log_owner = Spi::get_one::<Oid>(
        "SELECT relowner FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) 'data_sync.sync_log'::pg_catalog.regclass",
    )
    .ok()??;
    let pinned = rule.where_clause.is_some() || !rule.values.is_empty();
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
        source_layout,
        target_layout,
        partition_layouts: RefCell::new(HashMap::new()),
        source_columns,
        target_columns,
        fill_takes_row,
        key_types,
        key_collations,
        row_types,
        pinned,
        one_target_row_per_key,
        plans: RefCell::new([const { None }; Statement::COUNT]),
        other_plans: RefCell::new(HashMap::new()),
    })
}

/// Key lock buckets per rule (see `RuleRuntime::lock_keys`).
const KEY_BUCKETS: u32 = 256;

/// `locktag_field4` of data_sync's advisory locks: SQL's advisory lock functions use 1 and 2, so
/// these never meet an application's.
const LOCK_SPACE: u16 = 0xD5;

/// Which table of its rule a trigger function serves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

impl RuleRuntime {
    /// Where the rule's columns are in the relation a trigger fired on, after making sure the
    /// trigger is one data_sync installed for this rule: named as data_sync names it, for this
    /// side, on the rule's table or one of its partitions (`stands_for`). Anything else
    /// is refused: the trigger
    /// functions are callable by anyone who may create a trigger, and the rule name is only an
    /// argument; acting for another table would write the rule's target, as its owner, with
    /// values of the caller's choosing, or read its source for them.
    ///
    /// `row`: the function is a row trigger function (it reads the row), else a statement trigger
    /// function; a trigger of the other level is refused (a row function fired for a statement
    /// has no row to read).
    pub fn layout(&self, data: &pg_sys::TriggerData, side: Side, row: bool) -> Rc<Layout> {
        unsafe {
            let rel = data.tg_relation;
            let relid = (*rel).rd_id;
            let name = std::ffi::CStr::from_ptr((*data.tg_trigger).tgname);
            let expected = if side == Side::Source { 's' } else { 't' };
            let (table, own, columns) = match side {
                Side::Source => (self.source.oid, &self.source_layout, &self.source_columns),
                Side::Target => (self.target.oid, &self.target_layout, &self.target_columns),
            };
            let fired_for_row = data.tg_event & pg_sys::TRIGGER_EVENT_ROW != 0;
            let fired_after = data.tg_event & pg_sys::TRIGGER_EVENT_TIMINGMASK == pg_sys::TRIGGER_EVENT_AFTER;
            // only the fill (`tf`; `tfi`, `tfu` of earlier builds) runs BEFORE
            let prefix = format!("data_sync_{}_", self.rule.name);
            let suffix = name.to_bytes().strip_prefix(prefix.as_bytes()).unwrap_or_default();
            let fill = [&b"tf"[..], b"tfi", b"tfu"]
                .iter()
                .any(|f| suffix == *f || suffix.starts_with(&[f, &b"_"[..]].concat()));
            let before_allowed = row && side == Side::Target && fill;
            if fired_for_row != row || !(fired_after || before_allowed) {
                self.refuse(name, rel);
            }
            if data_sync_core::plan::trigger_side(&self.rule.name, name.to_bytes()) != Some(expected) {
                self.refuse(name, rel);
            }
            if relid.to_u32() == table {
                return own.clone();
            }
            if let Some(found) = self.partition_layouts.borrow().get(&(relid, side == Side::Source)) {
                return found.clone();
            }
            if !stands_for(rel, Oid::from(table)) {
                self.refuse(name, rel);
            }
            let desc = pgrx::PgTupleDesc::from_pg_unchecked((*rel).rd_att);
            let attnum = |column: &String| {
                desc.iter().find(|a| !a.is_dropped() && a.name() == column.as_str()).map(|a| a.attnum as i32)
            };
            let Some(mut layout) = Layout::of(columns, attnum) else { self.refuse(name, rel) };
            if side == Side::Target {
                let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
                let table_desc = pg_sys::lookup_rowtype_tupdesc_copy(Oid::from(self.target.row_type_oid), -1);
                let partition_desc = pg_sys::CreateTupleDescCopy((*rel).rd_att);
                let map = pg_sys::convert_tuples_by_name(partition_desc, table_desc);
                pg_sys::MemoryContextSwitchTo(old);
                layout.to_table = Some((map, table_desc));
            }
            let layout = Rc::new(layout);
            self.partition_layouts.borrow_mut().insert((relid, side == Side::Source), layout.clone());
            layout
        }
    }

    fn refuse(&self, trigger: &std::ffi::CStr, rel: pg_sys::Relation) -> ! {
        let table = unsafe {
            let name = pg_sys::get_rel_name((*rel).rd_id);
            if name.is_null() {
                "?".into()
            } else {
                std::ffi::CStr::from_ptr(name).to_string_lossy().into_owned()
            }
        };
        pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "data_sync: trigger \"{}\" on table \"{table}\" is not a trigger of rule \"{}\"",
                trigger.to_string_lossy(),
                self.rule.name
            ),
            "data_sync",
        )
        .set_hint("data_sync's trigger functions act only in the triggers data_sync installs on a rule's own tables.")
        .report(PgLogLevel::ERROR);
        unreachable!("ereport(ERROR) does not return")
    }

    /// Runs one of the rule's planned statements (prepared on first use) and returns the number
    /// of rows it processed. Must be called inside an SPI connection. The rule must have the
    /// statement (see `RulePlan::sql`).
    pub fn execute(&self, statement: Statement, arg_types: &[Oid], args: &[Datum], nulls: &[bool]) -> u64 {
        let cached = self.plans.borrow()[statement as usize].as_ref().map(|p| p.0);
        let plan = cached.unwrap_or_else(|| {
            let sql = self.plan.sql(statement).expect("the rule has the statement it runs");
            let plan = with_pinned_search_path(|| prepare(sql, arg_types));
            self.plans.borrow_mut()[statement as usize] = Some(Plan(plan));
            plan
        });
        if self.pinned {
            // A rule's own expressions are re-analysed when the plan is revalidated under another
            // search_path; run them under the one they were checked under at load.
            return with_pinned_search_path(|| {
                self.execute_plan(plan, statement.name(), statement.on_latest_snapshot(), args, nulls)
            });
        }
        self.execute_plan(plan, statement.name(), statement.on_latest_snapshot(), args, nulls)
    }

    /// Runs a statement for the rule that is not one of its own (prepared on first use, kept
    /// under `which`), like `execute`.
    pub fn execute_other(&self, which: &str, sql: &str, arg_types: &[Oid], args: &[Datum], nulls: &[bool]) -> u64 {
        let cached = self.other_plans.borrow().get(which).map(|p| p.0);
        let plan = cached.unwrap_or_else(|| {
            let plan = with_pinned_search_path(|| prepare(sql, arg_types));
            self.other_plans.borrow_mut().insert(which.to_string(), Plan(plan));
            plan
        });
        if self.pinned {
            return with_pinned_search_path(|| self.execute_plan(plan, which, false, args, nulls));
        }
        self.execute_plan(plan, which, false, args, nulls)
    }

    /// `latest`: see `Statement::on_latest_snapshot`.
    fn execute_plan(&self, plan: pg_sys::SPIPlanPtr, which: &str, latest: bool, args: &[Datum], nulls: &[bool]) -> u64 {
        let nulls: Vec<std::ffi::c_char> = nulls.iter().map(|&n| if n { b'n' as _ } else { b' ' as _ }).collect();
        unsafe {
            let rc = if latest && pg_sys::XactIsoLevel >= pg_sys::XACT_REPEATABLE_READ as i32 {
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

    /// Serializes the two writes that can each miss the other in READ COMMITTED: a source row
    /// appearing under a key (INSERT, or a key changed to it), whose propagation looks for target
    /// rows of the key, and a target row getting the key (INSERT, re-parenting, entering the
    /// rule's scope), whose fill looks for the source row. Each only sees what the other
    /// committed, so both could find nothing. Both lock the key first, until the transaction ends
    /// (`exclusive`: the source side, in a mode that conflicts only with the fills' shared one), so
    /// one waits for the other and then sees its row. Keys are hashed into `KEY_BUCKETS` locks per rule, taken in order: a bulk
    /// statement takes at most that many.
    pub fn lock_keys(&self, keys: &[Vec<Datum>], exclusive: bool) {
        let mut buckets: Vec<u32> = keys.iter().map(|k| self.bucket(k)).collect();
        buckets.sort_unstable();
        buckets.dedup();
        let rule = self.rule.name.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193));
        // ROW EXCLUSIVE conflicts with SHARE but not with itself: source writers do not wait for
        // each other, fills do not wait for each other, each waits for the other kind. Fills of a
        // `latest_by` rule do wait for each other (SHARE ROW EXCLUSIVE conflicts with itself and
        // with ROW EXCLUSIVE): which row of a key is the newest depends on the other fills' rows.
        let mode = match (exclusive, self.rule.latest_by.is_some()) {
            (true, _) => pg_sys::RowExclusiveLock,
            (false, true) => pg_sys::ShareRowExclusiveLock,
            (false, false) => pg_sys::ShareLock,
        };
        for bucket in buckets {
            let tag = pg_sys::LOCKTAG {
                locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
                locktag_field2: rule,
                locktag_field3: bucket,
                locktag_field4: LOCK_SPACE,
                locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
                locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
            };
            unsafe { pg_sys::LockAcquire(&tag, mode as i32, false, false) };
        }
    }

    /// The lock bucket of a source key: its values hashed with their types' hash functions (under
    /// the key columns' collations, so equal keys share a bucket whatever their bytes).
    fn bucket(&self, key: &[Datum]) -> u32 {
        let mut hash: u32 = 0;
        for ((&value, kt), &collation) in key.iter().zip(&self.key_types).zip(&self.key_collations) {
            let part = unsafe {
                let entry = pg_sys::lookup_type_cache(kt.oid, pg_sys::TYPECACHE_HASH_PROC_FINFO as i32);
                if (*entry).hash_proc_finfo.fn_oid == pg_sys::InvalidOid {
                    0 // no hash function: every key of the rule in one bucket
                } else {
                    pg_sys::FunctionCall1Coll(&mut (*entry).hash_proc_finfo, collation, value).value() as u32
                }
            };
            hash = hash.wrapping_mul(31).wrapping_add(part);
        }
        hash % KEY_BUCKETS
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
        self.run_keyed(Statement::FlushOne, Statement::FlushMany, keys)
    }

    /// Propagates one source row from its values (`row_attnums` of the row trigger's NEW
    /// tuple) instead of reading it again. Returns the number of target rows changed.
    pub fn flush_row(&self, row: &SourceRow) -> u64 {
        let types: Vec<Oid> = self.row_types.iter().map(|t| t.oid).collect();
        self.execute(Statement::FlushRow, &types, &row.values, &row.nulls)
    }

    pub fn conflicts_row(&self, row: &SourceRow) -> Option<u64> {
        self.plan.sql(Statement::ConflictsRow)?;
        let types: Vec<Oid> = self.row_types.iter().map(|t| t.oid).collect();
        if self.execute(Statement::ConflictsRow, &types, &row.values, &row.nulls) == 0 {
            return Some(0);
        }
        Some(unsafe { spi::count_of_result() })
    }

    /// Locks the source rows of these keys FOR SHARE (re-syncs, before `flush`).
    pub fn lock_sources(&self, keys: &[Vec<Datum>]) {
        if self.plan.sql(Statement::LockOne).is_some() {
            self.run_keyed(Statement::LockOne, Statement::LockMany, keys);
        }
    }

    /// Last-write-wins rules: how many target rows of these source rows are newer than the
    /// source and were left alone.
    pub fn conflicts(&self, keys: &[Vec<Datum>]) -> Option<u64> {
        self.plan.sql(Statement::ConflictsOne)?;
        Some(self.count_keyed(Statement::ConflictsOne, Statement::ConflictsMany, keys))
    }

    /// Bidirectional rules: carries the maintained target rows of these match keys back to
    /// their source rows. Returns the number of source rows changed.
    pub fn flush_reverse(&self, keys: &[Vec<Datum>]) -> u64 {
        if self.plan.sql(Statement::ReverseOne).is_none() {
            return 0;
        }
        self.run_keyed(Statement::ReverseOne, Statement::ReverseMany, keys)
    }

    pub fn reverse_conflicts(&self, keys: &[Vec<Datum>]) -> Option<u64> {
        self.plan.sql(Statement::ReverseConflictsOne)?;
        Some(self.count_keyed(Statement::ReverseConflictsOne, Statement::ReverseConflictsMany, keys))
    }

    /// Runs the one-key or the many-key (arrays) form of a statement.
    fn run_keyed(&self, one: Statement, many: Statement, keys: &[Vec<Datum>]) -> u64 {
        match keys.len() {
            0 => 0,
            1 => self.execute(one, &self.key_scalar_types(), &keys[0], &vec![false; keys[0].len()]),
            _ => {
                let arrays = self.key_arrays(keys);
                self.execute(many, &self.key_array_types(), &arrays, &vec![false; arrays.len()])
            }
        }
    }

    /// Re-fills the target rows at `tids` (re-parented by one statement) from the source rows
    /// of their new match `keys` (one per row). Returns the number of target rows changed.
    pub fn refill(&self, keys: &[Vec<Datum>], tids: &[(pg_sys::ItemPointerData, Oid)]) -> u64 {
        let (types, args) = self.refill_args(keys, tids);
        self.execute(Statement::Refill, &types, &args, &vec![false; args.len()])
    }

    /// Last-write-wins rules: how many of those rows `refill` skipped as newer.
    pub fn refill_conflicts(&self, keys: &[Vec<Datum>], tids: &[(pg_sys::ItemPointerData, Oid)]) -> Option<u64> {
        self.plan.sql(Statement::RefillConflicts)?;
        let (types, args) = self.refill_args(keys, tids);
        if self.execute(Statement::RefillConflicts, &types, &args, &vec![false; args.len()]) == 0 {
            return Some(0);
        }
        Some(unsafe { spi::count_of_result() })
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
    fn count_keyed(&self, one: Statement, many: Statement, keys: &[Vec<Datum>]) -> u64 {
        if keys.is_empty() || self.run_keyed(one, many, keys) == 0 {
            return 0;
        }
        unsafe { spi::count_of_result() }
    }

    /// Text form of one source key, for the log: `42`, or `(7,abc)` for composite keys.
    pub fn key_text(&self, key: &[Datum]) -> String {
        key_display(&self.key_parts(key))
    }

    /// The keys as JSON for the retry queue: one array of text values per row, written under
    /// fixed settings (`with_canonical_text`) so that a processor under other settings reads back
    /// the same values.
    pub fn keys_json(&self, keys: &[Vec<Datum>]) -> serde_json::Value {
        spi::with_canonical_text(|| keys.iter().map(|k| serde_json::Value::from(self.key_parts(k))).collect())
    }

    /// The inverse of `keys_json`: key values read back from their text form (queue items,
    /// re-sync bounds). The type's input function (a domain's CHECK, a composite's fields) is
    /// code of the key table's side, so it runs as that table's owner (the source's, or the
    /// target's for a way back), never as the processing role, which may be a superuser.
    /// `canonical`: the text was written by `keys_json`; otherwise it is the caller's, under the
    /// session's settings.
    pub fn keys_from_text(&self, keys: &[&Vec<String>], reverse: bool, canonical: bool) -> Vec<Vec<Datum>> {
        let owner = if reverse { self.target_owner } else { self.source_owner };
        if canonical {
            return spi::with_canonical_text(|| spi::as_role(owner, || self.parse_keys(keys)));
        }
        spi::as_role(owner, || self.parse_keys(keys))
    }

    fn parse_keys(&self, keys: &[&Vec<String>]) -> Vec<Vec<Datum>> {
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

/// Moves each noted row version to the newest version of its row: another rule filling the same
/// re-parented rows has updated them since they were noted (a new version, at another tid).
pub fn follow_updates(tids: &mut [(pg_sys::ItemPointerData, Oid)]) {
    unsafe {
        pg_sys::CommandCounterIncrement();
        for (tid, table) in tids.iter_mut() {
            let rel = pg_sys::table_open(*table, pg_sys::AccessShareLock as i32);
            if (*rel).rd_tableam.is_null() {
                // a foreign-table partition: no row versions to follow
                pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
                continue;
            }
            let scan = pg_sys::table_beginscan_tid(rel, pg_sys::GetLatestSnapshot());
            pg_sys::table_tuple_get_latest_tid(scan, tid);
            pg_sys::table_endscan(scan);
            pg_sys::table_close(rel, pg_sys::NoLock as i32);
        }
    }
}

/// Whether `rel` stands for `table` when a trigger fires: a partition of it at any depth.
unsafe fn stands_for(rel: pg_sys::Relation, table: Oid) -> bool {
    let relid = (*rel).rd_id;
    with_spi(|| {
        Spi::get_one_with_args::<bool>(
            "SELECT $2 OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT relid FROM pg_catalog.pg_partition_ancestors($1)))",
            &[relid.into(), table.into()],
        ) == Ok(Some(true))
    })
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

/// Runs `f`, re-raising any error with the rule and the target named (SQLSTATE, detail and
/// hint kept), so a failing write says which propagation failed and why. The transaction is
/// aborting anyway; this only adds context.
///
/// The error was raised as a table's owner, so its DETAIL may show what the writer cannot read
/// (`Failing row contains (…)`, `Key (…)=(…) already exists`): it is kept only for a writer who
/// may read both tables, and goes to the server log otherwise.
pub fn naming_rule<T>(rt: &RuleRuntime, what: &str, f: impl FnOnce() -> T) -> T {
    let rule = rt.rule.name.as_str();
    let target = rt.rule.target.to_string();
    // (the role the write runs as: inside `f` the user is switched, and not switched back on error)
    let writer = unsafe { pg_sys::GetUserId() };
    let tables = [rt.source.oid, rt.target.oid];
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
                // SELECT on the table, and no row-level security hiding rows from the writer (the
                // row in the DETAIL may be one of those)
                let reads = |table: u32| unsafe {
                    pg_sys::pg_class_aclcheck(Oid::from(table), writer, pg_sys::ACL_SELECT as pg_sys::AclMode)
                        == pg_sys::AclResult::ACLCHECK_OK
                        && pg_sys::check_enable_rls(Oid::from(table), writer, true)
                            != pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
                };
                if tables.iter().all(|&t| reads(t)) {
                    error = error.set_detail(detail.to_string());
                } else {
                    pg_sys::panic::ErrorReport::new(
                        PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
                        format!("data_sync: rule \"{rule}\": detail withheld from the writing role: {detail}"),
                        "data_sync",
                    )
                    .report(PgLogLevel::LOG_SERVER_ONLY);
                }
            }
            if let Some(hint) = report.hint() {
                error = error.set_hint(hint.to_string());
            }
            error.report(PgLogLevel::ERROR);
            unreachable!("ereport(ERROR) does not return")
        })
        .execute()
}
