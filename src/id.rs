//! Session ids: generation, encoding, the grammar check and hashing.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::TryRng as _;
use sha2::{Digest, Sha256};

/// Bytes of randomness in an id: 256 bits.
const ID_BYTES: usize = 32;

/// Length of an id in its cookie form: 32 bytes in base64url, no padding.
pub(crate) const ID_CHARS: usize = 43;

/// A session id: 256 bits from the operating system's CSPRNG.
///
/// The id is the bearer secret of a session. It never appears in `Debug`
/// output, and the database only ever sees its SHA-256 hash
/// ([`SessionId::hash`]).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId([u8; ID_BYTES]);

impl SessionId {
    /// Draws a new id from the operating system's CSPRNG.
    ///
    /// # Panics
    ///
    /// Panics if the operating system cannot provide randomness, a state in
    /// which no secure id can be made at all.
    pub fn generate() -> SessionId {
        let mut bytes = [0u8; ID_BYTES];
        fill_random(&mut bytes);
        SessionId(bytes)
    }

    /// Parses the cookie form of an id, checking its exact grammar: 43
    /// characters of the base64url alphabet that decode to 32 bytes.
    ///
    /// Returns `None` for anything else, before any store is asked.
    pub fn parse(text: &str) -> Option<SessionId> {
        let ok_char = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
        if text.len() != ID_CHARS || !text.as_bytes().iter().all(ok_char) {
            return None;
        }
        // A 43-character string carries 258 bits; the decoder rejects the
        // variants whose last two bits are not zero, so each id has exactly
        // one accepted spelling.
        let decoded = URL_SAFE_NO_PAD.decode(text).ok()?;
        let bytes: [u8; ID_BYTES] = decoded.try_into().ok()?;
        Some(SessionId(bytes))
    }

    /// The cookie form of the id: 43 characters of base64url.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// SHA-256 of the raw id bytes: the key the store files the session
    /// under, so that a copy of the store holds no usable cookie value.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0).into()
    }
}

/// Fills `buf` from the operating system's CSPRNG.
///
/// # Panics
///
/// Panics if the operating system cannot provide randomness, a state in
/// which no secure id, nonce or key can be made at all.
pub(crate) fn fill_random(buf: &mut [u8]) {
    rand::rngs::SysRng
        .try_fill_bytes(buf)
        .expect("the operating system's CSPRNG failed");
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_round_trip_and_differ() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_ne!(a, b);
        let text = a.encode();
        assert_eq!(text.len(), ID_CHARS);
        assert_eq!(SessionId::parse(&text), Some(a));
    }

    #[test]
    fn grammar_is_exact() {
        let good = SessionId::generate().encode();
        assert!(SessionId::parse(&good[..42]).is_none());
        assert!(SessionId::parse(&format!("{good}A")).is_none());
        assert!(SessionId::parse(&format!("{}=", &good[..42])).is_none());
        assert!(SessionId::parse(&good.replace(|c: char| c.is_ascii_alphabetic(), "+")).is_none());
        assert!(SessionId::parse("").is_none());
        assert!(SessionId::parse(&"é".repeat(21)).is_none());
        // The last character may only carry four significant bits.
        let mut bad_tail = good[..42].to_string();
        bad_tail.push('B');
        let mut good_tail = good[..42].to_string();
        good_tail.push('A');
        assert!(SessionId::parse(&good_tail).is_some());
        assert!(SessionId::parse(&bad_tail).is_none());
    }

    #[test]
    fn debug_hides_the_id() {
        let id = SessionId::generate();
        let shown = format!("{id:?}");
        assert!(!shown.contains(&id.encode()));
    }

    #[test]
    fn hash_is_sha256_of_the_bytes() {
        let id = SessionId::parse(&"A".repeat(43)).unwrap();
        // SHA-256 of 32 zero bytes.
        let expected = "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925";
        let hex: String = id.hash().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
    }
}
