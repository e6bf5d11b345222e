//! data_sync's server-free core: the pipeline's first stages, plain Rust.
//!
//! rules (parse the document) → validate (against catalog facts) → plan (generate SQL), with
//! `sql` (quoting) and `catalog` (the facts' types) below them all.
//! The pgrx extension in `../src` gathers the catalog facts, installs the planned triggers and
//! executes the planned statements.

pub mod catalog;
pub mod citus;
pub mod operation;
pub mod plan;
pub mod rules;
pub mod sql;
pub mod statement;
#[doc(hidden)]
pub mod testing;
pub mod validate;

/// What kind of rejection an `Error` is: the shell raises each kind with its SQLSTATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A rule, entity or argument that is not valid (22023).
    InvalidParameterValue,
    /// The caller, or a table's owner a rule would run as, lacks a privilege (42501).
    InsufficientPrivilege,
    /// A shape data_sync does not support (0A000).
    FeatureNotSupported,
}

impl ErrorKind {
    /// The SQLSTATE the shell raises this kind with.
    pub fn sqlstate(self) -> &'static str {
        match self {
            ErrorKind::InvalidParameterValue => "22023",
            ErrorKind::InsufficientPrivilege => "42501",
            ErrorKind::FeatureNotSupported => "0A000",
        }
    }
}

/// A rejection, worded for the DBA: it names the rule or entity and the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl Error {
    /// An invalid rule, entity or argument.
    pub fn new(message: impl Into<String>) -> Self {
        Error::of(ErrorKind::InvalidParameterValue, message)
    }

    /// A missing privilege.
    pub fn privilege(message: impl Into<String>) -> Self {
        Error::of(ErrorKind::InsufficientPrivilege, message)
    }

    /// An unsupported shape.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Error::of(ErrorKind::FeatureNotSupported, message)
    }

    pub fn of(kind: ErrorKind, message: impl Into<String>) -> Self {
        // Messages quote what was written, and TOML can write a NUL (`\u0000`): the server's
        // C strings would end there and cut the message short, so it is spelled out instead.
        let message = message.into();
        let message = if message.contains('\0') { message.replace('\0', "\\u0000") } else { message };
        Error { kind, message, detail: None, hint: None }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
