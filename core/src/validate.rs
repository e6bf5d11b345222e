//! Stage 2: rule specs checked against the catalog, giving resolved rules. Every rejection names
//! the rule and the offending field, and nothing is returned unless the whole set is valid.

use std::collections::{BTreeMap, BTreeSet};

use crate::catalog::{Catalog, ColumnInfo, TableInfo, TableName};
use crate::rules::{EntitySpec, RuleKind, RuleSpec, SyncMode};
use crate::Error;

/// One `target column = source column` pair.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pair {
    pub target: String,
    pub source: String,
}

/// A validated rule with resolved table names. Pairs are sorted by target column, so two rules
/// that mean the same compare equal whatever order they were written in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub kind: RuleKind,
    pub source: TableName,
    pub target: TableName,
    /// Copy: target match column = source key column (the `match` table). Empty for append rules.
    pub matches: Vec<Pair>,
    /// target column = source column: copied (copy) or inserted (append) values.
    pub copies: Vec<Pair>,
    pub where_clause: Option<String>,
    pub enabled: bool,
    /// Copy: only the target row with the greatest value of this column per match key.
    pub latest_by: Option<String>,
    pub bidirectional: bool,
    /// Bidirectional last-write-wins columns, (source, target).
    pub timestamps: Option<(String, String)>,
    /// Append: target column = SQL expression (in `source`).
    pub values: Vec<Pair>,
    /// Append: the source columns whose change appends a row.
    pub watch: Vec<String>,
    pub on_insert: bool,
    /// `None`: follow `data_sync.failure_mode`.
    pub mode: Option<SyncMode>,
    /// Triggers fire for logical replication's apply worker too (`ENABLE ALWAYS`).
    pub fire_on_replica: bool,
    /// Columns identifying one source row: the match's source columns for copy rules, the
    /// source's primary key (or first unique key) for append rules.
    pub source_key: Vec<String>,
}

impl Rule {
    /// The spec this rule was validated from (as stored: tables by their resolved names).
    pub fn spec(&self) -> RuleSpec {
        let rule = self;
        // (the inverse of `validate_rule`'s mapping: installed rules are compared as specs)
        let map = |pairs: &[Pair]| pairs.iter().map(|p| (p.target.clone(), p.source.clone())).collect();
        let append = rule.kind == RuleKind::Append;
        RuleSpec {
            name: rule.name.clone(),
            kind: rule.kind,
            source: rule.source.sql(),
            target: rule.target.sql(),
            match_columns: map(&rule.matches),
            set: map(&rule.copies),
            where_clause: rule.where_clause.clone(),
            enabled: rule.enabled,
            latest_by: rule.latest_by.clone(),
            bidirectional: rule.bidirectional,
            source_timestamp: rule.timestamps.as_ref().map(|t| t.0.clone()),
            target_timestamp: rule.timestamps.as_ref().map(|t| t.1.clone()),
            values: map(&rule.values),
            watch: append.then(|| rule.watch.clone()),
            on_insert: rule.on_insert,
            mode: rule.mode,
            fire_on_replica: rule.fire_on_replica,
        }
    }

    /// Source columns whose change must be propagated.
    pub fn watched_source_columns(&self) -> BTreeSet<&str> {
        match self.kind {
            RuleKind::Copy => self.matches.iter().chain(&self.copies).map(|p| p.source.as_str()).collect(),
            RuleKind::Append => self.watch.iter().map(String::as_str).collect(),
        }
    }

    /// Target columns the rule writes.
    pub fn written_target_columns(&self) -> BTreeSet<&str> {
        self.copies.iter().chain(&self.values).map(|p| p.target.as_str()).collect()
    }

    /// The reverse direction of a bidirectional rule, as a copy rule from target to source
    /// (used for cycle checks).
    pub fn reversed(&self) -> Rule {
        let swap = |pairs: &[Pair]| -> Vec<Pair> {
            pairs.iter().map(|p| Pair { target: p.source.clone(), source: p.target.clone() }).collect()
        };
        Rule {
            name: self.name.clone(),
            source: self.target.clone(),
            target: self.source.clone(),
            matches: swap(&self.matches),
            copies: swap(&self.copies),
            source_key: self.matches.iter().map(|p| p.target.clone()).collect(),
            bidirectional: false,
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    pub name: String,
    pub table: TableName,
    pub key: String,
    /// Related entity -> pairs (column of its table = column of this entity's table).
    pub related: BTreeMap<String, Vec<Pair>>,
}

impl Entity {
    /// `sync_all_<entity>_data`, created in the entity table's schema.
    pub fn function_name(&self) -> String {
        format!("sync_all_{}_data", self.name)
    }

    /// `sync_all_<entity>_data_comprehensive`: the entity and its related entities.
    pub fn comprehensive_function_name(&self) -> String {
        format!("sync_all_{}_data_comprehensive", self.name)
    }
}

fn table<'c>(catalog: &'c Catalog, written: &str, what: &str, label: &str) -> Result<&'c TableInfo, Error> {
    match catalog.get(written) {
        Some(Ok(info)) => Ok(info),
        Some(Err(reason)) => Err(Error::new(format!("{label}: {what} {reason}"))),
        None => Err(Error::new(format!("{label}: {what} table \"{written}\" was not looked up"))),
    }
}

