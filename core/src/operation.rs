//! What caused a propagation: the `operation` of sync_log rows, queue items and NOTIFY payloads.

/// The write or call a propagation carries out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Source rows inserted (or a target row's way back, for an insert).
    Insert,
    /// Source rows updated (and queue items of mixed operations).
    Update,
    /// Target rows filled from their source: inserted, re-parented, entering the rule's scope.
    Fill,
    /// A re-sync: `sync_all` or a `sync_all_<entity>_data` function.
    Sync,
    /// A schema change that disabled the rule.
    Ddl,
}

impl Operation {
    /// As stored in sync_log and the queue.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Fill => "fill",
            Operation::Sync => "sync",
            Operation::Ddl => "ddl",
        }
    }

    /// The operation stored as `text`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Operation> {
        [Operation::Insert, Operation::Update, Operation::Fill, Operation::Sync, Operation::Ddl]
            .into_iter()
            .find(|o| o.as_str() == text)
    }

    /// Whether it re-reads a rule's source in a call of its own (not inside the write that changed
    /// the source): it then locks the source rows first, and is never deferred to the queue.
    pub fn reads_source_afresh(self) -> bool {
        matches!(self, Operation::Fill | Operation::Sync)
    }
}

#[cfg(test)]
mod tests {
    use super::Operation;

    #[test]
    fn stored_text_round_trips() {
        for op in [Operation::Insert, Operation::Update, Operation::Fill, Operation::Sync, Operation::Ddl] {
            assert_eq!(Operation::parse(op.as_str()), Some(op));
        }
        assert_eq!(Operation::parse("UPDATE"), None);
    }
}
