//! Property tests: the parser, the validator and the planner never panic, whatever they are
//! given; every error names what is at fault; the planner quotes every identifier; the cycle
//! check finds what a plain search finds. Default case counts keep `cargo test` quick; set
//! PROPTEST_CASES for a long run (see tests/hostile/README.md).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use data_sync_core::catalog::{Catalog, ColumnInfo, TableInfo, TableName};
use data_sync_core::plan::{related_keys, Planner, RulePlan, Statement};
use data_sync_core::rules::{parse_document, RuleKind};
use data_sync_core::validate::{check_cycles, revalidate, validate_rule, Pair, Rule};
use data_sync_core::Error;
use proptest::prelude::*;
use toml::Value;

/// `cases` unless PROPTEST_CASES says otherwise (proptest's default config reads it).
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    // the strategies rarely reject, but a run of millions of cases must not stop for it
    config.max_local_rejects = config.max_local_rejects.max(config.cases.saturating_mul(4));
    config.max_global_rejects = config.max_global_rejects.max(config.cases.saturating_mul(4));
    config
}

/// What every refusal must look like: it says where (rule, entity or document), and carries
/// no NUL (the server's C strings would end there).
fn well_formed(e: &Error) -> Result<(), TestCaseError> {
    let prefixes = ["rule \"", "rule #", "entity \"", "rules document: ", "rules form a propagation cycle: "];
    prop_assert!(prefixes.iter().any(|p| e.message.starts_with(p)), "does not say where: {:?}", e.message);
    prop_assert!(!e.message.contains('\0'), "NUL in {:?}", e.message);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Identifiers

/// tests/hostile/identifiers.txt: one JSON string a line.
fn listed_identifiers() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/hostile/identifiers.txt");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<String>(l).unwrap_or_else(|e| panic!("{path}: {l}: {e}")))
        .collect()
}

const FRAGMENTS: &[&str] = &[
    "\"", "\"\"", "'", "''", " ", ".", "$", "$1", "$$", "\\", "--", "/*", "*/", ";", "(", ")", ",", "=", "select",
    "SELECT", "order", "user", "x", "Id", "é", "表", "🐘", "\n", "\t", "U&", "E'", "s", "u", "r", "p", "ctid",
];

/// Any identifier the server can hold: 1 to 63 bytes of Unicode without NUL; random text,
/// pieces of SQL syntax, and the hand-picked list.
fn identifier() -> impl Strategy<Value = String> {
    // data_sync's own names (`data_sync$src`, `pg_catalog`) would be indistinguishable from
    // the planner's in the comparison below.
    let own = |s: &String| s.starts_with("data_sync") || s == "pg_catalog";
    let listed: Vec<String> = listed_identifiers().into_iter().filter(|s| !own(s)).collect();
    prop_oneof![
        // at most 15 characters of at most 4 bytes: never over 63 bytes
        "[^\\x00]{1,15}",
        prop::collection::vec(prop::sample::select(FRAGMENTS), 1..6).prop_map(|v| v.concat()),
        prop::sample::select(listed),
    ]
    .prop_filter("1 to 63 bytes, none of data_sync's own names", move |s| !s.is_empty() && s.len() <= 63 && !own(s))
}

#[test]
fn listed_identifiers_are_servable() {
    let listed = listed_identifiers();
    assert!(listed.len() >= 30);
    let distinct: BTreeSet<&String> = listed.iter().collect();
    assert_eq!(distinct.len(), listed.len(), "duplicates in identifiers.txt");
    for name in &listed {
        assert!(!name.is_empty() && name.len() <= 63 && !name.contains('\0'), "{name:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// An independent reader of the generated SQL

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// Anything outside quotes.
    Text(String),
    /// A double-quoted identifier, unescaped.
    Ident(String),
    /// A single-quoted string literal, unescaped.
    Literal(String),
}

/// Splits SQL into text, quoted identifiers and literals, as the server's scanner would (for
/// the syntax the planner writes: no comments or dollar quotes of its own).
fn lex(sql: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                // E'...' takes backslash escapes
                let escapes =
                    c == '\'' && (text.ends_with(" E") || text == "E" || text.ends_with("(E") || text.ends_with(",E"));
                if escapes {
                    text.pop();
                }
                if !text.is_empty() {
                    out.push(Token::Text(std::mem::take(&mut text)));
                }
                let mut content = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("unterminated {c} in {sql}")),
                        Some('\\') if escapes => content.push(chars.next().ok_or("dangling backslash")?),
                        Some(q) if q == c => {
                            if chars.peek() == Some(&c) {
                                chars.next();
                                content.push(c);
                            } else {
                                break;
                            }
                        }
                        Some(other) => content.push(other),
                    }
                }
                out.push(if c == '"' { Token::Ident(content) } else { Token::Literal(content) });
            }
            other => text.push(other),
        }
    }
    if !text.is_empty() {
        out.push(Token::Text(text));
    }
    Ok(out)
}

