//! data_sync's server-free core: the pipeline's first stages, plain Rust.
//!
//! rules (parse the document) → validate (against catalog facts) → plan (generate SQL).
//! The pgrx extension in `../src` gathers the catalog facts, installs the planned triggers and
//! executes the planned statements.

pub mod catalog;
pub mod citus;
pub mod plan;
pub mod rules;
#[doc(hidden)]
pub mod testing;
pub mod validate;

/// A rejection, worded for the DBA: it names the rule or entity and the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub message: String,
}

impl Error {
    pub fn new(message: impl Into<String>) -> Self {
        // Messages quote what was written, and TOML can write a NUL (`\u0000`): the server's
        // C strings would end there and cut the message short, so it is spelled out instead.
        let message = message.into();
        let message = if message.contains('\0') { message.replace('\0', "\\u0000") } else { message };
        Error { message }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
