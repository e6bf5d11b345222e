//! Catching a Postgres error safely: pgrx 0.18 has no subtransaction API, and an error may only be
//! swallowed once the (sub)transaction it happened in is rolled back. This is what PL/pgSQL's
//! `BEGIN … EXCEPTION` does.

use pgrx::pg_sys;
use pgrx::prelude::*;

/// An error caught by `try_catch`: its message and SQLSTATE, and the error itself.
#[derive(Debug)]
pub struct Caught {
    pub message: String,
    pub sqlstate: String,
    error: Box<pg_sys::panic::CaughtError>,
}

impl Caught {
    /// Raises the error again, as caught (SQLSTATE, detail, hint), after its subtransaction was
    /// rolled back: PL/pgSQL's `RAISE;` in an exception block.
    pub fn rethrow(self) -> ! {
        self.error.rethrow()
    }
}

impl std::fmt::Display for Caught {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Runs `f` in a subtransaction. On error the subtransaction is rolled back and the error
/// returned, so the caller can report it with context (which rule, which field).
pub fn try_catch<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Result<T, Caught> {
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        // Results must outlive the subtransaction: allocate them in the caller's context.
        pg_sys::CurrentMemoryContext = context;
        let outcome = PgTryBuilder::new(|| Ok(f()))
            .catch_others(|error| {
                let report = match &error {
                    pg_sys::panic::CaughtError::PostgresError(e) | pg_sys::panic::CaughtError::ErrorReport(e) => e,
                    pg_sys::panic::CaughtError::RustPanic { ereport, .. } => ereport,
                };
                let code = report.sql_error_code() as i32;
                // unpack the SQLSTATE's five 6-bit characters (PGUNSIXBIT)
                let sqlstate: String = (0..5).map(|i| (((code >> (6 * i)) & 0x3F) as u8 + b'0') as char).collect();
                Err(Caught { message: report.message().to_string(), sqlstate, error: Box::new(error) })
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
