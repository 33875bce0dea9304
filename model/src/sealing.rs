//! Sealing secrets at rest (SPEC §11), the same way on both planes: the
//! control plane seals `$secret` values and connectors' secret fields in
//! its store, nodes seal the snapshot they cache (which holds them opened).
//!
//! Invariant: sealed data is XChaCha20-Poly1305 (random 192-bit nonce, so
//! nonces never need coordinating across replicas) with an *owner* string
//! as associated data: a ciphertext moved to another owner's place fails to
//! open instead of leaking. Text form: `v1.` + base64url(nonce ‖
//! ciphertext); [`SecretBox::seal_bytes`] is the same without the text.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::Rng as _;
use zeroize::Zeroizing;

const SEALED_PREFIX: &str = "v1.";
const NONCE_LEN: usize = 24;

/// What failed while opening or loading sealed material.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The key is not 32 bytes of hex.
    #[error("the secret key must be 64 hexadecimal characters (32 bytes)")]
    BadKey,
    /// The text is not something this box sealed.
    #[error("sealed value is malformed")]
    Malformed,
    /// Wrong key, wrong owner or tampered ciphertext.
    #[error("sealed value does not open with this key and owner")]
    Unopenable,
}

/// Encrypts and decrypts with one 32-byte key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox(<key>)")
    }
}

impl SecretBox {
    /// A box over a 32-byte key.
    pub fn new(key: &[u8; 32]) -> SecretBox {
        SecretBox { cipher: XChaCha20Poly1305::new(key.into()) }
    }

    /// A box over a key written as 64 hex characters (surrounding
    /// whitespace ignored), as in the key files `dev` generates.
    pub fn from_hex(text: &str) -> Result<SecretBox, CryptoError> {
        let bytes = Zeroizing::new(hex::decode(text.trim()).map_err(|_| CryptoError::BadKey)?);
        let key: &[u8; 32] = bytes.as_slice().try_into().map_err(|_| CryptoError::BadKey)?;
        Ok(SecretBox::new(key))
    }

    /// A fresh random key as hex, for a new installation.
    pub fn generate_key_hex() -> Zeroizing<String> {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rng().fill(&mut key[..]);
        Zeroizing::new(hex::encode(&key[..]))
    }

    /// Seals `plaintext` for `owner` (e.g. `secret:org_x:API_TOKEN`) as text.
    pub fn seal(&self, owner: &str, plaintext: &[u8]) -> String {
        format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(self.seal_bytes(owner, plaintext)))
    }

    /// Seals `plaintext` for `owner` as bytes: nonce ‖ ciphertext.
    pub fn seal_bytes(&self, owner: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill(&mut nonce[..]);
        let ciphertext = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad: owner.as_bytes() })
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut raw = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&ciphertext);
        raw
    }

    /// Opens text sealed for `owner`.
    pub fn open(&self, owner: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let encoded = sealed.strip_prefix(SEALED_PREFIX).ok_or(CryptoError::Malformed)?;
        let raw = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| CryptoError::Malformed)?;
        self.open_bytes(owner, &raw)
    }

    /// Opens bytes sealed for `owner` with [`SecretBox::seal_bytes`].
    pub fn open_bytes(&self, owner: &str, raw: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if raw.len() < NONCE_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: owner.as_bytes() })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Unopenable)
    }

    /// Opens text sealed for `owner` as UTF-8.
    pub fn open_text(&self, owner: &str, sealed: &str) -> Result<Zeroizing<String>, CryptoError> {
        let bytes = self.open(owner, sealed)?;
        String::from_utf8(bytes.to_vec()).map(Zeroizing::new).map_err(|_| CryptoError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed() -> SecretBox {
        SecretBox::from_hex(&SecretBox::generate_key_hex()).unwrap()
    }

    #[test]
    fn seal_round_trips_for_the_same_owner() {
        let b = boxed();
        let sealed = b.seal("secret:org_a:TOKEN", b"s3cr3t");
        assert!(sealed.starts_with("v1."));
        assert!(!sealed.contains("s3cr3t"));
        assert_eq!(&*b.open_text("secret:org_a:TOKEN", &sealed).unwrap(), "s3cr3t");
        let raw = b.seal_bytes("cache", b"snapshot bytes");
        assert_eq!(&b.open_bytes("cache", &raw).unwrap()[..], b"snapshot bytes");
    }

    #[test]
    fn sealed_value_does_not_open_for_another_owner_or_key() {
        let b = boxed();
        let sealed = b.seal("secret:org_a:TOKEN", b"s3cr3t");
        assert!(matches!(b.open("secret:org_b:TOKEN", &sealed), Err(CryptoError::Unopenable)));
        assert!(matches!(boxed().open("secret:org_a:TOKEN", &sealed), Err(CryptoError::Unopenable)));
        assert!(matches!(b.open("x", "v2.abc"), Err(CryptoError::Malformed)));
        assert!(matches!(b.open("x", "v1.AA"), Err(CryptoError::Malformed)));
        let mut raw = b.seal_bytes("cache", b"snapshot");
        raw[30] ^= 1;
        assert!(matches!(b.open_bytes("cache", &raw), Err(CryptoError::Unopenable)));
    }

    #[test]
    fn sealing_twice_gives_different_ciphertexts() {
        let b = boxed();
        assert_ne!(b.seal("o", b"same"), b.seal("o", b"same"));
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(SecretBox::from_hex("abcd").is_err());
        assert!(SecretBox::from_hex(&"zz".repeat(32)).is_err());
        assert!(SecretBox::from_hex(&format!(" {}\n", "ab".repeat(32))).is_ok());
    }
}
