//! Running SQL from the shell: inside an SPI connection, as a given role in a restricted
//! security context, under pinned settings. The bottom room: it imports nothing of the crate.

use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;

/// The count a `SELECT count(*)` just returned (in `SPI_tuptable`).
pub unsafe fn count_of_result() -> u64 {
    let table = pg_sys::SPI_tuptable;
    let mut isnull = false;
    let d = pg_sys::SPI_getbinval(*(*table).vals, (*table).tupdesc, 1, &mut isnull);
    i64::from_datum(d, isnull).unwrap_or(0) as u64
}

/// Runs `f` as `role` in a restricted security context, the way foreign-key actions and
/// REFRESH MATERIALIZED VIEW do: the writer needs no privileges on the target, and code that
/// runs meanwhile (the target's own triggers) cannot change session state.
pub fn as_role<T>(role: Oid, f: impl FnOnce() -> T) -> T {
    let mut prev_user = pg_sys::InvalidOid;
    let mut prev_context = 0;
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut prev_user, &mut prev_context);
        pg_sys::SetUserIdAndSecContext(
            role,
            prev_context | (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION) as i32,
        );
    }
    // On error the (sub)transaction abort restores user and context.
    let result = f();
    unsafe {
        pg_sys::SetUserIdAndSecContext(prev_user, prev_context);
    }
    result
}

/// Runs `f` with `search_path` set to `pg_catalog, pg_temp`, as a function's `SET search_path`
/// does: what data_sync resolves by name (catalog look-ups, a rule's own expressions) means what
/// it meant when the rule was loaded, whatever the session's path. Restored on return; on error
/// the (sub)transaction's abort restores it.
pub fn with_pinned_search_path<T>(f: impl FnOnce() -> T) -> T {
    with_settings(&[(c"search_path", c"pg_catalog, pg_temp")], f)
}

/// Settings under which values are written to and read from text for the queue: those that
/// change how a value of some type is spelled (dates, intervals, floats, time zones, bytea,
/// reg* names), fixed so that the text means the same value whoever reads it back.
const CANONICAL_TEXT: [(&std::ffi::CStr, &std::ffi::CStr); 6] = [
    (c"DateStyle", c"ISO, MDY"),
    (c"IntervalStyle", c"postgres"),
    (c"extra_float_digits", c"3"),
    (c"TimeZone", c"UTC"),
    (c"bytea_output", c"hex"),
    (c"search_path", c"pg_catalog, pg_temp"),
];

/// Runs `f` under `CANONICAL_TEXT`, restored afterwards (on error, by the abort).
pub fn with_canonical_text<T>(f: impl FnOnce() -> T) -> T {
    with_settings(&CANONICAL_TEXT, f)
}

/// Runs `f` with these settings, as a function's `SET` clauses do (a GUC nest level of its own),
/// restored on return; on error the (sub)transaction's abort restores them.
fn with_settings<T>(settings: &[(&std::ffi::CStr, &std::ffi::CStr)], f: impl FnOnce() -> T) -> T {
    let level = unsafe {
        let level = pg_sys::NewGUCNestLevel();
        for (name, value) in settings {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
        level
    };
    let result = f();
    unsafe { pg_sys::AtEOXact_GUC(true, level) };
    result
}

/// Runs `f` inside an SPI connection (nested connections are fine in triggers).
pub fn with_spi<T>(f: impl FnOnce() -> T) -> T {
    unsafe {
        if pg_sys::SPI_connect() < 0 {
            error!("data_sync: SPI_connect failed");
        }
    }
    let result = f();
    unsafe {
        pg_sys::SPI_finish();
    }
    result
}
