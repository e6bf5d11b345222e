//! The statements a rule's plan consists of, and what each one is (a leaf below `plan`).

/// One of a rule's planned statements. This is the one table of them: what each is for, its
/// parameters, whether it writes, which snapshot it runs on, whether `load_rules` prepares it,
/// and how `explain` names it. The runtime's plan cache is indexed by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Statement {
    /// Propagates from one source row (`Params::Key`).
    FlushOne,
    /// Propagates from many source rows (`Params::KeyArrays`).
    FlushMany,
    /// Looks up the copied values for one target row, in the target's BEFORE trigger
    /// (`Params::Fill`).
    FillLookup,
    /// Counts target rows that differ from their source row.
    Check,
    /// First batch of source keys for a full re-sync, in key order (`Params::Batch`).
    KeysFirst,
    /// Next batch after a key (`Params::BatchAfter`).
    KeysAfter,
    /// Last-write-wins rules: how many target rows a propagation skipped because their timestamp
    /// is newer (`Params::Key`, `Params::KeyArrays`).
    ConflictsOne,
    ConflictsMany,
    /// Bidirectional rules: carry maintained target rows back to their source row (the target's
    /// match values: `Params::Key`, `Params::KeyArrays`), and count the rows skipped as newer.
    ReverseOne,
    ReverseMany,
    ReverseConflictsOne,
    ReverseConflictsMany,
    /// Propagates from one source row given as parameters, the row trigger's NEW values
    /// (`Params::Row`); copy rules, and append rules whose expressions read it as they read
    /// the table.
    FlushRow,
    /// `ConflictsOne` of the row given as parameters (`Params::Row`).
    ConflictsRow,
    /// Re-syncs limited to a key range (single-column keys only): first batch from a key, next
    /// batch after a key, both up to a key (`Params::Range`).
    KeysRangeFirst,
    KeysRangeAfter,
    /// How many source rows a re-sync visits, for its progress (`Params::Count`).
    KeysCount,
    /// Lock the source rows of some keys `FOR SHARE` before a re-sync, re-fill or queued
    /// propagation reads them (`Params::Key`, `Params::KeyArrays`).
    LockOne,
    LockMany,
    /// Re-fills target rows re-parented by one statement: `FlushMany` limited to those rows
    /// (`Params::Refill`), and the rows it skipped as newer.
    Refill,
    RefillConflicts,
}

/// The parameters a statement takes, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Params {
    /// `$1..$n`: one value per key column (source key, or a target's match values).
    Key,
    /// `$1..$n`: one array per key column.
    KeyArrays,
    /// `$1..$n`: the source row's values (`RulePlan::row_types`).
    Row,
    /// `Key`, then, if `Planner::fill_takes_row`, the new target row and its old version's tid.
    Fill,
    /// `KeyArrays` of the new match keys, then the rows' tids and tables.
    Refill,
    /// `$1`: batch size.
    Batch,
    /// `$1`: batch size, `$2..`: the last key seen.
    BatchAfter,
    /// `$1`: batch size, `$2`: lower bound (NULL: none; after: the last key seen), `$3`: upper
    /// bound (NULL: none).
    Range,
    /// Single-column keys: `$1`, `$2`, the optional bounds of a range; otherwise none.
    Count,
    /// None.
    Nothing,
}

impl Statement {
    pub const COUNT: usize = 21;

    /// Every statement, in declaration order.
    pub const ALL: [Statement; Statement::COUNT] = [
        Statement::FlushOne,
        Statement::FlushMany,
        Statement::FillLookup,
        Statement::Check,
        Statement::KeysFirst,
        Statement::KeysAfter,
        Statement::ConflictsOne,
        Statement::ConflictsMany,
        Statement::ReverseOne,
        Statement::ReverseMany,
        Statement::ReverseConflictsOne,
        Statement::ReverseConflictsMany,
        Statement::FlushRow,
        Statement::ConflictsRow,
        Statement::KeysRangeFirst,
        Statement::KeysRangeAfter,
        Statement::KeysCount,
        Statement::LockOne,
        Statement::LockMany,
        Statement::Refill,
        Statement::RefillConflicts,
    ];

