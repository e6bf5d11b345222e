//! Catching a Postgres error safely: pgrx 0.18 has no subtransaction API, and an error may only be
//! swallowed once the (sub)transaction it happened in is rolled back. This is what PL/pgSQL's
//! `BEGIN … EXCEPTION` does.

use pgrx::pg_sys;
use pgrx::prelude::*;

/// Runs `f` in a subtransaction. On error the subtransaction is rolled back and the error's
/// message returned, so the caller can report it with context (which rule, which field).
pub fn try_catch<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Result<T, String> {
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        // Results must outlive the subtransaction: allocate them in the caller's context.
        pg_sys::CurrentMemoryContext = context;
        let outcome = PgTryBuilder::new(|| Ok(f()))
            .catch_others(|error| {
                Err(match error {
                    pg_sys::panic::CaughtError::PostgresError(e) | pg_sys::panic::CaughtError::ErrorReport(e) => {
                        e.message().to_string()
                    }
                    pg_sys::panic::CaughtError::RustPanic { ereport, .. } => ereport.message().to_string(),
                })
            })
            .execute();
        if outcome.is_ok() {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::CurrentMemoryContext = context;
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::CurrentMemoryContext = context;
        pg_sys::CurrentResourceOwner = owner;
        outcome
    }
}
