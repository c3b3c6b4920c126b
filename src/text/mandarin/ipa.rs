//! One pinyin syllable to IPA with Kokoro's tone arrows: misaki 0.9.4's
//! `transcription.pinyin_to_ipa` (adapted there from stefantaubert's
//! pinyin-to-ipa, MIT), its first variant, then `ZHG2P.retone` and the removal of
//! U+032F (the non-syllabic mark of `ai̯`, `au̯`, ...) that `legacy_call` does.
//!
//! The input is a syllable in pypinyin's `TONE3` style with a `5` for the
//! neutral tone (`zhong1`, `lv4`, `le5`); the helpers follow pypinyin's
//! `to_initials`/`to_finals` (strict) that misaki calls.

/// pypinyin's strict initials, in its order (`zh` before `z`).
const INITIALS: [&str; 21] = [
    "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x", "zh", "ch", "sh", "r",
    "z", "c", "s",
];

/// pypinyin's finals (`_FINALS`).
const FINALS: [&str; 37] = [
    "i", "u", "ü", "a", "ia", "ua", "o", "uo", "e", "ie", "üe", "ai", "uai", "ei", "uei", "ao",
    "iao", "ou", "iou", "an", "ian", "uan", "üan", "en", "in", "uen", "ün", "ang", "iang", "uang",
    "eng", "ing", "ueng", "ong", "iong", "er", "ê",
];

/// Tone number → Kokoro's tone arrow (`retone` of the Chao tone letters).
fn tone_mark(tone: u8) -> &'static str {
    match tone {
        1 => "→",
        2 => "↗",
        3 => "↓",
        4 => "↘",
        _ => "",
    }
}

/// misaki's `INITIAL_MAPPING`, first variant.
fn initial_ipa(initial: &str) -> &'static str {
    match initial {
        "b" => "p",
        "c" => "ʦʰ",
        "ch" => "ꭧʰ",
        "d" => "t",
        "f" => "f",
        "g" => "k",
        "h" => "x",
        "j" => "ʨ",
        "k" => "kʰ",
        "l" => "l",
        "m" => "m",
        "n" => "n",
        "p" => "pʰ",
        "q" => "ʨʰ",
        "r" => "ɻ",
        "s" => "s",
        "sh" => "ʂ",
        "t" => "tʰ",
        "x" => "ɕ",
        "z" => "ʦ",
        "zh" => "ꭧ",
        _ => "",
    }
}

/// misaki's `FINAL_MAPPING`, first variant, with `0` where the tone goes and
/// U+032F already removed.
fn final_ipa(final_: &str) -> Option<&'static str> {
    Some(match final_ {
        "a" => "a0",
        "ai" => "ai0",
        "an" => "a0n",
        "ang" => "a0ŋ",
        "ao" => "au0",
        "e" => "ɤ0",
        "ei" => "ei0",
        "en" => "ə0n",
        "eng" => "ə0ŋ",
        "i" => "i0",
        "ia" => "ja0",
        "ian" => "jɛ0n",
        "iang" => "ja0ŋ",
        "iao" => "jau0",
        "ie" => "je0",
        "in" => "i0n",
        "iou" => "jou0",
        "ing" => "i0ŋ",
        "iong" => "jʊ0ŋ",
        "ong" => "ʊ0ŋ",
        "ou" => "ou0",
        "u" => "u0",
        "uei" => "wei0",
        "ua" => "wa0",
        "uai" => "wai0",
        "uan" => "wa0n",
        "uen" => "wə0n",
        "uang" => "wa0ŋ",
        "ueng" => "wə0ŋ",
        "uo" | "o" => "wo0",
        "ü" => "y0",
        "üe" => "ɥe0",
        "üan" => "ɥɛ0n",
        "ün" => "y0n",
        _ => return None,
    })
}

/// Interjections and syllabic consonants, which misaki maps whole.
fn whole_syllable_ipa(normal: &str) -> Option<&'static str> {
    Some(match normal {
        "io" => "jɔ0",
        "ê" => "ɛ0",
        "er" => "ɚ0",
        "o" => "ɔ0",
        "hm" => "hm0",
        "hng" => "hŋ0",
        "m" => "m0",
        "n" => "n0",
        "ng" => "ŋ0",
        _ => return None,
    })
}

fn strict_initial(pinyin: &str) -> &'static str {
    INITIALS
        .iter()
        .find(|i| pinyin.starts_with(**i))
        .copied()
        .unwrap_or("")
}

/// pypinyin's `convert_zero_consonant`: `yu` → `ü`, `yi` → `i`, `ya` → `ia`,
/// `wu` → `u`, `wa` → `ua`, kept only when the result is a final.
fn convert_zero_consonant(pinyin: &str) -> String {
    let converted = if let Some(rest) = pinyin.strip_prefix('y') {
        if let Some(after_u) = rest.strip_prefix('u') {
            format!("ü{after_u}")
        } else if rest.starts_with('i') {
            rest.to_string()
        } else {
            format!("i{rest}")
        }
    } else if let Some(rest) = pinyin.strip_prefix('w') {
        if rest.starts_with('u') {
            rest.to_string()
        } else {
            format!("u{rest}")
        }
    } else {
        pinyin.to_string()
    };
    if FINALS.contains(&converted.as_str()) {
        converted
    } else {
        pinyin.to_string()
    }
}

