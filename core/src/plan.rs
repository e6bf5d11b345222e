//! Stage 3: the SQL each rule runs. Every identifier is quoted, every operator and function is
//! schema-qualified, so neither the caller's `search_path` nor look-alike objects can change
//! what a statement means.
//!
//! Scoping of the optional `where` predicate: it is written over target columns, so in every
//! statement the target is the only relation whose column names are visible unqualified; the
//! source values come through a derived table whose columns are named `data_sync$k1`,
//! `data_sync$v1`, … and cannot clash with a user's column.

use crate::catalog::{ColumnInfo, TableInfo};
use crate::sql::{ident, literal};
pub use crate::statement::{Params, Statement};
use crate::validate::Rule;

/// Alias of the one-row or many-row subquery of source values (see `Planner::src`).
const SRC: &str = "data_sync$src";
/// The source row's last-write-wins timestamp inside `SRC`.
const TS: &str = "\"data_sync$ts\"";

fn k(i: usize) -> String {
    format!("\"data_sync$k{}\"", i + 1)
}

fn v(i: usize) -> String {
    format!("\"data_sync$v{}\"", i + 1)
}

/// `OPERATOR("schema".=)` for a column's type.
fn eq_op(col: &ColumnInfo) -> String {
    op(col, "=")
}

/// `OPERATOR("schema".<symbol>)`, from the schema of the type's equality operator.
fn op(col: &ColumnInfo, symbol: &str) -> String {
    format!("OPERATOR({}.{symbol})", ident(col.eq_schema.as_deref().unwrap_or("pg_catalog")))
}

/// `a IS DISTINCT FROM b`, spelled with the type's own qualified `=` (`IS DISTINCT FROM`
/// would look `=` up through `search_path`).
pub fn distinct(a: &str, b: &str, col: &ColumnInfo) -> String {
    format!("(({a} {} {b}) IS NOT TRUE AND ({a} IS NOT NULL OR {b} IS NOT NULL))", eq_op(col))
}

/// Everything a rule executes, ready for SPI. Parameters are described next to each statement.
/// The SQL of a rule's statements (only those the rule has: an append rule has no fill, check
/// or re-sync statements; only bidirectional rules go back; only last-write-wins rules count
/// conflicts), and the parameter types they share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulePlan {
    statements: [Option<String>; Statement::COUNT],
    /// Type OIDs of `Params::Row`: keys, copied values, timestamp, of the source row.
    pub row_types: Vec<u32>,
    /// Type OIDs of the source key columns, in parameter order.
    pub key_types: Vec<u32>,
}

impl RulePlan {
    fn new(row_types: Vec<u32>, key_types: Vec<u32>) -> RulePlan {
        RulePlan { statements: [const { None }; Statement::COUNT], row_types, key_types }
    }

    fn with(mut self, statement: Statement, sql: impl Into<Option<String>>) -> RulePlan {
        self.statements[statement as usize] = sql.into();
        self
    }

    /// The statement's SQL, if the rule has it.
    pub fn sql(&self, statement: Statement) -> Option<&str> {
        self.statements[statement as usize].as_deref()
    }

    /// Forgets a statement the server cannot prepare for this rule (see the runtime's
    /// `FlushRow` of append rules).
    pub fn remove(&mut self, statement: Statement) {
        self.statements[statement as usize] = None;
    }
}

/// One trigger of a rule: its name suffix, `timing event` clause, what it fires on, level and
/// function.
#[derive(Debug, Clone)]
struct TriggerSpec {
    suffix: &'static str,
    event: String,
    insert: bool,
    update: bool,
    delete: bool,
    /// UPDATE filtered by an `UPDATE OF` column list
    filtered: bool,
    level: &'static str,
    function: &'static str,
}

pub struct Planner<'a> {
    pub rule: &'a Rule,
    pub source: &'a TableInfo,
    pub target: &'a TableInfo,
}

impl<'a> Planner<'a> {
    fn src_col(&self, name: &str) -> &ColumnInfo {
        self.source.column(name).expect("validated rule: source column exists")
    }

    /// The alias of the subquery of source values: `"data_sync$src"`, unless a table of the rule
    /// is named that (the target is referred to by its bare name, so they would clash).
    fn src(&self) -> String {
        let mut alias = SRC.to_string();
        while alias == self.source.name.name || alias == self.target.name.name {
            alias.push('$');
        }
        ident(&alias)
    }

    fn tgt(&self, column: &str) -> String {
        format!("{}.{}", self.target.name.sql(), ident(column))
    }

    /// `(SELECT s.k.., s.v.. [, s.ts] FROM source AS s <from_extra> WHERE <filter>) AS "data_sync$src"(k.., v..)`
    fn source_rows(&self, from_extra: &str, filter: &str) -> String {
        self.source_rows_as("s", from_extra, filter)
    }

    fn source_rows_as(&self, alias: &str, from_extra: &str, filter: &str) -> String {
        let src = self.src();
        let rule = self.rule;
        let mut cols: Vec<String> =
            rule.matches.iter().chain(&rule.copies).map(|p| format!("{alias}.{}", ident(&p.source))).collect();
        let mut names: Vec<String> = (0..rule.matches.len()).map(k).chain((0..rule.copies.len()).map(v)).collect();
        if let Some((source_ts, _)) = &rule.timestamps {
            cols.push(format!("{alias}.{}", ident(source_ts)));
            names.push(TS.to_string());
        }
        let filter = if filter.is_empty() { String::new() } else { format!(" WHERE {filter}") };
        format!(
            "(SELECT {} FROM {from_extra}{} AS {alias}{filter}) AS {src}({})",
            cols.join(", "),
            self.source.name.sql(),
            names.join(", ")
        )
    }

    /// One source row given as parameters instead of read from the source: `$1..` are the key
    /// values, then the copied values, then the timestamp (`row_types` gives their types). A
    /// single-row write propagates from the row trigger's NEW values, as a hand-written trigger
    /// would, without reading the source row again.
    fn param_row(&self) -> String {
        let src = self.src();
        let rule = self.rule;
        let mut names: Vec<String> = (0..rule.matches.len()).map(k).chain((0..rule.copies.len()).map(v)).collect();
        if rule.timestamps.is_some() {
            names.push(TS.to_string());
        }
        let params: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
        format!("(SELECT {}) AS {src}({})", params.join(", "), names.join(", "))
    }

    /// A statement over `param_row` with the parameters written in place of the one-row
    /// subquery: `UPDATE t SET c = $2 WHERE t.k = $1 …` plans as a plain index scan of the
    /// target, like a hand-written trigger's statement, instead of a join with a one-row result.
    fn inline_params(&self, sql: &str) -> String {
        let src = self.src();
        let rule = self.rule;
        let row = self.param_row();
        let mut out = sql.replace(&format!("\nFROM {row}"), "").replace(&format!(", {row}"), "");
        let mut names: Vec<String> = (0..rule.matches.len()).map(k).chain((0..rule.copies.len()).map(v)).collect();
        if rule.timestamps.is_some() {
            names.push(TS.to_string());
        }
        // longest names first, so that k1 does not replace the start of k10
        let mut numbered: Vec<(usize, String)> = names.into_iter().enumerate().collect();
        numbered.sort_by_key(|(_, n)| std::cmp::Reverse(n.len()));
        for (i, name) in numbered {
            out = out.replace(&format!("{src}.{name}"), &format!("${}", i + 1));
        }
        out
    }

