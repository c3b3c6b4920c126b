//! A MeCab 0.996 tokenizer reading MeCab's compiled binary dictionary (`sys.dic`,
//! `unk.dic`, `matrix.bin`, `char.bin`), giving the tokens the MeCab inside
//! fugashi gives for the same dictionary: the Darts double array's common prefix
//! search, MeCab's unknown-word processing (invoke, group, length of each
//! character category) and its Viterbi search with the same tie-breaking order.
//!
//! `sys.dic` and `matrix.bin` are memory-mapped (together about 260 MB for
//! unidic-lite), so the pages come back when the tokenizer is dropped.

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

/// MeCab's dictionary magic number (the file size XOR this is the first word).
const DICTIONARY_MAGIC: u32 = 0xef71_8f77;
/// Longest run of one character category kept as one unknown word when the
/// dictionary's `dicrc` does not set `max-grouping-size` (unidic-lite's does not).
const DEFAULT_MAX_GROUPING_SIZE: usize = 24;
/// MeCab looks at most this many bytes ahead of a position.
const MAX_LOOKAHEAD: usize = 65535;

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn i32_at(bytes: &[u8], at: usize) -> i32 {
    i32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().expect("2 bytes"))
}

fn map(path: &Path) -> Result<Mmap, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // SAFETY: the language pack's files are read-only data nobody writes while
    // voxpool runs; a file changed under the map is outside what voxpool supports.
    unsafe { Mmap::map(&file) }.map_err(|e| format!("{}: {e}", path.display()))
}

/// One entry of a dictionary: connection ids, word cost and where its feature
/// string starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DicToken {
    pub left_id: u16,
    pub right_id: u16,
    pub cost: i16,
    pub feature: u32,
}

/// A compiled MeCab dictionary (`sys.dic`, `unk.dic`).
pub struct Dictionary {
    data: Mmap,
    /// Byte ranges of the double array, the tokens and the feature strings.
    darts: (usize, usize),
    tokens: (usize, usize),
    features: (usize, usize),
}

impl Dictionary {
    pub fn open(path: &Path) -> Result<Self, String> {
        let data = map(path)?;
        let bad = |why: &str| format!("{}: not a MeCab dictionary ({why})", path.display());
        if data.len() < 72 {
            return Err(bad("too short"));
        }
        if (u32_at(&data, 0) ^ DICTIONARY_MAGIC) as usize != data.len() {
            return Err(bad("bad magic number or size"));
        }
        let charset: Vec<u8> = data[40..72]
            .iter()
            .copied()
            .take_while(|&b| b != 0)
            .collect();
        let charset = String::from_utf8_lossy(&charset).to_ascii_lowercase();
        if !matches!(charset.as_str(), "utf8" | "utf-8") {
            return Err(bad(&format!("charset {charset}, not UTF-8")));
        }
        let dsize = u32_at(&data, 24) as usize;
        let tsize = u32_at(&data, 28) as usize;
        let fsize = u32_at(&data, 32) as usize;
        let darts = (72, 72 + dsize);
        let tokens = (darts.1, darts.1 + tsize);
        let features = (tokens.1, tokens.1 + fsize);
        if features.1 > data.len() || !dsize.is_multiple_of(8) || !tsize.is_multiple_of(16) {
            return Err(bad("section sizes do not fit"));
        }
        Ok(Self {
            data,
            darts,
            tokens,
            features,
        })
    }

    /// Darts unit `i`: (base, check); out of range reads as no unit.
    fn unit(&self, i: usize) -> (i32, u32) {
        let at = self.darts.0 + i * 8;
        if at + 8 > self.darts.1 {
            return (0, u32::MAX);
        }
        (i32_at(&self.data, at), u32_at(&self.data, at + 4))
    }

    /// Darts' `commonPrefixSearch`: every key that is a prefix of `key`, shortest
    /// first, as (value, length in bytes).
    pub fn common_prefix_search(&self, key: &[u8], out: &mut Vec<(u32, usize)>) {
        out.clear();
        let mut b = self.unit(0).0;
        for (i, &byte) in key.iter().enumerate() {
            let (n, check) = self.unit(b as u32 as usize);
            if b as u32 == check && n < 0 {
                out.push(((-n - 1) as u32, i));
            }
            let p = (b as u32 as usize) + byte as usize + 1;
            let (base, check) = self.unit(p);
            if b as u32 == check {
                b = base;
            } else {
                return;
            }
        }
        let (n, check) = self.unit(b as u32 as usize);
        if b as u32 == check && n < 0 {
            out.push(((-n - 1) as u32, key.len()));
        }
    }

