//! Applying queued propagations: `process_queue` (which the background worker calls),
//! `retry_failed`, `clear_failed`. Due items are fetched with `FOR UPDATE SKIP
//! LOCKED`, so several processors can run at once; items of one rule are merged into one
//! set-based statement, so repeated changes of a source row are applied once, with its latest
//! values (a propagation always reads the source's current row).

use data_sync_core::operation::Operation;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::rc::Rc;

use crate::propagate;
use crate::runtime::{self, RuleRuntime};
use crate::{log, queue, registry, spi, subxact};

/// One queue row, as fetched for processing.
struct Item {
    id: i64,
    rule: String,
    reverse: bool,
    operation: Operation,
    keys: Vec<Vec<String>>,
    attempts: i32,
}

/// What one `process_queue` call did, in items.
#[derive(Default)]
pub struct Summary {
    pub processed: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub dead: i64,
}

/// Applies up to `limit` due items (of one rule, if given), oldest first, skipping items another
/// processor holds. Items of one rule and direction are applied together; if that fails, each
/// is retried alone so one bad item cannot hold back the others.
pub fn process(limit: i32, rule: Option<&str>) -> Summary {
    let mut summary = Summary::default();
    let items = fetch_due(limit, rule);
    let mut groups: Vec<Vec<Item>> = Vec::new();
    for item in items {
        match groups.iter_mut().find(|g| g[0].rule == item.rule && g[0].reverse == item.reverse) {
            Some(group) => group.push(item),
            None => groups.push(vec![item]),
        }
    }
    for group in groups {
        summary.processed += group.len() as i64;
        let Some(rt) = runtime::runtime(&group[0].rule).or_else(|| park(&group)) else {
            continue;
        };
        if run_group(&rt, &group, &mut summary).is_err() {
            if group.len() == 1 {
                continue;
            }
            for item in group {
                let _ = run_group(&rt, std::slice::from_ref(&item), &mut summary);
            }
        }
    }
    summary
}

fn fetch_due(limit: i32, rule: Option<&str>) -> Vec<Item> {
    spi::as_role(queue::log_owner(), || {
        Spi::connect(|client| {
            let rows = client
                .select(
                    "SELECT id, rule_name, reverse, operation, keys::pg_catalog.text, attempts FROM data_sync.queue
                     WHERE status OPERATOR(pg_catalog.=) 'pending'
                       AND next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()
                       AND ($2::pg_catalog.text IS NULL OR rule_name OPERATOR(pg_catalog.=) $2)
                     ORDER BY next_attempt_at, id
                     LIMIT $1
                     FOR UPDATE SKIP LOCKED",
                    None,
                    &[limit.into(), rule.into()],
                )
                .expect("data_sync.queue is readable");
            rows.into_iter()
                .map(|r| Item {
                    id: r.get(1).unwrap().unwrap(),
                    rule: r.get(2).unwrap().unwrap(),
                    reverse: r.get(3).unwrap().unwrap(),
                    // (only data_sync writes queue items; anything else is treated as an update)
                    operation: r
                        .get::<String>(4)
                        .unwrap()
                        .and_then(|t| Operation::parse(&t))
                        .unwrap_or(Operation::Update),
                    keys: serde_json::from_str(&r.get::<String>(5).unwrap().unwrap()).unwrap_or_default(),
                    attempts: r.get(6).unwrap().unwrap(),
                })
                .collect()
        })
    })
}

/// Items of a disabled rule wait, without using up attempts, until the rule is enabled again
/// (`queue::resume_rule` makes them due; dropping a rule drops its items). The rule is looked up
/// again under a lock that changes of the rule set conflict with: an enabling in progress is
/// waited for, and its rule then returned to apply the items now; an enabling that comes later
/// waits for this transaction, and then finds the items parked and resumes them.
fn park(items: &[Item]) -> Option<Rc<RuleRuntime>> {
    registry::lock_rules_shared();
    if let Some(rt) = runtime::runtime(&items[0].rule) {
        return Some(rt);
    }
    let ids: Vec<i64> = items.iter().map(|i| i.id).collect();
    let delay = queue::RETRY_DELAY_MAX.get() as f64 / 1000.0;
    spi::as_role(queue::log_owner(), || {
        Spi::run_with_args(
            "UPDATE data_sync.queue
             SET next_attempt_at = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $2),
                 last_error = $3
             WHERE id OPERATOR(pg_catalog.=) ANY ($1)",
            &[ids.into(), delay.into(), queue::PARKED.into()],
        )
    })
    .expect("data_sync.queue is writable");
    None
}

/// Error classes that concern the processor's whole transaction (resources, shutdown, cancel,
/// internal errors): re-raised, never charged to an item. Deadlocks and serialization failures
/// are charged: the item waits its backoff and tries again.
const NOT_THE_ITEMS: [&str; 4] = ["53", "57", "58", "XX"];

