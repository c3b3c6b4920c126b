//! Text front-end of Chatterbox Turbo: chatterbox-tts 0.1.7 `tts_turbo.py`
//! (`punc_norm`, and the `AutoTokenizer` call of `ChatterboxTurboTTS.generate`).
//!
//! The Turbo checkpoint ships a GPT-2 byte-level BPE in the slow-tokenizer file
//! layout (`vocab.json`, `merges.txt`, `added_tokens.json`,
//! `special_tokens_map.json`, `tokenizer_config.json`, no `tokenizer.json`):
//! 50 257 GPT-2 ids plus 19 paralinguistic tags (`[laugh]`, `[clear throat]`, …)
//! as added tokens. [`TextTokenizer::from_dir`] rebuilds what transformers 5.2's
//! `GPT2Tokenizer` makes of those files with the `tokenizers` crate (or reads a
//! `tokenizer.json` when one is present). Turbo adds no start/stop text tokens.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::engine::EngineError;

const MODEL: &str = "chatterbox-turbo";

/// `punc_norm`: capitalise the first letter, collapse whitespace, replace
/// uncommon punctuation, and end with a full stop if no sentence ender is there.
/// Empty text becomes the reference's fixed prompt.
pub fn punc_norm(text: &str) -> String {
    if text.is_empty() {
        return "You need to add some text for me to talk.".to_string();
    }
    let mut text = text.to_string();
    // `text[0].islower()` then `text[0].upper() + text[1:]`.
    let mut chars = text.chars();
    if let Some(first) = chars.next() {
        if first.is_lowercase() {
            text = first.to_uppercase().chain(chars).collect();
        }
    }
    // `" ".join(text.split())`: Python's whitespace includes U+001C..U+001F.
    text = text
        .split(is_python_space)
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    const REPLACE: [(&str, &str); 9] = [
        ("\u{2026}", ", "),
        (":", ","),
        ("\u{2014}", "-"),
        ("\u{2013}", "-"),
        (" ,", ","),
        ("\u{201c}", "\""),
        ("\u{201d}", "\""),
        ("\u{2018}", "'"),
        ("\u{2019}", "'"),
    ];
    for (old, new) in REPLACE {
        text = text.replace(old, new);
    }
    let mut text = text.trim_end_matches(' ').to_string();
    if ![".", "!", "?", "-", ","].iter().any(|p| text.ends_with(p)) {
        text.push('.');
    }
    text
}

/// Python's `str.isspace` for one character.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// One entry of `tokenizer_config.json`'s `added_tokens_decoder`.
#[derive(Debug, Deserialize)]
struct AddedTokenEntry {
    content: String,
    #[serde(default)]
    lstrip: bool,
    #[serde(default)]
    rstrip: bool,
    #[serde(default)]
    single_word: bool,
    #[serde(default = "default_true")]
    normalized: bool,
    #[serde(default)]
    special: bool,
}

fn default_true() -> bool {
    true
}

/// The `tokenizer_config.json` keys that change how text is encoded.
#[derive(Debug, Default, Deserialize)]
struct TokenizerConfigFile {
    #[serde(default)]
    add_prefix_space: bool,
    #[serde(default)]
    add_bos_token: bool,
    #[serde(default)]
    add_eos_token: bool,
    #[serde(default)]
    model_max_length: Option<f64>,
    #[serde(default)]
    added_tokens_decoder: BTreeMap<String, AddedTokenEntry>,
    #[serde(default)]
    bos_token: Option<serde_json::Value>,
    #[serde(default)]
    eos_token: Option<serde_json::Value>,
    #[serde(default)]
    unk_token: Option<serde_json::Value>,
}

/// The Turbo text tokenizer: `tokenizer(text, truncation=True).input_ids`.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    tokenizer: Tokenizer,
    /// `model_max_length` (truncation limit), when the config gives one.
    max_length: Option<usize>,
}

