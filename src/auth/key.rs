//! The API key format: `{pk|sk}_{live|test}_{32 base62}{6 base62 CRC-32}`.
//!
//! [`ApiKeySecret::parse`] checks shape and checksum with no I/O, so a typo or
//! a forged key is refused before any cache or database lookup. The plaintext
//! never leaves this type through `Debug` or `Display`.

use std::fmt;

use rand::Rng;
use sha2::{Digest, Sha256};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const PREFIX_LEN: usize = 8;
const RANDOM_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;
/// Length of every well-formed key.
pub const KEY_LEN: usize = PREFIX_LEN + RANDOM_LEN + CHECKSUM_LEN;

pub use entity::kinds::{KeyMode, KeyType};

/// The prefix of keys of this type and mode, e.g. `sk_live_`.
pub fn prefix_for(key_type: KeyType, mode: KeyMode) -> &'static str {
    match (key_type, mode) {
        (KeyType::Public, KeyMode::Live) => "pk_live_",
        (KeyType::Public, KeyMode::Test) => "pk_test_",
        (KeyType::Secret, KeyMode::Live) => "sk_live_",
        (KeyType::Secret, KeyMode::Test) => "sk_test_",
    }
}

fn kind_of_prefix(prefix: &str) -> Option<(KeyType, KeyMode)> {
    match prefix {
        "pk_live_" => Some((KeyType::Public, KeyMode::Live)),
        "pk_test_" => Some((KeyType::Public, KeyMode::Test)),
        "sk_live_" => Some((KeyType::Secret, KeyMode::Live)),
        "sk_test_" => Some((KeyType::Secret, KeyMode::Test)),
        _ => None,
    }
}

/// The CRC-32 (IEEE) of `text` in base62, most significant digit first,
/// left-padded with `0` to 6 characters.
pub fn checksum(text: &str) -> [u8; CHECKSUM_LEN] {
    let mut n = crc32fast::hash(text.as_bytes());
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// Why a presented key was refused before any lookup (for logs and metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// Wrong length, prefix or alphabet.
    Malformed,
    /// Right shape, wrong checksum.
    BadChecksum,
}

impl FormatError {
    /// Label used for the `reason` of the auth-failure metric.
    pub fn reason(self) -> &'static str {
        match self {
            FormatError::Malformed => "malformed",
            FormatError::BadChecksum => "bad_checksum",
        }
    }
}

/// A well-formed API key. `Debug` and `Display` show only the masked form.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySecret {
    text: String,
    key_type: KeyType,
    mode: KeyMode,
}

impl ApiKeySecret {
    /// Draws a fresh key from the operating system's CSPRNG.
    pub fn generate(key_type: KeyType, mode: KeyMode) -> Self {
        let mut rng = rand::rngs::OsRng;
        let mut text = String::with_capacity(KEY_LEN);
        text.push_str(prefix_for(key_type, mode));
        for _ in 0..RANDOM_LEN {
            text.push(BASE62[rng.gen_range(0..62)] as char);
        }
        let sum = checksum(&text);
        text.extend(sum.iter().map(|&b| b as char));
        Self {
            text,
            key_type,
            mode,
        }
    }

    /// Checks shape and checksum; does no I/O.
    pub fn parse(text: &str) -> Result<Self, FormatError> {
        if text.len() != KEY_LEN || !text.is_ascii() {
            return Err(FormatError::Malformed);
        }
        let (key_type, mode) = kind_of_prefix(&text[..PREFIX_LEN]).ok_or(FormatError::Malformed)?;
        let body = &text.as_bytes()[PREFIX_LEN..];
        if !body.iter().all(u8::is_ascii_alphanumeric) {
            return Err(FormatError::Malformed);
        }
        let signed = &text[..PREFIX_LEN + RANDOM_LEN];
        if checksum(signed).as_slice() != &text.as_bytes()[PREFIX_LEN + RANDOM_LEN..] {
            return Err(FormatError::BadChecksum);
        }
        Ok(Self {
            text: text.to_owned(),
            key_type,
            mode,
        })
    }

    /// The key's type, read from its prefix.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The key's mode, read from its prefix.
    pub fn mode(&self) -> KeyMode {
        self.mode
    }

    /// The SHA-256 of the whole key: what the database stores.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.text.as_bytes()).into()
    }

    /// The lower-case hex SHA-256 of the whole key.
    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash())
    }

    /// The prefix and the first 4 characters of the body (stored for masking).
    pub fn mask_head(&self) -> &str {
        &self.text[..PREFIX_LEN + 4]
    }

    /// The last 4 characters (stored for masking).
    pub fn mask_tail(&self) -> &str {
        &self.text[KEY_LEN - 4..]
    }

    /// `sk_live_abcd…wxyz`: safe to show and to log.
    pub fn masked(&self) -> String {
        masked_key(self.mask_head(), self.mask_tail())
    }

    /// The plaintext. Call only to hand the key to its owner, once.
    pub fn expose(&self) -> &str {
        &self.text
    }
}

/// Joins stored mask parts into the `maskedKey` shown in listings.
pub fn masked_key(head: &str, tail: &str) -> String {
    format!("{head}…{tail}")
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ApiKeySecret").field(&self.masked()).finish()
    }
}

impl fmt::Display for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_test_vectors() {
        for (crc, key) in [
            (
                0xe263d3df_u32,
                "sk_live_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa492pXL",
            ),
            (0xe4da67ad, "pk_test_0123456789abcdefghijABCDEFGHIJ014BqEBx"),
            (0x09b1010e, "sk_test_ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ0B0EPO"),
        ] {
            assert_eq!(crc32fast::hash(&key.as_bytes()[..40]), crc);
            assert!(ApiKeySecret::parse(key).is_ok(), "{key}");
        }
    }

    #[test]
    fn generated_keys_parse_and_hide() {
        for (t, m) in [
            (KeyType::Public, KeyMode::Live),
            (KeyType::Public, KeyMode::Test),
            (KeyType::Secret, KeyMode::Live),
            (KeyType::Secret, KeyMode::Test),
        ] {
            let key = ApiKeySecret::generate(t, m);
            let parsed = ApiKeySecret::parse(key.expose()).map_err(|e| format!("{e:?}"));
            assert_eq!(
                parsed.as_ref().map(|k| (k.key_type(), k.mode())),
                Ok((t, m))
            );
            let shown = format!("{key:?} {key}");
            assert!(!shown.contains(&key.expose()[8..40]), "{shown}");
            assert_eq!(key.masked().chars().count(), 8 + 4 + 1 + 4);
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        let good = "sk_live_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa492pXL";
        assert_eq!(ApiKeySecret::parse(""), Err(FormatError::Malformed));
        assert_eq!(ApiKeySecret::parse(&good[1..]), Err(FormatError::Malformed));
        assert_eq!(
            ApiKeySecret::parse(&good.replace("sk_live_", "xk_live_")),
            Err(FormatError::Malformed)
        );
        assert_eq!(
            ApiKeySecret::parse(&good.replace("aaaa4", "aaa-4")),
            Err(FormatError::Malformed)
        );
        assert_eq!(
            ApiKeySecret::parse(&good.replace("pXL", "pXM")),
            Err(FormatError::BadChecksum)
        );
        assert_eq!(
            ApiKeySecret::parse(&good.replace("aaaa4", "aaab4")),
            Err(FormatError::BadChecksum)
        );
        let wide = format!("sk_live_{}492pX", "é".repeat(16));
        assert_eq!(ApiKeySecret::parse(&wide), Err(FormatError::Malformed));
    }
}