/// Longest name the server keeps (NAMEDATALEN - 1 bytes).
const MAX_IDENTIFIER: usize = 63;

fn column<'t>(info: &'t TableInfo, name: &str, field: &str, label: &str) -> Result<&'t ColumnInfo, Error> {
    info.column(name).ok_or_else(|| {
        // Names are exact, so these could only "not exist"; saying why is clearer, and a
        // megabyte-long name is not repeated in full.
        if name.is_empty() {
            return Error::new(format!("{label}: {field}: empty column name"));
        }
        if name.len() > MAX_IDENTIFIER {
            let cut = (0..=MAX_IDENTIFIER).rev().find(|&i| name.is_char_boundary(i)).unwrap_or(0);
            return Error::new(format!(
                "{label}: {field}: column name \"{}…\" is longer than {MAX_IDENTIFIER} bytes",
                &name[..cut]
            ));
        }
        Error::new(format!("{label}: {field}: column \"{name}\" does not exist in table {}", info.name))
    })
}

/// Checks one rule against the catalog.
pub fn validate_rule(spec: &RuleSpec, catalog: &Catalog) -> Result<Rule, Error> {
    let label = format!("rule \"{}\"", spec.name);
    let fail = |message: String| -> Result<Rule, Error> { Err(Error::new(format!("{label}: {message}"))) };
    let source = table(catalog, &spec.source, "source", &label)?;
    let target = table(catalog, &spec.target, "target", &label)?;
    for (what, info) in [("source", source), ("target", target)] {
        if !info.is_table {
            return fail(format!("{what} {} is not a table", info.name));
        }
        if !info.inheritance_children.is_empty() {
            return fail(format!(
                "{what} {} has inheritance children ({}): their rows would not fire the rule's triggers \
                 (use partitioning, or one rule per child table)",
                info.name,
                info.inheritance_children.join(", ")
            ));
        }
    }
    let append = spec.kind == RuleKind::Append;
    // options that belong to the other kind
    let misplaced: &[(&str, bool)] = if append {
        &[
            ("match", !spec.match_columns.is_empty()),
            ("latest_by", spec.latest_by.is_some()),
            ("bidirectional", spec.bidirectional),
            ("source_timestamp", spec.source_timestamp.is_some()),
            ("target_timestamp", spec.target_timestamp.is_some()),
        ]
    } else {
        &[("values", !spec.values.is_empty()), ("watch", spec.watch.is_some()), ("on_insert", spec.on_insert)]
    };
    if let Some((field, _)) = misplaced.iter().find(|(_, present)| *present) {
        let other = if append { "copy" } else { "append" };
        let this = if append { "an append" } else { "a copy" };
        return fail(format!("{field}: only allowed in {other} rules (this is {this} rule)"));
    }
    if !append && spec.match_columns.is_empty() {
        return fail("match: at least one `target column = source column` pair is required".into());
    }
    if spec.set.is_empty() && (!append || spec.values.is_empty()) {
        let what = if append { "set or values" } else { "set" };
        return fail(format!("{what}: at least one `target column = source column` pair is required"));
    }

    let pairs = |field: &str, map: &BTreeMap<String, String>| -> Result<Vec<Pair>, Error> {
        let mut out = Vec::new();
        for (t, s) in map {
            let tc = column(target, t, field, &label)?;
            let sc = column(source, s, field, &label)?;
            if tc.type_oid != sc.type_oid || tc.typmod != sc.typmod {
                return Err(Error::new(format!(
                    "{label}: {field}: type mismatch: {}.{} is {} but {}.{} is {} (no implicit casts)",
                    target.name, t, tc.type_name, source.name, s, sc.type_name
                )));
            }
            if sc.eq_schema.is_none() {
                return Err(Error::new(format!(
                    "{label}: {field}: type {} of {}.{} has no equality operator",
                    sc.type_name, source.name, s
                )));
            }
            out.push(Pair { target: t.clone(), source: s.clone() });
        }
        Ok(out)
    };
    let keys = pairs("match", &spec.match_columns)?;
    let copies = pairs("set", &spec.set)?;
    let mut values = Vec::new();
    for (t, expression) in &spec.values {
        column(target, t, "values", &label)?;
        if spec.set.contains_key(t) {
            return fail(format!("values: column {}.{t} is also in set", target.name));
        }
        if expression.trim().is_empty() {
            return fail(format!("values.{t}: empty expression"));
        }
        values.push(Pair { target: t.clone(), source: expression.clone() });
    }

    for copy in &copies {
        if source.name == target.name && copy.source == copy.target {
            return fail(format!("set: copies column {}.{} onto itself", source.name, copy.source));
        }
        if keys.iter().any(|k| k.target == copy.target) {
            return fail(format!("set: column {}.{} is also a match column", target.name, copy.target));
        }
    }

    let source_key: Vec<String> = if append {
        match source.unique_keys.first() {
            Some(key) => {
                // After DDL `revalidate` supplies the key the rule was accepted with; its columns
                // may be gone since, and the planner relies on them.
                for c in key {
                    column(source, c, "source key", &label)?;
                }
                key.clone()
            }
            None => return fail(format!("source table {} has no primary key or unique index", source.name)),
        }
    } else {
        let key_columns: BTreeSet<&str> = keys.iter().map(|k| k.source.as_str()).collect();
        let unique =
            source.unique_keys.iter().any(|uk| !uk.is_empty() && uk.iter().all(|c| key_columns.contains(c.as_str())));
        if !unique {
            return fail(format!(
                "match: source columns ({}) of {} are not covered by a unique index or primary key",
                key_columns.iter().copied().collect::<Vec<_>>().join(", "),
                source.name
            ));
        }
        keys.iter().map(|k| k.source.clone()).collect()
    };

    let watch: Vec<String> = if append {
        let watch = match &spec.watch {
            Some(list) => list.clone(),
            None => {
                let outside_key: Vec<String> =
                    copies.iter().map(|p| p.source.clone()).filter(|c| !source_key.contains(c)).collect();
                if outside_key.is_empty() {
                    copies.iter().map(|p| p.source.clone()).collect()
                } else {
                    outside_key
                }
            }
        };
        if watch.is_empty() && !spec.on_insert {
            return fail("watch: name the source columns whose change appends a row (or set on_insert)".into());
        }
        for c in &watch {
            column(source, c, "watch", &label)?;
        }
        let mut watch = watch;
        watch.sort();
        watch.dedup();
        watch
    } else {
        Vec::new()
    };

    if let Some(by) = &spec.latest_by {
        let c = column(target, by, "latest_by", &label)?;
        if c.eq_schema.is_none() {
            return fail(format!("latest_by: type {} of {}.{by} cannot be compared", c.type_name, target.name));
        }
        if keys.iter().any(|k| &k.target == by) || copies.iter().any(|p| &p.target == by) {
            return fail(format!("latest_by: column {}.{by} is also a match or set column", target.name));
        }
    }

    let timestamps = match (&spec.source_timestamp, &spec.target_timestamp) {
        (None, None) => None,
        (Some(s), Some(t)) => {
            if !spec.bidirectional {
                return fail("source_timestamp, target_timestamp: only allowed in bidirectional rules".into());
            }
            let sc = column(source, s, "source_timestamp", &label)?;
            let tc = column(target, t, "target_timestamp", &label)?;
            if sc.type_oid != tc.type_oid {
                return fail(format!(
                    "source_timestamp, target_timestamp: type mismatch: {}.{s} is {} but {}.{t} is {}",
                    source.name, sc.type_name, target.name, tc.type_name
                ));
            }
            if copies.iter().any(|p| &p.source == s || &p.target == t) {
                return fail("source_timestamp, target_timestamp: must not be copied columns".into());
            }
            Some((s.clone(), t.clone()))
        }
        _ => return fail("source_timestamp, target_timestamp: give both or neither".into()),
    };

    if spec.bidirectional {
        if source.name == target.name {
            return fail("bidirectional: source and target must be different tables".into());
        }
        // Back-propagation needs one target row per source row to take the value from.
        let target_keys: BTreeSet<&str> = keys.iter().map(|k| k.target.as_str()).collect();
        let unique_target =
            target.unique_keys.iter().any(|uk| !uk.is_empty() && uk.iter().all(|c| target_keys.contains(c.as_str())));
        if !unique_target && spec.latest_by.is_none() {
            return fail(format!(
                "bidirectional: target match columns ({}) of {} are not unique; add latest_by to name the row \
                 whose value flows back",
                target_keys.iter().copied().collect::<Vec<_>>().join(", "),
                target.name
            ));
        }
    }

    let where_clause = match &spec.where_clause {
        Some(w) if w.trim().is_empty() => None,
        Some(w) => Some(w.clone()),
        None => None,
    };
    Ok(Rule {
        name: spec.name.clone(),
        kind: spec.kind,
        source: source.name.clone(),
        target: target.name.clone(),
        matches: keys,
        copies,
        where_clause,
        enabled: spec.enabled,
        latest_by: spec.latest_by.clone(),
        bidirectional: spec.bidirectional,
        timestamps,
        values,
        watch,
        on_insert: spec.on_insert,
        mode: spec.mode,
        fire_on_replica: spec.fire_on_replica,
        source_key,
    })
}

