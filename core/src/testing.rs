//! A fake catalog for tests without a server: the core's own unit tests and the hostile-input
//! tests in `core/tests/` build their tables with these. Not part of the API.

use crate::catalog::{ColumnInfo, TableInfo, TableName};

/// A column of one of the types the tests use (their real type oids).
pub fn col(name: &str, ty: &str) -> ColumnInfo {
    let oid = match ty {
        "bigint" => 20,
        "integer" => 23,
        "text" => 25,
        "json" => 114,
        "uuid" => 2950,
        "numeric" => 1700,
        "timestamptz" => 1184,
        other => panic!("fake catalog: unknown type {other}"),
    };
    ColumnInfo {
        name: name.into(),
        attnum: 1,
        type_oid: oid,
        typmod: -1,
        type_name: ty.into(),
        // json has no equality operator, as in the server
        eq_schema: (ty != "json").then(|| "pg_catalog".to_string()),
        collation: 0,
    }
}

pub fn tbl(schema: &str, name: &str, cols: &[(&str, &str)], unique: &[&[&str]]) -> TableInfo {
    TableInfo {
        name: TableName::new(schema, name),
        oid: 1,
        row_type_oid: 2,
        is_table: true,
        caller_owns: true,
        columns: cols.iter().map(|(n, t)| col(n, t)).collect(),
        unique_keys: unique.iter().map(|u| u.iter().map(|c| c.to_string()).collect()).collect(),
        inheritance_children: Vec::new(),
        is_child: false,
        before_update_triggers: false,
        before_insert_triggers: false,
    }
}
