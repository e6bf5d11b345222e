//! The few server functions and structures whose shape differs between the PostgreSQL majors
//! data_sync builds for (15 to 18, one Cargo feature each). A leaf room: everything else calls
//! these instead of the versioned API.

use pgrx::pg_sys;

/// The attribute at 0-based position `i` of a tuple descriptor. (18 moved the attribute array
/// behind `compact_attrs`; `TupleDescAttr` reads it on every major.)
#[inline]
pub unsafe fn attribute(desc: pg_sys::TupleDesc, i: usize) -> *const pg_sys::FormData_pg_attribute {
    #[cfg(not(feature = "pg18"))]
    {
        (*desc).attrs.as_ptr().add(i)
    }
    #[cfg(feature = "pg18")]
    {
        pg_sys::TupleDescAttr(desc, i as i32)
    }
}

/// The sequence of the identity column `attnum` of `rel`. (17 takes the relation, not its oid.)
pub unsafe fn identity_sequence(rel: pg_sys::Relation, attnum: i16) -> pg_sys::Oid {
    #[cfg(any(feature = "pg15", feature = "pg16"))]
    {
        pg_sys::getIdentitySequence((*rel).rd_id, attnum, false)
    }
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    {
        pg_sys::getIdentitySequence(rel, attnum, false)
    }
}

/// Inserts a new heap tuple's index entries through the executor (no conflict checks, no
/// arbiter indexes). (16 added `onlySummarizing`: false, every index.)
pub unsafe fn insert_index_tuples(
    result_rel: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    estate: *mut pg_sys::EState,
) {
    #[cfg(feature = "pg15")]
    {
        pg_sys::ExecInsertIndexTuples(
            result_rel,
            slot,
            estate,
            false,
            false,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
    }
    #[cfg(not(feature = "pg15"))]
    {
        pg_sys::ExecInsertIndexTuples(
            result_rel,
            slot,
            estate,
            false,
            false,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            false,
        );
    }
}