/// After DDL: whether an installed rule still fits its tables, i.e. every table and column it
/// names exists with a compatible type. The unique keys it was accepted with are taken as given:
/// while a dump is restored they are missing for a while (constraints come after the data),
/// and the planned statements do not depend on them.
pub fn revalidate(installed: &Rule, spec: &RuleSpec, mut catalog: Catalog) -> Result<Rule, Error> {
    let target_keys: Vec<String> = installed.matches.iter().map(|k| k.target.clone()).collect();
    for (table, key) in [(&spec.source, installed.source_key.clone()), (&spec.target, target_keys)] {
        if let Some(Ok(info)) = catalog.get_mut(table) {
            if !key.is_empty() {
                info.unique_keys.insert(0, key);
            }
        }
    }
    validate_rule(spec, &catalog)
}

/// Defining or changing a rule (or an entity) requires owning its tables, membership in the
/// owning role included; superusers own everything. Checked only for what a change touches, so
/// other roles' installed rules never stand in the way.
pub fn require_owner(label: &str, what: &str, info: &TableInfo) -> Result<(), Error> {
    if info.caller_owns {
        Ok(())
    } else {
        Err(Error::privilege(format!("{label}: must be owner of {what} {}", info.name)))
    }
}

/// Checks one entity; `all` are the document's entities, which `related` may name.
pub fn validate_entity(spec: &EntitySpec, all: &[EntitySpec], catalog: &Catalog) -> Result<Entity, Error> {
    let label = format!("entity \"{}\"", spec.name);
    let info = table(catalog, &spec.table, "table:", &label)?;
    let key = column(info, &spec.key, "key", &label)?;
    if key.eq_schema.is_none() {
        return Err(Error::new(format!("{label}: key: type {} has no equality operator", key.type_name)));
    }
    let mut related = BTreeMap::new();
    for (name, columns) in &spec.related {
        let field = format!("related.{name}");
        let Some(other) = all.iter().find(|e| &e.name == name) else {
            return Err(Error::new(format!("{label}: {field}: no entity \"{name}\" in the document")));
        };
        let other_table = table(catalog, &other.table, &field, &label)?;
        if columns.is_empty() {
            return Err(Error::new(format!(
                "{label}: {field}: at least one `its column = our column` pair is required"
            )));
        }
        let mut pairs = Vec::new();
        for (theirs, ours) in columns {
            let tc = column(other_table, theirs, &field, &label)?;
            let oc = column(info, ours, &field, &label)?;
            if tc.type_oid != oc.type_oid {
                return Err(Error::new(format!(
                    "{label}: {field}: type mismatch: {}.{theirs} is {} but {}.{ours} is {}",
                    other_table.name, tc.type_name, info.name, oc.type_name
                )));
            }
            pairs.push(Pair { target: theirs.clone(), source: ours.clone() });
        }
        related.insert(name.clone(), pairs);
    }
    Ok(Entity { name: spec.name.clone(), table: info.name.clone(), key: spec.key.clone(), related })
}

