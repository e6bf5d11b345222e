//! The facts about tables that validation and planning need, gathered by the Postgres shell
//! (or written by hand in unit tests). Keeping them as plain data is what lets the core run
//! without a server.

use std::collections::BTreeMap;

/// A resolved, exact (already case-folded) table name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        TableName { schema: schema.into(), name: name.into() }
    }

    /// The name as SQL, every part quoted: `"public"."users"`.
    pub fn sql(&self) -> String {
        format!("{}.{}", crate::sql::ident(&self.schema), crate::sql::ident(&self.name))
    }
}

impl std::fmt::Display for TableName {
    /// The name as a DBA reads it in messages: `public.users`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    /// Position in the table (`pg_attribute.attnum`).
    pub attnum: i16,
    pub type_oid: u32,
    pub typmod: i32,
    /// `format_type(type, typmod)`, for messages.
    pub type_name: String,
    /// Schema of the type's default equality operator; `None` when the type has none (json, point).
    pub eq_schema: Option<String>,
    /// The column's collation (`pg_attribute.attcollation`; 0 for types without one).
    pub collation: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub name: TableName,
    pub oid: u32,
    /// Composite type of the table's rows (`pg_class.reltype`).
    pub row_type_oid: u32,
    /// False for views, foreign tables and other relations that cannot carry our triggers.
    pub is_table: bool,
    /// Whether the role defining rules owns the table (or is superuser).
    pub caller_owns: bool,
    pub columns: Vec<ColumnInfo>,
    /// Column sets of non-partial unique indexes (primary key included).
    pub unique_keys: Vec<Vec<String>>,
    /// Tables inheriting from this one (`INHERITS`, not partitions): their rows are read and
    /// written through it, but do not fire its triggers.
    pub inheritance_children: Vec<String>,
    /// Whether the table is a partition or inherits from another table: rows written through
    /// the parent fire its row triggers but not its statement triggers.
    pub is_child: bool,
    /// Whether the table (or one of its partitions) has BEFORE UPDATE row triggers besides
    /// data_sync's: they may change columns an UPDATE statement does not name.
    pub before_update_triggers: bool,
    /// Likewise BEFORE INSERT row triggers: they may run after data_sync's fill.
    pub before_insert_triggers: bool,
}

impl TableInfo {
    pub fn column(&self, name: &str) -> Option<&ColumnInfo> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Table names as written in the rules, each resolved to its table or to the reason it could
/// not be (not schema-qualified, does not exist, ...).
pub type Catalog = BTreeMap<String, Result<TableInfo, String>>;