    /// Darts' `exactMatchSearch`: the value of `key`, if it is a key.
    pub fn exact_match(&self, key: &[u8]) -> Option<u32> {
        let mut b = self.unit(0).0;
        for &byte in key {
            let p = (b as u32 as usize) + byte as usize + 1;
            let (base, check) = self.unit(p);
            if b as u32 != check {
                return None;
            }
            b = base;
        }
        let (n, check) = self.unit(b as u32 as usize);
        (b as u32 == check && n < 0).then_some((-n - 1) as u32)
    }

    /// The tokens a double-array value stands for.
    pub fn tokens(&self, value: u32) -> impl Iterator<Item = DicToken> + '_ {
        let first = (value >> 8) as usize;
        (first..first + (value & 0xff) as usize).map(move |i| self.token(i))
    }

    fn token(&self, i: usize) -> DicToken {
        let at = (self.tokens.0 + i * 16).min(self.tokens.1.saturating_sub(16));
        DicToken {
            left_id: u16_at(&self.data, at),
            right_id: u16_at(&self.data, at + 2),
            cost: u16_at(&self.data, at + 6) as i16,
            feature: u32_at(&self.data, at + 8),
        }
    }

    /// The feature string (CSV) starting at `offset`.
    pub fn feature(&self, offset: u32) -> &str {
        let start = (self.features.0 + offset as usize).min(self.features.1);
        let bytes = &self.data[start..self.features.1];
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        std::str::from_utf8(&bytes[..end]).unwrap_or("")
    }
}

/// The connection cost matrix (`matrix.bin`).
pub struct Matrix {
    data: Mmap,
    left_size: usize,
}

impl Matrix {
    pub fn open(path: &Path) -> Result<Self, String> {
        let data = map(path)?;
        if data.len() < 4 {
            return Err(format!("{}: not a MeCab matrix", path.display()));
        }
        let left_size = u16_at(&data, 0) as usize;
        let right_size = u16_at(&data, 2) as usize;
        if data.len() != 4 + 2 * left_size * right_size {
            return Err(format!("{}: matrix size does not match", path.display()));
        }
        Ok(Self { data, left_size })
    }

    /// Cost of a word whose right id is `right_of_left` followed by one whose left
    /// id is `left_of_right`.
    pub fn cost(&self, right_of_left: u16, left_of_right: u16) -> i32 {
        let i = right_of_left as usize + self.left_size * left_of_right as usize;
        let at = 4 + 2 * i;
        if at + 2 > self.data.len() {
            return 0;
        }
        u16_at(&self.data, at) as i16 as i32
    }
}

/// One character's entry of `char.bin` (MeCab's `CharInfo` bit field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CharInfo(u32);

impl CharInfo {
    /// Bit set of the categories the character belongs to.
    pub fn kinds(self) -> u32 {
        self.0 & 0x3ffff
    }
    /// The category whose unknown-word rules apply.
    pub fn default_type(self) -> u8 {
        ((self.0 >> 18) & 0xff) as u8
    }
    pub fn length(self) -> usize {
        ((self.0 >> 26) & 0xf) as usize
    }
    pub fn group(self) -> bool {
        (self.0 >> 30) & 1 == 1
    }
    pub fn invoke(self) -> bool {
        (self.0 >> 31) & 1 == 1
    }
    fn is_kind_of(self, other: CharInfo) -> bool {
        self.kinds() & other.kinds() != 0
    }
}

/// The character categories (`char.bin`).
pub struct CharProperty {
    names: Vec<String>,
    infos: Vec<CharInfo>,
}

