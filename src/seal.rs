//! Cookie mode's seal: the key ring and the versioned envelope.
//!
//! A sealed cookie value is the base64url encoding, without padding, of:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | format version: `1` |
//! | 1 | length `n` of the key id, 1 to 32 |
//! | `n` | key id, ASCII |
//! | 24 | nonce |
//! | the rest | ciphertext, then the 16-byte tag |
//!
//! The associated data is a fixed label, the header (version, length and
//! key id) and the cookie name, so a value does not open under another
//! cookie name, another format version or another key id.
//!
//! XChaCha20-Poly1305 uses the 24 bytes as its nonce, with a key derived
//! once from the configured one. AES-256-GCM derives, for every cookie, a
//! subkey and a 96-bit nonce from the configured key with HKDF-SHA256, the
//! 24 random bytes as salt: each AES key then seals a single cookie, so
//! AES-GCM's limit of about 2^32 random nonces per key does not apply.

use std::fmt;

use aes_gcm::Aes256Gcm;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;

use crate::config::{Algorithm, ConfigError, SealKey};
use crate::id::fill_random;

/// The envelope format this code writes and the only one it opens.
pub(crate) const FORMAT: u8 = 1;
const NONCE: usize = 24;
const TAG: usize = 16;
const KEY_BYTES: usize = 32;
const MAX_KEY_ID: usize = 32;
/// No value longer than this was sealed here: browsers keep at most 4096
/// bytes of name and value.
const MAX_VALUE: usize = 4096;

const AD_LABEL: &[u8] = b"rocket_tessera session\0";
const XCHACHA_INFO: &[u8] = b"rocket_tessera seal v1 xchacha20poly1305";
const AES_INFO: &[u8] = b"rocket_tessera seal v1 aes256gcm";

/// Base64 with either alphabet's padding optional, for configured keys.
const STANDARD_ANY: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const URL_SAFE_ANY: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes a configured key: 32 bytes in base64, standard or URL-safe,
/// padded or not, surrounding whitespace ignored.
pub(crate) fn decode_key(text: &str) -> Option<[u8; KEY_BYTES]> {
    let text = text.trim();
    let bytes = STANDARD_ANY
        .decode(text)
        .or_else(|_| URL_SAFE_ANY.decode(text))
        .ok()?;
    bytes.try_into().ok()
}

/// The keys that seal and open cookies: the first seals, all open.
///
/// `Debug` lists the key ids only.
pub(crate) struct KeyRing {
    keys: Vec<RingKey>,
}

struct RingKey {
    id: String,
    cipher: Cipher,
}

enum Cipher {
    XChaCha(Box<XChaCha20Poly1305>),
    /// The configured key; each seal derives its own subkey from it.
    Aes(Box<[u8; KEY_BYTES]>),
}

/// A value that opened: its plaintext, and whether the first key of the
/// ring sealed it (otherwise it is due to be sealed again).
pub(crate) struct Opened {
    pub(crate) plaintext: Vec<u8>,
    pub(crate) current_key: bool,
}

/// Why a value did not open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// Not an envelope of a known format: bad base64, too short or too
    /// long, another version.
    Malformed,
    /// Sealed with a key id the ring does not hold (a retired key, or made
    /// up).
    UnknownKey,
    /// The tag does not match: altered, cut, sealed under another cookie
    /// name or with another key of the same id.
    Forged,
}

