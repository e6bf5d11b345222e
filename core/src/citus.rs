//! Rules over tables that Citus distributes. A propagation is one `UPDATE target … FROM source`
//! (or `INSERT … SELECT`) joining the two tables on the rule's match; Citus runs that on each
//! shard, in the writer's transaction, only when both tables are co-located and joined on their
//! distribution columns, or when the source is a reference table (a copy on every node). Any
//! other shape is refused when the rule is defined, instead of failing (or crawling through
//! the coordinator) on every write.

use crate::validate::{Pair, Rule};
use crate::Error;

/// How Citus places one table (a row of `pg_dist_partition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Hash-distributed by `column`, in co-location group `colocation`.
    Distributed { column: String, colocation: i32 },
    /// A reference table (or a Citus-managed local table): whole on every node that needs it.
    Reference,
    /// Append- or range-distributed: not supported.
    Other(char),
}

/// `None` placement: a plain table that Citus does not manage.
pub fn check_placement(rule: &Rule, source: Option<&Placement>, target: Option<&Placement>) -> Result<(), Error> {
    let fail = |why: String| {
        Err(Error::new(format!(
            "rule \"{}\": {why}; with Citus, data_sync needs the source and target co-located and matched on their \
             distribution columns, or a reference table as the source",
            rule.name
        )))
    };
    let (s, t) = (&rule.source, &rule.target);
    match (source, target) {
        (None, None) | (Some(Placement::Reference), Some(Placement::Reference)) => Ok(()),
        (Some(Placement::Other(m)), _) => fail(format!("source {s} is distributed by method '{m}' (not hash)")),
        (_, Some(Placement::Other(m))) => fail(format!("target {t} is distributed by method '{m}' (not hash)")),
        (None, Some(_)) => fail(format!("target {t} is managed by Citus but source {s} is a local table")),
        (Some(_), None) => fail(format!("source {s} is managed by Citus but target {t} is a local table")),
        (Some(Placement::Distributed { .. }), Some(Placement::Reference)) => {
            fail(format!("target {t} is a reference table and source {s} is distributed"))
        }
        (Some(Placement::Reference), Some(Placement::Distributed { .. })) if rule.bidirectional => fail(format!(
            "source {s} is a reference table, which a bidirectional rule would update from distributed target {t}"
        )),
        (Some(Placement::Reference), Some(Placement::Distributed { .. })) => Ok(()),
        (
            Some(Placement::Distributed { column: sc, colocation: sg }),
            Some(Placement::Distributed { column: tc, colocation: tg }),
        ) => {
            if sg != tg {
                return fail(format!("source {s} and target {t} are not co-located (groups {sg} and {tg})"));
            }
            // the pairs that join a target row to its source row: the match, or for append
            // rules the copied columns (the appended row carries the source's values)
            let pairs: &[Pair] = if rule.matches.is_empty() { &rule.copies } else { &rule.matches };
            if pairs.iter().any(|p| &p.target == tc && &p.source == sc) {
                Ok(())
            } else {
                fail(format!(
                    "the rule does not match target {t}'s distribution column \"{tc}\" to source {s}'s \"{sc}\""
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::TableName;
    use crate::rules::RuleKind;

    fn rule(keys: &[(&str, &str)]) -> Rule {
        let pairs = |list: &[(&str, &str)]| {
            list.iter().map(|(t, s)| Pair { target: t.to_string(), source: s.to_string() }).collect::<Vec<_>>()
        };
        Rule {
            name: "phone".into(),
            kind: RuleKind::Copy,
            source: TableName::new("public", "users"),
            target: TableName::new("public", "lost_pets"),
            matches: pairs(keys),
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
            source_key: keys.iter().map(|(_, s)| s.to_string()).collect(),
        }
    }

    fn hash(column: &str, colocation: i32) -> Placement {
        Placement::Distributed { column: column.into(), colocation }
    }

    #[test]
    fn plain_tables_and_reference_sources_are_fine() {
        let r = rule(&[("owner_id", "id")]);
        assert!(check_placement(&r, None, None).is_ok());
        assert!(check_placement(&r, Some(&Placement::Reference), Some(&Placement::Reference)).is_ok());
        assert!(check_placement(&r, Some(&Placement::Reference), Some(&hash("owner_id", 1))).is_ok());
    }

    #[test]
    fn co_located_on_the_distribution_columns_is_fine() {
        let r = rule(&[("owner_id", "id"), ("branch", "branch")]);
        assert!(check_placement(&r, Some(&hash("id", 3)), Some(&hash("owner_id", 3))).is_ok());
    }

    #[test]
    fn other_shapes_are_refused_naming_the_rule_and_the_reason() {
        let r = rule(&[("owner_id", "id")]);
        let err = |s: Option<&Placement>, t: Option<&Placement>| check_placement(&r, s, t).unwrap_err().message;
        assert!(err(Some(&hash("id", 1)), Some(&hash("owner_id", 2))).contains("not co-located (groups 1 and 2)"));
        assert!(err(Some(&hash("id", 1)), Some(&hash("pet_id", 1)))
            .contains("does not match target public.lost_pets's distribution column \"pet_id\""));
        assert!(err(Some(&hash("email", 1)), Some(&hash("owner_id", 1))).contains("source public.users's \"email\""));
        assert!(err(None, Some(&hash("owner_id", 1))).contains("source public.users is a local table"));
        assert!(err(Some(&hash("id", 1)), None).contains("target public.lost_pets is a local table"));
        assert!(err(Some(&hash("id", 1)), Some(&Placement::Reference)).contains("is a reference table"));
        assert!(err(Some(&Placement::Other('a')), Some(&hash("owner_id", 1))).contains("method 'a'"));
        assert!(err(None, Some(&hash("owner_id", 1))).starts_with("rule \"phone\": "));
        let mut both_ways = rule(&[("owner_id", "id")]);
        both_ways.bidirectional = true;
        let err = check_placement(&both_ways, Some(&Placement::Reference), Some(&hash("owner_id", 1))).unwrap_err();
        assert!(err.message.contains("a reference table, which a bidirectional rule would update"), "{}", err.message);
    }

    #[test]
    fn append_rules_join_through_their_copied_columns() {
        let mut r = rule(&[]);
        r.kind = RuleKind::Append;
        r.copies = vec![Pair { target: "pet_id".into(), source: "id".into() }];
        assert!(check_placement(&r, Some(&hash("id", 1)), Some(&hash("pet_id", 1))).is_ok());
        assert!(check_placement(&r, Some(&hash("id", 1)), Some(&hash("recorded_at", 1))).is_err());
    }
}