/// Rejects propagation cycles. Rule A feeds rule B when A writes a column of B's source that B
/// watches, or a match column of B's target (re-parenting fills it). A cycle would make every
/// write propagate forever, so the whole set is refused, naming the rules on the cycle.
/// Two rules writing one column would undo each other's writes (a re-sync flips the column every
/// time, `check()` never reaches zero), so a column is written by at most one rule: one direction of
/// a copy rule (a bidirectional rule writes both tables, timestamps included), or an append rule's
/// inserted rows, whose copied columns a copy rule on the same table would also fill. Append rules
/// among themselves write different rows.
pub fn check_overlaps(rules: &[Rule]) -> Result<(), Error> {
    // (table, column) -> (rule, is an append rule)
    let mut writers: BTreeMap<(&TableName, &str), Vec<(&str, bool)>> = BTreeMap::new();
    for rule in rules {
        let append = rule.kind == RuleKind::Append;
        let mut written: Vec<(&TableName, &str)> =
            rule.written_target_columns().into_iter().map(|c| (&rule.target, c)).collect();
        if let Some((source_ts, target_ts)) = &rule.timestamps {
            if rule.latest_by.as_ref() != Some(target_ts) {
                written.push((&rule.target, target_ts));
            }
            if rule.bidirectional {
                written.push((&rule.source, source_ts));
            }
        }
        if rule.bidirectional {
            written.extend(rule.copies.iter().map(|p| (&rule.source, p.source.as_str())));
        }
        for key in written {
            let list = writers.entry(key).or_default();
            if !list.iter().any(|(name, _)| *name == rule.name) {
                list.push((&rule.name, append));
            }
        }
    }
    for ((table, column), list) in &writers {
        for (i, (a, a_appends)) in list.iter().enumerate() {
            if let Some((b, _)) = list[i + 1..].iter().find(|(_, b_appends)| !(*a_appends && *b_appends)) {
                return Err(Error::new(format!(
                    "rules \"{a}\" and \"{b}\" both write {table}.{}: a column can be maintained by one rule only",
                    crate::sql::ident(column)
                )));
            }
        }
    }
    Ok(())
}