#[test]
fn the_reader_reads() {
    assert_eq!(
        lex("SELECT \"a\"\"b\".x, 'it''s', E'a\\'b' FROM \"t\"").unwrap(),
        vec![
            Token::Text("SELECT ".into()),
            Token::Ident("a\"b".into()),
            Token::Text(".x, ".into()),
            Token::Literal("it's".into()),
            Token::Text(", ".into()),
            Token::Literal("a'b".into()),
            Token::Text(" FROM ".into()),
            Token::Ident("t".into()),
        ]
    );
    assert!(lex("SELECT \"a").is_err());
}

// ---------------------------------------------------------------------------------------------
// Planner scenarios: one rule between two tables, every name random

/// Roles of the random names, by index.
const SRC_SCHEMA: usize = 0;
const SRC_TABLE: usize = 1;
const TGT_SCHEMA: usize = 2;
const TGT_TABLE: usize = 3;
const SRC_KEYS: usize = 4; // 3
const SRC_VALUES: usize = 7; // 3
const SRC_TS: usize = 10;
const TGT_MATCH: usize = 11; // 3
const TGT_SET: usize = 14; // 3
const TGT_LATEST: usize = 17;
const TGT_TS: usize = 18;
const NAMES: usize = 19;

#[derive(Debug, Clone)]
struct Scenario {
    names: Vec<String>,
    same_schema: bool,
    append: bool,
    keys: usize,
    values: usize,
    latest_by: bool,
    bidirectional: bool,
    timestamps: bool,
    target_unique: bool,
    with_where: bool,
    append_values: bool,
    on_insert: bool,
    watch: bool,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    // names repeat often (short pieces, the list): a repeat is replaced rather than rejected
    let names = prop::collection::vec(identifier(), NAMES).prop_map(|mut v| {
        let mut seen = BTreeSet::new();
        for (i, name) in v.iter_mut().enumerate() {
            if !seen.insert(name.clone()) {
                *name = format!("dup{i}");
                while !seen.insert(name.clone()) {
                    name.push('_');
                }
            }
        }
        v
    });
    let shape = (any::<bool>(), any::<bool>(), 1..=3usize, 1..=3usize, any::<[bool; 9]>());
    (names, shape).prop_map(|(names, (same_schema, append, keys, values, f))| Scenario {
        names,
        same_schema,
        append,
        keys,
        values,
        latest_by: f[0],
        bidirectional: f[1],
        timestamps: f[2],
        target_unique: f[3],
        with_where: f[4],
        append_values: f[5],
        on_insert: f[6],
        watch: f[7] && !append,
    })
}

fn column(name: &str, oid: u32, type_name: &str) -> ColumnInfo {
    ColumnInfo {
        name: name.into(),
        attnum: 1,
        type_oid: oid,
        typmod: -1,
        type_name: type_name.into(),
        eq_schema: Some("pg_catalog".into()),
        collation: 0,
    }
}

fn table(schema: &str, name: &str, columns: Vec<ColumnInfo>, unique: Vec<Vec<String>>) -> TableInfo {
    TableInfo {
        name: TableName::new(schema, name),
        oid: 1,
        row_type_oid: 2,
        is_table: true,
        caller_owns: true,
        columns,
        unique_keys: unique,
        inheritance_children: Vec::new(),
        is_child: false,
        before_update_triggers: false,
        before_insert_triggers: false,
    }
}

