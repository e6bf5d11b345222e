//! Rules over tables that Citus manages are refused when the rule is defined.
//!
//! Citus runs a distributed table's writes on its shards, on the workers, and copies the
//! table's triggers there; the rules live in the coordinator's `data_sync.rules`, so a
//! worker's trigger finds no rule and the copies silently drift (seen on a real Citus 13.2
//! cluster, `tests/tap/t/005_citus.pl`). A reference-table source fails every write of it
//! instead (a multi-shard statement run from a shard), and a Citus-local table behaves like
//! neither a plain nor a distributed table. Until data_sync carries its rules to the workers,
//! every such rule is refused, naming the table and how Citus manages it.

use crate::validate::Rule;
use crate::Error;

/// How Citus manages one table (its row of `pg_dist_partition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Hash-distributed by `column`.
    Distributed { column: String },
    /// A reference table: a copy on every node (`partmethod 'n'`, `repmodel 't'`).
    Reference,
    /// A Citus-local table: on the coordinator, but in Citus's metadata (`partmethod 'n'`).
    Local,
    /// Append- or range-distributed (the `partmethod`).
    Other(char),
}

impl Placement {
    fn describe(&self) -> String {
        match self {
            Placement::Distributed { column } => format!("a Citus distributed table (by \"{column}\")"),
            Placement::Reference => "a Citus reference table".into(),
            Placement::Local => "a Citus local table".into(),
            Placement::Other(m) => format!("a Citus distributed table (method '{m}')"),
        }
    }
}

/// `None` placement: a plain table that Citus does not manage, the only kind accepted.
pub fn check_placement(rule: &Rule, source: Option<&Placement>, target: Option<&Placement>) -> Result<(), Error> {
    let managed = [("source", &rule.source, source), ("target", &rule.target, target)];
    let Some((side, table, placement)) = managed.iter().find_map(|(s, t, p)| p.map(|p| (s, t, p))) else {
        return Ok(());
    };
    Err(Error::unsupported(format!(
        "rule \"{}\": {side} {table} is {}; data_sync does not support rules on tables Citus manages",
        rule.name,
        placement.describe()
    ))
    .with_detail(
        "Citus runs the table's writes and triggers on its shards, on the worker nodes, where the rules are not \
         installed: the copies would silently drift.",
    )
    .with_hint("Keep both tables of the rule local (not distributed), or keep the copies in the application."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::TableName;
    use crate::rules::RuleKind;
    use crate::validate::Pair;
    use crate::ErrorKind;

    fn rule() -> Rule {
        let pairs = |list: &[(&str, &str)]| {
            list.iter().map(|(t, s)| Pair { target: t.to_string(), source: s.to_string() }).collect::<Vec<_>>()
        };
        Rule {
            name: "phone".into(),
            kind: RuleKind::Copy,
            source: TableName::new("public", "users"),
            target: TableName::new("public", "lost_pets"),
            matches: pairs(&[("owner_id", "id")]),
            copies: pairs(&[("contact_phone", "phone")]),
            where_clause: None,
            enabled: true,
            latest_by: None,
            bidirectional: false,
            timestamps: None,
            values: Vec::new(),
            watch: Vec::new(),
            on_insert: false,
            mode: None,
            fire_on_replica: false,
            source_key: vec!["id".into()],
        }
    }

    #[test]
    fn plain_tables_are_fine() {
        assert!(check_placement(&rule(), None, None).is_ok());
    }

    #[test]
    fn every_table_citus_manages_is_refused_naming_the_rule_the_table_and_the_kind() {
        let hash = Placement::Distributed { column: "id".into() };
        let err = |s: Option<&Placement>, t: Option<&Placement>| check_placement(&rule(), s, t).unwrap_err();
        // even the co-located pair a Citus user would reach for first
        let e = err(Some(&hash), Some(&Placement::Distributed { column: "owner_id".into() }));
        assert_eq!(e.kind, ErrorKind::FeatureNotSupported);
        assert!(e.message.starts_with("rule \"phone\": source public.users is a Citus distributed table (by \"id\")"));
        assert!(e.detail.as_deref().is_some_and(|d| d.contains("silently drift")));
        assert!(err(Some(&Placement::Reference), Some(&hash))
            .message
            .contains("source public.users is a Citus reference table"));
        assert!(err(Some(&Placement::Local), None).message.contains("source public.users is a Citus local table"));
        assert!(err(None, Some(&hash)).message.contains("target public.lost_pets is a Citus distributed table"));
        assert!(err(None, Some(&Placement::Other('a'))).message.contains("method 'a'"));
    }
}
