//! FNV-1a, 64 bits: a short, stable name for a path or a table. Stable across Rust versions
//! and runs (std's hasher is neither), and enough to tell things apart that are not chosen to
//! collide.

/// The fingerprint of `bytes`.
#[must_use]
pub fn of(bytes: &[u8]) -> u64 {
    let mut print = Fnv::default();
    print.write(bytes);
    print.finish()
}

/// A fingerprint fed in parts.
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    #[must_use]
    pub fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_sees_values() {
        assert_ne!(of(b"A=1"), of(b"A=2"));
        assert_eq!(of(b"A=1"), of(b"A=1"));
        // The published FNV-1a test vector.
        assert_eq!(of(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