impl Scenario {
    fn n(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// The same scenario with every name replaced, `rename(old) -> new`.
    fn renamed(&self, rename: &BTreeMap<String, String>) -> Scenario {
        Scenario { names: self.names.iter().map(|n| rename[n].clone()).collect(), ..self.clone() }
    }

    fn tables(&self) -> (TableInfo, TableInfo) {
        let n = |i| self.n(i);
        let mut src_cols: Vec<ColumnInfo> = (0..self.keys).map(|i| column(n(SRC_KEYS + i), 20, "bigint")).collect();
        src_cols.extend((0..self.values).map(|i| column(n(SRC_VALUES + i), 25, "text")));
        src_cols.push(column(n(SRC_TS), 1184, "timestamptz"));
        let src_key: Vec<String> = (0..self.keys).map(|i| n(SRC_KEYS + i).to_string()).collect();
        let mut tgt_cols: Vec<ColumnInfo> = (0..self.keys).map(|i| column(n(TGT_MATCH + i), 20, "bigint")).collect();
        tgt_cols.extend((0..self.values).map(|i| column(n(TGT_SET + i), 25, "text")));
        tgt_cols.push(column(n(TGT_LATEST), 1184, "timestamptz"));
        tgt_cols.push(column(n(TGT_TS), 1184, "timestamptz"));
        let tgt_key: Vec<String> = (0..self.keys).map(|i| n(TGT_MATCH + i).to_string()).collect();
        let tgt_schema = if self.same_schema { n(SRC_SCHEMA) } else { n(TGT_SCHEMA) };
        (
            table(n(SRC_SCHEMA), n(SRC_TABLE), src_cols, vec![src_key]),
            table(tgt_schema, n(TGT_TABLE), tgt_cols, if self.target_unique { vec![tgt_key] } else { vec![] }),
        )
    }

    /// The rule as a TOML document, written by the toml crate (which quotes any key).
    fn document(&self) -> String {
        let n = |i: usize| Value::String(self.n(i).to_string());
        let pairs = |t: usize, s: usize, count: usize| -> Value {
            Value::Table((0..count).map(|i| (self.n(t + i).to_string(), n(s + i))).collect())
        };
        let mut rule = toml::Table::new();
        rule.insert("name".into(), "r".into());
        rule.insert("source".into(), "w.src".into());
        rule.insert("target".into(), "w.dst".into());
        rule.insert("set".into(), pairs(TGT_SET, SRC_VALUES, self.values));
        if self.with_where {
            rule.insert("where".into(), "true".into());
        }
        if self.append {
            rule.insert("kind".into(), "append".into());
            if self.append_values {
                rule.insert(
                    "values".into(),
                    Value::Table(toml::Table::from_iter([(self.n(TGT_LATEST).to_string(), "now()".into())])),
                );
            }
            rule.insert("on_insert".into(), self.on_insert.into());
            if self.watch {
                rule.insert("watch".into(), Value::Array(vec![n(SRC_VALUES)]));
            }
        } else {
            rule.insert("match".into(), pairs(TGT_MATCH, SRC_KEYS, self.keys));
            if self.latest_by {
                rule.insert("latest_by".into(), n(TGT_LATEST));
            }
            // bidirectional needs one target row per key: unique match columns or latest_by
            if self.bidirectional && (self.target_unique || self.latest_by) {
                rule.insert("bidirectional".into(), true.into());
                if self.timestamps {
                    rule.insert("source_timestamp".into(), n(SRC_TS));
                    rule.insert("target_timestamp".into(), n(TGT_TS));
                }
            }
        }
        let doc = toml::Table::from_iter([("rule".to_string(), Value::Array(vec![Value::Table(rule)]))]);
        toml::to_string(&doc).expect("a table of tables serializes")
    }

    /// Every statement and DDL the planner writes for the rule, in a fixed order.
    fn sql(&self) -> Result<Vec<String>, String> {
        let (source, target) = self.tables();
        let mut cat = Catalog::new();
        cat.insert("w.src".into(), Ok(source.clone()));
        cat.insert("w.dst".into(), Ok(target.clone()));
        let doc = parse_document(&self.document()).map_err(|e| e.message)?;
        let rule = validate_rule(&doc.rule[0], &cat).map_err(|e| e.message)?;
        let planner = Planner { rule: &rule, source: &source, target: &target };
        let mut out = plan_statements(&planner.plan());
        out.extend(planner.triggers());
        out.push(planner.entity_keys(self.n(SRC_KEYS)));
        let pairs = [Pair { target: self.n(TGT_MATCH).into(), source: self.n(SRC_KEYS).into() }];
        out.push(related_keys(&source, self.n(SRC_KEYS), &target, self.n(TGT_MATCH), &pairs)?);
        Ok(out)
    }
}

fn plan_statements(plan: &RulePlan) -> Vec<String> {
    Statement::ALL.into_iter().filter_map(|s| plan.sql(s)).map(str::to_string).collect()
}

/// Plain names in the same byte order as the originals, so every sorted list of columns comes
/// out in the same order.
fn plain_names(names: &[String]) -> BTreeMap<String, String> {
    let sorted: BTreeSet<&String> = names.iter().collect();
    sorted.into_iter().enumerate().map(|(i, n)| (n.clone(), format!("c{i:02}"))).collect()
}

fn quoted_everywhere(s: &Scenario) -> Result<(), TestCaseError> {
    let hostile = s.sql().map_err(|e| TestCaseError::fail(format!("refused: {e}")))?;
    let rename = plain_names(&s.names);
    let plain = s.renamed(&rename).sql().map_err(|e| TestCaseError::fail(format!("plain refused: {e}")))?;
    same_but_for_quoted_names(s, &hostile, &plain, &rename)
}

/// The checker proper: `hostile` must be `plain` with the names swapped, quoted.
fn same_but_for_quoted_names(
    s: &Scenario,
    hostile: &[String],
    plain: &[String],
    rename: &BTreeMap<String, String>,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(hostile.len(), plain.len());
    let names: BTreeSet<&str> = s.names.iter().map(String::as_str).collect();
    let mut quoted_anywhere = BTreeSet::new();
    for (sql, plain_sql) in hostile.iter().zip(plain) {
        let tokens = lex(sql).map_err(TestCaseError::fail)?;
        // 1. The statement is the plain-named one with each name swapped for the hostile one,
        //    and the names occur only as quoted identifiers: a name written unquoted, or quoted
        //    wrongly, would change how the statement splits into tokens.
        let expected: Vec<Token> = lex(plain_sql)
            .map_err(TestCaseError::fail)?
            .into_iter()
            .map(|t| match t {
                Token::Ident(n) => Token::Ident(rename.iter().find(|(_, p)| **p == n).map_or(n, |(h, _)| h.clone())),
                other => other,
            })
            .collect();
        prop_assert_eq!(&tokens, &expected, "\nhostile: {}\nplain:   {}", sql, plain_sql);
        for token in &tokens {
            match token {
                // 2. Quoted identifiers are the inputs or data_sync's own.
                Token::Ident(n) => {
                    prop_assert!(
                        names.contains(n.as_str()) || n.starts_with("data_sync") || n == "pg_catalog",
                        "{n:?} in {sql}"
                    );
                    quoted_anywhere.insert(n.clone());
                }
                // 3. Outside quotes: only the planner's own ASCII SQL. (A name's raw text can
                //    still occur there as part of it, `s` or `OR` say: 1. shows those occurrences
                //    are the planner's, since the plain-named statement has the same text.)
                Token::Text(t) => {
                    let odd = t.chars().find(|c| !(c.is_ascii_alphanumeric() || " \n_().,=<>*$".contains(*c)));
                    prop_assert!(odd.is_none(), "{odd:?} outside quotes in {sql}");
                }
                Token::Literal(l) => prop_assert_eq!(l.as_str(), "r", "literal in {}", sql),
            }
        }
    }
    // 4. Every name the rule uses is there.
    let used = [SRC_TABLE, TGT_TABLE, SRC_SCHEMA, SRC_KEYS, SRC_VALUES, TGT_SET];
    for i in used {
        prop_assert!(quoted_anywhere.contains(s.n(i)), "{:?} missing", s.n(i));
    }
    Ok(())
}

/// The checker catches what it is there for: a name written unquoted, or with its quotes not
/// doubled, or a quoted name that is not what was asked for.
#[test]
fn the_checker_catches_bad_quoting() {
    let mut names: Vec<String> = (0..NAMES).map(|i| format!("n{i}")).collect();
    names[SRC_VALUES] = "a\"b".into();
    names[TGT_SET] = "x y".into();
    let s = Scenario {
        names,
        same_schema: false,
        append: false,
        keys: 1,
        values: 1,
        latest_by: false,
        bidirectional: false,
        timestamps: false,
        target_unique: false,
        with_where: false,
        append_values: false,
        on_insert: false,
        watch: false,
    };
    let rename = plain_names(&s.names);
    let plain = s.renamed(&rename).sql().unwrap();
    let good = s.sql().unwrap();
    assert!(same_but_for_quoted_names(&s, &good, &plain, &rename).is_ok());
    let corrupt = |from: &str, to: &str| -> Vec<String> {
        assert!(good.iter().any(|sql| sql.contains(from)), "{from}");
        good.iter().map(|sql| sql.replace(from, to)).collect()
    };
    for bad in [
        corrupt("\"a\"\"b\"", "\"a\"b\""), // quote not doubled
        corrupt("\"x y\"", "x y"),         // not quoted
        corrupt("\"n1\"", "n1"),           // plain name not quoted
        corrupt("\"x y\"", "\"x  y\""),    // another name
    ] {
        assert!(same_but_for_quoted_names(&s, &bad, &plain, &rename).is_err());
    }
}

/// After DDL the installed rule is re-checked against the changed tables; whatever passes
/// must still plan (a dropped append key column once passed and made the planner panic).
fn revalidation_never_lets_a_broken_rule_through(
    s: &Scenario,
    drop: usize,
    on_target: bool,
) -> Result<(), TestCaseError> {
    let (source, target) = s.tables();
    let mut cat = Catalog::new();
    cat.insert("w.src".into(), Ok(source.clone()));
    cat.insert("w.dst".into(), Ok(target.clone()));
    let doc = parse_document(&s.document()).map_err(|e| TestCaseError::fail(e.message))?;
    let installed = validate_rule(&doc.rule[0], &cat).map_err(|e| TestCaseError::fail(e.message))?;
    // ALTER TABLE … DROP COLUMN: the column goes, and every unique key that had it
    let (written, mut info) = if on_target { ("w.dst", target) } else { ("w.src", source) };
    let gone = info.columns[drop % info.columns.len()].name.clone();
    info.columns.retain(|c| c.name != gone);
    info.unique_keys.retain(|k| !k.contains(&gone));
    cat.insert(written.into(), Ok(info));
    match revalidate(&installed, &doc.rule[0], cat.clone()) {
        Ok(rule) => {
            let (Ok(source), Ok(target)) = (&cat["w.src"], &cat["w.dst"]) else { unreachable!() };
            let planner = Planner { rule: &rule, source, target };
            planner.plan();
            planner.triggers();
        }
        Err(e) => well_formed(&e)?,
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Random documents

fn column_names() -> Vec<String> {
    common::tables().iter().flat_map(|t| t.columns.iter().map(|c| c.name.clone())).collect()
}

const WRITTEN_TABLES: &[&str] = &[
    "public.users",
    "public.lost_pets",
    "public.veterinarians",
    "public.pets",
    "public.health_records",
    "public.v_users",
    "other.owned_elsewhere",
    "\"Clinic\".\"Owners\"",
    "\"ünïcødé\".\"Tabelle 表\"",
    "\"ünïcødé\".\"Zïel\"",
    "users",
    "public.nope",
    "a.b.c",
    "",
];

const RULE_NAMES: &[&str] = &["phone", "history", "latest", "a", "b", "c", "Bad", "x y", ""];
/// Any TOML value, nested a little.
fn junk() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<String>().prop_map(Value::String),
        identifier().prop_map(Value::String),
        any::<i64>().prop_map(Value::Integer),
        any::<f64>().prop_map(Value::Float),
        any::<bool>().prop_map(Value::Boolean),
        Just(Value::Datetime("1979-05-27T07:32:00Z".parse().unwrap())),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(identifier(), inner, 0..4).prop_map(|m| Value::Table(m.into_iter().collect())),
        ]
    })
}

