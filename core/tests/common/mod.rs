//! What the hostile-input tests share: a fake catalog and the pipeline `load_rules` runs
//! (src/install.rs: parse, resolve every written table name, validate rules, cycles, entities,
//! ownership; then plan), minus the server.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use data_sync_core::catalog::{Catalog, TableInfo};
use data_sync_core::plan::{Planner, RulePlan};
use data_sync_core::rules::{parse_document, Document};
use data_sync_core::validate::{self, Entity, Rule};
use data_sync_core::Error;

pub use data_sync_core::testing::tbl;

/// 63 bytes: the longest identifier the server keeps (NAMEDATALEN - 1), two bytes a letter.
pub fn longest_unicode_name() -> String {
    format!("{}x", "é".repeat(31))
}

/// The tables the corpus refers to, by their exact (folded) names.
pub fn tables() -> Vec<TableInfo> {
    let long = longest_unicode_name();
    let mut view = tbl("public", "v_users", &[("id", "bigint"), ("phone", "text")], &[]);
    view.is_table = false;
    let mut foreign = tbl("other", "owned_elsewhere", &[("id", "bigint"), ("phone", "text")], &[&["id"]]);
    foreign.caller_owns = false;
    vec![
        tbl(
            "public",
            "users",
            &[("id", "bigint"), ("auth_user_id", "uuid"), ("phone", "text"), ("name", "text"), ("meta", "json")],
            &[&["id"], &["auth_user_id"]],
        ),
        tbl(
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
        ),
        tbl("public", "veterinarians", &[("id", "bigint"), ("user_id", "bigint"), ("phone", "text")], &[&["id"]]),
        tbl(
            "public",
            "pets",
            &[("id", "bigint"), ("name", "text"), ("weight_kg", "numeric"), ("weight_at", "timestamptz")],
            &[&["id"]],
        ),
        tbl(
            "public",
            "health_records",
            &[("id", "bigint"), ("pet_id", "bigint"), ("weight", "numeric"), ("recorded_at", "timestamptz")],
            &[&["id"]],
        ),
        view,
        foreign,
        // names that need quoting: mixed case, quotes, spaces, keywords, `$`, backslashes, Unicode
        tbl("Clinic", "Owners", &[("Id", "bigint"), ("Ph\"one", "text")], &[&["Id"]]),
        tbl(
            "ünïcødé",
            "Tabelle 表",
            &[
                ("ключ", "bigint"),
                ("名前 \"x\"", "text"),
                ("select", "text"),
                ("$1", "text"),
                ("a\\b", "text"),
                (long.as_str(), "text"),
            ],
            &[&["ключ"]],
        ),
        tbl(
            "ünïcødé",
            "Zïel",
            &[
                ("ключ_ref", "bigint"),
                ("名前", "text"),
                ("emoji 🐘", "text"),
                ("x; DROP TABLE y; --", "text"),
                ("$$", "text"),
                (long.as_str(), "text"),
            ],
            &[],
        ),
    ]
}

/// A stand-in for the server's name resolution (src/catalog.rs `resolve`, which calls
/// `pg_catalog.parse_ident`): quoted parts are exact with `""` for a quote, unquoted parts fold
/// ASCII letters to lower case, and the messages are the server's. Only a stand-in: the real
/// one is exercised by pg_regress.
pub fn resolve(written: &str, known: &[TableInfo]) -> Result<TableInfo, String> {
    let parts = parse_ident(written).ok_or_else(|| {
        format!("table name \"{written}\" is not valid: string is not a valid identifier: \"{written}\"")
    })?;
    match parts.as_slice() {
        [schema, name] => known
            .iter()
            .find(|t| &t.name.schema == schema && &t.name.name == name)
            .cloned()
            .ok_or_else(|| format!("table \"{written}\" does not exist")),
        [_] => Err(format!("table name \"{written}\" must be schema-qualified (e.g. public.{written})")),
        _ => Err(format!("table name \"{written}\" is not of the form schema.table")),
    }
}

fn parse_ident(written: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = written.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
            if part.is_empty() {
                return None;
            }
        } else {
            while let Some(&c) = chars.peek() {
                let ok = c.is_alphanumeric() || c == '_' || c == '$' || !c.is_ascii();
                if !ok || (part.is_empty() && (c.is_ascii_digit() || c == '$')) {
                    break;
                }
                part.push(c.to_ascii_lowercase());
                chars.next();
            }
            if part.is_empty() {
                return None;
            }
        }
        parts.push(part);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => return Some(parts),
            Some('.') => {
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
            }
            Some(_) => return None,
        }
    }
}

/// What `load_rules` would install.
#[derive(Debug)]
pub struct Accepted {
    pub doc: Document,
    pub rules: Vec<Rule>,
    pub entities: Vec<Entity>,
    /// Per rule: its statements and its trigger DDL.
    pub plans: Vec<(RulePlan, Vec<String>)>,
}

/// The catalog `apply_rule_set` builds: every written table name, resolved.
pub fn catalog_for(doc: &Document, known: &[TableInfo]) -> Catalog {
    let mut cat = Catalog::new();
    let written = doc.rule.iter().flat_map(|s| [&s.source, &s.target]).chain(doc.entity.values().map(|e| &e.table));
    for name in written {
        cat.entry(name.clone()).or_insert_with(|| resolve(name, known));
    }
    cat
}

/// The pipeline of `data_sync.load_rules`, in its order, against `tables()`.
pub fn load(text: &str) -> Result<Accepted, Error> {
    load_with(text, &tables())
}

/// The same against other tables.
pub fn load_with(text: &str, known: &[TableInfo]) -> Result<Accepted, Error> {
    let doc = parse_document(text)?;
    let cat = catalog_for(&doc, known);
    let rules = doc.rule.iter().map(|spec| validate::validate_rule(spec, &cat)).collect::<Result<Vec<_>, _>>()?;
    validate::check_cycles(&rules)?;
    let specs: Vec<_> = doc.entity.values().cloned().collect();
    let entities = specs.iter().map(|e| validate::validate_entity(e, &specs, &cat)).collect::<Result<Vec<_>, _>>()?;
    for (rule, spec) in rules.iter().zip(&doc.rule) {
        let label = format!("rule \"{}\"", rule.name);
        validate::require_owner(&label, "source table", cat[&spec.source].as_ref().unwrap())?;
        validate::require_owner(&label, "target table", cat[&spec.target].as_ref().unwrap())?;
    }
    let plans = rules
        .iter()
        .zip(&doc.rule)
        .map(|(rule, spec)| {
            let planner = Planner {
                rule,
                source: cat[&spec.source].as_ref().unwrap(),
                target: cat[&spec.target].as_ref().unwrap(),
            };
            (planner.plan(), planner.triggers())
        })
        .collect();
    Ok(Accepted { doc, rules, entities, plans })
}
