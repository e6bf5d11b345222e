//! Stage 1 of the pipeline: the rules document (`sync_rules.toml`, or one rule as JSON from
//! `data_sync.add_rule`) parsed into plain specs. Nothing here knows about the database yet;
//! names of tables are kept exactly as written and resolved later against the catalog.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::Error;

/// Longest rule name: trigger names are `data_sync_<rule>_<3 letters>` and must fit in 63 bytes.
pub const MAX_RULE_NAME: usize = 48;
/// Longest entity name: the generated function `sync_all_<entity>_data` must fit in 63 bytes.
pub const MAX_ENTITY_NAME: usize = 48;
/// Most rules (and entities) in one document: far beyond any real set (each rule installs up
/// to 7 triggers, `plan::TRIGGER_SUFFIXES`), and it bounds the cycle check, quadratic in the rules sharing a table.
pub const MAX_RULES: usize = 1000;

/// The whole rules document.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    #[serde(default)]
    pub entity: BTreeMap<String, EntitySpec>,
    #[serde(default)]
    pub rule: Vec<RuleSpec>,
}

/// `[entity.<name>]`: a table whose rows can be re-synced one at a time by a key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntitySpec {
    #[serde(skip)]
    pub name: String,
    pub table: String,
    pub key: String,
    /// Related entities re-synced by `sync_all_<entity>_data_comprehensive`: entity name ->
    /// { column of the related entity's table = column of this entity's table }.
    #[serde(default)]
    pub related: BTreeMap<String, BTreeMap<String, String>>,
}

/// What a rule does with a source change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    /// Keep copied columns of matching target rows equal to the source row's.
    #[default]
    Copy,
    /// Insert one new target row per changed source row (history).
    Append,
}

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Copy => "copy",
            RuleKind::Append => "append",
        }
    }
}

/// When a rule's propagation runs, and what its failure does to the write that caused it. A
/// rule without one follows the `data_sync.failure_mode` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// In the writing statement; a failure fails the statement, like a foreign key.
    Strict,
    /// In the writing statement, in a subtransaction of its own; a failure is logged and queued
    /// for retry, and the write commits.
    Isolated,
    /// Queued by the writing statement and applied after commit by `data_sync.process_queue`,
    /// repeated changes of one source row coalesced.
    Async,
}

impl SyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Strict => "strict",
            SyncMode::Isolated => "isolated",
            SyncMode::Async => "async",
        }
    }

    pub fn parse(text: &str) -> Option<SyncMode> {
        match text {
            "strict" => Some(SyncMode::Strict),
            "isolated" => Some(SyncMode::Isolated),
            "async" => Some(SyncMode::Async),
            _ => None,
        }
    }
}

/// `[[rule]]`: a rule as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    #[serde(default)]
    pub kind: RuleKind,
    pub source: String,
    pub target: String,
    /// target column = source column, the join between a target row and its source row (copy).
    #[serde(rename = "match", default)]
    pub match_columns: BTreeMap<String, String>,
    /// target column = source column, the copied (or appended) values.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Optional SQL predicate over target columns restricting which target rows the rule maintains.
    #[serde(default, rename = "where")]
    pub where_clause: Option<String>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Copy: maintain only the target row with the greatest value of this column per match key.
    #[serde(default)]
    pub latest_by: Option<String>,
    /// Copy: also propagate target changes back to the source.
    #[serde(default)]
    pub bidirectional: bool,
    /// Bidirectional: last write wins by these columns (both or neither).
    #[serde(default)]
    pub source_timestamp: Option<String>,
    #[serde(default)]
    pub target_timestamp: Option<String>,
    /// Append: target column = SQL expression over the source row (e.g. `now()`).
    #[serde(default)]
    pub values: BTreeMap<String, String>,
    /// Append: source columns whose change appends a row (default: the `set` source columns
    /// outside the source's key).
    #[serde(default)]
    pub watch: Option<Vec<String>>,
    /// Append: also append when a source row is inserted.
    #[serde(default)]
    pub on_insert: bool,
    /// Overrides `data_sync.failure_mode` for this rule.
    #[serde(default)]
    pub mode: Option<SyncMode>,
    /// Fire also for rows written by logical replication's apply worker (triggers `ENABLE
    /// ALWAYS`): for a subscriber that receives only the source tables and runs the rule itself.
    #[serde(default)]
    pub fire_on_replica: bool,
}