/// Mostly the right kind of value, sometimes anything.
fn or_junk(good: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Value> {
    prop_oneof![8 => good, 1 => junk()].boxed()
}

fn text(choices: Vec<String>) -> BoxedStrategy<Value> {
    or_junk(prop_oneof![6 => prop::sample::select(choices), 1 => identifier()].prop_map(Value::String))
}

fn owned(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn column_map() -> BoxedStrategy<Value> {
    let name = prop_oneof![6 => prop::sample::select(column_names()), 1 => identifier()];
    or_junk(
        prop::collection::btree_map(name.clone(), name, 0..4)
            .prop_map(|m| Value::Table(m.into_iter().map(|(k, v)| (k, Value::String(v))).collect())),
    )
}

fn rule_section() -> impl Strategy<Value = Value> {
    let columns = column_names();
    let strategies: Vec<(&str, BoxedStrategy<Value>)> = vec![
        ("name", text(owned(RULE_NAMES))),
        ("kind", text(owned(&["copy", "append", "merge"]))),
        ("source", text(owned(WRITTEN_TABLES))),
        ("target", text(owned(WRITTEN_TABLES))),
        ("match", column_map()),
        ("set", column_map()),
        ("where", text(owned(&["true", "status = 'lost'", "", "x) OR (true"]))),
        ("enabled", or_junk(any::<bool>().prop_map(Value::Boolean))),
        ("latest_by", text(columns.clone())),
        ("bidirectional", or_junk(any::<bool>().prop_map(Value::Boolean))),
        ("source_timestamp", text(columns.clone())),
        ("target_timestamp", text(columns.clone())),
        ("values", column_map()),
        ("watch", or_junk(prop::collection::vec(prop::sample::select(columns), 0..3).prop_map(|v| v.into()))),
        ("on_insert", or_junk(any::<bool>().prop_map(Value::Boolean))),
        ("mode", text(owned(&["strict", "isolated", "async", "eventual"]))),
        ("extra", junk().boxed()),
    ];
    let picked: Vec<BoxedStrategy<(String, Option<Value>)>> = strategies
        .into_iter()
        .map(|(key, value)| {
            // each key present most of the time; `extra` under a random name, rarely
            let key_name: BoxedStrategy<String> =
                if key == "extra" { identifier().boxed() } else { Just(key.to_string()).boxed() };
            let odds = if key == "extra" { 0.1 } else { 0.8 };
            (key_name, prop::option::weighted(odds, value)).boxed()
        })
        .collect();
    picked.prop_map(|entries| Value::Table(entries.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect()))
}

fn entity_section() -> impl Strategy<Value = Value> {
    let related =
        prop::collection::btree_map(prop::sample::select(owned(&["user", "pet", "vet", "nope"])), column_map(), 0..3)
            .prop_map(|m| Value::Table(m.into_iter().collect()));
    (
        prop::option::weighted(0.9, text(owned(WRITTEN_TABLES))),
        prop::option::weighted(0.9, text(column_names())),
        prop::option::weighted(0.5, or_junk(related)),
    )
        .prop_map(|(table, key, related)| {
            let entries = [("table", table), ("key", key), ("related", related)];
            Value::Table(entries.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), v))).collect())
        })
}