impl TextTokenizer {
    /// Loads the tokenizer files of a Turbo checkpoint folder.
    pub fn from_dir(dir: &Path) -> Result<Self, EngineError> {
        let bad = |path: &Path, reason: String| EngineError::BadFile {
            model: MODEL.to_string(),
            path: path.display().to_string(),
            reason,
        };
        let config_path = dir.join("tokenizer_config.json");
        let config: TokenizerConfigFile = if config_path.exists() {
            let text = std::fs::read_to_string(&config_path)
                .map_err(|e| bad(&config_path, e.to_string()))?;
            serde_json::from_str(&text).map_err(|e| bad(&config_path, e.to_string()))?
        } else {
            TokenizerConfigFile::default()
        };
        if config.add_bos_token || config.add_eos_token {
            return Err(bad(
                &config_path,
                "add_bos_token/add_eos_token are not supported".into(),
            ));
        }
        // transformers leaves "no limit" as a huge float (1e30).
        let max_length = config
            .model_max_length
            .filter(|&m| m > 0.0 && m < 1e12)
            .map(|m| m as usize);

        let json_path = dir.join("tokenizer.json");
        if json_path.exists() {
            let tokenizer =
                Tokenizer::from_file(&json_path).map_err(|e| bad(&json_path, e.to_string()))?;
            return Ok(Self {
                tokenizer,
                max_length,
            });
        }

        let vocab = dir.join("vocab.json");
        let merges = dir.join("merges.txt");
        let bpe = BPE::from_file(&vocab.to_string_lossy(), &merges.to_string_lossy())
            .build()
            .map_err(|e| bad(&vocab, format!("{e} (with {})", merges.display())))?;
        let mut tokenizer = Tokenizer::new(bpe);
        tokenizer.with_pre_tokenizer(Some(ByteLevel::new(config.add_prefix_space, true, true)));
        tokenizer.with_decoder(Some(ByteLevel::default()));

        // Added tokens in id order, so the ids the crate assigns are the file's.
        let mut added: Vec<(u32, AddedToken)> = Vec::new();
        for (id, entry) in &config.added_tokens_decoder {
            let id: u32 = id
                .parse()
                .map_err(|_| bad(&config_path, format!("added token id {id:?}")))?;
            let token = AddedToken::from(entry.content.clone(), entry.special)
                .lstrip(entry.lstrip)
                .rstrip(entry.rstrip)
                .single_word(entry.single_word)
                .normalized(entry.normalized);
            added.push((id, token));
        }
        if added.is_empty() {
            let added_path = dir.join("added_tokens.json");
            if added_path.exists() {
                let text = std::fs::read_to_string(&added_path)
                    .map_err(|e| bad(&added_path, e.to_string()))?;
                let map: BTreeMap<String, u32> =
                    serde_json::from_str(&text).map_err(|e| bad(&added_path, e.to_string()))?;
                added.extend(
                    map.into_iter()
                        .map(|(content, id)| (id, AddedToken::from(content, false))),
                );
            }
            for special in [&config.bos_token, &config.eos_token, &config.unk_token]
                .into_iter()
                .flatten()
            {
                let content = match special {
                    serde_json::Value::String(s) => s.clone(),
                    other => match other.get("content").and_then(|c| c.as_str()) {
                        Some(s) => s.to_string(),
                        None => continue,
                    },
                };
                if let Some(id) = tokenizer.token_to_id(&content) {
                    if !added.iter().any(|(_, t)| t.content == content) {
                        added.push((id, AddedToken::from(content, true)));
                    }
                }
            }
        }
        added.sort_by_key(|(id, _)| *id);
        for (id, token) in added {
            let content = token.content.clone();
            let result = if token.special {
                tokenizer.add_special_tokens([token])
            } else {
                tokenizer.add_tokens([token])
            };
            result.map_err(|e| bad(&config_path, format!("added token {content:?}: {e}")))?;
            let got = tokenizer.token_to_id(&content);
            if got != Some(id) {
                return Err(bad(
                    &config_path,
                    format!(
                        "added token {content:?} has id {id} in the file but {got:?} after loading"
                    ),
                ));
            }
        }
        Ok(Self {
            tokenizer,
            max_length,
        })
    }

    /// Number of ids (`len(tokenizer)`: the model vocabulary plus added tokens).
    pub fn len(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Token ids of already normalised text (call [`punc_norm`] first, as
    /// `generate` does), cut to `model_max_length`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| EngineError::InvalidInput(format!("cannot tokenize text: {e}")))?;
        let mut ids = encoding.get_ids().to_vec();
        if let Some(max) = self.max_length {
            ids.truncate(max);
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn punc_norm_cases() {
        assert_eq!(punc_norm(""), "You need to add some text for me to talk.");
        assert_eq!(punc_norm("hello"), "Hello.");
        assert_eq!(punc_norm("  hello  "), "hello.");
        assert_eq!(punc_norm("wait\u{2026}"), "Wait,");
        assert_eq!(punc_norm("a \u{2014} b: c"), "A - b, c.");
        assert_eq!(punc_norm("Done!"), "Done!");
        assert_eq!(punc_norm("x\u{1f}y"), "X y.");
    }
}