/// `([a-z]+)(ui)$` → `\1uei` and the like: `from` ends the syllable and at least
/// one ASCII letter stands right before it.
fn expand_suffix(pinyin: &str, from: &str, to: &str, anchored_whole: bool) -> String {
    if let Some(head) = pinyin.strip_suffix(from) {
        let letters_before = if anchored_whole {
            !head.is_empty() && head.bytes().all(|b| b.is_ascii_lowercase())
        } else {
            head.as_bytes().last().is_some_and(u8::is_ascii_lowercase)
        };
        if letters_before {
            return format!("{head}{to}");
        }
    }
    pinyin.to_string()
}

/// pypinyin's `convert_finals` (strict): the written final back to its full form.
fn convert_finals(pinyin: &str) -> String {
    let mut p = convert_zero_consonant(pinyin);
    // ü after j, q, x is written u.
    for initial in ["j", "q", "x"] {
        if let Some(rest) = p.strip_prefix(initial) {
            if let Some(rest) = rest.strip_prefix('u') {
                p = format!("{initial}ü{rest}");
            }
            break;
        }
    }
    p = expand_suffix(&p, "iu", "iou", true);
    p = expand_suffix(&p, "ui", "uei", false);
    expand_suffix(&p, "un", "uen", false)
}

/// pypinyin's `to_finals(strict=True, v_to_u=True)` of a toneless syllable;
/// empty where it finds none.
fn strict_final(normal: &str) -> String {
    let converted = convert_finals(&normal.replace('v', "ü"));
    let initial = strict_initial(&converted);
    let finals = &converted[initial.len()..];
    if FINALS.contains(&finals) {
        return finals.to_string();
    }
    // Then y and w count as initials too (`yo` → `o`).
    let loose = if initial.is_empty() {
        converted
            .strip_prefix('y')
            .or_else(|| converted.strip_prefix('w'))
            .unwrap_or(&converted)
    } else {
        finals
    };
    if FINALS.contains(&loose) {
        loose.to_string()
    } else {
        String::new()
    }
}

/// IPA of one `TONE3` syllable (`zhong1` → `ꭧʊ→ŋ`), or `None` where misaki
/// raises (no tone digit, or a final it has no mapping for).
pub fn syllable_ipa(tone3: &str) -> Option<String> {
    let tone = tone3.chars().last()?.to_digit(10)?;
    if !(1..=5).contains(&tone) {
        return None;
    }
    let normal: String = tone3.chars().filter(|c| !c.is_ascii_digit()).collect();
    let mark = tone_mark(tone as u8);
    if let Some(whole) = whole_syllable_ipa(&normal) {
        return Some(whole.replace('0', mark));
    }
    let initial = strict_initial(&normal);
    let final_ = strict_final(&normal);
    let final_phonemes = match (initial, final_.as_str()) {
        // Apical vowels, written ɨ after `retone`.
        ("zh" | "ch" | "sh" | "r" | "z" | "c" | "s", "i") => "ɨ0",
        (_, f) => final_ipa(f)?,
    };
    Some(format!(
        "{}{}",
        initial_ipa(initial),
        final_phonemes.replace('0', mark)
    ))
}

#[cfg(test)]
mod tests {
    use super::syllable_ipa;

    /// Every syllable pypinyin gives (first readings of its characters and
    /// phrases, in `TONE3` style), with misaki's IPA for it.
    const SYLLABLES: &str = include_str!("../../../tests/fixtures/g2p/zh/syllables.tsv");

    #[test]
    fn every_syllable_as_misaki_transcribes_it() {
        let mut wrong = Vec::new();
        for line in SYLLABLES.lines() {
            let (tone3, expected) = line.split_once('\t').unwrap();
            let got = syllable_ipa(tone3);
            if got.as_deref() != Some(expected) {
                wrong.push(format!("{tone3}: expected {expected}, got {got:?}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        assert!(SYLLABLES.lines().count() > 1400);
    }

    #[test]
    fn finals_spelled_short() {
        assert_eq!(syllable_ipa("gui4").unwrap(), "kwei↘");
        assert_eq!(syllable_ipa("liu2").unwrap(), "ljou↗");
        assert_eq!(syllable_ipa("lun4").unwrap(), "lwə↘n");
        assert_eq!(syllable_ipa("ju1").unwrap(), "ʨy→");
        assert_eq!(syllable_ipa("lv4").unwrap(), "ly↘");
        assert_eq!(syllable_ipa("yuan2").unwrap(), "ɥɛ↗n");
        assert_eq!(syllable_ipa("shi4").unwrap(), "ʂɨ↘");
        assert_eq!(syllable_ipa("si1").unwrap(), "sɨ→");
        assert_eq!(syllable_ipa("er4").unwrap(), "ɚ↘");
        assert_eq!(syllable_ipa("de5").unwrap(), "tɤ");
        assert_eq!(syllable_ipa("zhong"), None);
    }
}
