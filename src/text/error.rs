//! Why text could not be turned into phonemes.

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TextError {
    #[error("language '{given}' is not known; available here: {available}")]
    UnknownLanguage { given: String, available: String },
    #[error("the text has nothing to pronounce")]
    Empty,
    /// The language exists but cannot be spoken on this machine; the text says why
    /// and what to install.
    #[error("{0}")]
    Unavailable(String),
}