/// Applies a group of items of one rule in one subtransaction, then removes them, or records
/// the failure on each (backoff, or dead after the last retry). Logs the attempt either way.
fn run_group(rt: &RuleRuntime, items: &[Item], summary: &mut Summary) -> Result<(), ()> {
    let reverse = items[0].reverse;
    let mut seen = std::collections::HashSet::new();
    let texts: Vec<&Vec<String>> = items.iter().flat_map(|i| &i.keys).filter(|k| seen.insert(*k)).collect();
    let operation =
        if items.iter().all(|i| i.operation == items[0].operation) { items[0].operation } else { Operation::Update };
    let attempt = items.iter().map(|i| i.attempts).max().unwrap_or(0) + 1;
    let outcome = log::Outcome {
        operation,
        reverse,
        source_rows: texts.len() as i64,
        role: unsafe { pg_sys::GetUserId() },
        attempt,
    };
    let ids: Vec<i64> = items.iter().map(|i| i.id).collect();
    let _entry = propagate::ChainEntry::enter(&rt.rule.name, reverse);
    spi::with_spi(|| {
        let result = subxact::try_catch(std::panic::AssertUnwindSafe(|| {
            let keys = rt.keys_from_text(&texts, reverse, true);
            if !reverse && rt.rule.kind == data_sync_core::rules::RuleKind::Copy {
                // as a source write of these keys would (async items took no key lock when queued)
                rt.lock_keys(&keys, true);
            }
            let key = (keys.len() == 1).then(|| rt.key_text(&keys[0]));
            (key, propagate::carry(rt, &keys, propagate::Rows::Keys, operation, reverse, true))
        }));
        match result {
            Ok((key, (changed, conflicts))) => {
                propagate::record(rt, &outcome, key, changed, conflicts);
                spi::as_role(rt.log_owner, || {
                    Spi::run_with_args(
                        "DELETE FROM data_sync.queue WHERE id OPERATOR(pg_catalog.=) ANY ($1)",
                        &[ids.clone().into()],
                    )
                })
                .expect("data_sync.queue is writable");
                summary.succeeded += items.len() as i64;
                Ok(())
            }
            Err(error) if NOT_THE_ITEMS.iter().any(|c| error.sqlstate.starts_with(c)) => error.rethrow(),
            // a group that fails is retried item by item: charge nothing yet
            Err(_) if items.len() > 1 => Err(()),
            Err(error) => {
                let key = (texts.len() == 1).then(|| runtime::key_display(texts[0]));
                log::failure(rt, &outcome, key, &error);
                let dead = attempt > queue::MAX_RETRIES.get();
                let delay = queue::backoff_ms(attempt) / 1000.0;
                spi::as_role(rt.log_owner, || {
                    Spi::run_with_args(
                        "UPDATE data_sync.queue
                         SET attempts = $2, sqlstate = $3, last_error = $4,
                             status = CASE WHEN $5 THEN 'dead' ELSE 'pending' END,
                             next_attempt_at = pg_catalog.clock_timestamp()
                                               OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $6)
                         WHERE id OPERATOR(pg_catalog.=) ANY ($1)",
                        &[
                            ids.clone().into(),
                            attempt.into(),
                            error.sqlstate.as_str().into(),
                            log::bounded(&error.message).into(),
                            dead.into(),
                            delay.into(),
                        ],
                    )
                })
                .expect("data_sync.queue is writable");
                summary.failed += 1;
                summary.dead += i64::from(dead);
                Err(())
            }
        }
    })
}

/// Applies due queue items (failed propagations whose backoff has passed, async propagations);
/// returns how many items were processed. Call it from a background worker, pg_cron or by hand.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn process_queue(
    max_items: default!(i32, 1000),
) -> TableIterator<'static, (name!(processed, i64), name!(succeeded, i64), name!(failed, i64), name!(dead, i64))> {
    if max_items < 1 {
        error!("data_sync: process_queue: max_items must be at least 1, got {max_items}");
    }
    let s = process(max_items, None);
    TableIterator::once((s.processed, s.succeeded, s.failed, s.dead))
}

/// Retries the failed propagations of one rule (or of all), now: dead items get a fresh set of
/// retries, pending ones skip their backoff.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn retry_failed(
    rule_name: default!(Option<&str>, "NULL"),
) -> TableIterator<'static, (name!(processed, i64), name!(succeeded, i64), name!(failed, i64), name!(dead, i64))> {
    let revived = spi::as_role(queue::log_owner(), || {
        Spi::get_one_with_args::<i64>(
            "WITH due AS (
                 UPDATE data_sync.queue
                 SET status = 'pending', next_attempt_at = pg_catalog.clock_timestamp(),
                     attempts = CASE WHEN status OPERATOR(pg_catalog.=) 'dead' THEN 1 ELSE attempts END
                 WHERE sqlstate IS NOT NULL AND ($1::pg_catalog.text IS NULL OR rule_name OPERATOR(pg_catalog.=) $1)
                 RETURNING 1)
             SELECT pg_catalog.count(*) FROM due",
            &[rule_name.into()],
        )
    })
    .expect("data_sync.queue is writable")
    .unwrap_or(0);
    let s = if revived > 0 { process(revived.min(i32::MAX as i64) as i32, rule_name) } else { Summary::default() };
    TableIterator::once((s.processed, s.succeeded, s.failed, s.dead))
}

/// Forgets failed propagations of one rule (or of all): the dead ones, or with `pending => true`
/// also those still waiting for a retry. Returns how many queue items were removed. What they
/// owed is lost until the next `sync_all`.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn clear_failed(rule_name: default!(Option<&str>, "NULL"), pending: default!(bool, false)) -> i64 {
    spi::as_role(queue::log_owner(), || {
        Spi::get_one_with_args::<i64>(
            "WITH gone AS (
                 DELETE FROM data_sync.queue
                 WHERE sqlstate IS NOT NULL
                   AND (status OPERATOR(pg_catalog.=) 'dead' OR $2)
                   AND ($1::pg_catalog.text IS NULL OR rule_name OPERATOR(pg_catalog.=) $1)
                 RETURNING 1)
             SELECT pg_catalog.count(*) FROM gone",
            &[rule_name.into(), pending.into()],
        )
    })
    .expect("data_sync.queue is writable")
    .unwrap_or(0)
}