/// MeCab's `utf8_to_ucs2`: the code of the character at the start of `bytes`
/// (0 outside the BMP) and its length in bytes.
pub fn utf8_to_ucs2(bytes: &[u8]) -> (u16, usize) {
    let b0 = bytes[0];
    let len = bytes.len();
    let cont = |i: usize| (bytes[i] & 0x3f) as u16;
    if b0 < 0x80 {
        (b0 as u16, 1)
    } else if len >= 2 && b0 & 0xe0 == 0xc0 {
        ((((b0 & 0x1f) as u16) << 6) | cont(1), 2)
    } else if len >= 3 && b0 & 0xf0 == 0xe0 {
        ((((b0 & 0x0f) as u16) << 12) | (cont(1) << 6) | cont(2), 3)
    } else if len >= 4 && b0 & 0xf8 == 0xf0 {
        (0, 4)
    } else {
        (0, 1)
    }
}

impl CharProperty {
    pub fn open(path: &Path) -> Result<Self, String> {
        let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let bad = || format!("{}: not a MeCab char.bin", path.display());
        if data.len() < 4 {
            return Err(bad());
        }
        let count = u32_at(&data, 0) as usize;
        if data.len() != 4 + 32 * count + 4 * 0xffff {
            return Err(bad());
        }
        let names = (0..count)
            .map(|i| {
                let raw = &data[4 + 32 * i..4 + 32 * (i + 1)];
                let end = raw.iter().position(|&b| b == 0).unwrap_or(32);
                String::from_utf8_lossy(&raw[..end]).into_owned()
            })
            .collect();
        let base = 4 + 32 * count;
        let infos = (0..0xffff)
            .map(|i| CharInfo(u32_at(&data, base + 4 * i)))
            .collect();
        Ok(Self { names, infos })
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The category entry and byte length of the character at the start of
    /// `bytes` (past the end, MeCab reads the string's terminating NUL).
    fn info(&self, bytes: &[u8]) -> (CharInfo, usize) {
        if bytes.is_empty() {
            return (self.infos[0], 1);
        }
        let (code, len) = utf8_to_ucs2(bytes);
        (
            self.infos
                .get(code as usize)
                .copied()
                .unwrap_or(self.infos[0]),
            len,
        )
    }

    /// MeCab's `seekToOtherType`: skip characters of the kind of `c` (each compared
    /// with the one before it) from `start`; gives the stop position, the info
    /// and length of the last character looked at and how many were skipped.
    fn seek_to_other_type(
        &self,
        text: &[u8],
        start: usize,
        end: usize,
        mut c: CharInfo,
        mut fail: CharInfo,
        mut mblen: usize,
    ) -> (usize, CharInfo, usize, usize) {
        let mut p = start;
        let mut count = 0;
        while p != end {
            let (info, len) = self.info(&text[p..end]);
            fail = info;
            mblen = len;
            if !c.is_kind_of(info) {
                break;
            }
            p += len;
            count += 1;
            c = info;
        }
        (p, fail, mblen, count)
    }
}

/// A node of the lattice.
#[derive(Debug, Clone, Copy)]
struct Node {
    /// Byte range of the surface (after the skipped white space).
    surface: (usize, usize),
    left_id: u16,
    right_id: u16,
    word_cost: i16,
    feature: u32,
    char_type: u8,
    unknown: bool,
    cost: i64,
    prev: usize,
}

/// One token of a parse, as fugashi's `Node` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Morph<'a> {
    pub surface: &'a str,
    /// The feature CSV string of the dictionary entry.
    pub feature: &'a str,
    /// MeCab's `char_type`: the category of the first character.
    pub char_type: u8,
    pub is_unknown: bool,
}

/// Field `index` of a MeCab feature string (CSV with double-quoted fields), as
/// fugashi reads it; `None` past the last field.
pub fn feature_field(feature: &str, index: usize) -> Option<String> {
    let mut chars = feature.chars().peekable();
    for i in 0.. {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => break,
                    c => field.push(c),
                }
            }
        }
        let mut more = false;
        for c in chars.by_ref() {
            if c == ',' {
                more = true;
                break;
            }
            field.push(c);
        }
        if i == index {
            return Some(field);
        }
        if !more {
            break;
        }
    }
    None
}