impl KeyRing {
    /// The ring of the configured keys, in order.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `keys` is empty or a key does not decode;
    /// [`Config::validate`](crate::Config::validate) reports the latter
    /// first.
    pub(crate) fn new(keys: &[SealKey]) -> Result<KeyRing, ConfigError> {
        if keys.is_empty() {
            return Err(ConfigError::new("keys", "holds no key"));
        }
        let mut ring = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            let Some(bytes) = decode_key(&key.key) else {
                return Err(ConfigError::new(
                    &format!("keys[{i}].key"),
                    "must be 32 bytes in base64",
                ));
            };
            ring.push(RingKey::new(&key.id, key.algorithm, &bytes));
        }
        Ok(KeyRing { keys: ring })
    }

    /// A ring of one XChaCha20-Poly1305 key drawn now, which nothing
    /// outside this process knows.
    pub(crate) fn ephemeral() -> KeyRing {
        let mut bytes = [0u8; KEY_BYTES];
        fill_random(&mut bytes);
        KeyRing {
            keys: vec![RingKey::new(
                "ephemeral",
                Algorithm::XChaCha20Poly1305,
                &bytes,
            )],
        }
    }

    fn sealing_key(&self) -> &RingKey {
        // OK because both constructors put at least one key in the ring.
        &self.keys[0]
    }

    /// The length of the value [`KeyRing::seal`] makes of a plaintext of
    /// `plaintext_len` bytes, exactly.
    pub(crate) fn sealed_len(&self, plaintext_len: usize) -> usize {
        let bytes = 2 + self.sealing_key().id.len() + NONCE + plaintext_len + TAG;
        (bytes * 4).div_ceil(3)
    }

    /// Seals `plaintext` for the cookie `name` with the first key.
    ///
    /// Returns `None` only when the AEAD refuses the input, which takes
    /// gigabytes; callers check the size first.
    pub(crate) fn seal(&self, name: &str, plaintext: &[u8]) -> Option<String> {
        let key = self.sealing_key();
        let header = header(&key.id);
        let ad = associated_data(&header, name);
        let mut envelope = Vec::with_capacity(header.len() + NONCE + plaintext.len() + TAG);
        envelope.extend_from_slice(&header);

        let mut nonce = [0u8; NONCE];
        fill_random(&mut nonce);
        envelope.extend_from_slice(&nonce);
        let start = envelope.len();
        envelope.extend_from_slice(plaintext);
        let tag = key.cipher.encrypt(&nonce, &ad, &mut envelope[start..])?;
        envelope.extend_from_slice(&tag);

        debug_assert_eq!(envelope.len(), header.len() + NONCE + plaintext.len() + TAG);
        Some(URL_SAFE_NO_PAD.encode(envelope))
    }

    /// Opens a value of the cookie `name`.
    ///
    /// # Errors
    ///
    /// Why the value does not open; no input panics.
    pub(crate) fn open(&self, name: &str, value: &str) -> Result<Opened, Rejected> {
        if value.len() > MAX_VALUE {
            return Err(Rejected::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| Rejected::Malformed)?;
        let (id, body) = match bytes.as_slice() {
            [FORMAT, n, rest @ ..] => {
                let n = usize::from(*n);
                if n == 0 || n > MAX_KEY_ID || rest.len() < n + NONCE + TAG {
                    return Err(Rejected::Malformed);
                }
                rest.split_at(n)
            }
            _ => return Err(Rejected::Malformed),
        };
        let (index, key) = self
            .keys
            .iter()
            .enumerate()
            .find(|(_, key)| key.id.as_bytes() == id)
            .ok_or(Rejected::UnknownKey)?;

        let ad = associated_data(&bytes[..2 + id.len()], name);
        let (nonce, sealed) = body.split_at(NONCE);
        let (ciphertext, tag) = sealed.split_at(sealed.len() - TAG);
        let mut plaintext = ciphertext.to_vec();
        // The AEAD compares the tag in constant time.
        if !key.cipher.decrypt(nonce, &ad, &mut plaintext, tag) {
            return Err(Rejected::Forged);
        }
        Ok(Opened {
            plaintext,
            current_key: index == 0,
        })
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("ids", &self.keys.iter().map(|k| &k.id).collect::<Vec<_>>())
            .finish()
    }
}