    /// The source columns `param_row` takes, in parameter order (append rules: every column of
    /// the source, which their `values` and `where` may read).
    pub fn row_columns(&self) -> Vec<String> {
        let rule = self.rule;
        if rule.kind == crate::rules::RuleKind::Append {
            return self.source.columns.iter().map(|c| c.name.clone()).collect();
        }
        let mut cols: Vec<String> = rule.matches.iter().chain(&rule.copies).map(|p| p.source.clone()).collect();
        cols.extend(rule.timestamps.as_ref().map(|(source_ts, _)| source_ts.clone()));
        cols
    }

    /// The conditions a target row (referenced as `row`) must meet to be maintained by the
    /// rule: its `where` predicate (unqualified names resolve to the target) and, with
    /// `latest_by`, being the newest row of its match key.
    fn target_scope(&self, row: &str) -> Vec<String> {
        let mut conds = Vec::new();
        if let Some(by) = &self.rule.latest_by {
            let keys: Vec<(String, &ColumnInfo)> = self
                .rule
                .matches
                .iter()
                .map(|p| (format!("{row}.{}", ident(&p.target)), self.tgt_col(&p.target)))
                .collect();
            conds.push(self.no_newer_row(&keys, &format!("{row}.{}", ident(by)), None));
        }
        if let Some(w) = &self.rule.where_clause {
            // On lines of its own so a trailing `--` comment cannot swallow what follows.
            conds.push(format!("(\n{w}\n)"));
        }
        conds
    }

    /// `NOT EXISTS` a target row with the same match key and a greater `latest_by` value
    /// (NULLs count as oldest; ties are all "latest"). `except` leaves one row version out.
    fn no_newer_row(&self, keys: &[(String, &ColumnInfo)], by_value: &str, except: Option<&str>) -> String {
        let by = self.rule.latest_by.as_deref().expect("latest_by");
        let by_col = self.tgt_col(by);
        let newer = "\"data_sync$newer\"";
        let mut conds: Vec<String> = self
            .rule
            .matches
            .iter()
            .zip(keys)
            .map(|(p, (value, col))| format!("{newer}.{} {} {value}", ident(&p.target), eq_op(col)))
            .collect();
        let newer_by = format!("{newer}.{}", ident(by));
        conds.push(format!(
            "({newer_by} {} {by_value} OR ({by_value} IS NULL AND {newer_by} IS NOT NULL))",
            op(by_col, ">")
        ));
        if let Some(tid) = except {
            conds.push(format!("({newer}.ctid OPERATOR(pg_catalog.=) {tid}) IS NOT TRUE"));
        }
        format!("NOT EXISTS (SELECT FROM {} AS {newer} WHERE {})", self.target.name.sql(), conds.join(" AND "))
    }

    fn tgt_col(&self, name: &str) -> &ColumnInfo {
        self.target.column(name).expect("validated rule: target column exists")
    }

    /// Target rows joined to their source row and differing from it (and within `where`).
    fn join_and_drift(&self) -> String {
        let src = self.src();
        let rule = self.rule;
        let mut conds: Vec<String> = rule
            .matches
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{} {} {src}.{}", self.tgt(&p.target), eq_op(self.src_col(&p.source)), k(i)))
            .collect();
        let drift: Vec<String> = rule
            .copies
            .iter()
            .enumerate()
            .map(|(i, p)| distinct(&self.tgt(&p.target), &format!("{src}.{}", v(i)), self.src_col(&p.source)))
            .collect();
        conds.push(format!("({})", drift.join(" OR ")));
        conds.extend(self.target_scope(&self.target.name.sql()));
        conds.join("\n  AND ")
    }

    /// Last write wins: the source row's timestamp is not older than the target row's.
    /// `None` for rules without timestamps.
    fn source_wins(&self) -> Option<String> {
        let src = self.src();
        let (_, target_ts) = self.rule.timestamps.as_ref()?;
        Some(format!("(({src}.{TS} {} {}) IS NOT TRUE)", op(self.tgt_col(target_ts), "<"), self.tgt(target_ts)))
    }

    /// `SELECT count(*)` of the target rows a propagation skips because they are newer.
    fn conflicts(&self, source_rows: String) -> Option<String> {
        let wins = self.source_wins()?;
        Some(format!(
            "SELECT pg_catalog.count(*) FROM {}, {}\nWHERE {}\n  AND NOT {wins}",
            self.target.name.sql(),
            source_rows,
            self.join_and_drift()
        ))
    }

    fn update(&self, source_rows: String) -> String {
        let src = self.src();
        let sets: Vec<String> = self
            .rule
            .copies
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{} = {src}.{}", ident(&p.target), v(i)))
            .collect();
        let mut sets = sets;
        // The timestamp travels with the value, so the receiving side is as new as what it got;
        // except into a `latest_by` column, which orders the target's history.
        if let Some((_, target_ts)) = &self.rule.timestamps {
            if self.rule.latest_by.as_ref() != Some(target_ts) {
                sets.push(format!("{} = {src}.{TS}", ident(target_ts)));
            }
        }
        let wins = self.source_wins().map(|w| format!("\n  AND {w}")).unwrap_or_default();
        format!(
            "UPDATE {} SET {}\nFROM {}\nWHERE {}{wins}",
            self.target.name.sql(),
            sets.join(", "),
            source_rows,
            self.join_and_drift()
        )
    }

    /// The source-row filters of a one-key and a many-key statement over `alias`:
    /// `alias.k = $1 AND …`, and `alias.k = ANY ($1)` or a ROWS FROM join for composite keys.
    /// Returns (one filter, many-key FROM prefix, many-key filter).
    fn key_filters(&self, alias: &str, key_columns: &[&str]) -> (String, String, String) {
        let cols: Vec<&ColumnInfo> =
            key_columns.iter().map(|c| self.source.column(c).expect("validated rule: key column exists")).collect();
        let one: Vec<String> = key_columns
            .iter()
            .zip(&cols)
            .enumerate()
            .map(|(i, (c, col))| format!("{alias}.{} {} ${}", ident(c), eq_op(col), i + 1))
            .collect();
        if key_columns.len() == 1 {
            let many = format!("{alias}.{} {} ANY ($1)", ident(key_columns[0]), eq_op(cols[0]));
            return (one.join(" AND "), String::new(), many);
        }
        // ROWS FROM: multi-argument unnest is only special-cased when written unqualified.
        let unnests: Vec<String> = (1..=key_columns.len()).map(|i| format!("pg_catalog.unnest(${i})")).collect();
        let names: Vec<String> = (1..=key_columns.len()).map(|i| format!("u{i}")).collect();
        let on: Vec<String> = key_columns
            .iter()
            .zip(&cols)
            .enumerate()
            .map(|(i, (c, col))| format!("{alias}.{} {} u.u{}", ident(c), eq_op(col), i + 1))
            .collect();
        let from = format!("ROWS FROM ({}) AS u({}), ", unnests.join(", "), names.join(", "));
        (one.join(" AND "), from, on.join(" AND "))
    }

