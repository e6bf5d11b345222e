//! Stage 3: the SQL each rule runs. Every identifier is quoted, every operator and function is
//! schema-qualified, so neither the caller's `search_path` nor look-alike objects can change
//! what a statement means.
//!
//! Scoping of the optional `where` predicate: it is written over target columns, so in every
//! statement the target is the only relation whose column names are visible unqualified; the
//! source values come through a derived table whose columns are named `data_sync$k1`,
//! `data_sync$v1`, … and cannot clash with a user's column.

use crate::catalog::{ColumnInfo, TableInfo};
use crate::validate::Rule;

/// Quotes an identifier (always, so reserved words and mixed case are safe).
pub fn ident(name: &str) -> String {
    postgres_protocol::escape::escape_identifier(name)
}

/// Quotes a string literal.
pub fn literal(value: &str) -> String {
    postgres_protocol::escape::escape_literal(value)
}

const SRC: &str = "\"data_sync$src\"";

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulePlan {
    /// Propagates from one source row. `$1..$n`: the source key values.
    pub flush_one: String,
    /// Propagates from many source rows. `$1..$n`: arrays of the source key values.
    pub flush_many: String,
    /// Looks up the copied values for one target row (BEFORE trigger on the target).
    /// `$1..$n`: the target's match values; `$n+1`: the target row, only if the rule has `where`.
    pub fill_lookup: String,
    /// Counts target rows that differ from their source row. No parameters.
    pub check: String,
    /// First batch of source keys for a full re-sync, in key order. `$1`: batch size.
    pub keys_first: String,
    /// Next batch after a key. `$1`: batch size, `$2..`: the last key seen.
    pub keys_after: String,
    /// Type OIDs of the source key columns, in parameter order.
    pub key_types: Vec<u32>,
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

    fn tgt(&self, column: &str) -> String {
        format!("{}.{}", self.target.name.sql(), ident(column))
    }

    /// `(SELECT s.k.., s.v.. FROM source AS s <from_extra> WHERE <filter>) AS "data_sync$src"(k.., v..)`
    fn source_rows(&self, from_extra: &str, filter: &str) -> String {
        let rule = self.rule;
        let cols: Vec<String> =
            rule.keys.iter().chain(&rule.copies).map(|p| format!("s.{}", ident(&p.source))).collect();
        let names: Vec<String> = (0..rule.keys.len()).map(k).chain((0..rule.copies.len()).map(v)).collect();
        let filter = if filter.is_empty() { String::new() } else { format!(" WHERE {filter}") };
        format!(
            "(SELECT {} FROM {from_extra}{} AS s{filter}) AS {SRC}({})",
            cols.join(", "),
            self.source.name.sql(),
            names.join(", ")
        )
    }

    /// Target rows joined to their source row and differing from it (and within `where`).
    fn join_and_drift(&self) -> String {
        let rule = self.rule;
        let mut conds: Vec<String> = rule
            .keys
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{} {} {SRC}.{}", self.tgt(&p.target), eq_op(self.src_col(&p.source)), k(i)))
            .collect();
        let drift: Vec<String> = rule
            .copies
            .iter()
            .enumerate()
            .map(|(i, p)| distinct(&self.tgt(&p.target), &format!("{SRC}.{}", v(i)), self.src_col(&p.source)))
            .collect();
        conds.push(format!("({})", drift.join(" OR ")));
        if let Some(w) = &rule.where_clause {
            // On lines of its own so a trailing `--` comment cannot swallow what follows.
            conds.push(format!("(\n{w}\n)"));
        }
        conds.join("\n  AND ")
    }

    fn update(&self, source_rows: String) -> String {
        let sets: Vec<String> = self
            .rule
            .copies
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{} = {SRC}.{}", ident(&p.target), v(i)))
            .collect();
        format!(
            "UPDATE {} SET {}\nFROM {}\nWHERE {}",
            self.target.name.sql(),
            sets.join(", "),
            source_rows,
            self.join_and_drift()
        )
    }

    pub fn plan(&self) -> RulePlan {
        let rule = self.rule;
        let key_cols: Vec<&ColumnInfo> = rule.keys.iter().map(|p| self.src_col(&p.source)).collect();

        let one_filter: Vec<String> = rule
            .keys
            .iter()
            .zip(&key_cols)
            .enumerate()
            .map(|(i, (p, c))| format!("s.{} {} ${}", ident(&p.source), eq_op(c), i + 1))
            .collect();
        let flush_one = self.update(self.source_rows("", &one_filter.join(" AND ")));

        let flush_many = if rule.keys.len() == 1 {
            let p = &rule.keys[0];
            self.update(self.source_rows("", &format!("s.{} {} ANY ($1)", ident(&p.source), eq_op(key_cols[0]))))
        } else {
            // ROWS FROM: multi-argument unnest is only special-cased when written unqualified.
            let unnests: Vec<String> = (1..=rule.keys.len()).map(|i| format!("pg_catalog.unnest(${i})")).collect();
            let names: Vec<String> = (1..=rule.keys.len()).map(|i| format!("u{i}")).collect();
            let on: Vec<String> = rule
                .keys
                .iter()
                .zip(&key_cols)
                .enumerate()
                .map(|(i, (p, c))| format!("s.{} {} u.u{}", ident(&p.source), eq_op(c), i + 1))
                .collect();
            let from = format!("ROWS FROM ({}) AS u({}), ", unnests.join(", "), names.join(", "));
            self.update(self.source_rows(&from, &on.join(" AND ")))
        };

        let mut fill_lookup = format!(
            "SELECT {} FROM {} AS s WHERE {}",
            rule.copies.iter().map(|p| format!("s.{}", ident(&p.source))).collect::<Vec<_>>().join(", "),
            self.source.name.sql(),
            one_filter.join(" AND ")
        );
        if let Some(w) = &rule.where_clause {
            fill_lookup.push_str(&format!(
                "\n  AND EXISTS (SELECT FROM (SELECT (${}).*) AS {} WHERE (\n{w}\n))",
                rule.keys.len() + 1,
                ident(&self.target.name.name)
            ));
        }

        let check = format!(
            "SELECT pg_catalog.count(*) FROM {}, {}\nWHERE {}",
            self.target.name.sql(),
            self.source_rows("", ""),
            self.join_and_drift()
        );

        let key_list: Vec<String> = rule.keys.iter().map(|p| format!("s.{}", ident(&p.source))).collect();
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

        RulePlan {
            flush_one,
            flush_many,
            fill_lookup,
            check,
            keys_first,
            keys_after,
            key_types: key_cols.iter().map(|c| c.type_oid).collect(),
        }
    }

    /// Source keys of one entity: `$1` is the entity key value.
    pub fn entity_keys(&self, entity_key: &str) -> String {
        let key_list: Vec<String> = self.rule.keys.iter().map(|p| format!("s.{}", ident(&p.source))).collect();
        let col = self.source.column(entity_key).expect("validated entity key");
        format!(
            "SELECT {} FROM {} AS s WHERE s.{} {} $1",
            key_list.join(", "),
            self.source.name.sql(),
            ident(entity_key),
            eq_op(col)
        )
    }

    /// `CREATE TRIGGER` statements installing the rule. Source side: AFTER row triggers that
    /// only note changed keys (filtered by column list and WHEN, so unrelated writes cost
    /// nothing) and AFTER statement triggers that propagate all noted keys at once. Target side:
    /// BEFORE row triggers that fill copied columns of new or re-parented rows in place.
    pub fn triggers(&self) -> Vec<String> {
        let rule = self.rule;
        let watched: Vec<&str> = rule.keys.iter().chain(&rule.copies).map(|p| p.source.as_str()).collect();
        let mut watched_unique = watched.clone();
        watched_unique.sort();
        watched_unique.dedup();
        let of = watched_unique.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
        let when = watched_unique
            .iter()
            .map(|c| distinct(&format!("OLD.{}", ident(c)), &format!("NEW.{}", ident(c)), self.src_col(c)))
            .collect::<Vec<_>>()
            .join(" OR ");
        let arg = literal(&rule.name);
        let src = self.source.name.sql();
        let tgt = self.target.name.sql();
        let name = |suffix: &str| ident(&trigger_name(&rule.name, suffix));
        let target_keys = rule.keys.iter().map(|p| ident(&p.target)).collect::<Vec<_>>().join(", ");
        let target_when = rule
            .keys
            .iter()
            .map(|p| {
                let c = self.target.column(&p.target).expect("validated target key");
                distinct(&format!("OLD.{}", ident(&p.target)), &format!("NEW.{}", ident(&p.target)), c)
            })
            .collect::<Vec<_>>()
            .join(" OR ");
        vec![
            format!("CREATE TRIGGER {} AFTER UPDATE OF {of} ON {src} FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION data_sync.source_row_trigger({arg})", name("sur")),
            format!("CREATE TRIGGER {} AFTER UPDATE OF {of} ON {src} FOR EACH STATEMENT EXECUTE FUNCTION data_sync.source_statement_trigger({arg})", name("sus")),
            format!("CREATE TRIGGER {} AFTER INSERT ON {src} FOR EACH ROW EXECUTE FUNCTION data_sync.source_row_trigger({arg})", name("sir")),
            format!("CREATE TRIGGER {} AFTER INSERT ON {src} FOR EACH STATEMENT EXECUTE FUNCTION data_sync.source_statement_trigger({arg})", name("sis")),
            format!("CREATE TRIGGER {} BEFORE INSERT ON {tgt} FOR EACH ROW EXECUTE FUNCTION data_sync.target_fill_trigger({arg})", name("tfi")),
            format!("CREATE TRIGGER {} BEFORE UPDATE OF {target_keys} ON {tgt} FOR EACH ROW WHEN ({target_when}) EXECUTE FUNCTION data_sync.target_fill_trigger({arg})", name("tfu")),
            format!("CREATE TRIGGER {} AFTER INSERT ON {tgt} FOR EACH STATEMENT EXECUTE FUNCTION data_sync.target_statement_trigger({arg})", name("tis")),
            format!("CREATE TRIGGER {} AFTER UPDATE OF {target_keys} ON {tgt} FOR EACH STATEMENT EXECUTE FUNCTION data_sync.target_statement_trigger({arg})", name("tus")),
        ]
    }
}