/// The optional keys of a rule, as `data_sync.add_rule`'s `options` JSON object.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleOptions {
    #[serde(default)]
    pub kind: RuleKind,
    pub latest_by: Option<String>,
    #[serde(default)]
    pub bidirectional: bool,
    pub source_timestamp: Option<String>,
    pub target_timestamp: Option<String>,
    #[serde(default)]
    pub values: BTreeMap<String, String>,
    pub watch: Option<Vec<String>>,
    #[serde(default)]
    pub on_insert: bool,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    pub mode: Option<SyncMode>,
    #[serde(default)]
    pub fire_on_replica: bool,
}

fn enabled_by_default() -> bool {
    true
}

/// Parses a rules document. Syntax errors carry TOML's line and column; errors inside one
/// rule or entity name it.
pub fn parse_document(text: &str) -> Result<Document, Error> {
    // Two steps so that shape errors can name the rule: TOML syntax first (with positions)...
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| Error::new(syntax_error(&e)))?;

    let mut doc = Document::default();
    for (key, value) in table {
        match key.as_str() {
            "entity" => {
                let entities = value.as_table().ok_or_else(|| {
                    Error::new("rules document: `entity` must be a table of [entity.<name>] sections")
                })?;
                check_count(entities.len(), "entities")?;
                for (name, body) in entities {
                    // (serde would say "expected struct EntitySpec")
                    if !body.is_table() {
                        return Err(Error::new(format!(
                            "entity \"{name}\": expected an [entity.{name}] section (a table), got {}",
                            body.type_str()
                        )));
                    }
                    let mut spec: EntitySpec =
                        body.clone().try_into().map_err(|e| Error::new(format!("entity \"{name}\": {}", clean(e))))?;
                    spec.name = name.clone();
                    doc.entity.insert(name.clone(), spec);
                }
            }
            "rule" => {
                let rules = value
                    .as_array()
                    .ok_or_else(|| Error::new("rules document: `rule` must be an array of [[rule]] sections"))?;
                check_count(rules.len(), "rules")?;
                for (i, body) in rules.iter().enumerate() {
                    // ...then each section on its own, so the error says which rule is wrong.
                    let label = body
                        .get("name")
                        .and_then(|n| n.as_str())
                        .map(|n| format!("rule \"{n}\""))
                        .unwrap_or_else(|| format!("rule #{}", i + 1));
                    if !body.is_table() {
                        return Err(Error::new(format!(
                            "{label}: expected a [[rule]] section (a table), got {}",
                            body.type_str()
                        )));
                    }
                    let spec: RuleSpec =
                        body.clone().try_into().map_err(|e| Error::new(format!("{label}: {}", clean(e))))?;
                    doc.rule.push(spec);
                }
            }
            other => {
                return Err(Error::new(format!(
                    "rules document: unknown key `{other}` (expected [entity.<name>] or [[rule]] sections)"
                )))
            }
        }
    }
    check_names(&doc)?;
    Ok(doc)
}

/// The arguments of `data_sync.add_rule`, any of which SQL may pass as NULL.
#[derive(Debug, Default)]
pub struct RuleArgs<'a> {
    pub name: Option<&'a str>,
    pub source: Option<&'a str>,
    pub target: Option<&'a str>,
    pub match_columns: Option<serde_json::Value>,
    pub set_columns: Option<serde_json::Value>,
    pub where_clause: Option<&'a str>,
    pub options: Option<serde_json::Value>,
}