    /// Append rules: one INSERT … SELECT of the current source rows. `values` expressions see
    /// the source row (its table's name or unqualified column names).
    fn append_plan(&self) -> RulePlan {
        let rule = self.rule;
        let alias = ident(&self.source.name.name);
        let key: Vec<&str> = rule.source_key.iter().map(String::as_str).collect();
        let (one, many_from, many) = self.key_filters(&alias, &key);
        let columns: Vec<String> = rule.copies.iter().chain(&rule.values).map(|p| ident(&p.target)).collect();
        let mut exprs: Vec<String> = rule.copies.iter().map(|p| format!("{alias}.{}", ident(&p.source))).collect();
        // each expression on lines of its own, as `where` predicates
        exprs.extend(rule.values.iter().map(|p| format!("(\n{}\n)", p.source)));
        // for append rules, `where` filters the source rows that append
        let only = rule.where_clause.as_ref().map(|w| format!("\n  AND (\n{w}\n)")).unwrap_or_default();
        let insert = |from: &str, filter: &str| {
            format!(
                "INSERT INTO {} ({})\nSELECT {}\nFROM {from} WHERE {filter}{only}",
                self.target.name.sql(),
                columns.join(", "),
                exprs.join(", ")
            )
        };
        let table = self.source.name.sql();
        // The one changed row, from the row trigger's NEW values: a derived table named and
        // shaped like the source (every column, as `$1..$n`), so that `values` and `where` read
        // it as they read the table, without a second look-up of the row.
        let row_columns = self.row_columns();
        let params: Vec<String> = (1..=row_columns.len()).map(|i| format!("${i}")).collect();
        let names: Vec<String> = row_columns.iter().map(|c| ident(c)).collect();
        let row = format!("(SELECT {}) AS {alias}({})", params.join(", "), names.join(", "));
        let key_cols: Vec<&ColumnInfo> = key.iter().map(|c| self.src_col(c)).collect();
        RulePlan::new(
            self.source.columns.iter().map(|c| c.type_oid).collect(),
            key_cols.iter().map(|c| c.type_oid).collect(),
        )
        .with(Statement::FlushOne, insert(&format!("{table} AS {alias}"), &one))
        .with(Statement::FlushMany, insert(&format!("{many_from}{table} AS {alias}"), &many))
        .with(Statement::FlushRow, insert(&row, "TRUE"))
        // a queued append reads the row once its writer committed (see `carry`)
        .with(Statement::LockOne, format!("SELECT 1 FROM {table} AS {alias} WHERE {one} FOR SHARE OF {alias}"))
        .with(
            Statement::LockMany,
            format!("SELECT 1 FROM {many_from}{table} AS {alias} WHERE {many} FOR SHARE OF {alias}"),
        )
    }

    /// Bidirectional rules: the statements that carry target rows back to their source row,
    /// planned as the mirror-image rule. Only maintained target rows (`where`, latest) flow back.
    fn reverse_plans(&self) -> [Option<String>; 4] {
        if !self.rule.bidirectional {
            return [None, None, None, None];
        }
        let mut mirror = self.rule.reversed();
        mirror.where_clause = None;
        mirror.latest_by = None;
        mirror.timestamps = self.rule.timestamps.as_ref().map(|(s, t)| (t.clone(), s.clone()));
        let back = Planner { rule: &mirror, source: self.target, target: self.source };
        // The mirror's source rows are this rule's target rows, filtered by this rule's scope;
        // aliased with the target's own name so `where` reads as it was written.
        let alias = ident(&self.target.name.name);
        let scope = self.target_scope(&alias);
        let key: Vec<&str> = mirror.source_key.iter().map(String::as_str).collect();
        let (one, many_from, many) = back.key_filters(&alias, &key);
        let with_scope = |filter: &str| {
            let mut all = vec![filter.to_string()];
            all.extend(scope.iter().cloned());
            all.join("\n  AND ")
        };
        let one_rows = || back.source_rows_as(&alias, "", &with_scope(&one));
        let many_rows = || back.source_rows_as(&alias, &many_from, &with_scope(&many));
        [
            Some(back.update(one_rows())),
            Some(back.update(many_rows())),
            back.conflicts(one_rows()),
            back.conflicts(many_rows()),
        ]
    }