/// Suffixes of the triggers a rule installs, and on which side: `s` source, `t` target.
pub const TRIGGER_SUFFIXES: [(&str, char); 8] =
    [("sur", 's'), ("sus", 's'), ("sir", 's'), ("sis", 's'), ("tfi", 't'), ("tfu", 't'), ("tis", 't'), ("tus", 't')];

pub fn trigger_name(rule: &str, suffix: &str) -> String {
    format!("data_sync_{rule}_{suffix}")
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
            plan.flush_one,
            "UPDATE \"public\".\"lost_pets\" SET \"contact_phone\" = \"data_sync$src\".\"data_sync$v1\"\n\
             FROM (SELECT s.\"id\", s.\"phone\" FROM \"public\".\"users\" AS s WHERE s.\"id\" OPERATOR(\"pg_catalog\".=) $1) AS \"data_sync$src\"(\"data_sync$k1\", \"data_sync$v1\")\n\
             WHERE \"public\".\"lost_pets\".\"owner_id\" OPERATOR(\"pg_catalog\".=) \"data_sync$src\".\"data_sync$k1\"\n  \
             AND (((\"public\".\"lost_pets\".\"contact_phone\" OPERATOR(\"pg_catalog\".=) \"data_sync$src\".\"data_sync$v1\") IS NOT TRUE AND (\"public\".\"lost_pets\".\"contact_phone\" IS NOT NULL OR \"data_sync$src\".\"data_sync$v1\" IS NOT NULL)))"
        );
        assert!(plan.flush_many.contains("s.\"id\" OPERATOR(\"pg_catalog\".=) ANY ($1)"));
        assert_eq!(plan.key_types, vec![20]);
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
        assert!(plan.flush_one.contains("UPDATE \"x\".\"select\" SET \"phone\""), "{}", plan.flush_one);
        assert!(plan.flush_one.contains("s.\"Ph\"\"one\""), "{}", plan.flush_one);
        assert!(plan.flush_one.contains("FROM \"Clinic\".\"Owners\" AS s"), "{}", plan.flush_one);
        assert!(plan.flush_one.contains("\"x\".\"select\".\"owner Id\""), "{}", plan.flush_one);
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
            plan.flush_many.contains("FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS u(u1, u2), \"a\".\"src\" AS s WHERE s.\"k1\" OPERATOR(\"pg_catalog\".=) u.u1 AND s.\"k2\" OPERATOR(\"pg_catalog\".=) u.u2)"),
            "{}",
            plan.flush_many
        );
        assert!(plan
            .flush_one
            .contains("s.\"k1\" OPERATOR(\"pg_catalog\".=) $1 AND s.\"k2\" OPERATOR(\"pg_catalog\".=) $2"));
        assert_eq!(
            plan.keys_after,
            "SELECT s.\"k1\", s.\"k2\" FROM \"a\".\"src\" AS s WHERE (s.\"k1\" OPERATOR(\"pg_catalog\".>) $2) OR (s.\"k1\" OPERATOR(\"pg_catalog\".=) $2 AND s.\"k2\" OPERATOR(\"pg_catalog\".>) $3) ORDER BY s.\"k1\", s.\"k2\" LIMIT $1"
        );
        assert_eq!(plan.key_types, vec![20, 25]);
    }

    #[test]
    fn where_clause_sits_on_its_own_lines() {
        let text = rule_toml("r", "public.users", "public.lost_pets", "owner_id = \"id\"", "contact_phone = \"phone\"")
            + "where = \"status = 'lost' -- only open cases\"\n";
        // the `where` line lands after `set`, still inside the [[rule]] table
        let (_, plan) = planned(&text, &tailtracker());
        assert!(plan.flush_one.ends_with("AND (\nstatus = 'lost' -- only open cases\n)"), "{}", plan.flush_one);
        assert!(plan.fill_lookup.contains(
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
        assert_eq!(t.len(), TRIGGER_SUFFIXES.len());
        // dropping a rule relies on TRIGGER_SUFFIXES naming every trigger it created, on its side
        for (ddl, (suffix, side)) in t.iter().zip(TRIGGER_SUFFIXES) {
            let table = if side == 's' { "\"public\".\"users\"" } else { "\"public\".\"lost_pets\"" };
            assert!(ddl.starts_with(&format!("CREATE TRIGGER \"data_sync_r_{suffix}\" ")), "{ddl}");
            assert!(ddl.contains(&format!(" ON {table} ")), "{ddl}");
        }
        assert!(t[0].starts_with("CREATE TRIGGER \"data_sync_r_sur\" AFTER UPDATE OF \"id\", \"phone\" ON \"public\".\"users\" FOR EACH ROW WHEN ("));
        assert!(t[0].ends_with("EXECUTE FUNCTION data_sync.source_row_trigger('r')"));
        assert!(t[5].contains("BEFORE UPDATE OF \"owner_id\" ON \"public\".\"lost_pets\""));
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
