//! Stage 2: rule specs checked against the catalog, giving resolved rules. Every rejection names
//! the rule and the offending field, and nothing is returned unless the whole set is valid.

use std::collections::{BTreeMap, BTreeSet};

use crate::catalog::{Catalog, ColumnInfo, TableInfo, TableName};
use crate::rules::{EntitySpec, RuleSpec};
use crate::Error;

/// One `target column = source column` pair.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pair {
    pub target: String,
    pub source: String,
}

/// A validated copy rule with resolved table names. Pairs are sorted by target column, so two
/// rules that mean the same compare equal whatever order they were written in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub source: TableName,
    pub target: TableName,
    pub keys: Vec<Pair>,
    pub copies: Vec<Pair>,
    pub where_clause: Option<String>,
    pub enabled: bool,
}

impl Rule {
    /// Source columns whose change must be propagated: the copied ones and the key.
    pub fn watched_source_columns(&self) -> BTreeSet<&str> {
        self.keys.iter().chain(&self.copies).map(|p| p.source.as_str()).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    pub name: String,
    pub table: TableName,
    pub key: String,
}

impl Entity {
    /// `sync_all_<entity>_data`, created in the entity table's schema.
    pub fn function_name(&self) -> String {
        format!("sync_all_{}_data", self.name)
    }
}

fn table<'c>(catalog: &'c Catalog, written: &str, what: &str, label: &str) -> Result<&'c TableInfo, Error> {
    match catalog.get(written) {
        Some(Ok(info)) => Ok(info),
        Some(Err(reason)) => Err(Error::new(format!("{label}: {what} {reason}"))),
        None => Err(Error::new(format!("{label}: {what} table \"{written}\" was not looked up"))),
    }
}

fn column<'t>(info: &'t TableInfo, name: &str, field: &str, label: &str) -> Result<&'t ColumnInfo, Error> {
    info.column(name)
        .ok_or_else(|| Error::new(format!("{label}: {field}: column \"{name}\" does not exist in table {}", info.name)))
}