    pub fn plan(&self) -> RulePlan {
        if self.rule.kind == crate::rules::RuleKind::Append {
            return self.append_plan();
        }
        let rule = self.rule;
        let key_cols: Vec<&ColumnInfo> = rule.matches.iter().map(|p| self.src_col(&p.source)).collect();

        let key: Vec<&str> = rule.source_key.iter().map(String::as_str).collect();
        let (one, many_from, many) = self.key_filters("s", &key);
        let flush_one = self.update(self.source_rows("", &one));
        let flush_row = self.inline_params(&self.update(self.param_row()));
        let conflicts_row = self.conflicts(self.param_row()).map(|sql| self.inline_params(&sql));
        let flush_many = self.update(self.source_rows(&many_from, &many));
        let conflicts_one = self.conflicts(self.source_rows("", &one));
        let conflicts_many = self.conflicts(self.source_rows(&many_from, &many));
        // only the re-parented rows: other rows of the key may hold a value written by hand
        // (by tid and table: a partition's tids are its own; rows of partitions are re-filled
        // one at a time, see `flush_now`, so the two lists never pair up wrongly)
        let moved = format!(
            "\n  AND {t}.ctid OPERATOR(pg_catalog.=) ANY (${})\n  AND {t}.tableoid OPERATOR(pg_catalog.=) ANY (${})",
            key.len() + 1,
            key.len() + 2,
            t = self.target.name.sql()
        );
        let refill = format!("{flush_many}{moved}");
        let refill_conflicts = conflicts_many.as_ref().map(|sql| format!("{sql}{moved}"));
        let [reverse_one, reverse_many, reverse_conflicts_one, reverse_conflicts_many] = self.reverse_plans();

        let mut fill_lookup = format!(
            "SELECT {} FROM {} AS s WHERE {}",
            rule.copies.iter().map(|p| format!("s.{}", ident(&p.source))).collect::<Vec<_>>().join(", "),
            self.source.name.sql(),
            one
        );
        let row = format!("${}", rule.matches.len() + 1);
        if let Some(w) = &rule.where_clause {
            fill_lookup.push_str(&format!(
                "\n  AND EXISTS (SELECT FROM (SELECT ({row}).*) AS {} WHERE (\n{w}\n))",
                ident(&self.target.name.name)
            ));
        }
        if let Some(by) = &rule.latest_by {
            // the new row version is filled only if no other row of its key is newer
            let keys: Vec<(String, &ColumnInfo)> = rule
                .matches
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("${}", i + 1), self.tgt_col(&p.target)))
                .collect();
            let tid = format!("${}", rule.matches.len() + 2);
            fill_lookup.push_str(&format!(
                "\n  AND {}",
                self.no_newer_row(&keys, &format!("({row}).{}", ident(by)), Some(&tid))
            ));
        }

        // Like a foreign-key check, the fill locks the source row it copies from (FOR SHARE: a
        // concurrent update of the copied values waits, or is waited for), so an insert racing
        // an update of its source row cannot keep the old value.
        fill_lookup.push_str("\nFOR SHARE OF s");
        // Re-syncs lock their batch of source rows first, so they copy committed values.
        let lock_one = format!("SELECT 1 FROM {} AS s WHERE {one} FOR SHARE OF s", self.source.name.sql());
        let lock_many = format!("SELECT 1 FROM {many_from}{} AS s WHERE {many} FOR SHARE OF s", self.source.name.sql());

        let check = format!(
            "SELECT pg_catalog.count(*) FROM {}, {}\nWHERE {}",
            self.target.name.sql(),
            self.source_rows("", ""),
            self.join_and_drift()
        );

        let key_list: Vec<String> = rule.matches.iter().map(|p| format!("s.{}", ident(&p.source))).collect();
        let keys_first = format!(
            "SELECT {} FROM {} AS s ORDER BY {} LIMIT $1",
            key_list.join(", "),
            self.source.name.sql(),
            key_list.join(", ")
        );
        let after = keyset_after(&key_list, &key_cols);
        let keys_after = format!(
            "SELECT {} FROM {} AS s WHERE {after} ORDER BY {} LIMIT $1",
            key_list.join(", "),
            self.source.name.sql(),
            key_list.join(", ")
        );
        let table = self.source.name.sql();
        let (keys_range_first, keys_range_after, keys_count) = match (key_list.as_slice(), key_cols.as_slice()) {
            ([k], [col]) => {
                let upto = format!("(${n} IS NULL OR {k} {} ${n})", op(col, "<="), n = 3);
                (
                    Some(format!(
                        "SELECT {k} FROM {table} AS s WHERE ($2 IS NULL OR {k} {} $2) AND {upto} ORDER BY {k} LIMIT $1",
                        op(col, ">=")
                    )),
                    Some(format!(
                        "SELECT {k} FROM {table} AS s WHERE {k} {} $2 AND {upto} ORDER BY {k} LIMIT $1",
                        op(col, ">")
                    )),
                    format!(
                        "SELECT pg_catalog.count(*) FROM {table} AS s WHERE ($1 IS NULL OR {k} {} $1) AND ($2 IS NULL OR {k} {} $2)",
                        op(col, ">="),
                        op(col, "<=")
                    ),
                )
            }
            _ => (None, None, format!("SELECT pg_catalog.count(*) FROM {table}")),
        };

        RulePlan::new(
            self.row_columns().iter().map(|c| self.src_col(c).type_oid).collect(),
            key_cols.iter().map(|c| c.type_oid).collect(),
        )
        .with(Statement::FlushOne, flush_one)
        .with(Statement::FlushMany, flush_many)
        .with(Statement::FlushRow, flush_row)
        .with(Statement::ConflictsRow, conflicts_row)
        .with(Statement::FillLookup, fill_lookup)
        .with(Statement::Check, check)
        .with(Statement::KeysFirst, keys_first)
        .with(Statement::KeysAfter, keys_after)
        .with(Statement::KeysRangeFirst, keys_range_first)
        .with(Statement::KeysRangeAfter, keys_range_after)
        .with(Statement::KeysCount, keys_count)
        .with(Statement::LockOne, lock_one)
        .with(Statement::LockMany, lock_many)
        .with(Statement::ConflictsOne, conflicts_one)
        .with(Statement::ConflictsMany, conflicts_many)
        .with(Statement::Refill, refill)
        .with(Statement::RefillConflicts, refill_conflicts)
        .with(Statement::ReverseOne, reverse_one)
        .with(Statement::ReverseMany, reverse_many)
        .with(Statement::ReverseConflictsOne, reverse_conflicts_one)
        .with(Statement::ReverseConflictsMany, reverse_conflicts_many)
    }

    /// Whether the fill lookup takes the new target row (`$n+1`) and its old version's tid (`$n+2`).
    pub fn fill_takes_row(&self) -> bool {
        self.rule.where_clause.is_some() || self.rule.latest_by.is_some()
    }

    /// Source keys of one entity: `$1` is the entity key value.
    pub fn entity_keys(&self, entity_key: &str) -> String {
        let key_list: Vec<String> = self.rule.matches.iter().map(|p| format!("s.{}", ident(&p.source))).collect();
        let col = self.source.column(entity_key).expect("validated entity key");
        format!(
            "SELECT {} FROM {} AS s WHERE s.{} {} $1",
            key_list.join(", "),
            self.source.name.sql(),
            ident(entity_key),
            eq_op(col)
        )
    }

    /// Target columns whose change re-fills a target row: the match columns (re-parenting),
    /// with `latest_by` the ordering column (a row becoming the newest), and the target columns
    /// a `where` names (a row entering the rule's scope).
    pub fn refill_columns(&self) -> Vec<String> {
        let mut refill: Vec<String> = self.rule.matches.iter().map(|p| p.target.clone()).collect();
        refill.extend(self.rule.latest_by.clone());
        for column in self.where_columns() {
            if !refill.contains(&column) {
                refill.push(column);
            }
        }
        refill
    }

    /// The target columns a copy rule's `where` names.
    fn where_columns(&self) -> Vec<String> {
        match (&self.rule.where_clause, self.rule.kind) {
            (Some(predicate), crate::rules::RuleKind::Copy) => columns_named(predicate, self.target),
            _ => Vec::new(),
        }
    }

    /// Whether new target rows are filled after they are inserted (noted by the AFTER row
    /// trigger and filled by the statement trigger, like re-parented rows) instead of in place:
    /// when the target has BEFORE INSERT row triggers of its own, which may run after data_sync's
    /// (triggers fire in name order) and change what the fill depends on (a `where` column, a
    /// match column). Bidirectional rules fill in place (only what the writer left NULL).
    pub fn fills_after_insert(&self) -> bool {
        self.target.before_insert_triggers && !self.rule.bidirectional
    }

    /// What each trigger of the rule is: (name, fires on INSERT, on UPDATE, on DELETE, UPDATE
    /// filtered by a column list), as `pg_trigger` shows them, to tell whether the installed
    /// triggers are still the ones the plan wants.
    pub fn trigger_shapes(&self) -> Vec<(String, bool, bool, bool, bool)> {
        self.trigger_specs()
            .into_iter()
            .map(|t| (trigger_name(&self.rule.name, t.suffix), t.insert, t.update, t.delete, t.filtered))
            .collect()
    }

    /// `CREATE TRIGGER` statements installing the rule. Source side: an AFTER row trigger that
    /// only notes changed keys and an AFTER statement trigger that propagates all noted keys at
    /// once. Target side: a BEFORE row trigger fills the copied columns of new rows in place;
    /// re-parented rows (a match column changed) are noted by an AFTER row trigger and re-filled
    /// by the statement trigger in one statement, like a propagation. Not in place: any BEFORE
    /// UPDATE row trigger makes the server lock every updated row of the table first, whatever
    /// its column list, which would slow down every propagation into the target.
    /// Update triggers fire only for their column lists (`UPDATE OF`); whether a listed column
    /// really changed is checked by the trigger function itself rather than by a `WHEN` clause,
    /// which the server would re-read and compile for every statement. One trigger serves both
    /// INSERT and UPDATE where it can: the server copies every trigger of a table for each
    /// statement that writes it.
    pub fn triggers(&self) -> Vec<String> {
        self.triggers_by_side().into_iter().map(|(_, ddl)| ddl).collect()
    }

    /// `triggers`, each statement with the side of the rule whose table it changes (`'s'`, `'t'`).
    /// On a table with BEFORE UPDATE row triggers of its own, the `UPDATE OF` column lists are
    /// left out: such a trigger can change a watched column the statement did not name, and
    /// `UPDATE OF` sees only the statement's SET list (the trigger functions still act only on
    /// rows whose watched values changed).
    pub fn triggers_by_side(&self) -> Vec<(char, String)> {
        let rule = self.rule;
        let arg = literal(&rule.name);
        let mut out = Vec::new();
        for t in self.trigger_specs() {
            let name = ident(&trigger_name(&rule.name, t.suffix));
            let side = if t.suffix.starts_with('s') { 's' } else { 't' };
            let table = if side == 's' { self.source.name.sql() } else { self.target.name.sql() };
            let (event, level, function) = (t.event, t.level, t.function);
            out.push((
                side,
                format!(
                    "CREATE TRIGGER {name} {event} ON {table} FOR EACH {level} EXECUTE FUNCTION data_sync.{function}({arg})"
                ),
            ));
            // rows written by logical replication's apply worker (session_replication_role =
            // replica) fire only ENABLE ALWAYS triggers
            if rule.fire_on_replica {
                out.push((side, format!("ALTER TABLE {table} ENABLE ALWAYS TRIGGER {name}")));
            }
        }
        out
    }

    /// The rule's triggers, described.
    fn trigger_specs(&self) -> Vec<TriggerSpec> {
        let rule = self.rule;
        let append = rule.kind == crate::rules::RuleKind::Append;
        let watched: Vec<&str> = rule.watched_source_columns().into_iter().collect();
        let list = |cols: &[&str]| cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
        // "AFTER INSERT OR UPDATE OF a, b", "AFTER UPDATE OF a, b", "AFTER INSERT" ("UPDATE": see
        // above), and what it fires on
        let spec = |suffix: &'static str, timing: &str, insert: bool, update_of: &[&str], table: &TableInfo| {
            let mut events = Vec::new();
            if insert {
                events.push("INSERT".to_string());
            }
            // a `latest_by` target: deleting the newest row of a key makes another one the newest
            let delete = (suffix == "tr" || suffix == "ts") && self.rule.latest_by.is_some();
            let update = !update_of.is_empty();
            // A column a `where` names is watched without a column list: a trigger that depends on
            // a column blocks `DROP COLUMN`, and dropping a `where` column must only disable the
            // rule (see ddl.rs), as for any other column it uses.
            let names_where_column = self
                .where_columns()
                .iter()
                .any(|c| update_of.contains(&c.as_str()) && !self.rule.matches.iter().any(|k| &k.target == c));
            let filtered = update && !table.before_update_triggers && !names_where_column;
            if filtered {
                events.push(format!("UPDATE OF {}", list(update_of)));
            } else if update {
                events.push("UPDATE".to_string());
            }
            if delete {
                events.push("DELETE".to_string());
            }
            let event = format!("{timing} {}", events.join(" OR "));
            TriggerSpec { suffix, event, insert, update, delete, filtered, level: "ROW", function: "" }
        };
        let fill_after = self.fills_after_insert();
        let mut triggers: Vec<TriggerSpec> = Vec::new();
        let source_insert = !append || rule.on_insert;
        if source_insert || !watched.is_empty() {
            let row = spec("sr", "AFTER", source_insert, &watched, self.source);
            let statement =
                TriggerSpec { suffix: "ss", level: "STATEMENT", function: "source_statement_trigger", ..row.clone() };
            triggers.push(TriggerSpec { function: "source_row_trigger", ..row });
            triggers.push(statement);
        }
        let refill = self.refill_columns();
        let refill: Vec<&str> = refill.iter().map(String::as_str).collect();
        if !append {
            if !fill_after {
                let mut fill = spec("tf", "BEFORE", true, &[], self.target);
                fill.function = "target_fill_trigger";
                triggers.push(fill);
            }
            let mut refilled = spec("tr", "AFTER", fill_after, &refill, self.target);
            refilled.function = "target_fill_trigger";
            triggers.push(refilled);
            let logged = spec("ts", "AFTER", true, &refill, self.target);
            triggers.push(TriggerSpec { level: "STATEMENT", function: "target_statement_trigger", ..logged });
        }
        if !append && rule.bidirectional {
            // a change of a copied target column (or a new target row) flows back to the source
            let copied: Vec<&str> = rule.copies.iter().map(|p| p.target.as_str()).collect();
            let back = spec("rr", "AFTER", true, &copied, self.target);
            let statement =
                TriggerSpec { suffix: "rs", level: "STATEMENT", function: "reverse_statement_trigger", ..back.clone() };
            triggers.push(TriggerSpec { function: "reverse_row_trigger", ..back });
            triggers.push(statement);
        }
        triggers
    }
}