/// The tokenizer: system and unknown-word dictionaries, matrix and categories.
pub struct Mecab {
    system: Dictionary,
    unknown: Dictionary,
    matrix: Matrix,
    chars: CharProperty,
    /// Per category, the unknown dictionary's value for its name.
    unknown_tokens: Vec<Option<u32>>,
    space: CharInfo,
    max_grouping_size: usize,
}

/// `max-grouping-size` of a `dicrc` (MeCab's default where unset or 0).
fn max_grouping_size(dicrc: &str) -> usize {
    dicrc
        .lines()
        .filter(|line| !line.trim_start().starts_with(';'))
        .filter_map(|line| line.split_once('='))
        .filter(|(key, _)| key.trim() == "max-grouping-size")
        .filter_map(|(_, value)| value.trim().parse::<usize>().ok())
        .next_back()
        .filter(|&size| size > 0)
        .unwrap_or(DEFAULT_MAX_GROUPING_SIZE)
}

impl Mecab {
    /// Open the four files of a MeCab dictionary folder.
    pub fn open(
        sys: &Path,
        unk: &Path,
        matrix: &Path,
        chars: &Path,
        dicrc: &Path,
    ) -> Result<Self, String> {
        let dicrc =
            std::fs::read_to_string(dicrc).map_err(|e| format!("{}: {e}", dicrc.display()))?;
        let chars = CharProperty::open(chars)?;
        let unknown = Dictionary::open(unk)?;
        let unknown_tokens = chars
            .names()
            .iter()
            .map(|name| unknown.exact_match(name.as_bytes()))
            .collect();
        let space = chars.info(b" ").0;
        Ok(Self {
            system: Dictionary::open(sys)?,
            unknown,
            matrix: Matrix::open(matrix)?,
            chars,
            unknown_tokens,
            space,
            max_grouping_size: max_grouping_size(&dicrc),
        })
    }

    /// The nodes starting at byte `pos` (after white space), in MeCab's order.
    fn lookup(&self, text: &[u8], pos: usize, results: &mut Vec<(u32, usize)>) -> Vec<Node> {
        let end = text.len().min(pos + MAX_LOOKAHEAD);
        let mut nodes = Vec::new();
        let (begin2, cinfo, mblen, _) = self
            .chars
            .seek_to_other_type(text, pos, end, self.space, self.space, 0);
        if begin2 == end {
            // Only white space is left: MeCab's nodes here end past the text.
            return nodes;
        }
        self.system
            .common_prefix_search(&text[begin2..end], results);
        for &(value, length) in results.iter() {
            for token in self.system.tokens(value) {
                nodes.push(Node {
                    surface: (begin2, begin2 + length),
                    left_id: token.left_id,
                    right_id: token.right_id,
                    word_cost: token.cost,
                    feature: token.feature,
                    char_type: cinfo.default_type(),
                    unknown: false,
                    cost: 0,
                    prev: 0,
                });
            }
        }
        if !nodes.is_empty() && !cinfo.invoke() {
            return nodes;
        }
        let add_unknown = |nodes: &mut Vec<Node>, until: usize| {
            let category = cinfo.default_type() as usize;
            if let Some(value) = self.unknown_tokens.get(category).copied().flatten() {
                for token in self.unknown.tokens(value) {
                    nodes.push(Node {
                        surface: (begin2, until),
                        left_id: token.left_id,
                        right_id: token.right_id,
                        word_cost: token.cost,
                        feature: token.feature,
                        char_type: cinfo.default_type(),
                        unknown: true,
                        cost: 0,
                        prev: 0,
                    });
                }
            }
        };
        let mut begin3 = begin2 + mblen;
        let mut group_end = None;
        if begin3 > end {
            add_unknown(&mut nodes, begin3.min(end));
            return nodes;
        }
        if cinfo.group() {
            let (stop, _, _, count) = self
                .chars
                .seek_to_other_type(text, begin3, end, cinfo, cinfo, mblen);
            if count <= self.max_grouping_size {
                add_unknown(&mut nodes, stop);
            }
            group_end = Some(stop);
        }
        for _ in 1..=cinfo.length() {
            if begin3 > end {
                break;
            }
            if Some(begin3) == group_end {
                continue;
            }
            add_unknown(&mut nodes, begin3);
            let (info, len) = self.chars.info(&text[begin3..end]);
            if !cinfo.is_kind_of(info) {
                break;
            }
            begin3 += len;
        }
        if nodes.is_empty() {
            add_unknown(&mut nodes, begin3.min(end));
        }
        nodes
    }