/// Builds one rule from `data_sync.add_rule`'s arguments; errors name the rule and the
/// argument, as `load_rules` names the rule and the key.
pub fn rule_from_args(args: RuleArgs<'_>) -> Result<RuleSpec, Error> {
    let name = args.name.ok_or_else(|| Error::new("rule: name must not be NULL"))?;
    check_rule_name(name)?;
    let label = format!("rule \"{name}\"");
    let required = |value: Option<&str>, field: &str| -> Result<String, Error> {
        value.map(str::to_string).ok_or_else(|| Error::new(format!("{label}: {field} must not be NULL")))
    };
    let columns = |value: Option<serde_json::Value>, field: &str| -> Result<BTreeMap<String, String>, Error> {
        let shape = "a JSON object of \"target column\": \"source column\" strings";
        let value = value.ok_or_else(|| Error::new(format!("{label}: {field} must not be NULL (expected {shape})")))?;
        let serde_json::Value::Object(map) = value else {
            return Err(Error::new(format!("{label}: {field}: expected {shape}, got {value}")));
        };
        map.into_iter()
            .map(|(target, source)| match source {
                serde_json::Value::String(source) => Ok((target, source)),
                other => Err(Error::new(format!(
                    "{label}: {field}.{target}: expected a source column name (a JSON string), got {other}"
                ))),
            })
            .collect()
    };
    let options: RuleOptions = match args.options {
        None | Some(serde_json::Value::Null) => RuleOptions { enabled: true, ..Default::default() },
        Some(value) => serde_json::from_value(value).map_err(|e| Error::new(format!("{label}: options: {e}")))?,
    };
    let match_columns = match (options.kind, args.match_columns) {
        (RuleKind::Append, None) => BTreeMap::new(),
        (_, value) => columns(value, "match")?,
    };
    let spec = RuleSpec {
        name: name.to_string(),
        kind: options.kind,
        source: required(args.source, "source")?,
        target: required(args.target, "target")?,
        match_columns,
        set: columns(args.set_columns, "set")?,
        where_clause: args.where_clause.map(str::to_string),
        enabled: options.enabled,
        latest_by: options.latest_by,
        bidirectional: options.bidirectional,
        source_timestamp: options.source_timestamp,
        target_timestamp: options.target_timestamp,
        values: options.values,
        watch: options.watch,
        on_insert: options.on_insert,
        mode: options.mode,
        fire_on_replica: options.fire_on_replica,
    };
    // SQL text and jsonb cannot carry a NUL today; checked anyway, as for documents.
    check_rule_text(&spec)?;
    Ok(spec)
}

/// TOML's message quotes the offending line, which can be any length: past a screenful only
/// the position and the reason are kept.
fn syntax_error(e: &toml::de::Error) -> String {
    let full = e.to_string();
    let full = full.trim_end();
    if full.len() <= 1000 {
        return format!("rules document: {full}");
    }
    let position = full.lines().next().unwrap_or_default();
    let mut reason = e.message().trim().to_string();
    if reason.len() > 200 {
        let cut = (0..=200).rev().find(|&i| reason.is_char_boundary(i)).unwrap_or(0);
        reason.truncate(cut);
        reason.push('…');
    }
    format!("rules document: {position}: {}", reason.replace('\n', "; "))
}

fn check_count(count: usize, what: &str) -> Result<(), Error> {
    if count > MAX_RULES {
        return Err(Error::new(format!("rules document: {count} {what}, more than the {MAX_RULES} allowed")));
    }
    Ok(())
}

fn clean(e: impl std::fmt::Display) -> String {
    // toml's messages for values (not documents) start with "TOML parse error" boilerplate.
    e.to_string().trim().trim_start_matches("TOML parse error").trim().to_string()
}

fn check_names(doc: &Document) -> Result<(), Error> {
    for (name, entity) in &doc.entity {
        check_simple_name("entity", name, MAX_ENTITY_NAME)?;
        check_entity_text(entity)?;
    }
    let mut seen = std::collections::BTreeSet::new();
    for rule in &doc.rule {
        check_rule_name(&rule.name)?;
        check_rule_text(rule)?;
        if !seen.insert(rule.name.as_str()) {
            return Err(Error::new(format!("rule \"{}\": duplicate rule name", rule.name)));
        }
    }
    Ok(())
}

/// TOML can write a NUL (`\u0000`), Postgres text cannot hold one: a table name would be cut
/// there by the server (`public.users\u0000x` read as `public.users`), and statements could
/// not be prepared. Refused up front, naming the field.
fn no_nul<'a>(label: &str, fields: impl IntoIterator<Item = (String, &'a str)>) -> Result<(), Error> {
    match fields.into_iter().find(|(_, text)| text.contains('\0')) {
        Some((field, _)) => Err(Error::new(format!("{label}: {field}: contains a NUL character"))),
        None => Ok(()),
    }
}