/// Keys of a related entity's rows for one key of an entity: `$1` is the entity's key value.
/// `pairs`: column of the related table = column of the entity's table.
pub fn related_keys(
    entity: &TableInfo,
    entity_key: &str,
    related: &TableInfo,
    related_key: &str,
    pairs: &[crate::validate::Pair],
) -> Result<String, String> {
    fn col<'t>(t: &'t TableInfo, c: &str) -> Result<&'t ColumnInfo, String> {
        t.column(c).ok_or_else(|| format!("column \"{c}\" of {} no longer exists", t.name))
    }
    let mut conds = vec![format!("p.{} {} $1", ident(entity_key), eq_op(col(entity, entity_key)?))];
    for pair in pairs {
        conds.push(format!(
            "r.{} {} p.{}",
            ident(&pair.target),
            eq_op(col(related, &pair.target)?),
            ident(&pair.source)
        ));
    }
    col(related, related_key)?;
    Ok(format!(
        "SELECT DISTINCT r.{} FROM {} AS r WHERE EXISTS (SELECT FROM {} AS p WHERE {}) AND r.{} IS NOT NULL",
        ident(related_key),
        related.name.sql(),
        entity.name.sql(),
        conds.join(" AND "),
        ident(related_key)
    ))
}

/// Suffixes of the triggers a rule installs, and on which side: `s` source, `t` target.
pub const TRIGGER_SUFFIXES: [(&str, char); 7] =
    [("sr", 's'), ("ss", 's'), ("tf", 't'), ("tr", 't'), ("ts", 't'), ("rr", 't'), ("rs", 't')];

/// The suffixes of the triggers earlier builds installed (one trigger per event, and a BEFORE
/// UPDATE fill on the target): dropping a rule removes them too, and re-loading a rule that
/// still has them replaces them with the current set.
pub const LEGACY_TRIGGER_SUFFIXES: [&str; 12] =
    ["sur", "sus", "sir", "sis", "tfi", "tfu", "tis", "tus", "rur", "rus", "rir", "ris"];

pub fn trigger_name(rule: &str, suffix: &str) -> String {
    format!("data_sync_{rule}_{suffix}")
}

/// Which table of its rule a trigger named `data_sync_<rule>_<suffix>` sits on: `'s'` for the
/// source, `'t'` for the target; `None` for a name data_sync never gives (current or legacy). A
/// trigger function acts only for a trigger of its own rule and name on the expected side.
pub fn trigger_side(rule: &str, trigger: &[u8]) -> Option<char> {
    let suffix = trigger.strip_prefix(b"data_sync_")?.strip_prefix(rule.as_bytes())?.strip_prefix(b"_")?;
    let suffix = std::str::from_utf8(suffix).ok()?;
    if let Some((_, side)) = TRIGGER_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Some(*side);
    }
    // legacy: s… on the source; t… (fill) and r… (way back) on the target
    LEGACY_TRIGGER_SUFFIXES.contains(&suffix).then(|| if suffix.starts_with('s') { 's' } else { 't' })
}

