//! Key material: sealing secrets at rest, minting credentials, hashing them.
//!
//! Invariants:
//! - Secrets are sealed with [`SecretBox`] (`hookplane_model::sealing`, shared
//!   with nodes), bound to their owner string, so a ciphertext copied to
//!   another owner's row fails to open instead of leaking.
//! - Minted credentials carry ≥ 190 bits from the OS RNG behind a prefix that
//!   names what they are (`hpt_` connector token, `hpk_` admin API key,
//!   `hpo_` operator key, `hpn_` node token); only their SHA-256 is ever stored.

pub use hookplane_model::sealing::{CryptoError, SecretBox};
use rand::{Rng, distr::Alphanumeric};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Random characters after a credential's prefix: 32 × log2(62) ≈ 190 bits.
const CREDENTIAL_RANDOM_CHARS: usize = 32;
/// Characters of a credential kept as its hint (prefix plus four).
const HINT_CHARS: usize = 8;

/// The owner string that binds a secret value to its row.
pub fn secret_owner(organization_id: &str, name: &str) -> String {
    format!("secret:{organization_id}:{name}")
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

/// A new inbound signing secret: `whsec_` + base64 of 32 random bytes, the
/// Standard Webhooks format, which every signature preset can use.
pub fn new_signing_secret() -> Zeroizing<String> {
    use base64::Engine as _;
    let key: Zeroizing<[u8; 32]> = Zeroizing::new(rand::random());
    let mut secret = Zeroizing::new(String::from("whsec_"));
    base64::engine::general_purpose::STANDARD.encode_string(key.as_slice(), &mut secret);
    secret
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

    #[test]
    fn generated_signing_secrets_are_standard_webhooks_secrets() {
        let secret = new_signing_secret();
        let key = hookplane_model::SignaturePreset::StandardWebhooks.signing_key(&secret).unwrap();
        assert_eq!(key.len(), 32);
        assert_ne!(*secret, *new_signing_secret());
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
