//! Word segmentation: jieba 0.42.1's `lcut(text, cut_all=False)` (default
//! dictionary, HMM for unknown words, MIT), through the `jieba-rs` crate, which
//! embeds the same dictionary and HMM model.

use jieba_rs::Jieba;

/// The sum of the frequencies of Python jieba's `dict.txt`, which lists `B超`
/// twice and so counts its 3 twice; jieba-rs' copy lists it once.
const PYTHON_TOTAL: usize = 60_101_967;

pub struct Segmenter {
    jieba: Jieba,
}

/// Python jieba keeps Han characters to U+9FD5 (`re_han_default`); the later ones
/// of the block are cut off one by one.
fn beyond_jieba_han(c: char) -> bool {
    ('\u{9FD6}'..='\u{9FFF}').contains(&c)
}

impl Segmenter {
    pub fn new() -> Self {
        let mut jieba = Jieba::new();
        // Make the total (and so every word's probability) the same as Python's,
        // with a word no run of Han characters can contain.
        let total = PYTHON_TOTAL.saturating_sub(jieba_total(&jieba));
        if total > 0 {
            jieba.add_word("\u{1}total", Some(total), None);
        }
        Segmenter { jieba }
    }

    /// The words of `run`, a run of characters U+4E00–U+9FFF.
    pub fn cut<'a>(&self, run: &'a str) -> Vec<&'a str> {
        let mut words = Vec::new();
        let mut rest = run;
        while !rest.is_empty() {
            let split = rest.find(beyond_jieba_han).unwrap_or(rest.len());
            if split > 0 {
                words.extend(
                    self.jieba
                        .cut(&rest[..split], true)
                        .into_iter()
                        .map(|t| t.word),
                );
                rest = &rest[split..];
            } else {
                let len = rest.chars().next().map_or(rest.len(), char::len_utf8);
                words.push(&rest[..len]);
                rest = &rest[len..];
            }
        }
        words
    }
}

/// jieba-rs' total frequency (shown only by its `Debug`).
fn jieba_total(jieba: &Jieba) -> usize {
    let debug = format!("{jieba:?}");
    debug
        .split("total_freq: ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(PYTHON_TOTAL)
}

#[cfg(test)]
mod tests {
    use super::{jieba_total, Segmenter, PYTHON_TOTAL};

    #[test]
    fn cuts_as_python_jieba() {
        let s = Segmenter::new();
        assert_eq!(jieba_total(&s.jieba), PYTHON_TOTAL);
        assert_eq!(
            s.cut("我们明天早上八点在学校门口见面"),
            ["我们", "明天", "早上", "八点", "在", "学校", "门口", "见面"]
        );
        // Python jieba's Han class ends at U+9FD5.
        assert_eq!(s.cut("你好\u{9FD6}世界"), ["你好", "\u{9FD6}", "世界"]);
    }
}
