//! Arabic numerals to Chinese numerals: cn2an 0.5's `transform(text, "an2cn")`
//! (MIT), which misaki runs on the text first. In its order: ranges before a
//! measure word (`3-5个` → `三到五个`), dates (`2024年5月3日`: the year digit by
//! digit), fractions (`3/4` → `四分之三`), percentages, degrees Celsius, then any
//! other number (`-12.5` → `负十二点五`). A number cn2an cannot convert (more
//! than 16 integer digits, a non-ASCII digit other than full-width) stays as
//! written, as there.

use std::sync::OnceLock;

use fancy_regex::Regex;

/// cn2an's measure words, which make `a-b` a range.
const MEASURE_WORDS: &str = "斤|克|千克|公斤|吨|米|厘米|毫米|公里|升|毫升|元|角|分|个|只|条|张|块|瓶|杯|份|本|辆|台|匹|头|位|亩|小时|分钟|秒|天|半";

const DIGITS: [&str; 10] = ["零", "一", "二", "三", "四", "五", "六", "七", "八", "九"];

/// The unit after the digit that many places from the right.
const UNITS: [&str; 16] = [
    "", "十", "百", "千", "万", "十", "百", "千", "亿", "十", "百", "千", "万", "十", "百", "千",
];

struct Patterns {
    range: Regex,
    date: Regex,
    fraction: Regex,
    percent: Regex,
    celsius: Regex,
    number: Regex,
}

fn patterns() -> &'static Patterns {
    static PATTERNS: OnceLock<Patterns> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let re = |p: &str| Regex::new(p).expect("cn2an pattern");
        Patterns {
            range: re(&format!(r"\d+(\.\d+)?-\d+(\.\d+)?(?=({MEASURE_WORDS}))")),
            date: re(r"(\d{2,4}年)?(\d{1,2}月)?(\d{1,2}日)?"),
            fraction: re(r"\d+/\d+"),
            percent: re(r"-?(\d+\.)?\d+%"),
            celsius: re(r"\d+℃"),
            number: re(r"-?(\d+\.)?\d+"),
        }
    })
}

/// `re.sub(pattern, f, text)`, where `f` answering `None` (cn2an's caught
/// exception) leaves the match as it was.
fn substitute(pattern: &Regex, text: &str, f: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let mut last = 0;
    for m in pattern.find_iter(text) {
        let Ok(m) = m else { break };
        if m.as_str().is_empty() {
            continue;
        }
        out.push_str(&text[last..m.start()]);
        out.push_str(&f(m.as_str()).unwrap_or_else(|| m.as_str().to_string()));
        last = m.end();
    }
    out.push_str(&text[last..]);
    out
}

/// cn2an's `transform(text, "an2cn")`.
pub fn an2cn_transform(text: &str) -> String {
    let p = patterns();
    let text = substitute(&p.range, text, |m| {
        let (start, end) = m.split_once('-')?;
        Some(format!("{}到{}", an2cn(start, false)?, an2cn(end, false)?))
    });
    let text = substitute(&p.date, &text, date);
    let text = substitute(&p.fraction, &text, |m| {
        let (numerator, denominator) = m.split_once('/')?;
        Some(format!(
            "{}分之{}",
            an2cn(denominator, false)?,
            an2cn(numerator, false)?
        ))
    });
    let text = substitute(&p.percent, &text, |m| {
        Some(format!("百分之{}", an2cn(m.strip_suffix('%')?, false)?))
    });
    let text = substitute(&p.celsius, &text, |m| {
        Some(format!("{}摄氏度", an2cn(m.strip_suffix('℃')?, false)?))
    });
    substitute(&p.number, &text, |m| an2cn(m, false))
}

/// A date match: the digits before 年 read one by one, the others as numbers.
fn date(m: &str) -> Option<String> {
    let mut out = String::new();
    let mut digits = String::new();
    for c in m.chars() {
        if c.is_numeric() {
            digits.push(c);
            continue;
        }
        if !digits.is_empty() {
            out.push_str(&an2cn(&digits, c == '年')?);
            digits.clear();
        }
        out.push(c);
    }
    if !digits.is_empty() {
        out.push_str(&an2cn(&digits, false)?);
    }
    Some(out)
}

/// cn2an's `an2cn(inputs, "low")`, or `"direct"` (digit by digit) with `direct`;
/// `None` where it raises.
pub fn an2cn(inputs: &str, direct: bool) -> Option<String> {
    // Full-width to half-width, then only digits, '.' and '-' are allowed.
    let inputs: String = inputs
        .chars()
        .map(|c| match c {
            '\u{ff01}'..='\u{ff5e}' => char::from_u32(c as u32 - 0xfee0).unwrap_or(c),
            '\u{3000}' => ' ',
            c => c,
        })
        .collect();
    if inputs.is_empty()
        || !inputs
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
    {
        return None;
    }
    let (sign, inputs) = match inputs.strip_prefix('-') {
        Some(rest) => ("负", rest),
        None => ("", inputs.as_str()),
    };
    let body = if direct {
        inputs
            .chars()
            .map(|c| match c {
                '.' => Some("点"),
                c => c.to_digit(10).map(|d| DIGITS[d as usize]),
            })
            .collect::<Option<String>>()?
    } else {
        let parts: Vec<&str> = inputs.split('.').collect();
        match parts.as_slice() {
            [integer] => integer_low(integer)?,
            [integer, decimal] => integer_low(integer)? + &decimal_low(decimal)?,
            _ => return None,
        }
    };
    Some(format!("{sign}{body}"))
}