impl RingKey {
    fn new(id: &str, algorithm: Algorithm, key: &[u8; KEY_BYTES]) -> RingKey {
        let cipher = match algorithm {
            Algorithm::XChaCha20Poly1305 => {
                let mut derived = [0u8; KEY_BYTES];
                hkdf(key, None, XCHACHA_INFO, &mut derived);
                Cipher::XChaCha(Box::new(XChaCha20Poly1305::new(&derived.into())))
            }
            Algorithm::Aes256Gcm => Cipher::Aes(Box::new(*key)),
        };
        RingKey {
            id: id.to_string(),
            cipher,
        }
    }
}

impl Cipher {
    fn encrypt(&self, nonce: &[u8; NONCE], ad: &[u8], buf: &mut [u8]) -> Option<Tag> {
        match self {
            Cipher::XChaCha(cipher) => cipher
                .encrypt_inout_detached(&XNonce::from(*nonce), ad, buf.into())
                .ok(),
            Cipher::Aes(key) => {
                let (cipher, iv) = aes_for(key, nonce);
                cipher
                    .encrypt_inout_detached(&iv.into(), ad, buf.into())
                    .ok()
            }
        }
    }

    fn decrypt(&self, nonce: &[u8], ad: &[u8], buf: &mut [u8], tag: &[u8]) -> bool {
        let (Ok(nonce), Ok(tag)) = (<[u8; NONCE]>::try_from(nonce), Tag::try_from(tag)) else {
            return false;
        };
        match self {
            Cipher::XChaCha(cipher) => cipher
                .decrypt_inout_detached(&XNonce::from(nonce), ad, buf.into(), &tag)
                .is_ok(),
            Cipher::Aes(key) => {
                let (cipher, iv) = aes_for(key, &nonce);
                cipher
                    .decrypt_inout_detached(&iv.into(), ad, buf.into(), &tag)
                    .is_ok()
            }
        }
    }
}

/// The AES-256-GCM cipher and nonce of one cookie: HKDF-SHA256 of the
/// configured key, salted with the cookie's 24 random bytes.
fn aes_for(key: &[u8; KEY_BYTES], salt: &[u8; NONCE]) -> (Aes256Gcm, [u8; 12]) {
    let mut okm = [0u8; KEY_BYTES + 12];
    hkdf(key, Some(salt), AES_INFO, &mut okm);
    let mut subkey = [0u8; KEY_BYTES];
    subkey.copy_from_slice(&okm[..KEY_BYTES]);
    let mut iv = [0u8; 12];
    iv.copy_from_slice(&okm[KEY_BYTES..]);
    (Aes256Gcm::new(&subkey.into()), iv)
}

fn hkdf(key: &[u8], salt: Option<&[u8]>, info: &[u8], out: &mut [u8]) {
    Hkdf::<Sha256>::new(salt, key)
        .expand(info, out)
        .expect("HKDF-SHA256 gives up to 8160 bytes; we ask for at most 44");
}

fn header(id: &str) -> Vec<u8> {
    let mut header = Vec::with_capacity(2 + id.len());
    header.push(FORMAT);
    // OK because ids are at most 32 bytes (checked with the config).
    header.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
    header.extend_from_slice(id.as_bytes());
    header
}