fn pairs<'a>(field: &'a str, map: &'a BTreeMap<String, String>) -> impl Iterator<Item = (String, &'a str)> + 'a {
    map.iter().flat_map(move |(k, v)| [(format!("{field}.{k}"), k.as_str()), (format!("{field}.{k}"), v.as_str())])
}

fn check_rule_text(rule: &RuleSpec) -> Result<(), Error> {
    let optional = [
        ("where", &rule.where_clause),
        ("latest_by", &rule.latest_by),
        ("source_timestamp", &rule.source_timestamp),
        ("target_timestamp", &rule.target_timestamp),
    ];
    let fields = [("source".to_string(), rule.source.as_str()), ("target".to_string(), rule.target.as_str())]
        .into_iter()
        .chain(optional.into_iter().filter_map(|(f, v)| v.as_deref().map(|v| (f.to_string(), v))))
        .chain(pairs("match", &rule.match_columns))
        .chain(pairs("set", &rule.set))
        .chain(pairs("values", &rule.values))
        .chain(rule.watch.iter().flatten().map(|c| ("watch".to_string(), c.as_str())));
    no_nul(&format!("rule \"{}\"", rule.name), fields)
}

fn check_entity_text(entity: &EntitySpec) -> Result<(), Error> {
    let related = entity.related.iter().flat_map(|(other, map)| {
        std::iter::once((format!("related.{other}"), other.as_str())).chain(
            pairs("related", map)
                .map(move |(field, text)| (field.replacen("related.", &format!("related.{other}."), 1), text)),
        )
    });
    let fields = [("table".to_string(), entity.table.as_str()), ("key".to_string(), entity.key.as_str())]
        .into_iter()
        .chain(related);
    no_nul(&format!("entity \"{}\"", entity.name), fields)
}

pub fn check_rule_name(name: &str) -> Result<(), Error> {
    check_simple_name("rule", name, MAX_RULE_NAME)
}

