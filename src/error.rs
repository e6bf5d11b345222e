//! Raising errors: a rejection of the core's (or one the shell words itself, of the same kinds) as
//! an `ereport` with its kind's SQLSTATE, prefixed `data_sync: `.

use data_sync_core::{Error, ErrorKind};
use pgrx::prelude::*;

use crate::subxact::Caught;

/// The error code of a five-character SQLSTATE, encoded as PostgreSQL's `MAKE_SQLSTATE` does (six
/// bits per character), so that the core's `ErrorKind::sqlstate` stays the one mapping.
pub(crate) fn code_of(sqlstate: &str) -> PgSqlErrorCode {
    let code =
        sqlstate.bytes().enumerate().fold(0i32, |code, (i, c)| code + (((c as i32 - b'0' as i32) & 0x3F) << (6 * i)));
    PgSqlErrorCode::from(code)
}

/// Raises the error; does not return.
pub fn raise(error: &Error) -> ! {
    let mut report = pg_sys::panic::ErrorReport::new(
        code_of(error.kind.sqlstate()),
        format!("data_sync: {}", error.message),
        "data_sync",
    );
    if let Some(detail) = &error.detail {
        report = report.set_detail(detail.clone());
    }
    if let Some(hint) = &error.hint {
        report = report.set_hint(hint.clone());
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ereport(ERROR) does not return")
}

/// Whether a server error is the transaction's, not the rule's or the item's: serialization
/// failures and deadlocks (40), lack of resources (53), a lock not available (55P03), a cancel or
/// a shutdown (57), system errors (58), internal errors (XX).
pub fn concerns_transaction(sqlstate: &str) -> bool {
    ["40", "53", "57", "58", "XX"].iter().any(|class| sqlstate.starts_with(class)) || sqlstate == "55P03"
}

/// A server error caught while checking a rule, unless it is the transaction's: that one is
/// raised again as it was (a deadlock stays 40P01, which the caller may retry; reported as an
/// invalid rule it would not be).
pub fn unless_transactions(caught: Caught) -> Caught {
    if concerns_transaction(&caught.sqlstate) {
        caught.rethrow()
    }
    caught
}

/// The kind of a server error caught while checking a rule (preparing its statements, parsing its
/// expressions): a missing privilege stays one, anything else makes the rule invalid.
pub fn kind_of(caught: &Caught) -> ErrorKind {
    if caught.sqlstate == "42501" {
        ErrorKind::InsufficientPrivilege
    } else {
        ErrorKind::InvalidParameterValue
    }
}

/// Rejects an invalid rule, entity or argument (22023).
pub fn reject(message: &str) -> ! {
    raise(&Error::new(message))
}

/// Refuses for want of a privilege (42501).
pub fn deny(message: &str) -> ! {
    raise(&Error::privilege(message))
}
