//! Stored pronunciations as speech requests use them: a snapshot of the table,
//! which every request reads and which is refreshed from the database.

use std::sync::{Arc, RwLock};

use crate::text::lexicon::{self, Pronunciation};

/// One stored entry: its pronunciation, and the model it is limited to (`None`:
/// every model).
#[derive(Debug, Clone, PartialEq)]
pub struct LexiconEntry {
    pub model: Option<String>,
    pub pronunciation: Pronunciation,
}

/// The pronunciations speech requests read.
#[derive(Default)]
pub struct LexiconBook {
    entries: RwLock<Arc<Vec<LexiconEntry>>>,
}

impl LexiconBook {
    /// Replace the snapshot (after reading the table).
    pub fn replace(&self, entries: Vec<LexiconEntry>) {
        *self.entries.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(entries);
    }

    /// The entries that may apply to `input` spoken by `model`.
    pub fn for_input(&self, model: &str, input: &str) -> Vec<Pronunciation> {
        let entries = Arc::clone(&self.entries.read().unwrap_or_else(|e| e.into_inner()));
        lexicon::relevant(
            entries
                .iter()
                .filter(|e| e.model.as_deref().is_none_or(|m| m == model))
                .map(|e| &e.pronunciation),
            input,
        )
    }
}