pub fn check_cycles(rules: &[Rule]) -> Result<(), Error> {
    // A bidirectional rule is two directions; the loop between them is declared and ends after
    // one reverse hop, every other cycle through either direction is refused.
    let mut expanded: Vec<Rule> = Vec::new();
    for rule in rules {
        expanded.push(rule.clone());
        if rule.bidirectional {
            expanded.push(rule.reversed());
        }
    }
    let rules = &expanded[..];
    // What each direction writes and watches, computed once rather than for every pair.
    let facts: Vec<(BTreeSet<&str>, BTreeSet<&str>)> =
        rules.iter().map(|r| (r.written_target_columns(), r.watched_source_columns())).collect();
    let feeds = |i: usize, j: usize| -> bool {
        let (a, b) = (&rules[i], &rules[j]);
        if a.name == b.name && a.source != b.source {
            return false; // the two directions of one bidirectional rule
        }
        let written = &facts[i].0;
        // an appended row is an INSERT into the target, which every rule on it sees
        let inserts = a.kind == RuleKind::Append;
        (a.target == b.source && (inserts || facts[j].1.iter().any(|c| written.contains(c))))
            || (a.target == b.target && b.matches.iter().any(|k| written.contains(k.target.as_str())))
    };
    // A rule can only feed rules on its target table: those are its candidates, in rule order
    // (the order a scan of all rules would take, so the same cycle is reported).
    let mut on_table: BTreeMap<&TableName, Vec<usize>> = BTreeMap::new();
    for (j, rule) in rules.iter().enumerate() {
        on_table.entry(&rule.source).or_default().push(j);
        if rule.target != rule.source {
            on_table.entry(&rule.target).or_default().push(j);
        }
    }
    // Depth-first search with colours, iterative: a chain of thousands of rules must not
    // exhaust the stack.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks = vec![Mark::New; rules.len()];
    for start in 0..rules.len() {
        if marks[start] != Mark::New {
            continue;
        }
        marks[start] = Mark::Active;
        // the rules being visited, each with how far through its candidates it is
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        while let Some(&(i, mut next)) = path.last() {
            let candidates = on_table.get(&rules[i].target).map(Vec::as_slice).unwrap_or_default();
            let mut deeper = None;
            while let Some(&j) = candidates.get(next) {
                next += 1;
                if !feeds(i, j) {
                    continue;
                }
                match marks[j] {
                    Mark::Active => {
                        let on_path = path.iter().position(|&(p, _)| p == j).expect("active rules are on the path");
                        let mut names: Vec<&str> =
                            path[on_path..].iter().map(|&(k, _)| rules[k].name.as_str()).collect();
                        names.push(rules[j].name.as_str());
                        return Err(Error::new(format!("rules form a propagation cycle: {}", names.join(" -> "))));
                    }
                    Mark::New => {
                        deeper = Some(j);
                        break;
                    }
                    Mark::Done => {}
                }
            }
            if let Some(last) = path.last_mut() {
                last.1 = next;
            }
            match deeper {
                Some(j) => {
                    marks[j] = Mark::Active;
                    path.push((j, 0));
                }
                None => {
                    marks[i] = Mark::Done;
                    path.pop();
                }
            }
        }
    }
    Ok(())
}

/// A whole rule set (and entities, when given), validated: every rule, the graph they form,
/// every entity. A disabled rule kept exactly as installed is not validated again: a schema change
/// may have disabled it, and it must not stand in the way of changes to other rules.
pub fn validate_set(
    specs: &[RuleSpec],
    entity_specs: Option<&[EntitySpec]>,
    installed: &[Rule],
    catalog: &Catalog,
) -> Result<(Vec<Rule>, Option<Vec<Entity>>), Error> {
    let mut rules = Vec::with_capacity(specs.len());
    for spec in specs {
        match installed.iter().find(|r| !r.enabled && r.name == spec.name && r.spec() == *spec) {
            Some(kept) => rules.push(kept.clone()),
            None => rules.push(validate_rule(spec, catalog)?),
        }
    }
    check_cycles(&rules)?;
    let entities = match entity_specs {
        Some(list) => Some(list.iter().map(|e| validate_entity(e, list, catalog)).collect::<Result<Vec<_>, _>>()?),
        None => None,
    };
    Ok((rules, entities))
}