/// cn2an's `__integer_convert` in `low` mode.
fn integer_low(integer: &str) -> Option<String> {
    if integer.is_empty() || !integer.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // `str(int(...))`: no leading zeros.
    let trimmed = integer.trim_start_matches('0');
    let integer = if trimmed.is_empty() { "0" } else { trimmed };
    let len = integer.len();
    if len > UNITS.len() {
        return None;
    }
    let mut out = String::new();
    for (i, b) in integer.bytes().enumerate() {
        let d = usize::from(b - b'0');
        let place = len - i - 1;
        if d != 0 {
            out.push_str(DIGITS[d]);
            out.push_str(UNITS[place]);
        } else {
            if place % 4 == 0 {
                out.push_str(DIGITS[0]);
                out.push_str(UNITS[place]);
            }
            if i > 0 && !out.ends_with('零') {
                out.push_str(DIGITS[0]);
            }
        }
    }
    let out = out
        .replace("零零", "零")
        .replace("零万", "万")
        .replace("零亿", "亿")
        .replace("亿万", "亿");
    let out = drop_zero_before_thousands(out.trim_matches('零'));
    // 一十二 → 十二.
    let out = match out.strip_prefix("一十") {
        Some(rest) => format!("十{rest}"),
        None => out,
    };
    Some(if out.is_empty() { "零".into() } else { out })
}

/// `re.sub(r"([万亿])零([一二三四五六七八九壹贰叁肆伍陆柒捌玖][千仟])", r"\1\2", s)`.
fn drop_zero_before_thousands(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        let matches = matches!(chars[i], '万' | '亿')
            && chars.get(i + 1) == Some(&'零')
            && chars
                .get(i + 2)
                .is_some_and(|c| "一二三四五六七八九壹贰叁肆伍陆柒捌玖".contains(*c))
            && chars.get(i + 3).is_some_and(|c| matches!(c, '千' | '仟'));
        if matches {
            out.extend([chars[i], chars[i + 2], chars[i + 3]]);
            i += 4;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// cn2an's `__decimal_convert` in `low` mode: 点 and the digits (16 at most).
fn decimal_low(decimal: &str) -> Option<String> {
    if decimal.is_empty() {
        return Some(String::new());
    }
    let digits = decimal
        .chars()
        .take(16)
        .map(|c| c.to_digit(10).map(|d| DIGITS[d as usize]));
    std::iter::once(Some("点")).chain(digits).collect()
}

#[cfg(test)]
mod tests {
    use super::an2cn_transform;

    /// Each as cn2an 0.5.24's `transform(text, "an2cn")` gives it.
    #[test]
    fn as_cn2an_transforms() {
        for (text, expected) in [
            ("2024年5月3日", "二零二四年五月三日"),
            ("99年", "九九年"),
            ("12345年", "一二三四五年"),
            ("30日", "三十日"),
            ("2024-05-03", "二千零二十四负五负三"),
            ("13812345678", "一百三十八亿一千二百三十四万五千六百七十八"),
            ("3-5个", "三到五个"),
            ("1.5-2.5公里", "一点五到二点五公里"),
            ("25℃", "二十五摄氏度"),
            ("3/4", "四分之三"),
            ("-3.5%", "百分之负三点五"),
            ("１２３个", "一百二十三个"),
            ("100000000", "一亿"),
            ("10001000", "一千万一千"),
            ("100010001", "一亿零一万零一"),
            ("1000001", "一百万零一"),
            ("10010", "一万零一十"),
            ("105000", "十万五千"),
            ("0.05", "零点零五"),
            ("007", "七"),
            ("0", "零"),
            ("1.2.3", "一点二.三"),
            ("1,000", "一,零"),
            ("20:30", "二十:三十"),
            ("iPhone 15 Pro", "iPhone 十五 Pro"),
            // More than 16 digits, or digits cn2an does not read: as written.
            ("10000000000000000", "10000000000000000"),
            ("١٢٣", "١٢٣"),
        ] {
            assert_eq!(an2cn_transform(text), expected, "{text}");
        }
    }

    #[test]
    fn long_digit_runs_stay_as_written() {
        let digits = "1".repeat(5000);
        let started = std::time::Instant::now();
        assert_eq!(
            an2cn_transform(&format!("{digits}个")),
            format!("{digits}个")
        );
        assert!(started.elapsed().as_secs() < 5);
    }
}
