//! Quoting for the SQL the core writes (a leaf: every stage quotes with it).

/// Quotes an identifier (always, so reserved words and mixed case are safe).
pub fn ident(name: &str) -> String {
    postgres_protocol::escape::escape_identifier(name)
}

/// Quotes a string literal.
pub fn literal(value: &str) -> String {
    postgres_protocol::escape::escape_literal(value)
}