/// What installing `rules` over `installed` changes: the rules added or changed (`touched`), and
/// the installed rules replaced or removed (`gone`).
pub fn difference<'a>(rules: &'a [Rule], installed: &'a [Rule]) -> (Vec<&'a Rule>, Vec<&'a Rule>) {
    let touched = rules.iter().filter(|r| !installed.contains(r)).collect();
    let gone = installed.iter().filter(|r| !rules.contains(r)).collect();
    (touched, gone)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rules::parse_document;
    pub use crate::testing::tbl;

    pub fn tailtracker() -> Catalog {
        let mut c = Catalog::new();
        let users = tbl(
            "public",
            "users",
            &[("id", "bigint"), ("auth_user_id", "uuid"), ("phone", "text"), ("name", "text"), ("meta", "json")],
            &[&["id"], &["auth_user_id"]],
        );
        let lost = tbl(
            "public",
            "lost_pets",
            &[
                ("id", "bigint"),
                ("owner_id", "bigint"),
                ("contact_phone", "text"),
                ("status", "text"),
                ("meta", "json"),
                ("n", "integer"),
            ],
            &[&["id"]],
        );
        let vets =
            tbl("public", "veterinarians", &[("id", "bigint"), ("user_id", "bigint"), ("phone", "text")], &[&["id"]]);
        c.insert("public.users".into(), Ok(users));
        c.insert("public.lost_pets".into(), Ok(lost));
        c.insert("public.veterinarians".into(), Ok(vets));
        c.insert("public.nope".into(), Err("table \"public.nope\" does not exist".into()));
        let pets = tbl(
            "public",
            "pets",
            &[("id", "bigint"), ("name", "text"), ("weight_kg", "numeric"), ("weight_at", "timestamptz")],
            &[&["id"]],
        );
        let records = tbl(
            "public",
            "health_records",
            &[("id", "bigint"), ("pet_id", "bigint"), ("weight", "numeric"), ("recorded_at", "timestamptz")],
            &[&["id"]],
        );
        let measurements = tbl(
            "public",
            "pet_measurements",
            &[("id", "bigint"), ("pet_id", "bigint"), ("weight_kg", "numeric"), ("measured_at", "timestamptz")],
            &[&["id"]],
        );
        c.insert("public.pets".into(), Ok(pets));
        c.insert("public.health_records".into(), Ok(records));
        c.insert("public.pet_measurements".into(), Ok(measurements));
        c
    }

    pub const WEIGHT_RULES: &str = r#"
[[rule]]
name = "history"
kind = "append"
source = "public.pets"
target = "public.pet_measurements"
set = { pet_id = "id", weight_kg = "weight_kg" }
values = { measured_at = "now()" }