/// The fixed catalog's tables, each with its name written as in SQL (every part quoted).
fn written_tables() -> Vec<(String, Vec<String>)> {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    common::tables()
        .iter()
        .map(|t| {
            let written = format!("{}.{}", quote(&t.name.schema), quote(&t.name.name));
            (written, t.columns.iter().map(|c| c.name.clone()).collect())
        })
        .collect()
}

/// A rule between two real tables naming their real columns, paired by type: often valid, so
/// validation goes deep and the planner gets to work.
fn coherent_rule() -> impl Strategy<Value = Value> {
    let tables: Vec<(String, TableInfo)> = written_tables().into_iter().map(|(w, _)| w).zip(common::tables()).collect();
    let index = any::<prop::sample::Index>;
    (
        prop::sample::select(tables.clone()),
        prop::sample::select(tables),
        any::<[bool; 8]>(),
        prop::collection::vec(index(), 12),
    )
        .prop_map(|((source, src), (target, tgt), flag, pick)| {
            let names = |cols: Vec<&ColumnInfo>| -> Vec<String> { cols.iter().map(|c| c.name.clone()).collect() };
            // a target column, and a source column of the same type when there is one
            let pair = |i: usize| -> (String, Value) {
                let t = pick[i].get(&tgt.columns);
                let same: Vec<&ColumnInfo> = src.columns.iter().filter(|c| c.type_oid == t.type_oid).collect();
                let s = if same.is_empty() { pick[i + 1].get(&src.columns) } else { *pick[i + 1].get(&same) };
                (t.name.clone(), Value::String(s.name.clone()))
            };
            let of_type = |cols: &[ColumnInfo], oid: u32, i: usize| -> Value {
                let typed = names(cols.iter().filter(|c| c.type_oid == oid).collect());
                let all = names(cols.iter().collect());
                Value::String(pick[i].get(if typed.is_empty() { &all } else { &typed }).clone())
            };
            let mut rule = toml::Table::new();
            rule.insert("source".into(), source.into());
            rule.insert("target".into(), target.into());
            rule.insert("set".into(), Value::Table(toml::Table::from_iter([pair(0), pair(2)])));
            if flag[0] {
                rule.insert("kind".into(), "append".into());
                if flag[1] {
                    rule.insert(
                        "values".into(),
                        Value::Table(toml::Table::from_iter([(
                            pick[4].get(&tgt.columns).name.clone(),
                            "now()".into(),
                        )])),
                    );
                }
                if flag[2] {
                    rule.insert(
                        "watch".into(),
                        Value::Array(vec![Value::String(pick[5].get(&src.columns).name.clone())]),
                    );
                }
                rule.insert("on_insert".into(), flag[3].into());
            } else {
                // the source side of the match: a unique key column, when the source has one
                let key = src.unique_keys.first().and_then(|k| k.first()).cloned();
                let key = key.unwrap_or_else(|| pick[6].get(&src.columns).name.clone());
                let key_type = src.column(&key).map_or(20, |c| c.type_oid);
                let Value::String(t) = of_type(&tgt.columns, key_type, 7) else { unreachable!() };
                rule.insert("match".into(), Value::Table(toml::Table::from_iter([(t, Value::String(key))])));
                if flag[1] {
                    rule.insert("latest_by".into(), of_type(&tgt.columns, 1184, 8));
                }
                if flag[2] {
                    rule.insert("bidirectional".into(), true.into());
                }
                if flag[3] {
                    rule.insert("source_timestamp".into(), of_type(&src.columns, 1184, 9));
                    rule.insert("target_timestamp".into(), of_type(&tgt.columns, 1184, 10));
                }
            }
            if flag[4] {
                rule.insert("where".into(), "true".into());
            }
            if flag[5] {
                rule.insert("mode".into(), "async".into());
            }
            rule.insert("enabled".into(), (!flag[6]).into());
            Value::Table(rule)
        })
}