/// Checks one rule against the catalog.
pub fn validate_rule(spec: &RuleSpec, catalog: &Catalog) -> Result<Rule, Error> {
    let label = format!("rule \"{}\"", spec.name);
    let source = table(catalog, &spec.source, "source", &label)?;
    let target = table(catalog, &spec.target, "target", &label)?;
    for (what, info) in [("source", source), ("target", target)] {
        if !info.is_table {
            return Err(Error::new(format!("{label}: {what} {} is not a table", info.name)));
        }
    }
    if spec.match_columns.is_empty() {
        return Err(Error::new(format!(
            "{label}: match: at least one `target column = source column` pair is required"
        )));
    }
    if spec.set.is_empty() {
        return Err(Error::new(format!("{label}: set: at least one `target column = source column` pair is required")));
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

    for copy in &copies {
        if source.name == target.name && copy.source == copy.target {
            return Err(Error::new(format!("{label}: set: copies column {}.{} onto itself", source.name, copy.source)));
        }
        if keys.iter().any(|k| k.target == copy.target) {
            return Err(Error::new(format!(
                "{label}: set: column {}.{} is also a match column",
                target.name, copy.target
            )));
        }
    }
    let key_columns: BTreeSet<&str> = keys.iter().map(|k| k.source.as_str()).collect();
    let unique =
        source.unique_keys.iter().any(|uk| !uk.is_empty() && uk.iter().all(|c| key_columns.contains(c.as_str())));
    if !unique {
        return Err(Error::new(format!(
            "{label}: match: source columns ({}) of {} are not covered by a unique index or primary key",
            key_columns.iter().copied().collect::<Vec<_>>().join(", "),
            source.name
        )));
    }
    let where_clause = match &spec.where_clause {
        Some(w) if w.trim().is_empty() => None,
        Some(w) => Some(w.clone()),
        None => None,
    };
    Ok(Rule {
        name: spec.name.clone(),
        source: source.name.clone(),
        target: target.name.clone(),
        keys,
        copies,
        where_clause,
        enabled: spec.enabled,
    })
}

/// Defining or changing a rule (or an entity) requires owning its tables, membership in the
/// owning role included; superusers own everything. Checked only for what a change touches, so
/// other roles' installed rules never stand in the way.
pub fn require_owner(label: &str, what: &str, info: &TableInfo) -> Result<(), Error> {
    if info.caller_owns {
        Ok(())
    } else {
        Err(Error::new(format!("{label}: must be owner of {what} {}", info.name)))
    }
}

pub fn validate_entity(spec: &EntitySpec, catalog: &Catalog) -> Result<Entity, Error> {
    let label = format!("entity \"{}\"", spec.name);
    let info = table(catalog, &spec.table, "table", &label)?;
    let key = column(info, &spec.key, "key", &label)?;
    if key.eq_schema.is_none() {
        return Err(Error::new(format!("{label}: key: type {} has no equality operator", key.type_name)));
    }
    Ok(Entity { name: spec.name.clone(), table: info.name.clone(), key: spec.key.clone() })
}

/// Rejects propagation cycles. Rule A feeds rule B when A writes a column of B's source that B
/// watches, or a match column of B's target (re-parenting fills it). A cycle would make every
/// write propagate forever, so the whole set is refused, naming the rules on the cycle.
pub fn check_cycles(rules: &[Rule]) -> Result<(), Error> {
    let feeds = |a: &Rule, b: &Rule| -> bool {
        let written: BTreeSet<&str> = a.copies.iter().map(|p| p.target.as_str()).collect();
        (a.target == b.source && b.watched_source_columns().iter().any(|c| written.contains(c)))
            || (a.target == b.target && b.keys.iter().any(|k| written.contains(k.target.as_str())))
    };
    // Depth-first search with colours; rule sets are small, so O(n²) edges are fine.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        i: usize,
        rules: &[Rule],
        feeds: &dyn Fn(&Rule, &Rule) -> bool,
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[i] = Mark::Active;
        path.push(i);
        for j in 0..rules.len() {
            if !feeds(&rules[i], &rules[j]) {
                continue;
            }
            match marks[j] {
                Mark::Active => {
                    let start = path.iter().position(|&p| p == j).unwrap();
                    let mut cycle = path[start..].to_vec();
                    cycle.push(j);
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(j, rules, feeds, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks[i] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; rules.len()];
    for i in 0..rules.len() {
        if marks[i] == Mark::New {
            if let Some(cycle) = visit(i, rules, &feeds, &mut marks, &mut Vec::new()) {
                let names: Vec<&str> = cycle.iter().map(|&k| rules[k].name.as_str()).collect();
                return Err(Error::new(format!("rules form a propagation cycle: {}", names.join(" -> "))));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rules::parse_document;

    pub fn col(name: &str, ty: &str) -> ColumnInfo {
        let oid = match ty {
            "bigint" => 20,
            "integer" => 23,
            "text" => 25,
            "json" => 114,
            "uuid" => 2950,
            _ => 1,
        };
        ColumnInfo {
            name: name.into(),
            attnum: 1,
            type_oid: oid,
            typmod: -1,
            type_name: ty.into(),
            eq_schema: (ty != "json").then(|| "pg_catalog".to_string()),
        }
    }

    pub fn tbl(schema: &str, name: &str, cols: &[(&str, &str)], unique: &[&[&str]]) -> TableInfo {
        TableInfo {
            name: TableName::new(schema, name),
            oid: 1,
            row_type_oid: 2,
            is_table: true,
            caller_owns: true,
            columns: cols.iter().map(|(n, t)| col(n, t)).collect(),
            unique_keys: unique.iter().map(|u| u.iter().map(|c| c.to_string()).collect()).collect(),
        }
    }

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
        c
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
        assert_eq!(rules[0].keys, vec![Pair { target: "owner_id".into(), source: "id".into() }]);
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
        let spec = EntitySpec { name: "user".into(), table: "public.users".into(), key: "auth_user_id".into() };
        let e = validate_entity(&spec, &tailtracker()).unwrap();
        assert_eq!(e.function_name(), "sync_all_user_data");
        let bad = EntitySpec { key: "nope".into(), ..spec };
        let err = validate_entity(&bad, &tailtracker()).unwrap_err();
        assert!(err.message.contains("entity \"user\": key: column \"nope\""), "{}", err.message);
    }
}