/// The columns of `table` an SQL expression may name: every identifier outside string literals
/// and comments that is a column name (unquoted ones folded to lower case, as the server does).
/// A superset is harmless (a column watched for nothing), so no grammar is needed.
pub fn columns_named(expression: &str, table: &TableInfo) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut note = |word: String| {
        if table.column(&word).is_some() && !found.contains(&word) {
            found.push(word);
        }
    };
    let chars: Vec<char> = expression.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '-' && next == Some('-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == '\'' {
            // a string literal ('' inside it is a quote; in an E'…' string, so is \')
            let escapes = i > 0 && matches!(chars[i - 1], 'E' | 'e');
            i += 1;
            while i < chars.len() {
                let doubled_quote = chars[i] == '\'' && chars.get(i + 1) == Some(&'\'');
                if doubled_quote || (escapes && chars[i] == '\\') {
                    i += 2;
                } else if chars[i] == '\'' {
                    break;
                } else {
                    i += 1;
                }
            }
            i += 1;
        } else if c == '$' && next.is_some_and(|n| n == '$' || n.is_alphabetic() || n == '_') {
            // a dollar-quoted string: $tag$ … $tag$
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '$' {
                i += 1;
            }
            let tag: String = chars[start..=i.min(chars.len() - 1)].iter().collect();
            let rest: String = chars[i + 1..].iter().collect();
            i = match rest.find(&tag) {
                Some(end) => i + 1 + rest[..end].chars().count() + tag.chars().count(),
                None => chars.len(),
            };
        } else if c == '"' {
            let mut word = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == '"' && chars.get(i + 1) == Some(&'"') {
                    word.push('"');
                    i += 2;
                } else if chars[i] == '"' {
                    break;
                } else {
                    word.push(chars[i]);
                    i += 1;
                }
            }
            i += 1;
            note(word);
        } else if c.is_alphabetic() || c == '_' {
            let mut word = String::new();
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$') {
                word.push(chars[i]);
                i += 1;
            }
            // (the server folds only ASCII letters of an unquoted name)
            note(word.to_ascii_lowercase());
        } else {
            i += 1;
        }
    }
    found
}