    /// Tokens of `text`: MeCab's best path.
    pub fn parse<'a>(&'a self, text: &'a str) -> Vec<Morph<'a>> {
        let bytes = text.as_bytes();
        let len = bytes.len();
        // Nodes, BOS first; per position, the nodes ending there in insertion order
        // (MeCab's lists are newest first).
        let mut nodes = vec![Node {
            surface: (0, 0),
            left_id: 0,
            right_id: 0,
            word_cost: 0,
            feature: 0,
            char_type: 0,
            unknown: false,
            cost: 0,
            prev: 0,
        }];
        let mut ends: Vec<Vec<usize>> = vec![Vec::new(); len + 1];
        ends[0].push(0);
        let mut results = Vec::new();
        for pos in 0..len {
            if ends[pos].is_empty() {
                continue;
            }
            let found = self.lookup(bytes, pos, &mut results);
            for mut node in found.into_iter().rev() {
                let (prev, cost) = self.best_left(&nodes, &ends[pos], node.left_id);
                node.prev = prev;
                node.cost = cost + node.word_cost as i64;
                let end = node.surface.1;
                nodes.push(node);
                ends[end].push(nodes.len() - 1);
            }
        }
        let Some(last) = (0..=len).rev().find(|&p| !ends[p].is_empty()) else {
            return Vec::new();
        };
        let mut at = self.best_left(&nodes, &ends[last], 0).0;
        let mut path = Vec::new();
        while at != 0 {
            let node = &nodes[at];
            let dictionary = if node.unknown {
                &self.unknown
            } else {
                &self.system
            };
            path.push(Morph {
                surface: &text[node.surface.0..node.surface.1],
                feature: dictionary.feature(node.feature),
                char_type: node.char_type,
                is_unknown: node.unknown,
            });
            at = node.prev;
        }
        path.reverse();
        path
    }

