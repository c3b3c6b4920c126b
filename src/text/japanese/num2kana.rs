//! Numbers to hiragana: misaki 0.9.4's `num2kana.Convert` (hiragana), which reads
//! a run of digits as a Japanese number up to nine digits.

fn one(digit: u8) -> &'static str {
    match digit {
        b'1' => "いち",
        b'2' => "に",
        b'3' => "さん",
        b'4' => "よん",
        b'5' => "ご",
        b'6' => "ろく",
        b'7' => "なな",
        b'8' => "はち",
        b'9' => "きゅう",
        // "0" is read in katakana, as misaki's table has it.
        _ => "ゼロ",
    }
}

const TEN: &str = "じゅう";
const HUNDRED: &str = "ひゃく";
const THOUSAND: &str = "せん";
const MAN: &str = "まん";
const OKU: &str = "おく";

/// `len_two`: 10-99 (or a digit after a 0).
fn two(d: &[u8]) -> String {
    if d[0] == b'0' {
        return one(d[1]).into();
    }
    if d == b"10" {
        return TEN.into();
    }
    if d[0] == b'1' {
        return format!("{TEN}{}", one(d[1]));
    }
    if d[1] == b'0' {
        return format!("{}{TEN}", one(d[0]));
    }
    format!("{}{TEN}{}", one(d[0]), one(d[1]))
}

/// `len_three`: 100-999.
fn three(d: &[u8]) -> String {
    let mut out = String::from(match d[0] {
        b'1' => HUNDRED,
        b'3' => "さんびゃく",
        b'6' => "ろっぴゃく",
        b'8' => "はっぴゃく",
        _ => "",
    });
    if out.is_empty() {
        out = format!("{}{HUNDRED}", one(d[0]));
    }
    if &d[1..] == b"00" {
    } else if d[1] == b'0' {
        out.push_str(one(d[2]));
    } else {
        out.push_str(&two(&d[1..]));
    }
    out
}

/// `len_four`: 1000-9999 (or fewer digits after zeros); `alone` when the number
/// has no higher part (1000 is `せん` alone, `いっせん` before 万).
fn four(d: &[u8], alone: bool) -> String {
    if d == b"0000" {
        return String::new();
    }
    let start = d.iter().position(|&c| c != b'0').unwrap_or(d.len() - 1);
    let d = &d[start..];
    match d.len() {
        1 => return one(d[0]).into(),
        2 => return two(d),
        3 => return three(d),
        _ => {}
    }
    let mut out = match d[0] {
        b'1' if alone => THOUSAND.to_string(),
        b'1' => "いっせん".into(),
        b'3' => "さんぜん".into(),
        b'8' => "はっせん".into(),
        c => format!("{}{THOUSAND}", one(c)),
    };
    if &d[1..] == b"000" {
    } else if d[1] == b'0' {
        out.push_str(&two(&d[2..]));
    } else {
        out.push_str(&three(&d[1..]));
    }
    out
}

/// `len_x`: 10000-999999999.
fn large(d: &[u8]) -> String {
    let split = d.len() - 4;
    let (high, low) = d.split_at(split);
    let mut out = match high.len() {
        1 => format!("{}{MAN}", one(high[0])),
        2 => format!("{}{MAN}", two(high)),
        3 => format!("{}{MAN}", three(high)),
        4 => format!("{}{MAN}", four(high, false)),
        _ => {
            let middle = &high[1..5];
            let man = if middle == b"0000" { "" } else { MAN };
            format!("{}{OKU}{}{man}", one(high[0]), four(middle, false))
        }
    };
    out.push_str(&four(low, false));
    out
}

/// The hiragana reading of a run of ASCII digits, as misaki's `Convert` gives it.
///
/// misaki reads up to nine digits; for longer runs its `Convert` answers an English
/// message, on which cutlet then fails. Those are read digit by digit here.
pub fn convert(digits: &str) -> String {
    if digits.len() > 9 {
        return digits.bytes().map(one).collect::<Vec<_>>().join(" ");
    }
    let bytes = digits.as_bytes();
    let start = bytes
        .iter()
        .position(|&c| c != b'0')
        .unwrap_or(bytes.len().saturating_sub(1));
    let d = &bytes[start..];
    match d.len() {
        0 => String::new(),
        1 => one(d[0]).into(),
        2 => two(d),
        3 => three(d),
        4 => four(d, true),
        _ => large(d),
    }
}

#[cfg(test)]
mod tests {
    use super::convert;

    #[test]
    fn numbers_as_misaki_reads_them() {
        let cases = [
            ("0", "ゼロ"),
            ("007", "なな"),
            ("10", "じゅう"),
            ("15", "じゅうご"),
            ("20", "にじゅう"),
            ("99", "きゅうじゅうきゅう"),
            ("100", "ひゃく"),
            ("105", "ひゃくご"),
            ("333", "さんびゃくさんじゅうさん"),
            ("600", "ろっぴゃく"),
            ("1000", "せん"),
            ("1005", "せんご"),
            ("2024", "にせんにじゅうよん"),
            ("3000", "さんぜん"),
            ("8800", "はっせんはっぴゃく"),
            ("10000", "いちまん"),
            ("15000", "いちまんごせん"),
            ("12000000", "いっせんにひゃくまん"),
            ("100000000", "いちおく"),
            (
                "123456789",
                "いちおくにせんさんびゃくよんじゅうごまんろくせんななひゃくはちじゅうきゅう",
            ),
            (
                "1234567890",
                "いち に さん よん ご ろく なな はち きゅう ゼロ",
            ),
        ];
        for (digits, reading) in cases {
            assert_eq!(convert(digits), reading, "{digits}");
        }
    }
}