fn associated_data(header: &[u8], name: &str) -> Vec<u8> {
    [AD_LABEL, header, name.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};

    fn key(id: &str, algorithm: Algorithm) -> SealKey {
        let mut bytes = [0u8; KEY_BYTES];
        fill_random(&mut bytes);
        SealKey {
            id: id.into(),
            algorithm,
            key: STANDARD.encode(bytes),
        }
    }

    fn ring(keys: &[SealKey]) -> KeyRing {
        KeyRing::new(keys).unwrap()
    }

    const BOTH: [Algorithm; 2] = [Algorithm::XChaCha20Poly1305, Algorithm::Aes256Gcm];

    #[test]
    fn seals_and_opens_with_either_algorithm() {
        for algorithm in BOTH {
            let ring = ring(&[key("k1", algorithm)]);
            let value = ring.seal("sid", b"{\"a\":1}").unwrap();
            let opened = ring.open("sid", &value).unwrap();
            assert_eq!(opened.plaintext, b"{\"a\":1}");
            assert!(opened.current_key);
            assert_ne!(
                ring.seal("sid", b"{\"a\":1}").unwrap(),
                value,
                "fresh nonce"
            );
        }
    }

    #[test]
    fn sealed_len_is_exact() {
        for algorithm in BOTH {
            let ring = ring(&[key("a-longer.key_id", algorithm)]);
            for len in 0..300 {
                let value = ring.seal("n", &vec![b'x'; len]).unwrap();
                assert_eq!(value.len(), ring.sealed_len(len), "{len}");
            }
        }
    }

    #[test]
    fn every_bit_flip_is_rejected() {
        for algorithm in BOTH {
            let ring = ring(&[key("k1", algorithm)]);
            let bytes = URL_SAFE_NO_PAD
                .decode(ring.seal("sid", b"{\"user\":\"ann\"}").unwrap())
                .unwrap();
            for bit in 0..bytes.len() * 8 {
                let mut flipped = bytes.clone();
                flipped[bit / 8] ^= 1 << (bit % 8);
                let value = URL_SAFE_NO_PAD.encode(&flipped);
                assert!(ring.open("sid", &value).is_err(), "bit {bit} flipped");
            }
        }
    }

    #[test]
    fn truncation_and_extension_are_rejected() {
        let ring = ring(&[key("k1", Algorithm::XChaCha20Poly1305)]);
        let value = ring.seal("sid", b"{}").unwrap();
        for len in 0..value.len() {
            assert!(ring.open("sid", &value[..len]).is_err(), "{len}");
        }
        for tail in ["A", "AA", "AAA", "AAAA", "=", "==", ".", "%3D"] {
            let longer = format!("{value}{tail}");
            assert!(ring.open("sid", &longer).is_err(), "{tail}");
        }
        let bytes = URL_SAFE_NO_PAD.decode(&value).unwrap();
        for extra in [&[0u8][..], &[0, 0], &[1, 2, 3, 4]] {
            let longer = URL_SAFE_NO_PAD.encode([&bytes[..], extra].concat());
            assert_eq!(ring.open("sid", &longer).err(), Some(Rejected::Forged));
        }
    }

    #[test]
    fn the_name_version_and_key_id_are_bound() {
        let ring = ring(&[key("k1", Algorithm::XChaCha20Poly1305)]);
        let value = ring.seal("sid", b"{}").unwrap();
        assert_eq!(ring.open("other", &value).err(), Some(Rejected::Forged));

        let mut bytes = URL_SAFE_NO_PAD.decode(&value).unwrap();
        bytes[0] = 2;
        let other_version = URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(
            ring.open("sid", &other_version).err(),
            Some(Rejected::Malformed)
        );

        // The same bytes under another id in the ring do not open either.
        let two = ring_with_same_bytes();
        let sealed = two.seal("sid", b"{}").unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        bytes[2..4].copy_from_slice(b"k2");
        let renamed = URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(two.open("sid", &renamed).err(), Some(Rejected::Forged));
    }

    fn ring_with_same_bytes() -> KeyRing {
        let first = key("k1", Algorithm::XChaCha20Poly1305);
        let second = SealKey {
            id: "k2".into(),
            ..first.clone()
        };
        ring(&[first, second])
    }

    #[test]
    fn wrong_and_unknown_keys_are_rejected() {
        let a = ring(&[key("k1", Algorithm::XChaCha20Poly1305)]);
        let b = ring(&[key("k1", Algorithm::XChaCha20Poly1305)]);
        let c = ring(&[key("k9", Algorithm::XChaCha20Poly1305)]);
        let value = a.seal("sid", b"{}").unwrap();
        assert_eq!(b.open("sid", &value).err(), Some(Rejected::Forged));
        assert_eq!(c.open("sid", &value).err(), Some(Rejected::UnknownKey));
    }

    #[test]
    fn same_key_under_another_algorithm_does_not_open() {
        let chacha = key("k1", Algorithm::XChaCha20Poly1305);
        let aes = SealKey {
            algorithm: Algorithm::Aes256Gcm,
            ..chacha.clone()
        };
        let value = ring(&[chacha]).seal("sid", b"{}").unwrap();
        assert_eq!(
            ring(&[aes]).open("sid", &value).err(),
            Some(Rejected::Forged)
        );
    }

    #[test]
    fn older_keys_open_but_are_not_current() {
        let old = key("old", Algorithm::Aes256Gcm);
        let new = key("new", Algorithm::XChaCha20Poly1305);
        let value = ring(std::slice::from_ref(&old)).seal("sid", b"{}").unwrap();
        let rotated = ring(&[new, old]);
        let opened = rotated.open("sid", &value).unwrap();
        assert!(!opened.current_key);
        let resealed = rotated.seal("sid", &opened.plaintext).unwrap();
        assert!(rotated.open("sid", &resealed).unwrap().current_key);
    }

    #[test]
    fn keys_decode_in_either_alphabet_with_or_without_padding() {
        let bytes: Vec<u8> = (0u8..32).map(|b| b.wrapping_mul(37)).collect();
        for engine in [
            &STANDARD,
            &URL_SAFE_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
        ] {
            let text = engine.encode(&bytes);
            assert_eq!(decode_key(&text).map(Vec::from), Some(bytes.clone()));
        }
        assert!(decode_key("c2hvcnQ=").is_none());
        assert!(decode_key(&STANDARD.encode([7u8; 33])).is_none());
        assert!(decode_key("not base64 at all!").is_none());
    }

    #[test]
    fn debug_shows_ids_only() {
        let k = key("k1", Algorithm::Aes256Gcm);
        let shown = format!("{:?} {k:?}", ring(std::slice::from_ref(&k)));
        assert!(shown.contains("k1"));
        assert!(!shown.contains(&k.key), "{shown}");
    }

    /// Random and mutated input never panics and never opens.
    #[test]
    fn the_opener_survives_random_input() {
        let mut rng = SmallRng::seed_from_u64(0x7e55e7a);
        let ring = ring(&[
            key("k1", Algorithm::XChaCha20Poly1305),
            key("k2", Algorithm::Aes256Gcm),
        ]);
        let valid = URL_SAFE_NO_PAD
            .decode(ring.seal("sid", b"{}").unwrap())
            .unwrap();
        for round in 0..20_000 {
            let value = match round % 4 {
                // Arbitrary bytes, base64url-encoded: passes the decoder.
                0 => {
                    let mut bytes = vec![0u8; rng.random_range(0..300)];
                    rng.fill(&mut bytes[..]);
                    if let Some(first) = bytes.first_mut() {
                        *first = FORMAT;
                    }
                    URL_SAFE_NO_PAD.encode(bytes)
                }
                // A valid envelope with random bytes changed.
                1 => {
                    let mut bytes = valid.clone();
                    for _ in 0..rng.random_range(1..4) {
                        let at = rng.random_range(0..bytes.len());
                        bytes[at] = rng.random();
                    }
                    URL_SAFE_NO_PAD.encode(bytes)
                }
                // A valid envelope cut or grown.
                2 => {
                    let mut bytes = valid.clone();
                    bytes.resize(rng.random_range(0..valid.len() + 40), rng.random());
                    URL_SAFE_NO_PAD.encode(bytes)
                }
                // Arbitrary characters, ASCII or not.
                _ => (0..rng.random_range(0..200))
                    .map(|_| char::from_u32(rng.random_range(0..0x1_0000)).unwrap_or('?'))
                    .collect(),
            };
            let opened = ring.open("sid", &value);
            if let Ok(opened) = opened {
                assert_eq!(opened.plaintext, b"{}", "only the intact value opens");
            }
        }
    }
}