/// Rule and entity names become parts of trigger and function names, so they are restricted to
/// lower-case identifiers that never need quoting.
fn check_simple_name(kind: &str, name: &str, max: usize) -> Result<(), Error> {
    let mut chars = name.chars();
    let ok_first = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let ok_rest = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok_first || !ok_rest || name.len() > max {
        // a name of any length is refused, but not repeated at any length
        let mut shown = name.to_string();
        if shown.len() > 200 {
            shown.truncate((0..=200).rev().find(|&i| name.is_char_boundary(i)).unwrap_or(0));
            shown.push('…');
        }
        return Err(Error::new(format!(
            "{kind} \"{shown}\": invalid name (use 1 to {max} lower-case letters, digits and underscores, not starting with a digit)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[entity.user]
table = "public.users"
key = "auth_user_id"

[[rule]]
name = "user_phone_to_lost_pets"
source = "public.users"
target = "public.lost_pets"
match = { owner_id = "id" }
set = { contact_phone = "phone" }
"#;

    #[test]
    fn parses_the_readme_example() {
        let doc = parse_document(EXAMPLE).unwrap();
        assert_eq!(doc.entity["user"].name, "user");
        assert_eq!(doc.entity["user"].key, "auth_user_id");
        let rule = &doc.rule[0];
        assert_eq!(rule.name, "user_phone_to_lost_pets");
        assert_eq!(rule.match_columns["owner_id"], "id");
        assert_eq!(rule.set["contact_phone"], "phone");
        assert!(rule.enabled);
        assert_eq!(rule.where_clause, None);
    }

    #[test]
    fn empty_document_is_an_empty_rule_set() {
        let doc = parse_document("").unwrap();
        assert!(doc.rule.is_empty() && doc.entity.is_empty());
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let err = parse_document("[[rule]]\nname = \"x\"\nsource = \n").unwrap_err();
        assert!(err.message.contains("line 3"), "{}", err.message);
        assert!(err.message.contains("column"), "{}", err.message);
    }

    #[test]
    fn unknown_key_in_rule_names_rule_and_key() {
        let text = EXAMPLE.replace("set =", "sett =");
        let err = parse_document(&text).unwrap_err();
        assert!(err.message.contains("rule \"user_phone_to_lost_pets\""), "{}", err.message);
        assert!(err.message.contains("sett"), "{}", err.message);
    }

    #[test]
    fn unknown_top_level_key_is_rejected() {
        let err = parse_document("rules = 1").unwrap_err();
        assert!(err.message.contains("unknown key `rules`"), "{}", err.message);
    }

    #[test]
    fn unknown_key_in_entity_is_rejected() {
        let err = parse_document("[entity.user]\ntable = \"a.b\"\nkey = \"id\"\ncolor = 1\n").unwrap_err();
        assert!(err.message.contains("entity \"user\""), "{}", err.message);
        assert!(err.message.contains("color"), "{}", err.message);
    }

    #[test]
    fn missing_field_names_the_rule() {
        let err = parse_document("[[rule]]\nname = \"r\"\nsource = \"a.b\"\nset = { x = \"y\" }\n").unwrap_err();
        assert!(err.message.contains("rule \"r\""), "{}", err.message);
        assert!(err.message.contains("target"), "{}", err.message);
    }

    #[test]
    fn rule_kinds_and_options() {
        let doc = parse_document(
            "[[rule]]\nname = \"h\"\nkind = \"append\"\nsource = \"a.b\"\ntarget = \"a.c\"\n\
             set = { x = \"y\" }\nvalues = { at = \"now()\" }\non_insert = true\n",
        )
        .unwrap();
        assert_eq!(doc.rule[0].kind, RuleKind::Append);
        assert_eq!(doc.rule[0].values["at"], "now()");
        let err = parse_document("[[rule]]\nname = \"h\"\nkind = \"merge\"\nsource = \"a.b\"\ntarget = \"a.c\"\n")
            .unwrap_err();
        assert!(err.message.contains("rule \"h\"") && err.message.contains("merge"), "{}", err.message);
    }

    #[test]
    fn duplicate_rule_names_are_rejected() {
        let text = format!("{EXAMPLE}\n{}", &EXAMPLE[EXAMPLE.find("[[rule]]").unwrap()..]);
        let err = parse_document(&text).unwrap_err();
        assert!(err.message.contains("duplicate rule name"), "{}", err.message);
    }

    #[test]
    fn hostile_names_are_rejected() {
        // the first is TOML for `x"; drop table users; --`
        for bad in ["x\\\"; drop table users; --", "Upper", "1st", "", &"a".repeat(49)] {
            let text = EXAMPLE.replace("user_phone_to_lost_pets", bad);
            let err = parse_document(&text).unwrap_err();
            assert!(err.message.contains("invalid name"), "{bad}: {}", err.message);
        }
    }

    #[test]
    fn rule_from_sql_arguments() {
        let args = || RuleArgs {
            name: Some("r"),
            source: Some("public.a"),
            target: Some("public.b"),
            match_columns: Some(serde_json::json!({"a_id": "id"})),
            set_columns: Some(serde_json::json!({"x": "y"})),
            where_clause: None,
            options: None,
        };
        let spec = rule_from_args(args()).unwrap();
        assert_eq!((spec.match_columns["a_id"].as_str(), spec.set["x"].as_str()), ("id", "y"));
        let message = |a: RuleArgs| rule_from_args(a).unwrap_err().message;
        assert_eq!(
            message(RuleArgs { set_columns: Some(serde_json::json!({"a": 1})), ..args() }),
            "rule \"r\": set.a: expected a source column name (a JSON string), got 1"
        );
        assert!(message(RuleArgs { match_columns: Some(serde_json::json!(["a", "b"])), ..args() })
            .starts_with("rule \"r\": match: expected a JSON object"));
        assert!(message(RuleArgs { set_columns: None, ..args() }).starts_with("rule \"r\": set must not be NULL"));
        assert_eq!(message(RuleArgs { source: None, ..args() }), "rule \"r\": source must not be NULL");
        assert_eq!(message(RuleArgs { name: None, ..args() }), "rule: name must not be NULL");
        assert!(message(RuleArgs { name: Some("Bad"), ..args() }).contains("invalid name"));
    }
}
