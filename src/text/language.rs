//! Kokoro's languages, by the one-letter codes of the reference pipeline.

use std::fmt;

/// A language Kokoro speaks. The first letter of a Kokoro voice names its language
/// (`jf_alpha` → [`Language::Japanese`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Language {
    AmericanEnglish,
    BritishEnglish,
    Spanish,
    French,
    Hindi,
    Italian,
    Japanese,
    BrazilianPortuguese,
    Mandarin,
}

impl Language {
    /// Every language, in the order of the reference's `LANG_CODES`.
    pub const ALL: [Language; 9] = [
        Language::AmericanEnglish,
        Language::BritishEnglish,
        Language::Spanish,
        Language::French,
        Language::Hindi,
        Language::Italian,
        Language::Japanese,
        Language::BrazilianPortuguese,
        Language::Mandarin,
    ];

    /// The one-letter code (`a`, `b`, `e`, `f`, `h`, `i`, `j`, `p`, `z`).
    pub fn code(self) -> &'static str {
        match self {
            Language::AmericanEnglish => "a",
            Language::BritishEnglish => "b",
            Language::Spanish => "e",
            Language::French => "f",
            Language::Hindi => "h",
            Language::Italian => "i",
            Language::Japanese => "j",
            Language::BrazilianPortuguese => "p",
            Language::Mandarin => "z",
        }
    }

    /// The name users read.
    pub fn name(self) -> &'static str {
        match self {
            Language::AmericanEnglish => "American English",
            Language::BritishEnglish => "British English",
            Language::Spanish => "Spanish",
            Language::French => "French",
            Language::Hindi => "Hindi",
            Language::Italian => "Italian",
            Language::Japanese => "Japanese",
            Language::BrazilianPortuguese => "Brazilian Portuguese",
            Language::Mandarin => "Mandarin Chinese",
        }
    }

    /// The espeak-ng voice the reference uses for this language, if it uses one.
    pub fn espeak_voice(self) -> Option<&'static str> {
        match self {
            Language::Spanish => Some("es"),
            Language::French => Some("fr-fr"),
            Language::Hindi => Some("hi"),
            Language::Italian => Some("it"),
            Language::BrazilianPortuguese => Some("pt-br"),
            _ => None,
        }
    }

    /// A code, a reference alias (`en-us`, `en-gb`, `es`, `fr-fr`, `hi`, `it`,
    /// `pt-br`, `ja`, `zh`) or a common tag (`en`, `fr`, `pt`, `zh-cn`…), any case.
    pub fn parse(code: &str) -> Option<Language> {
        let code = code.trim().to_ascii_lowercase().replace('_', "-");
        Some(match code.as_str() {
            "a" | "en" | "en-us" => Language::AmericanEnglish,
            "b" | "en-gb" => Language::BritishEnglish,
            "e" | "es" | "es-es" => Language::Spanish,
            "f" | "fr" | "fr-fr" => Language::French,
            "h" | "hi" | "hi-in" => Language::Hindi,
            "i" | "it" | "it-it" => Language::Italian,
            "j" | "ja" | "ja-jp" => Language::Japanese,
            "p" | "pt" | "pt-br" => Language::BrazilianPortuguese,
            "z" | "zh" | "zh-cn" | "cmn" => Language::Mandarin,
            _ => return None,
        })
    }

    /// The language of a Kokoro voice, by its first letter; `None` for names that
    /// do not start with a language letter.
    pub fn of_voice(voice: &str) -> Option<Language> {
        let first = voice.chars().next()?;
        Language::ALL
            .into_iter()
            .find(|l| l.code().starts_with(first))
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_aliases_and_voices() {
        for l in Language::ALL {
            assert_eq!(Language::parse(l.code()), Some(l));
        }
        assert_eq!(
            Language::parse("PT-BR"),
            Some(Language::BrazilianPortuguese)
        );
        assert_eq!(Language::parse("ja"), Some(Language::Japanese));
        assert_eq!(Language::parse("x"), None);
        assert_eq!(Language::of_voice("jf_alpha"), Some(Language::Japanese));
        assert_eq!(Language::of_voice("zm_yunxi"), Some(Language::Mandarin));
        assert_eq!(
            Language::of_voice("af_heart"),
            Some(Language::AmericanEnglish)
        );
        assert_eq!(Language::of_voice("clone-1"), None);
    }
}