/// Rules, most of them coherent, named r1, r2, … unless they came with a name of their own.
fn rule_list() -> impl Strategy<Value = Value> {
    prop::collection::vec(prop_oneof![3 => coherent_rule(), 1 => rule_section()], 0..4).prop_map(|rules| {
        let named = rules.into_iter().enumerate().map(|(i, mut rule)| {
            if let Value::Table(t) = &mut rule {
                t.entry("name").or_insert_with(|| Value::String(format!("r{}", i + 1)));
            }
            rule
        });
        Value::Array(named.collect())
    })
}

/// Entities over real tables and their columns, related to each other.
fn coherent_entities() -> impl Strategy<Value = Value> {
    let one = (prop::sample::select(written_tables()), any::<[prop::sample::Index; 3]>(), any::<bool>());
    prop::collection::vec(one, 1..4).prop_map(|list| {
        let names: Vec<String> = (0..list.len()).map(|i| format!("e{i}")).collect();
        let columns: Vec<&Vec<String>> = list.iter().map(|((_, cols), _, _)| cols).collect();
        let entities = list.iter().enumerate().map(|(i, ((table, cols), pick, related))| {
            let mut e = toml::Table::new();
            e.insert("table".into(), table.clone().into());
            e.insert("key".into(), pick[0].get(cols).clone().into());
            let other = (i + 1) % list.len();
            if *related {
                let pair =
                    toml::Table::from_iter([(pick[1].get(columns[other]).clone(), pick[2].get(cols).clone().into())]);
                e.insert(
                    "related".into(),
                    Value::Table(toml::Table::from_iter([(names[other].clone(), Value::Table(pair))])),
                );
            }
            (names[i].clone(), Value::Table(e))
        });
        Value::Table(entities.collect())
    })
}

