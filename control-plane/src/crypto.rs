//! Key material: sealing secrets at rest, minting credentials, hashing them.
//!
//! Invariants:
//! - Sealed text is `v1.` + base64url(nonce ‖ ciphertext) of XChaCha20-Poly1305
//!   with the owner as associated data, so a ciphertext copied to another
//!   owner's row fails to open instead of leaking.
//! - Minted credentials carry ≥ 190 bits from the OS RNG behind a prefix that
//!   names what they are (`hpt_` connector token, `hpk_` admin API key,
//!   `hpo_` operator key, `hpn_` node token); only their SHA-256 is ever stored.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::{Rng, distr::Alphanumeric};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

const SEALED_PREFIX: &str = "v1.";
const NONCE_LEN: usize = 24;
/// Random characters after a credential's prefix: 32 × log2(62) ≈ 190 bits.
const CREDENTIAL_RANDOM_CHARS: usize = 32;
/// Characters of a credential kept as its hint (prefix plus four).
const HINT_CHARS: usize = 8;

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

/// Encrypts and decrypts secrets at rest with the control plane's key.
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
    /// whitespace ignored), as in the key file `dev` generates.
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

    /// Seals `plaintext` for `owner` (e.g. `secret:org_x:API_TOKEN`).
    pub fn seal(&self, owner: &str, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill(&mut nonce[..]);
        let ciphertext = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad: owner.as_bytes() })
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut raw = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&ciphertext);
        format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw))
    }

    /// Opens text sealed for `owner`.
    pub fn open(&self, owner: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let encoded = sealed.strip_prefix(SEALED_PREFIX).ok_or(CryptoError::Malformed)?;
        let raw = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| CryptoError::Malformed)?;
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

/// The owner string that binds a secret value to its row.
pub fn secret_owner(organization_id: &str, name: &str) -> String {
    format!("secret:{organization_id}:{name}")
}

/// The owner string of a secret field inside a connector.
pub fn connector_field_owner(organization_id: &str, connector_id: &str, field: &str) -> String {
    format!("connector:{organization_id}:{connector_id}:{field}")
}

/// Kinds of minted credentials, by prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialKind {
    /// Inbound connector credential.
    ConnectorToken,
    /// Organization admin API key.
    ApiKey,
    /// Control-plane operator key.
    OperatorKey,
    /// A data-plane node's credential for the sync stream.
    NodeToken,
}

impl CredentialKind {
    fn prefix(self) -> &'static str {
        match self {
            CredentialKind::ConnectorToken => "hpt_",
            CredentialKind::ApiKey => "hpk_",
            CredentialKind::OperatorKey => "hpo_",
            CredentialKind::NodeToken => "hpn_",
        }
    }
}

/// A freshly minted credential: plaintext for the caller, hash and hint for
/// the store.
pub struct MintedCredential {
    pub plaintext: Zeroizing<String>,
    pub hash: String,
    pub hint: String,
}

/// Mints a new credential of `kind`.
pub fn mint(kind: CredentialKind) -> MintedCredential {
    let mut plaintext = Zeroizing::new(String::with_capacity(4 + CREDENTIAL_RANDOM_CHARS));
    plaintext.push_str(kind.prefix());
    plaintext.extend(rand::rng().sample_iter(Alphanumeric).take(CREDENTIAL_RANDOM_CHARS).map(char::from));
    MintedCredential {
        hash: hash_credential(&plaintext),
        hint: plaintext.chars().take(HINT_CHARS).collect(),
        plaintext,
    }
}

/// Lowercase hex SHA-256: how credentials and compared values are stored.
pub fn hash_credential(plaintext: &str) -> String {
    hex::encode(Sha256::digest(plaintext.as_bytes()))
}

/// A random resource id such as `con_` + 22 alphanumerics (~131 bits).
pub fn new_id(prefix: &str) -> String {
    let mut id = String::with_capacity(prefix.len() + 22);
    id.push_str(prefix);
    id.extend(rand::rng().sample_iter(Alphanumeric).take(22).map(char::from));
    id
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
    }

    #[test]
    fn sealed_value_does_not_open_for_another_owner_or_key() {
        let b = boxed();
        let sealed = b.seal("secret:org_a:TOKEN", b"s3cr3t");
        assert!(matches!(b.open("secret:org_b:TOKEN", &sealed), Err(CryptoError::Unopenable)));
        assert!(matches!(boxed().open("secret:org_a:TOKEN", &sealed), Err(CryptoError::Unopenable)));
        assert!(matches!(b.open("x", "v2.abc"), Err(CryptoError::Malformed)));
        assert!(matches!(b.open("x", "v1.AA"), Err(CryptoError::Malformed)));
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

    #[test]
    fn minted_credentials_are_prefixed_unique_and_hashed() {
        let a = mint(CredentialKind::ConnectorToken);
        let b = mint(CredentialKind::ConnectorToken);
        assert!(a.plaintext.starts_with("hpt_"));
        assert_eq!(a.plaintext.len(), 36);
        assert_ne!(*a.plaintext, *b.plaintext);
        assert_eq!(a.hash, hash_credential(&a.plaintext));
        assert_eq!(a.hash.len(), 64);
        assert_eq!(a.hint, a.plaintext[..8]);
        assert!(mint(CredentialKind::ApiKey).plaintext.starts_with("hpk_"));
    }

    #[test]
    fn ids_carry_their_prefix() {
        let id = new_id("con_");
        assert!(id.starts_with("con_") && id.len() == 26);
        assert!(id[4..].chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
