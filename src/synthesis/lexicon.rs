//! Stored pronunciations as speech requests use them: a snapshot of the table,
//! which every request reads and which is refreshed from the database.

use std::sync::{Arc, RwLock};

use crate::store::PronunciationRow;
use crate::text::lexicon::{self, Pronunciation};
use crate::text::Language;

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
    /// Replace the snapshot when `entries` differ from it; whether they did.
    pub fn update(&self, entries: Vec<LexiconEntry>) -> bool {
        let mut current = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if **current == entries {
            return false;
        }
        *current = Arc::new(entries);
        true
    }

    /// How many entries the snapshot holds.
    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether the snapshot is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

impl LexiconEntry {
    /// The entry of a stored row; `None` for a language code this build does not
    /// know (a row written by a newer replica).
    pub fn from_row(row: PronunciationRow) -> Option<Self> {
        let language = Language::parse(&row.language)?;
        Some(Self {
            model: row.model,
            pronunciation: Pronunciation {
                word: row.word,
                phonemes: row.phonemes,
                language,
            },
        })
    }
}