/// Keyset pagination condition "key > ($2, $3, …)" in key order, spelled with each column's
/// own qualified operators: `(a > $2) OR (a = $2 AND b > $3) …`.
fn keyset_after(keys: &[String], cols: &[&ColumnInfo]) -> String {
    let mut alternatives = Vec::new();
    for i in 0..keys.len() {
        let mut conj: Vec<String> = (0..i).map(|j| format!("{} {} ${}", keys[j], eq_op(cols[j]), j + 2)).collect();
        conj.push(format!("{} {} ${}", keys[i], op(cols[i], ">"), i + 2));
        alternatives.push(format!("({})", conj.join(" AND ")));
    }
    alternatives.join(" OR ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::rules::parse_document;
    use crate::validate::tests::{rule_toml, tailtracker, tbl};
    use crate::validate::validate_rule;

    fn planned(text: &str, cat: &Catalog) -> (Rule, RulePlan) {
        let doc = parse_document(text).unwrap();
        let rule = validate_rule(&doc.rule[0], cat).unwrap();
        let source = cat[&doc.rule[0].source].as_ref().unwrap();
        let target = cat[&doc.rule[0].target].as_ref().unwrap();
        let plan = Planner { rule: &rule, source, target }.plan();
        (rule, plan)
    }

    #[test]
    fn flush_one_is_a_qualified_set_based_update() {
        let (_, plan) = planned(
            &rule_toml("r", "public.users", "public.lost_pets", "owner_id = \"id\"", "contact_phone = \"phone\""),
            &tailtracker(),
        );
        assert_eq!(
            plan.sql(Statement::FlushOne).unwrap(),
            "UPDATE \"public\".\"lost_pets\" SET \"contact_phone\" = \"data_sync$src\".\"data_sync$v1\"\n\
             FROM (SELECT s.\"id\", s.\"phone\" FROM \"public\".\"users\" AS s WHERE s.\"id\" OPERATOR(\"pg_catalog\".=) $1) AS \"data_sync$src\"(\"data_sync$k1\", \"data_sync$v1\")\n\
             WHERE \"public\".\"lost_pets\".\"owner_id\" OPERATOR(\"pg_catalog\".=) \"data_sync$src\".\"data_sync$k1\"\n  \
             AND (((\"public\".\"lost_pets\".\"contact_phone\" OPERATOR(\"pg_catalog\".=) \"data_sync$src\".\"data_sync$v1\") IS NOT TRUE AND (\"public\".\"lost_pets\".\"contact_phone\" IS NOT NULL OR \"data_sync$src\".\"data_sync$v1\" IS NOT NULL)))"
        );
        assert!(plan.sql(Statement::FlushMany).unwrap().contains("s.\"id\" OPERATOR(\"pg_catalog\".=) ANY ($1)"));
        assert_eq!(plan.key_types, vec![20]);
        // re-syncs of a key range, with optional bounds
        assert_eq!(
            plan.sql(Statement::KeysRangeAfter),
            Some(
                "SELECT s.\"id\" FROM \"public\".\"users\" AS s WHERE s.\"id\" OPERATOR(\"pg_catalog\".>) $2 \
                 AND ($3 IS NULL OR s.\"id\" OPERATOR(\"pg_catalog\".<=) $3) ORDER BY s.\"id\" LIMIT $1"
            )
        );
        assert!(plan
            .sql(Statement::KeysRangeFirst)
            .unwrap()
            .contains("($2 IS NULL OR s.\"id\" OPERATOR(\"pg_catalog\".>=) $2)"));
        // one row from parameters: key, then copied value
        assert_eq!(
            plan.sql(Statement::FlushRow).unwrap(),
            "UPDATE \"public\".\"lost_pets\" SET \"contact_phone\" = $2\n\
             WHERE \"public\".\"lost_pets\".\"owner_id\" OPERATOR(\"pg_catalog\".=) $1\n  \
             AND (((\"public\".\"lost_pets\".\"contact_phone\" OPERATOR(\"pg_catalog\".=) $2) IS NOT TRUE AND (\"public\".\"lost_pets\".\"contact_phone\" IS NOT NULL OR $2 IS NOT NULL)))"
        );
        assert_eq!(plan.row_types, vec![20, 25]);
        assert!(plan.sql(Statement::ConflictsRow).is_none());
    }

    #[test]
    fn odd_identifiers_are_quoted() {
        let mut cat = Catalog::new();
        cat.insert(
            "\"Clinic\".\"Owners\"".into(),
            Ok(tbl("Clinic", "Owners", &[("Id", "bigint"), ("Ph\"one", "text")], &[&["Id"]])),
        );
        cat.insert("x.t".into(), Ok(tbl("x", "select", &[("owner Id", "bigint"), ("phone", "text")], &[])));
        let text = rule_toml("r", "\\\"Clinic\\\".\\\"Owners\\\"", "x.t", "\"owner Id\" = \"Id\"", "phone = 'Ph\"one'");
        let (_, plan) = planned(&text, &cat);
        assert!(
            plan.sql(Statement::FlushOne).unwrap().contains("UPDATE \"x\".\"select\" SET \"phone\""),
            "{}",
            plan.sql(Statement::FlushOne).unwrap()
        );
        assert!(
            plan.sql(Statement::FlushOne).unwrap().contains("s.\"Ph\"\"one\""),
            "{}",
            plan.sql(Statement::FlushOne).unwrap()
        );
        assert!(
            plan.sql(Statement::FlushOne).unwrap().contains("FROM \"Clinic\".\"Owners\" AS s"),
            "{}",
            plan.sql(Statement::FlushOne).unwrap()
        );
        assert!(
            plan.sql(Statement::FlushOne).unwrap().contains("\"x\".\"select\".\"owner Id\""),
            "{}",
            plan.sql(Statement::FlushOne).unwrap()
        );
    }

    #[test]
    fn composite_keys_use_rows_from_unnest() {
        let mut cat = Catalog::new();
        cat.insert(
            "a.src".into(),
            Ok(tbl("a", "src", &[("k1", "bigint"), ("k2", "text"), ("v", "text")], &[&["k1", "k2"]])),
        );
        cat.insert("a.dst".into(), Ok(tbl("a", "dst", &[("r1", "bigint"), ("r2", "text"), ("v", "text")], &[])));
        let (_, plan) = planned(&rule_toml("r", "a.src", "a.dst", "r1 = \"k1\", r2 = \"k2\"", "v = \"v\""), &cat);
        assert!(
            plan.sql(Statement::FlushMany).unwrap().contains("FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS u(u1, u2), \"a\".\"src\" AS s WHERE s.\"k1\" OPERATOR(\"pg_catalog\".=) u.u1 AND s.\"k2\" OPERATOR(\"pg_catalog\".=) u.u2)"),
            "{}",
            plan.sql(Statement::FlushMany).unwrap()
        );
        assert!(plan
            .sql(Statement::FlushOne)
            .unwrap()
            .contains("s.\"k1\" OPERATOR(\"pg_catalog\".=) $1 AND s.\"k2\" OPERATOR(\"pg_catalog\".=) $2"));
        assert_eq!(
            plan.sql(Statement::KeysAfter).unwrap(),
            "SELECT s.\"k1\", s.\"k2\" FROM \"a\".\"src\" AS s WHERE (s.\"k1\" OPERATOR(\"pg_catalog\".>) $2) OR (s.\"k1\" OPERATOR(\"pg_catalog\".=) $2 AND s.\"k2\" OPERATOR(\"pg_catalog\".>) $3) ORDER BY s.\"k1\", s.\"k2\" LIMIT $1"
        );
        assert_eq!(plan.key_types, vec![20, 25]);
        // key ranges need a single-column key
        assert!(plan.sql(Statement::KeysRangeFirst).is_none() && plan.sql(Statement::KeysRangeAfter).is_none());
        assert_eq!(plan.sql(Statement::KeysCount).unwrap(), "SELECT pg_catalog.count(*) FROM \"a\".\"src\"");
    }

    #[test]
    fn where_clause_sits_on_its_own_lines() {
        let text = rule_toml("r", "public.users", "public.lost_pets", "owner_id = \"id\"", "contact_phone = \"phone\"")
            + "where = \"status = 'lost' -- only open cases\"\n";
        // the `where` line lands after `set`, still inside the [[rule]] table
        let (_, plan) = planned(&text, &tailtracker());
        assert!(
            plan.sql(Statement::FlushOne).unwrap().ends_with("AND (\nstatus = 'lost' -- only open cases\n)"),
            "{}",
            plan.sql(Statement::FlushOne).unwrap()
        );
        assert!(plan.sql(Statement::FillLookup).unwrap().contains(
            "EXISTS (SELECT FROM (SELECT ($2).*) AS \"lost_pets\" WHERE (\nstatus = 'lost' -- only open cases\n))"
        ));
    }

    #[test]
    fn triggers_watch_only_rule_columns() {
        let doc = parse_document(&rule_toml(
            "r",
            "public.users",
            "public.lost_pets",
            "owner_id = \"id\"",
            "contact_phone = \"phone\"",
        ))
        .unwrap();
        let cat = tailtracker();
        let rule = validate_rule(&doc.rule[0], &cat).unwrap();
        let p = Planner {
            rule: &rule,
            source: cat["public.users"].as_ref().unwrap(),
            target: cat["public.lost_pets"].as_ref().unwrap(),
        };
        let t = p.triggers();
        assert_eq!(t.len(), 5);
        // dropping a rule relies on TRIGGER_SUFFIXES naming every trigger it created, on its side
        for (ddl, (suffix, side)) in t.iter().zip(TRIGGER_SUFFIXES) {
            let table = if side == 's' { "\"public\".\"users\"" } else { "\"public\".\"lost_pets\"" };
            assert!(ddl.starts_with(&format!("CREATE TRIGGER \"data_sync_r_{suffix}\" ")), "{ddl}");
            assert!(ddl.contains(&format!(" ON {table} ")), "{ddl}");
        }
        assert_eq!(
            t[0],
            "CREATE TRIGGER \"data_sync_r_sr\" AFTER INSERT OR UPDATE OF \"id\", \"phone\" ON \"public\".\"users\" \
             FOR EACH ROW EXECUTE FUNCTION data_sync.source_row_trigger('r')"
        );
        assert!(t[1].contains("AFTER INSERT OR UPDATE OF \"id\", \"phone\" ON \"public\".\"users\" FOR EACH STATEMENT"));
        // no BEFORE UPDATE trigger on the target: the server would lock every row it updates
        assert!(t[2].contains("BEFORE INSERT ON \"public\".\"lost_pets\" FOR EACH ROW"), "{}", t[2]);
        assert!(t[3].contains("AFTER UPDATE OF \"owner_id\" ON \"public\".\"lost_pets\" FOR EACH ROW"), "{}", t[3]);
        assert!(t[4].contains("AFTER INSERT OR UPDATE OF \"owner_id\" ON \"public\".\"lost_pets\" FOR EACH STATEMENT"));
        assert!(t.iter().all(|ddl| !ddl.contains("BEFORE UPDATE")));
    }

    #[test]
    fn append_rules_insert_from_the_source_row() {
        let cat = tailtracker();
        let doc = parse_document(crate::validate::tests::WEIGHT_RULES).unwrap();
        let rule = validate_rule(&doc.rule[0], &cat).unwrap();
        let p = Planner {
            rule: &rule,
            source: cat["public.pets"].as_ref().unwrap(),
            target: cat["public.pet_measurements"].as_ref().unwrap(),
        };
        let plan = p.plan();
        assert_eq!(
            plan.sql(Statement::FlushOne).unwrap(),
            "INSERT INTO \"public\".\"pet_measurements\" (\"pet_id\", \"weight_kg\", \"measured_at\")\n\
             SELECT \"pets\".\"id\", \"pets\".\"weight_kg\", (\nnow()\n)\n\
             FROM \"public\".\"pets\" AS \"pets\" WHERE \"pets\".\"id\" OPERATOR(\"pg_catalog\".=) $1"
        );
        // one changed row: from its values, every column of the source under the source's name
        assert!(
            plan.sql(Statement::FlushRow).unwrap().ends_with(
                "FROM (SELECT $1, $2, $3, $4) AS \"pets\"(\"id\", \"name\", \"weight_kg\", \"weight_at\") WHERE TRUE"
            ),
            "{}",
            plan.sql(Statement::FlushRow).unwrap()
        );
        assert_eq!(plan.row_types.len(), 4);
        assert!(plan.sql(Statement::Check).is_none() && plan.sql(Statement::ReverseOne).is_none());
        let t = p.triggers();
        // watches weight_kg only; no insert triggers (on_insert = false), nothing on the target
        assert_eq!(t.len(), 2, "{t:?}");
        assert!(t[0].contains("AFTER UPDATE OF \"weight_kg\" ON \"public\".\"pets\""), "{}", t[0]);
    }

    #[test]
    fn bidirectional_latest_rules_plan_both_ways() {
        let cat = tailtracker();
        let doc = parse_document(crate::validate::tests::WEIGHT_RULES).unwrap();
        let rule = validate_rule(&doc.rule[1], &cat).unwrap();
        let p = Planner {
            rule: &rule,
            source: cat["public.pets"].as_ref().unwrap(),
            target: cat["public.health_records"].as_ref().unwrap(),
        };
        let plan = p.plan();
        // forward: only the newest record of the pet, and only if the pet's weight is not older
        assert!(plan
            .sql(Statement::FlushOne)
            .unwrap()
            .contains("NOT EXISTS (SELECT FROM \"public\".\"health_records\" AS \"data_sync$newer\""));
        assert!(plan.sql(Statement::FlushOne).unwrap().contains("((\"data_sync$src\".\"data_sync$ts\" OPERATOR(\"pg_catalog\".<) \"public\".\"health_records\".\"recorded_at\") IS NOT TRUE)"), "{}", plan.sql(Statement::FlushOne).unwrap());
        // recorded_at orders the history: the forward way does not overwrite it
        assert!(!plan
            .sql(Statement::FlushOne)
            .unwrap()
            .contains("SET \"weight\" = \"data_sync$src\".\"data_sync$v1\", \"recorded_at\""));
        assert!(plan.sql(Statement::ConflictsOne).unwrap().starts_with("SELECT pg_catalog.count(*)"));
        // back: pets takes the newest record's weight and its timestamp
        let back = plan.sql(Statement::ReverseOne).unwrap();
        assert!(back.starts_with("UPDATE \"public\".\"pets\" SET \"weight_kg\" = \"data_sync$src\".\"data_sync$v1\", \"weight_at\" = \"data_sync$src\".\"data_sync$ts\""), "{back}");
        assert!(back.contains("FROM \"public\".\"health_records\" AS \"health_records\" WHERE \"health_records\".\"pet_id\" OPERATOR(\"pg_catalog\".=) $1"), "{back}");
        assert!(plan.sql(Statement::FillLookup).unwrap().ends_with("FOR SHARE OF s"));
        assert!(plan
            .sql(Statement::FillLookup)
            .unwrap()
            .contains("(\"data_sync$newer\".ctid OPERATOR(pg_catalog.=) $3) IS NOT TRUE"));
        let t = p.triggers();
        assert_eq!(t.len(), 7);
        assert!(t[2].contains("BEFORE INSERT ON \"public\".\"health_records\""), "{}", t[2]);
        // (deleting the newest record makes another one the newest)
        assert!(t[3].contains("AFTER UPDATE OF \"pet_id\", \"recorded_at\" OR DELETE ON"), "{}", t[3]);
        assert!(
            t[5].contains("AFTER INSERT OR UPDATE OF \"weight\" ON \"public\".\"health_records\" FOR EACH ROW"),
            "{}",
            t[5]
        );
        for ddl in &t {
            let start = "CREATE TRIGGER \"data_sync_latest_".len();
            let suffix = &ddl[start..start + ddl[start..].find('"').unwrap()];
            assert!(TRIGGER_SUFFIXES.iter().any(|(s, _)| s == &suffix), "{ddl}");
        }
    }

    #[test]
    fn columns_a_where_names() {
        let cat = tailtracker();
        let lost = cat["public.lost_pets"].as_ref().unwrap();
        let named = |w: &str| columns_named(w, lost);
        assert_eq!(named("status = 'lost'"), vec!["status"]);
        assert_eq!(named("STATUS = 'n' -- meta\n AND \"n\" > 1"), vec!["status", "n"]);
        // words in strings and comments are not columns
        assert_eq!(named("'status' = 'meta' /* n */"), Vec::<String>::new());
        assert_eq!(named("$$status$$ = $x$ n $x$ OR owner_id IS NULL"), vec!["owner_id"]);
        assert_eq!(named("lower(contact_phone) LIKE 'x%'"), vec!["contact_phone"]);
        // an escaped quote does not end an E'…' string
        assert_eq!(named("meta::text = E'it\\'s' AND status = 'x'"), vec!["meta", "status"]);
    }

    #[test]
    fn trigger_sides_follow_the_names_data_sync_gives() {
        assert_eq!(trigger_side("phone", b"data_sync_phone_sr"), Some('s'));
        assert_eq!(trigger_side("phone", b"data_sync_phone_tf"), Some('t'));
        assert_eq!(trigger_side("phone", b"data_sync_phone_rs"), Some('t'));
        assert_eq!(trigger_side("phone", b"data_sync_phone_sus"), Some('s'));
        assert_eq!(trigger_side("phone", b"data_sync_phone_rir"), Some('t'));
        // another rule's trigger, a look-alike name, a made-up suffix
        assert_eq!(trigger_side("phone", b"data_sync_phone2_sr"), None);
        assert_eq!(trigger_side("phone", b"my_phone_sr"), None);
        assert_eq!(trigger_side("phone", b"data_sync_phone_xx"), None);
        assert_eq!(trigger_side("a_b", b"data_sync_a_b_sr"), Some('s'));
        for (suffix, side) in TRIGGER_SUFFIXES {
            assert_eq!(trigger_side("r", trigger_name("r", suffix).as_bytes()), Some(side));
        }
    }

    #[test]
    fn related_entity_keys_query() {
        let cat = tailtracker();
        let users = cat["public.users"].as_ref().unwrap();
        let lost = cat["public.lost_pets"].as_ref().unwrap();
        let pairs = [crate::validate::Pair { target: "owner_id".into(), source: "id".into() }];
        assert_eq!(
            related_keys(users, "auth_user_id", lost, "id", &pairs).unwrap(),
            "SELECT DISTINCT r.\"id\" FROM \"public\".\"lost_pets\" AS r WHERE EXISTS (SELECT FROM \"public\".\"users\" AS p \
             WHERE p.\"auth_user_id\" OPERATOR(\"pg_catalog\".=) $1 AND r.\"owner_id\" OPERATOR(\"pg_catalog\".=) p.\"id\") \
             AND r.\"id\" IS NOT NULL"
        );
    }

    #[test]
    fn entity_keys_query() {
        let doc = parse_document(&rule_toml(
            "r",
            "public.users",
            "public.lost_pets",
            "owner_id = \"id\"",
            "contact_phone = \"phone\"",
        ))
        .unwrap();
        let cat = tailtracker();
        let rule = validate_rule(&doc.rule[0], &cat).unwrap();
        let p = Planner {
            rule: &rule,
            source: cat["public.users"].as_ref().unwrap(),
            target: cat["public.lost_pets"].as_ref().unwrap(),
        };
        assert_eq!(
            p.entity_keys("auth_user_id"),
            "SELECT s.\"id\" FROM \"public\".\"users\" AS s WHERE s.\"auth_user_id\" OPERATOR(\"pg_catalog\".=) $1"
        );
    }
}