[[rule]]
name = "latest"
source = "public.pets"
target = "public.health_records"
match = { pet_id = "id" }
set = { weight = "weight_kg" }
latest_by = "recorded_at"
bidirectional = true
source_timestamp = "weight_at"
target_timestamp = "recorded_at"
"#;

    #[test]
    fn weight_rules_validate() {
        let rules = validate_text(WEIGHT_RULES).unwrap();
        let history = &rules[0];
        assert_eq!(history.kind, RuleKind::Append);
        assert!(history.matches.is_empty());
        assert_eq!(history.source_key, vec!["id"]);
        // the key column is not watched: only a weight change appends
        assert_eq!(history.watch, vec!["weight_kg"]);
        let latest = &rules[1];
        assert!(latest.bidirectional);
        assert_eq!(latest.timestamps, Some(("weight_at".into(), "recorded_at".into())));
    }

    #[test]
    fn kind_specific_keys_are_refused_elsewhere() {
        let append_with_match =
            WEIGHT_RULES.replacen("kind = \"append\"", "kind = \"append\"\nmatch = { pet_id = \"id\" }", 1);
        let err = validate_text(&append_with_match).unwrap_err();
        assert_eq!(err.message, "rule \"history\": match: only allowed in copy rules (this is an append rule)");
        let copy_with_values = WEIGHT_RULES.replace("latest_by =", "on_insert = true\nlatest_by =");
        let err = validate_text(&copy_with_values).unwrap_err();
        assert!(err.message.starts_with("rule \"latest\": on_insert: only allowed in append rules"), "{}", err.message);
    }

    #[test]
    fn bidirectional_needs_one_row_per_key_and_both_timestamps() {
        let err = validate_text(&WEIGHT_RULES.replace("latest_by = \"recorded_at\"\n", "")).unwrap_err();
        assert!(err.message.contains("bidirectional: target match columns (pet_id)"), "{}", err.message);
        let err = validate_text(&WEIGHT_RULES.replace("source_timestamp = \"weight_at\"\n", "")).unwrap_err();
        assert!(err.message.contains("give both or neither"), "{}", err.message);
    }

    #[test]
    fn bidirectional_pair_is_no_cycle_but_others_are() {
        // the declared pair is accepted...
        assert!(validate_text(WEIGHT_RULES).is_ok());
        // ...a second rule carrying the record's weight back to pets closes a real cycle
        let text = format!(
            "{WEIGHT_RULES}{}",
            rule_toml("back", "public.health_records", "public.pets", "id = \"pet_id\"", "weight_kg = \"weight\"")
                .replace("id = \"pet_id\"", "id = \"id\"")
        );
        let err = validate_text(&text).unwrap_err();
        assert!(err.message.contains("propagation cycle"), "{}", err.message);
        assert!(err.message.contains("latest") && err.message.contains("back"), "{}", err.message);
    }

    pub fn rule_toml(name: &str, source: &str, target: &str, m: &str, s: &str) -> String {
        format!("[[rule]]\nname = \"{name}\"\nsource = \"{source}\"\ntarget = \"{target}\"\nmatch = {{ {m} }}\nset = {{ {s} }}\n")
    }

    fn validate_text(text: &str) -> Result<Vec<Rule>, Error> {
        let doc = parse_document(text)?;
        let rules = doc.rule.iter().map(|r| validate_rule(r, &tailtracker())).collect::<Result<Vec<_>, _>>()?;
        check_cycles(&rules)?;
        Ok(rules)
    }

    fn phone_rule() -> String {
        rule_toml("r", "public.users", "public.lost_pets", "owner_id = \"id\"", "contact_phone = \"phone\"")
    }

    #[test]
    fn valid_rule_resolves() {
        let rules = validate_text(&phone_rule()).unwrap();
        assert_eq!(rules[0].source, TableName::new("public", "users"));
        assert_eq!(rules[0].matches, vec![Pair { target: "owner_id".into(), source: "id".into() }]);
    }

    fn rejects(text: &str, needle: &str) {
        let err = validate_text(text).expect_err("should be rejected");
        assert!(err.message.contains(needle), "expected {needle:?} in {:?}", err.message);
    }

    #[test]
    fn rejects_unknown_table() {
        rejects(
            &phone_rule().replace("public.lost_pets", "public.nope"),
            "rule \"r\": target table \"public.nope\" does not exist",
        );
    }

    #[test]
    fn rejects_unknown_columns() {
        rejects(
            &phone_rule().replace("\"phone\"", "\"fone\""),
            "rule \"r\": set: column \"fone\" does not exist in table public.users",
        );
        rejects(
            &phone_rule().replace("owner_id", "owner"),
            "rule \"r\": match: column \"owner\" does not exist in table public.lost_pets",
        );
    }

    #[test]
    fn rejects_type_mismatch() {
        rejects(
            &phone_rule().replace("contact_phone", "n"),
            "type mismatch: public.lost_pets.n is integer but public.users.phone is text",
        );
    }

    #[test]
    fn rejects_type_without_equality() {
        rejects(&phone_rule().replace("contact_phone = \"phone\"", "meta = \"meta\""), "has no equality operator");
    }

    #[test]
    fn rejects_empty_maps() {
        rejects(&phone_rule().replace("owner_id = \"id\"", ""), "match: at least one");
        rejects(&phone_rule().replace("contact_phone = \"phone\"", ""), "set: at least one");
    }

    #[test]
    fn rejects_self_copy() {
        rejects(
            &rule_toml("r", "public.users", "public.users", "id = \"id\"", "phone = \"phone\""),
            "copies column public.users.phone onto itself",
        );
    }

    #[test]
    fn rejects_setting_a_match_column() {
        rejects(
            &rule_toml("r", "public.users", "public.lost_pets", "owner_id = \"id\"", "owner_id = \"id\""),
            "also a match column",
        );
    }

    #[test]
    fn rejects_non_unique_source_key() {
        rejects(
            &rule_toml("r", "public.users", "public.lost_pets", "contact_phone = \"phone\"", "status = \"name\""),
            "not covered by a unique index",
        );
    }

    #[test]
    fn revalidation_after_ddl() {
        let doc = parse_document(&phone_rule()).unwrap();
        let spec = &doc.rule[0];
        let installed = validate_rule(spec, &tailtracker()).unwrap();
        // a missing unique key (a dump being restored) is not a reason to disable the rule
        let mut cat = tailtracker();
        if let Some(Ok(t)) = cat.get_mut("public.users") {
            t.unique_keys.clear();
        }
        assert!(validate_rule(spec, &cat).is_err());
        assert_eq!(revalidate(&installed, spec, cat).unwrap(), installed);
        // a dropped column or table is
        let mut cat = tailtracker();
        if let Some(Ok(t)) = cat.get_mut("public.lost_pets") {
            t.columns.retain(|c| c.name != "contact_phone");
        }
        let err = revalidate(&installed, spec, cat).unwrap_err();
        assert!(err.message.contains("column \"contact_phone\" does not exist"), "{}", err.message);
        let mut cat = tailtracker();
        cat.insert("public.users".into(), Err("table \"public.users\" does not exist".into()));
        let err = revalidate(&installed, spec, cat).unwrap_err();
        assert!(err.message.contains("does not exist"), "{}", err.message);
    }

    #[test]
    fn ownership_is_a_separate_check() {
        let doc = parse_document(&phone_rule()).unwrap();
        let mut cat = tailtracker();
        if let Some(Ok(t)) = cat.get_mut("public.lost_pets") {
            t.caller_owns = false;
        }
        // validation itself does not care who owns what...
        validate_rule(&doc.rule[0], &cat).unwrap();
        // ...the shell asks, for the rules a change touches
        let target = cat["public.lost_pets"].as_ref().unwrap();
        let err = require_owner("rule \"r\"", "target table", target).unwrap_err();
        assert_eq!(err.message, "rule \"r\": must be owner of target table public.lost_pets");
        assert!(require_owner("rule \"r\"", "source table", cat["public.users"].as_ref().unwrap()).is_ok());
    }

    #[test]
    fn rejects_cycles_and_names_them() {
        let text = format!(
            "{}{}",
            rule_toml("a", "public.users", "public.veterinarians", "user_id = \"id\"", "phone = \"phone\""),
            rule_toml("b", "public.veterinarians", "public.users", "id = \"user_id\"", "phone = \"phone\""),
        );
        // users.id is unique, veterinarians.user_id is not: make b's key valid by matching on id.
        let text = text.replace("id = \"user_id\"", "id = \"id\"");
        rejects(&text, "propagation cycle: a -> b -> a");
    }

    #[test]
    fn inheritance_parents_are_refused() {
        let mut cat = tailtracker();
        if let Some(Ok(users)) = cat.get_mut("public.users") {
            users.inheritance_children = vec!["public.users_archive".into()];
        }
        let doc = parse_document(&phone_rule()).unwrap();
        let e = validate_rule(&doc.rule[0], &cat).unwrap_err();
        assert!(
            e.message.contains("source public.users has inheritance children (public.users_archive)"),
            "{}",
            e.message
        );
    }

    #[test]
    fn rules_writing_one_column_are_refused() {
        let one = rule_toml("a", "public.users", "public.lost_pets", "owner_id = \"id\"", "contact_phone = \"phone\"");
        let two = rule_toml("b", "public.users", "public.lost_pets", "owner_id = \"id\"", "contact_phone = \"phone\"");
        let rules = validate_text(&one).unwrap().into_iter().chain(validate_text(&two).unwrap()).collect::<Vec<_>>();
        let e = check_overlaps(&rules).unwrap_err();
        assert!(
            e.message.contains("rules \"a\" and \"b\" both write public.lost_pets.\"contact_phone\""),
            "{}",
            e.message
        );
        // other columns of the same table are fine
        let other = rule_toml("c", "public.users", "public.veterinarians", "user_id = \"id\"", "phone = \"phone\"");
        let rules = validate_text(&one).unwrap().into_iter().chain(validate_text(&other).unwrap()).collect::<Vec<_>>();
        assert!(check_overlaps(&rules).is_ok());
    }

    #[test]
    fn chains_without_cycles_are_fine() {
        let text = format!(
            "{}{}",
            rule_toml("a", "public.users", "public.veterinarians", "user_id = \"id\"", "phone = \"phone\""),
            rule_toml("b", "public.users", "public.lost_pets", "owner_id = \"id\"", "contact_phone = \"phone\""),
        );
        assert_eq!(validate_text(&text).unwrap().len(), 2);
    }

    #[test]
    fn entity_validation() {
        let pet =
            EntitySpec { name: "pet".into(), table: "public.pets".into(), key: "id".into(), related: BTreeMap::new() };
        let spec = EntitySpec {
            name: "user".into(),
            table: "public.users".into(),
            key: "auth_user_id".into(),
            related: BTreeMap::from([("pet".to_string(), BTreeMap::from([("id".to_string(), "id".to_string())]))]),
        };
        let all = [spec.clone(), pet];
        let e = validate_entity(&spec, &all, &tailtracker()).unwrap();
        assert_eq!(e.function_name(), "sync_all_user_data");
        assert_eq!(e.comprehensive_function_name(), "sync_all_user_data_comprehensive");
        assert_eq!(e.related["pet"], vec![Pair { target: "id".into(), source: "id".into() }]);
        let bad = EntitySpec { key: "nope".into(), ..spec.clone() };
        let err = validate_entity(&bad, &all, &tailtracker()).unwrap_err();
        assert!(err.message.contains("entity \"user\": key: column \"nope\""), "{}", err.message);
        let err = validate_entity(&spec, &all[..1], &tailtracker()).unwrap_err();
        assert_eq!(err.message, "entity \"user\": related.pet: no entity \"pet\" in the document");
        let wrong = EntitySpec {
            related: BTreeMap::from([("pet".to_string(), BTreeMap::from([("id".to_string(), "phone".to_string())]))]),
            ..spec
        };
        let err = validate_entity(&wrong, &all, &tailtracker()).unwrap_err();
        assert!(err.message.contains("related.pet: type mismatch"), "{}", err.message);
    }
}