/// A document shaped like a rules document, with plausible and implausible values.
fn document() -> impl Strategy<Value = String> {
    let rules = prop_oneof![
        4 => rule_list(),
        1 => prop::collection::vec(or_junk(rule_section()), 0..5).prop_map(Value::Array),
    ];
    let entities = prop_oneof![
        2 => coherent_entities(),
        1 => prop::collection::btree_map(
            prop_oneof![4 => prop::sample::select(owned(&["user", "pet", "vet"])), 1 => identifier()],
            or_junk(entity_section()),
            0..3,
        )
        .prop_map(|m| Value::Table(m.into_iter().collect())),
    ];
    let top = (
        prop::option::weighted(0.9, or_junk(rules)),
        prop::option::weighted(0.4, or_junk(entities)),
        prop::option::weighted(0.05, junk()),
    );
    top.prop_filter_map("serializable", |(rules, entities, extra)| {
        let mut doc = toml::Table::new();
        doc.extend(rules.map(|v| ("rule".to_string(), v)));
        doc.extend(entities.map(|v| ("entity".to_string(), v)));
        doc.extend(extra.map(|v| ("rulez".to_string(), v)));
        toml::to_string(&doc).ok()
    })
}

/// Rules and entities over the real tables only, no junk: about one rule in seven is valid.
fn coherent_document() -> impl Strategy<Value = String> {
    let rules = prop::collection::vec(coherent_rule(), 1..3);
    (rules, prop::option::of(coherent_entities())).prop_map(|(rules, entities)| {
        let rules = rules.into_iter().enumerate().map(|(i, mut rule)| {
            if let Value::Table(t) = &mut rule {
                t.insert("name".into(), Value::String(format!("r{}", i + 1)));
            }
            rule
        });
        let mut doc = toml::Table::from_iter([("rule".to_string(), Value::Array(rules.collect()))]);
        doc.extend(entities.map(|e| ("entity".to_string(), e)));
        toml::to_string(&doc).expect("a table of tables serializes")
    })
}

/// Text that looks a bit like TOML: its punctuation, keys and escapes, in any order.
fn toml_soup() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        prop::sample::select(owned(&[
            "[[rule]]\n",
            "[entity.",
            "[",
            "]",
            "[[",
            "]]",
            "{",
            "}",
            "=",
            "\"",
            "'",
            "\"\"\"",
            "'''",
            "\n",
            ",",
            ".",
            "#",
            "\\",
            "\\u0000",
            "\\U0010FFFF",
            "\\uD800",
            "1979-05-27T07:32:00Z",
            "inf",
            "nan",
            "0x",
            "1_000",
            "true",
            " ",
            "\t",
            "\r\n",
            "name",
            "source",
            "match",
            "set",
            "rule",
            "entity",
        ])),
        identifier(),
    ];
    prop::collection::vec(pieces, 0..60).prop_map(|v| v.concat())
}

// ---------------------------------------------------------------------------------------------
// The cycle check against a plain search

