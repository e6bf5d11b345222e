//! Hostile rule documents (tests/hostile/) through the pipeline `data_sync.load_rules` runs:
//! every bad one is refused with a message that names what is at fault, nothing panics, and
//! valid but odd identifiers come out quoted. Oversized and deeply nested documents are
//! generated here rather than committed.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::load;
use data_sync_core::plan::Statement;
use data_sync_core::rules::parse_document;

fn corpus(dir: &str) -> Vec<(PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/hostile").join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    files.into_iter().map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap())).collect()
}

/// The values of `# <tag>: ...` comment lines.
fn tagged<'t>(text: &'t str, tag: &str) -> Vec<&'t str> {
    let prefix = format!("# {tag}: ");
    text.lines().filter_map(|l| l.strip_prefix(prefix.as_str())).collect()
}

/// A message names what is at fault: the rule (by name, or by position when it has none), the
/// entity, or the document (with a line and column for syntax errors).
fn names_the_culprit(message: &str) -> bool {
    ["data_sync: ", "rule \"", "rule #", "entity \"", "rules document: ", "rules form a propagation cycle: "]
        .iter()
        .any(|p| message.starts_with(p))
}

#[test]
fn bad_documents_are_refused_naming_the_culprit() {
    let mut failures = Vec::new();
    for (path, text) in corpus("rules") {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let expected = tagged(&text, "expect");
        assert!(text.starts_with("# expect: "), "{name}: must start with a `# expect: ` line");
        match load(&text) {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(e) => {
                for needle in &expected {
                    if !e.message.contains(needle) {
                        failures.push(format!("{name}: expected {needle:?} in {:?}", e.message));
                    }
                }
                if !names_the_culprit(&e.message) {
                    failures.push(format!("{name}: message does not say where: {:?}", e.message));
                }
                if e.message.contains('\0') {
                    failures.push(format!("{name}: message carries a NUL (the server would cut it there)"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} corpus failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn odd_but_valid_identifiers_are_accepted_and_quoted() {
    for (path, text) in corpus("accept") {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let accepted = load(&text).unwrap_or_else(|e| panic!("{name}: refused: {}", e.message));
        let sql: Vec<&str> = accepted
            .plans
            .iter()
            .flat_map(|(plan, triggers)| {
                [
                    Statement::FlushOne,
                    Statement::FlushMany,
                    Statement::FlushRow,
                    Statement::FillLookup,
                    Statement::Check,
                ]
                .into_iter()
                .filter_map(|s| plan.sql(s))
                .chain(triggers.iter().map(String::as_str))
            })
            .collect();
        for needle in tagged(&text, "plan") {
            assert!(sql.iter().any(|s| s.contains(needle)), "{name}: {needle:?} in none of\n{}", sql.join("\n---\n"));
        }
        for entity in tagged(&text, "entity") {
            assert!(accepted.entities.iter().any(|e| e.name == entity), "{name}: entity {entity}");
        }
    }
}

/// `where` and `values` are SQL the server checks (one expression, nothing after it); the
/// core's part is to pass them on unchanged, each on lines of its own inside parentheses.
#[test]
fn predicates_pass_through_wrapped_for_the_server_to_judge() {
    for (path, text) in corpus("server") {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(!tagged(&text, "expect").is_empty(), "{name}: say what the server answers");
        let accepted = load(&text).unwrap_or_else(|e| panic!("{name}: refused by the core: {}", e.message));
        let spec = &accepted.doc.rule[0];
        let predicates = spec.where_clause.iter().chain(spec.values.values());
        for predicate in predicates {
            let (plan, _) = &accepted.plans[0];
            let wrapped = format!("(\n{predicate}\n)");
            for sql in [Statement::FlushOne, Statement::FlushMany].map(|s| plan.sql(s).unwrap()) {
                assert!(sql.contains(&wrapped), "{name}: predicate not wrapped in {sql}");
                // the predicate occurs only wrapped
                assert_eq!(sql.matches(predicate.as_str()).count(), sql.matches(&wrapped).count(), "{name}: {sql}");
            }
        }
    }
}

/// What the pipeline made of `text`, and how long it took.
fn timed(text: &str) -> (Result<common::Accepted, data_sync_core::Error>, Duration) {
    let start = Instant::now();
    let outcome = load(text);
    (outcome, start.elapsed())
}

fn refused(text: &str, needles: &[&str], within: Duration) -> String {
    let (outcome, took) = timed(text);
    let message = outcome.expect_err("refused").message;
    for needle in needles {
        assert!(message.contains(needle), "expected {needle:?} in {}", &message[..message.len().min(2000)]);
    }
    assert!(took < within, "took {took:?}");
    message
}

const RULE: &str = "[[rule]]\nname = \"phone\"\nsource = \"public.users\"\ntarget = \"public.lost_pets\"\n\
                    match = { owner_id = \"id\" }\nset = { contact_phone = \"phone\" }\n";

/// toml's parser stops at 80 levels of arrays and inline tables, and of dotted keys and table
/// headers, instead of overflowing the stack (a 100,000-deep document takes milliseconds).
#[test]
fn absurd_depths_are_refused_without_overflowing_the_stack() {
    let n = 100_000;
    let dotted = vec!["a"; n].join(".");
    let cases = [
        format!("{RULE}where = {}{}", "[".repeat(n), "]".repeat(n)),
        format!("{RULE}where = {}1{}", "{a=".repeat(n), "}".repeat(n)),
        format!("{RULE}where = {}{}", "[{a=".repeat(n / 2), "}]".repeat(n / 2)),
        format!("{RULE}{dotted} = 1"),
        format!("[{dotted}]\n"),
        format!("[[{dotted}]]\n"),
        format!("[entity.{dotted}]\n"),
        // unterminated: the parser must give up just the same
        format!("x = {}", "[".repeat(n)),
    ];
    for text in &cases {
        let message = refused(
            text,
            &["rules document: TOML parse error at line", "recursion limit exceeded"],
            Duration::from_secs(10),
        );
        // a syntax error quotes its line, but not a 100 kB one
        assert!(message.len() < 2000, "{} bytes: {}", message.len(), &message[..300]);
    }
    // Just under the limit the document parses, and the rule is refused for the type of `where`.
    let text = format!("{RULE}where = {}{}", "[".repeat(70), "]".repeat(70));
    refused(&text, &["rule \"phone\"", "where", "expected a string"], Duration::from_secs(10));
}

#[test]
fn oversized_documents_are_handled_in_reasonable_time() {
    let ten_mb = "x".repeat(10 << 20);
    // a 10 MB predicate is the server's to judge; the core passes it on
    let text = format!("{RULE}where = \"{ten_mb}\"\n");
    let (outcome, took) = timed(&text);
    assert!(outcome.is_ok(), "{:?}", outcome.err().map(|e| e.message.len()));
    assert!(took < Duration::from_secs(20), "took {took:?}");
    // a 10 MB column name does not exist
    let text = RULE.replace("\"phone\" }", &format!("\"{ten_mb}\" }}"));
    let message = refused(
        &text,
        &["rule \"phone\": set: column name \"xxx", "…\" is longer than 63 bytes"],
        Duration::from_secs(20),
    );
    assert!(message.len() < 200, "{} bytes", message.len());
    // a 10 MB rule name is not a name
    let text = RULE.replace("name = \"phone\"", &format!("name = \"{ten_mb}\""));
    let message = refused(&text, &["rule \"xxx", "…\": invalid name"], Duration::from_secs(20));
    assert!(message.len() < 400, "{} bytes", message.len());
    // a syntax error on a 10 MB line
    let text = format!("{RULE}where = \"{ten_mb}\" garbage\n");
    let message = refused(&text, &["rules document: TOML parse error at line 7, column"], Duration::from_secs(20));
    assert!(message.len() < 2000, "{} bytes", message.len());
}

fn many_rules(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[rule]]\nname = \"r{i}\"\nsource = \"public.users\"\ntarget = \"public.lost_pets\"\n\
                 match = {{ owner_id = \"id\" }}\nset = {{ contact_phone = \"phone\" }}\n"
            )
        })
        .collect()
}

#[test]
fn too_many_rules_are_refused_promptly() {
    let limit = data_sync_core::rules::MAX_RULES;
    let cases = [
        // 100,000 empty sections: refused before any of them is read
        ("[[rule]]\n".repeat(100_000), "rules document: 100000 rules, more than the 1000 allowed".to_string()),
        (many_rules(limit + 1), format!("rules document: {} rules, more than the {limit} allowed", limit + 1)),
        (
            (0..=limit).map(|i| format!("[entity.e{i}]\ntable = \"public.users\"\nkey = \"id\"\n")).collect(),
            format!("rules document: {} entities, more than the {limit} allowed", limit + 1),
        ),
    ];
    for (text, expected) in &cases {
        refused(text, &[expected], Duration::from_secs(10));
    }
}

/// The limit's worst cases: every rule on the same two tables (every pair is compared), and a
/// chain through a thousand tables (a thousand deep, and closed into a cycle at the end).
#[test]
fn the_largest_allowed_rule_sets_load_in_reasonable_time() {
    let n = data_sync_core::rules::MAX_RULES;
    let (outcome, took) = timed(&many_rules(n));
    let accepted = outcome.unwrap_or_else(|e| panic!("{}", e.message));
    assert_eq!(accepted.rules.len(), n);
    assert!(took < Duration::from_secs(10), "took {took:?}");

    let tables: Vec<_> =
        (0..=n).map(|i| common::tbl("c", &format!("t{i}"), &[("id", "bigint"), ("v", "text")], &[&["id"]])).collect();
    let chain = |close: bool| -> String {
        (0..n)
            .map(|i| {
                let next = if close && i == n - 1 { 0 } else { i + 1 };
                format!(
                    "[[rule]]\nname = \"r{i}\"\nsource = \"c.t{i}\"\ntarget = \"c.t{next}\"\n\
                     match = {{ id = \"id\" }}\nset = {{ v = \"v\" }}\n"
                )
            })
            .collect()
    };
    let start = Instant::now();
    assert_eq!(common::load_with(&chain(false), &tables).unwrap_or_else(|e| panic!("{}", e.message)).rules.len(), n);
    let message = common::load_with(&chain(true), &tables).expect_err("a cycle").message;
    assert!(message.starts_with("rules form a propagation cycle: r0 -> r1 -> r2 -> "), "{}", &message[..100]);
    assert!(message.ends_with(&format!("r{} -> r0", n - 1)), "{}", &message[message.len() - 100..]);
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
}

#[test]
fn raw_nul_byte_is_a_syntax_error() {
    let text = format!("{RULE}where = \"a\0b\"\n");
    let message = refused(&text, &["rules document: TOML parse error at line 7"], Duration::from_secs(5));
    assert!(!message.contains('\0'), "{message:?}");
}

#[test]
fn nul_escapes_never_reach_a_message_or_the_server() {
    // `\u0000` is valid TOML; Postgres text and C strings end at a NUL, so a NUL in a message
    // would cut it short and in a table name would be silently dropped by parse_ident.
    for (field, text) in [
        ("name", RULE.replace("name = \"phone\"", "name = \"ph\\u0000one\"")),
        ("source", RULE.replace("\"public.users\"", "\"public.users\\u0000x\"")),
        ("match.owner_id", RULE.replace("\"id\"", "\"i\\u0000d\"")),
        ("set.contact_phone", RULE.replace("= \"phone\"", "= \"ph\\u0000one\"")),
        ("where", format!("{RULE}where = \"\\u0000\"\n")),
        ("unknown key", format!("{RULE}\"\\u0000\" = 1\n")),
        ("entity", "[entity.\"e\\u0000\"]\ntable = \"public.users\"\nkey = \"id\"\n".to_string()),
        ("entity key", "[entity.e]\ntable = \"public.users\"\nkey = \"i\\u0000d\"\n".to_string()),
    ] {
        let message = load(&text).err().unwrap_or_else(|| panic!("{field}: accepted")).message;
        assert!(!message.contains('\0'), "{field}: {message:?}");
        assert!(names_the_culprit(&message), "{field}: {message:?}");
    }
}

/// After DDL, an installed rule is re-checked with the unique keys it was accepted with. An
/// append rule whose source key column was dropped must be refused there, not accepted and
/// then panic in the planner (`validated rule: key column exists`).
#[test]
fn revalidated_append_rule_with_a_dropped_key_column_is_refused() {
    use data_sync_core::validate::{revalidate, validate_rule};
    let text = "[[rule]]\nname = \"history\"\nkind = \"append\"\nsource = \"public.pets\"\n\
                target = \"public.health_records\"\nset = { weight = \"weight_kg\" }\n\
                values = { recorded_at = \"now()\" }\n";
    let doc = parse_document(text).unwrap();
    let known = common::tables();
    let spec = &doc.rule[0];
    let installed = validate_rule(spec, &common::catalog_for(&doc, &known)).unwrap();
    assert_eq!(installed.source_key, vec!["id"]);
    // ALTER TABLE pets DROP COLUMN id: the column and its primary key are gone
    let mut cat = common::catalog_for(&doc, &known);
    if let Some(Ok(pets)) = cat.get_mut("public.pets") {
        pets.columns.retain(|c| c.name != "id");
        pets.unique_keys.clear();
    }
    let err = revalidate(&installed, spec, cat).expect_err("the key column is gone");
    assert!(err.message.starts_with("rule \"history\": "), "{}", err.message);
    assert!(err.message.contains("column \"id\" does not exist in table public.pets"), "{}", err.message);
}
