//! Seeds for the engines' random draws, made from the request so that the same
//! request gives the same audio: 64-bit FNV-1a over bytes the engine names one by
//! one. Fixed here rather than taken from `std`'s `DefaultHasher`, whose algorithm
//! may change between Rust releases (and so change the audio after an upgrade).

/// 64-bit FNV-1a (offset basis 0xcbf29ce484222325, prime 0x100000001b3), as
/// specified by Fowler, Noll and Vo.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a64(u64);

impl Fnv1a64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;

    pub fn new() -> Self {
        Self(Self::OFFSET_BASIS)
    }

    /// Mixes in `bytes`, one at a time.
    pub fn bytes(mut self, bytes: &[u8]) -> Self {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(Self::PRIME);
        }
        self
    }

    /// Mixes in `word` as its four little-endian bytes.
    pub fn u32(self, word: u32) -> Self {
        self.bytes(&word.to_le_bytes())
    }

    pub fn finish(self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a64 {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_test_vectors() {
        assert_eq!(Fnv1a64::new().finish(), 0xcbf2_9ce4_8422_2325);
        assert_eq!(Fnv1a64::new().bytes(b"a").finish(), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            Fnv1a64::new().bytes(b"foobar").finish(),
            0x8594_4171_f739_67e8
        );
        assert_eq!(
            Fnv1a64::new().bytes(b"foo").bytes(b"bar").finish(),
            Fnv1a64::new().bytes(b"foobar").finish()
        );
    }
}
