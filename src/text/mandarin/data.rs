//! Reading pypinyin's two JSON files (the Mandarin language pack), keeping only
//! what `lazy_pinyin` uses: the first reading of each character. Strings are
//! borrowed from the file's text, not copied.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A JSON string, borrowed where it has no escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(TextVisitor)
    }
}

/// A JSON object as its entries, in file order.
struct Entries<'de, V>(Vec<(Text<'de>, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<'de, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<'de, V>(PhantomData<(&'de (), V)>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<'de, V> {
            type Value = Entries<'de, V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) = map.next_entry()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(EntriesVisitor(PhantomData))
    }
}

/// A phrase's readings, `[["yī"], ["dīng", "zhēng"]]`, as the first reading of
/// each character.
struct FirstReadings<'de>(Vec<Cow<'de, str>>);

impl<'de> Deserialize<'de> for FirstReadings<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// One character's readings, as its first.
        struct First<'de>(Cow<'de, str>);
        impl<'de> Deserialize<'de> for First<'de> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct FirstVisitor;
                impl<'de> Visitor<'de> for FirstVisitor {
                    type Value = First<'de>;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str("a list of readings")
                    }
                    fn visit_seq<A: SeqAccess<'de>>(
                        self,
                        mut seq: A,
                    ) -> Result<Self::Value, A::Error> {
                        let first: Text = seq
                            .next_element()?
                            .ok_or_else(|| serde::de::Error::custom("no reading"))?;
                        while seq.next_element::<IgnoredAny>()?.is_some() {}
                        Ok(First(first.0))
                    }
                }
                d.deserialize_seq(FirstVisitor)
            }
        }
        let all: Vec<First<'de>> = Vec::deserialize(d)?;
        Ok(FirstReadings(all.into_iter().map(|f| f.0).collect()))
    }
}

/// `pinyin_dict.json`: each character with its first reading.
pub fn char_readings(json: &str) -> Result<Vec<(char, Cow<'_, str>)>, String> {
    let entries: Entries<Text> =
        serde_json::from_str(json).map_err(|e| format!("pinyin_dict.json: {e}"))?;
    entries
        .0
        .into_iter()
        .map(|(code, readings)| {
            let c = code
                .0
                .parse::<u32>()
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| format!("pinyin_dict.json: bad code point {}", code.0))?;
            let first = match readings.0 {
                Cow::Borrowed(s) => Cow::Borrowed(s.split(',').next().unwrap_or_default()),
                Cow::Owned(s) => Cow::Owned(s.split(',').next().unwrap_or_default().to_string()),
            };
            Ok((c, first))
        })
        .collect()
}

/// A phrase and the first reading of each of its characters.
pub type PhraseReadings<'a> = (Cow<'a, str>, Vec<Cow<'a, str>>);

/// `phrases_dict.json`: each phrase with the first reading of each character.
pub fn phrase_readings(json: &str) -> Result<Vec<PhraseReadings<'_>>, String> {
    let entries: Entries<FirstReadings> =
        serde_json::from_str(json).map_err(|e| format!("phrases_dict.json: {e}"))?;
    Ok(entries.0.into_iter().map(|(k, v)| (k.0, v.0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_readings_only() {
        let chars = char_readings(r#"{"19968": "yī,yí", "20013": "zh\u014dng"}"#).unwrap();
        assert_eq!(chars[0], ('一', Cow::Borrowed("yī")));
        assert_eq!(chars[1].1, "zhōng");
        let phrases =
            phrase_readings(r#"{"一丁": [["yī"], ["dīng", "zhēng"]], "了": [["le", "liǎo"]]}"#)
                .unwrap();
        assert_eq!(phrases[0].0, "一丁");
        assert_eq!(phrases[0].1, ["yī", "dīng"]);
        assert_eq!(phrases[1].1, ["le"]);
        assert!(char_readings(r#"{"x": "a"}"#).is_err());
        assert!(phrase_readings("[").is_err());
    }
}