    /// The name it has in errors (`… flush_one failed`).
    pub fn name(self) -> &'static str {
        match self {
            Statement::FlushOne => "flush_one",
            Statement::FlushMany => "flush_many",
            Statement::FillLookup => "fill_lookup",
            Statement::Check => "check",
            Statement::KeysFirst => "keys_first",
            Statement::KeysAfter => "keys_after",
            Statement::ConflictsOne => "conflicts_one",
            Statement::ConflictsMany => "conflicts_many",
            Statement::ReverseOne => "reverse_one",
            Statement::ReverseMany => "reverse_many",
            Statement::ReverseConflictsOne => "reverse_conflicts_one",
            Statement::ReverseConflictsMany => "reverse_conflicts_many",
            Statement::FlushRow => "flush_row",
            Statement::ConflictsRow => "conflicts_row",
            Statement::KeysRangeFirst => "keys_range_first",
            Statement::KeysRangeAfter => "keys_range_after",
            Statement::KeysCount => "keys_count",
            Statement::LockOne => "lock_one",
            Statement::LockMany => "lock_many",
            Statement::Refill => "refill",
            Statement::RefillConflicts => "refill_conflicts",
        }
    }

    pub fn params(self) -> Params {
        match self {
            Statement::FlushOne
            | Statement::ConflictsOne
            | Statement::ReverseOne
            | Statement::ReverseConflictsOne
            | Statement::LockOne => Params::Key,
            Statement::FlushMany
            | Statement::ConflictsMany
            | Statement::ReverseMany
            | Statement::ReverseConflictsMany
            | Statement::LockMany => Params::KeyArrays,
            Statement::FlushRow | Statement::ConflictsRow => Params::Row,
            Statement::FillLookup => Params::Fill,
            Statement::Refill | Statement::RefillConflicts => Params::Refill,
            Statement::KeysFirst => Params::Batch,
            Statement::KeysAfter => Params::BatchAfter,
            Statement::KeysRangeFirst | Statement::KeysRangeAfter => Params::Range,
            Statement::KeysCount => Params::Count,
            Statement::Check => Params::Nothing,
        }
    }

    /// Whether it writes a table (the others read, count or lock).
    pub fn writes(self) -> bool {
        matches!(
            self,
            Statement::FlushOne
                | Statement::FlushMany
                | Statement::FlushRow
                | Statement::Refill
                | Statement::ReverseOne
                | Statement::ReverseMany
        )
    }

    /// Whether, under REPEATABLE READ and SERIALIZABLE, it runs on the latest snapshot
    /// cross-checked against the transaction's (as a foreign-key check does): every statement that
    /// reads or writes the rule's other table on behalf of a write. A propagation looks for rows
    /// of the other table that others may have committed since the transaction's snapshot (and
    /// touching one of those fails with a serialization error, 40001); its conflict count must
    /// judge "newer" on the rows it saw (`lww_snapshot` spec); a fill or re-fill must copy the
    /// source row as committed, since that row's own propagation ran before the target row
    /// existed (`rr_fill` spec); the source locks taken before a re-fill, re-sync or queued
    /// propagation lock the rows they then read. Only the re-sync's key scans and `check` read
    /// on the transaction's snapshot, as any query of the caller's would.
    pub fn on_latest_snapshot(self) -> bool {
        !matches!(
            self,
            Statement::Check
                | Statement::KeysFirst
                | Statement::KeysAfter
                | Statement::KeysRangeFirst
                | Statement::KeysRangeAfter
                | Statement::KeysCount
        )
    }

    /// `explain`'s name for the step, for the statements it shows, in its order.
    pub const EXPLAINED: [(Statement, &'static str); 12] = [
        (Statement::FlushOne, "propagate one source row"),
        (Statement::FlushMany, "propagate many source rows"),
        (Statement::FillLookup, "fill a target row"),
        (Statement::Check, "check"),
        (Statement::KeysFirst, "sync_all first batch"),
        (Statement::KeysAfter, "sync_all next batch"),
        (Statement::ConflictsOne, "count conflicts of one source row"),
        (Statement::ConflictsMany, "count conflicts of many source rows"),
        (Statement::ReverseOne, "propagate one target row back"),
        (Statement::ReverseMany, "propagate many target rows back"),
        (Statement::ReverseConflictsOne, "count conflicts of one target row"),
        (Statement::ReverseConflictsMany, "count conflicts of many target rows"),
    ];

    /// The statements `load_rules` prepares to refuse a rule whose expressions, types or
    /// privileges do not fit, in the order they are tried (the first error is reported). The
    /// others read key columns only (`Keys*`) or are built from statements checked here.
    pub const CHECKED_AT_LOAD: [Statement; 13] = [
        Statement::FlushOne,
        Statement::FlushRow,
        Statement::FlushMany,
        Statement::FillLookup,
        Statement::LockOne,
        Statement::LockMany,
        Statement::Check,
        Statement::ConflictsOne,
        Statement::ConflictsMany,
        Statement::ReverseOne,
        Statement::ReverseMany,
        Statement::ReverseConflictsOne,
        Statement::ReverseConflictsMany,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_table_is_complete() {
        for (i, statement) in Statement::ALL.iter().enumerate() {
            assert_eq!(*statement as usize, i, "{statement:?}");
        }
        let names: std::collections::BTreeSet<&str> = Statement::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names.len(), Statement::COUNT);
        // the snapshot choice: all but the re-sync's key scans and `check`
        let own: Vec<Statement> = Statement::ALL.into_iter().filter(|s| !s.on_latest_snapshot()).collect();
        assert_eq!(
            own,
            [
                Statement::Check,
                Statement::KeysFirst,
                Statement::KeysAfter,
                Statement::KeysRangeFirst,
                Statement::KeysRangeAfter,
                Statement::KeysCount,
            ]
        );
    }
}