    /// The cheapest node of `left` (newest first, first of equals wins) to precede
    /// a node with left id `left_id`, and the path cost through it.
    fn best_left(&self, nodes: &[Node], left: &[usize], left_id: u16) -> (usize, i64) {
        let mut best = (0, i64::MAX);
        for &i in left.iter().rev() {
            let cost = nodes[i].cost + self.matrix.cost(nodes[i].right_id, left_id) as i64;
            if cost < best.1 {
                best = (i, cost);
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ucs2_codes_as_mecab_reads_them() {
        assert_eq!(utf8_to_ucs2(b"a"), (0x61, 1));
        assert_eq!(utf8_to_ucs2("é".as_bytes()), (0xe9, 2));
        assert_eq!(utf8_to_ucs2("駅".as_bytes()), (0x99c5, 3));
        assert_eq!(utf8_to_ucs2("😀".as_bytes()), (0, 4));
    }

    #[test]
    fn char_info_bit_fields() {
        let info = CharInfo((1 << 6) | (6 << 18) | (2 << 26) | (1 << 31));
        assert_eq!(info.kinds(), 1 << 6);
        assert_eq!(info.default_type(), 6);
        assert_eq!(info.length(), 2);
        assert!(!info.group());
        assert!(info.invoke());
    }

    /// A dictionary file with keys "a" (one token) and "ab" (two tokens).
    fn tiny_dictionary() -> tempfile::NamedTempFile {
        let mut darts = vec![(0i32, 0u32); 401];
        darts[0] = (1, 0);
        darts[1 + b'a' as usize + 1] = (200, 1);
        darts[200] = (-(1) - 1, 200);
        darts[200 + b'b' as usize + 1] = (400, 200);
        darts[400] = (-((1 << 8) | 2) - 1, 400);
        let features = b"A,x\0B,y\0C,z\0";
        let tokens: Vec<(u16, u16, i16, u32)> = vec![(1, 2, -30, 0), (3, 4, 50, 4), (5, 6, 70, 8)];
        let dsize = darts.len() * 8;
        let tsize = tokens.len() * 16;
        let size = 72 + dsize + tsize + features.len();
        let mut bytes = Vec::new();
        for word in [
            size as u32 ^ DICTIONARY_MAGIC,
            102,
            0,
            3,
            7,
            7,
            dsize as u32,
            tsize as u32,
            features.len() as u32,
            0,
        ] {
            bytes.extend(word.to_le_bytes());
        }
        let mut charset = [0u8; 32];
        charset[..4].copy_from_slice(b"utf8");
        bytes.extend(charset);
        for (base, check) in darts {
            bytes.extend(base.to_le_bytes());
            bytes.extend(check.to_le_bytes());
        }
        for (left, right, cost, feature) in tokens {
            bytes.extend(left.to_le_bytes());
            bytes.extend(right.to_le_bytes());
            bytes.extend(0u16.to_le_bytes());
            bytes.extend(cost.to_le_bytes());
            bytes.extend(feature.to_le_bytes());
            bytes.extend(0u32.to_le_bytes());
        }
        bytes.extend(features);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        file
    }

    #[test]
    fn double_array_prefix_and_exact_search() {
        let file = tiny_dictionary();
        let dic = Dictionary::open(file.path()).unwrap();
        let mut found = Vec::new();
        dic.common_prefix_search(b"abc", &mut found);
        assert_eq!(found, vec![(1, 1), ((1 << 8) | 2, 2)]);
        dic.common_prefix_search(b"b", &mut found);
        assert!(found.is_empty());
        assert_eq!(dic.exact_match(b"ab"), Some((1 << 8) | 2));
        assert_eq!(dic.exact_match(b"abc"), None);
        assert_eq!(dic.exact_match(b""), None);
        let tokens: Vec<DicToken> = dic.tokens((1 << 8) | 2).collect();
        assert_eq!(tokens.len(), 2);
        assert_eq!(
            (tokens[0].left_id, tokens[0].right_id, tokens[0].cost),
            (3, 4, 50)
        );
        assert_eq!(dic.feature(tokens[1].feature), "C,z");
        assert_eq!(dic.feature(dic.tokens(1).next().unwrap().feature), "A,x");
    }

    #[test]
    fn dictionary_with_a_wrong_size_is_refused() {
        let file = tiny_dictionary();
        let mut bytes = std::fs::read(file.path()).unwrap();
        bytes.push(0);
        std::fs::write(file.path(), bytes).unwrap();
        assert!(Dictionary::open(file.path()).is_err());
    }

    #[test]
    fn matrix_costs_by_right_then_left_id() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut bytes = Vec::new();
        for v in [2u16, 3] {
            bytes.extend(v.to_le_bytes());
        }
        for cost in [0i16, 1, 2, 3, 4, -5] {
            bytes.extend(cost.to_le_bytes());
        }
        std::fs::write(file.path(), bytes).unwrap();
        let matrix = Matrix::open(file.path()).unwrap();
        // matrix[right_of_left + left_size * left_of_right]
        assert_eq!(matrix.cost(1, 0), 1);
        assert_eq!(matrix.cost(0, 2), 4);
        assert_eq!(matrix.cost(1, 2), -5);
    }

    #[test]
    fn grouping_size_from_dicrc() {
        assert_eq!(
            max_grouping_size(";max-grouping-size = 10\ncost-factor = 700\n"),
            24
        );
        assert_eq!(max_grouping_size("max-grouping-size = 10\n"), 10);
        assert_eq!(max_grouping_size("max-grouping-size = 0\n"), 24);
    }

    #[test]
    fn feature_fields_with_quotes() {
        let f = r#"名詞,普通名詞,"1,2",C1,"a""b",,x"#;
        assert_eq!(feature_field(f, 0).as_deref(), Some("名詞"));
        assert_eq!(feature_field(f, 2).as_deref(), Some("1,2"));
        assert_eq!(feature_field(f, 3).as_deref(), Some("C1"));
        assert_eq!(feature_field(f, 4).as_deref(), Some("a\"b"));
        assert_eq!(feature_field(f, 5).as_deref(), Some(""));
        assert_eq!(feature_field(f, 6).as_deref(), Some("x"));
        assert_eq!(feature_field(f, 7), None);
        assert_eq!(feature_field("a,b,", 2).as_deref(), Some(""));
    }
}
