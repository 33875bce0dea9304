//! Fields that hold secret material.
//!
//! A value arrives from the API in plaintext and must be sealed (encrypted,
//! for values hookplane must use later) or hashed (for values it only
//! compares) before it reaches the store. Serialising a plaintext variant is
//! an error, so a missed sealing step fails loudly instead of writing the
//! secret to disk. `Debug` never prints the plaintext.

use serde::{Deserialize, Serialize};

/// A secret hookplane must be able to read back (a signing secret, an OAuth
/// client secret): plaintext on input, sealed ciphertext at rest.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretField {
    /// Nothing stored, or (in an update) "keep what is stored".
    #[default]
    Absent,
    /// Fresh from the API; must be sealed before storing.
    #[serde(skip)]
    Plain(String),
    /// Sealed by the control plane's secret box (opaque text).
    Sealed(String),
}

impl SecretField {
    /// Whether a value is present in any form.
    pub fn is_set(&self) -> bool {
        !matches!(self, SecretField::Absent)
    }
}

impl std::fmt::Debug for SecretField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretField::Absent => f.write_str("Absent"),
            SecretField::Plain(_) => f.write_str("Plain(<redacted>)"),
            SecretField::Sealed(_) => f.write_str("Sealed(<ciphertext>)"),
        }
    }
}

/// A secret hookplane only compares (a custom header's expected value):
/// plaintext on input, a hash at rest and on the wire to data planes.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashedField {
    /// Nothing stored, or (in an update) "keep what is stored".
    #[default]
    Absent,
    /// Fresh from the API; must be hashed before storing.
    #[serde(skip)]
    Plain(String),
    /// Lowercase hex SHA-256 of the value.
    Sha256(String),
}

impl std::fmt::Debug for HashedField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HashedField::Absent => f.write_str("Absent"),
            HashedField::Plain(_) => f.write_str("Plain(<redacted>)"),
            HashedField::Sha256(_) => f.write_str("Sha256(<hash>)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_cannot_be_serialised_or_debug_printed() {
        let plain = SecretField::Plain("hunter2".into());
        assert!(serde_json::to_string(&plain).is_err());
        assert!(!format!("{plain:?}").contains("hunter2"));
        let hashed = HashedField::Plain("hunter2".into());
        assert!(serde_json::to_string(&hashed).is_err());
        assert!(!format!("{hashed:?}").contains("hunter2"));
    }

    #[test]
    fn sealed_values_round_trip() {
        let sealed = SecretField::Sealed("v1.abc".into());
        let text = serde_json::to_string(&sealed).unwrap();
        assert_eq!(serde_json::from_str::<SecretField>(&text).unwrap(), sealed);
    }
}