/// The cycle check as first written: every rule against every other, recursively. Slow but
/// obviously right; the optimised one must report the same cycle.
fn reference_cycles(rules: &[Rule]) -> Result<(), String> {
    let mut expanded: Vec<Rule> = Vec::new();
    for rule in rules {
        expanded.push(rule.clone());
        if rule.bidirectional {
            expanded.push(rule.reversed());
        }
    }
    let rules = &expanded[..];
    let feeds = |a: &Rule, b: &Rule| -> bool {
        if a.name == b.name && a.source != b.source {
            return false;
        }
        let written = a.written_target_columns();
        let inserts = a.kind == RuleKind::Append;
        (a.target == b.source && (inserts || b.watched_source_columns().iter().any(|c| written.contains(c))))
            || (a.target == b.target && b.matches.iter().any(|k| written.contains(k.target.as_str())))
    };
    fn visit(
        i: usize,
        rules: &[Rule],
        feeds: &dyn Fn(&Rule, &Rule) -> bool,
        marks: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[i] = 1;
        path.push(i);
        for j in 0..rules.len() {
            if !feeds(&rules[i], &rules[j]) {
                continue;
            }
            match marks[j] {
                1 => {
                    let start = path.iter().position(|&p| p == j).unwrap();
                    let mut cycle = path[start..].to_vec();
                    cycle.push(j);
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(j, rules, feeds, marks, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        marks[i] = 2;
        None
    }
    let mut marks = vec![0; rules.len()];
    for i in 0..rules.len() {
        if marks[i] == 0 {
            if let Some(cycle) = visit(i, rules, &feeds, &mut marks, &mut Vec::new()) {
                let names: Vec<&str> = cycle.iter().map(|&k| rules[k].name.as_str()).collect();
                return Err(format!("rules form a propagation cycle: {}", names.join(" -> ")));
            }
        }
    }
    Ok(())
}

/// Four tables with the same columns, so that random rules feed each other often.
fn cycle_catalog() -> Catalog {
    (0..4)
        .map(|i| {
            let cols = vec![
                column("id", 20, "bigint"),
                column("p", 20, "bigint"),
                column("a", 25, "text"),
                column("b", 25, "text"),
                column("c", 25, "text"),
                column("ts", 1184, "timestamptz"),
            ];
            (format!("c.t{i}"), Ok(table("c", &format!("t{i}"), cols, vec![vec!["id".into()]])))
        })
        .collect()
}

/// (source, target, kind, match target column, set pairs, latest_by + bidirectional)
type RuleShape = (usize, usize, u8, bool, Vec<(u8, u8)>, bool);

fn rule_shapes() -> impl Strategy<Value = Vec<RuleShape>> {
    let shape =
        (0..4usize, 0..4usize, 0..4u8, any::<bool>(), prop::collection::vec((0..3u8, 0..3u8), 1..3), any::<bool>());
    prop::collection::vec(shape, 1..12)
}

fn shapes_to_rules(shapes: &[RuleShape]) -> Vec<Rule> {
    let cat = cycle_catalog();
    let col = |i: u8| ["a", "b", "c"][i as usize];
    let mut rules = Vec::new();
    for (n, (source, target, kind, match_p, set, bidirectional)) in shapes.iter().enumerate() {
        let set: String = set
            .iter()
            .map(|&(t, s)| (col(t), col(s)))
            .collect::<BTreeMap<_, _>>()
            .iter()
            .map(|(t, s)| format!("{t} = \"{s}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut text = format!(
            "[[rule]]\nname = \"r{n}\"\nsource = \"c.t{source}\"\ntarget = \"c.t{target}\"\nset = {{ {set} }}\n"
        );
        if *kind == 0 {
            text.push_str("kind = \"append\"\n");
        } else {
            text.push_str(if *match_p { "match = { p = \"id\" }\n" } else { "match = { id = \"id\" }\n" });
            if *bidirectional {
                text.push_str("latest_by = \"ts\"\nbidirectional = true\n");
            }
        }
        let doc = parse_document(&text).unwrap();
        // shapes the validator refuses (a column copied onto itself, say) are left out
        if let Ok(rule) = validate_rule(&doc.rule[0], &cat) {
            rules.push(rule);
        }
    }
    rules
}

// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn parser_never_panics_on_any_text(text in any::<String>()) {
        if let Err(e) = parse_document(&text) {
            well_formed(&e)?;
        }
    }

    #[test]
    fn parser_never_panics_on_toml_like_text(text in toml_soup()) {
        if let Err(e) = common::load(&text) {
            well_formed(&e)?;
        }
    }

    /// Parse, resolve, validate, check cycles, entities and ownership, then plan what was
    /// accepted: nothing panics, and every refusal says where.
    #[test]
    fn pipeline_never_panics_on_random_documents(text in document()) {
        match common::load(&text) {
            Ok(accepted) => prop_assert_eq!(accepted.plans.len(), accepted.rules.len()),
            Err(e) => well_formed(&e)?,
        }
    }

    /// Mostly valid documents: deep validation, and planning of what passes.
    #[test]
    fn pipeline_plans_or_refuses_coherent_documents(text in coherent_document()) {
        match common::load(&text) {
            Ok(accepted) => {
                for ((plan, triggers), rule) in accepted.plans.iter().zip(&accepted.rules) {
                    prop_assert!(plan.sql(Statement::FlushOne).unwrap().contains(&rule.target.sql()), "{:?}", plan.sql(Statement::FlushOne));
                    prop_assert!(!triggers.is_empty() || !rule.enabled || rule.kind == RuleKind::Append);
                }
            }
            Err(e) => well_formed(&e)?,
        }
    }

    #[test]
    fn planner_quotes_every_identifier(s in scenario()) {
        quoted_everywhere(&s)?;
    }

    #[test]
    fn revalidation_after_dropping_any_column_never_panics(s in scenario(), drop in 0..20usize, on_target in any::<bool>()) {
        revalidation_never_lets_a_broken_rule_through(&s, drop, on_target)?;
    }

    #[test]
    fn cycle_check_agrees_with_a_plain_search(shapes in rule_shapes()) {
        let rules = shapes_to_rules(&shapes);
        let fast = check_cycles(&rules).map_err(|e| e.message);
        prop_assert_eq!(fast, reference_cycles(&rules));
    }
}
