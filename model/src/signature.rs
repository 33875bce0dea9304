//! Inbound signature verification settings (SPEC §4 item 7): a custom HMAC
//! scheme, or a named sender's scheme (a preset) with the fields that
//! sender fixes, and the secret a rotation replaced, still accepted for an
//! overlap period.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::Timestamp;
use super::repr::{Repr, Source};

/// HMAC algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureAlgorithm {
    Sha256,
    Sha1,
    Sha512,
    Md5,
}

/// Signature encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureEncoding {
    Hex,
    Base64,
    Base64Url,
}

/// Whose signing scheme a connector verifies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignaturePreset {
    /// The connector's own fields say everything.
    #[default]
    Custom,
    /// `Stripe-Signature: t=<ts>,v1=<hex>[,v1=<hex>…]` over `<ts>.<body>`.
    Stripe,
    /// `X-Hub-Signature-256: sha256=<hex>` over the body.
    GitHub,
    /// `X-Shopify-Hmac-Sha256: <base64>` over the body.
    Shopify,
    /// `X-Slack-Signature: v0=<hex>` over `v0:<ts>:<body>`.
    Slack,
    /// `webhook-signature: v1,<base64>[ v1,<base64>…]` over
    /// `<id>.<ts>.<body>`, with a `whsec_` + base64 secret.
    StandardWebhooks,
}

/// The fields a named sender's scheme fixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PresetFields {
    pub algorithm: SignatureAlgorithm,
    pub encoding: SignatureEncoding,
    /// Lowercase header name.
    pub header: &'static str,
    pub prefix: &'static str,
    /// Lowercase name of a separate timestamp header, if the scheme has one.
    pub timestamp_header: Option<&'static str>,
}

/// Why a Standard Webhooks secret cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SigningSecretError {
    #[error("must start with `whsec_` (a Standard Webhooks secret)")]
    MissingPrefix,
    #[error("must be `whsec_` followed by base64")]
    NotBase64,
    #[error("must encode 24 to 64 bytes after `whsec_` (the Standard Webhooks key size)")]
    WrongSize,
}

impl SignaturePreset {
    pub const ALL: [SignaturePreset; 6] = [
        SignaturePreset::Custom,
        SignaturePreset::Stripe,
        SignaturePreset::GitHub,
        SignaturePreset::Shopify,
        SignaturePreset::Slack,
        SignaturePreset::StandardWebhooks,
    ];

    /// The name used in messages and documents.
    pub fn name(self) -> &'static str {
        match self {
            SignaturePreset::Custom => "custom",
            SignaturePreset::Stripe => "stripe",
            SignaturePreset::GitHub => "github",
            SignaturePreset::Shopify => "shopify",
            SignaturePreset::Slack => "slack",
            SignaturePreset::StandardWebhooks => "standard_webhooks",
        }
    }

    /// What the sender's scheme fixes; `None` for a custom scheme.
    pub fn fields(self) -> Option<PresetFields> {
        use SignatureAlgorithm::Sha256;
        use SignatureEncoding::{Base64, Hex};
        let fields = |encoding, header, prefix, timestamp_header| PresetFields {
            algorithm: Sha256,
            encoding,
            header,
            prefix,
            timestamp_header,
        };
        Some(match self {
            SignaturePreset::Custom => return None,
            // The timestamp is a part of the signature header, not a header.
            SignaturePreset::Stripe => fields(Hex, "stripe-signature", "", None),
            SignaturePreset::GitHub => fields(Hex, "x-hub-signature-256", "sha256=", None),
            SignaturePreset::Shopify => fields(Base64, "x-shopify-hmac-sha256", "", None),
            SignaturePreset::Slack => fields(Hex, "x-slack-signature", "v0=", Some("x-slack-request-timestamp")),
            SignaturePreset::StandardWebhooks => fields(Base64, "webhook-signature", "v1,", Some("webhook-timestamp")),
        })
    }

    /// The header naming each delivery, which the sender repeats on every
    /// retry of it: the key of replay protection. Only Standard Webhooks
    /// signs it; for the others it tells retries apart, not attackers.
    pub fn id_header(self) -> Option<&'static str> {
        match self {
            SignaturePreset::StandardWebhooks => Some("webhook-id"),
            SignaturePreset::GitHub => Some("x-github-delivery"),
            SignaturePreset::Shopify => Some("x-shopify-webhook-id"),
            SignaturePreset::Custom | SignaturePreset::Stripe | SignaturePreset::Slack => None,
        }
    }

    /// Whether the receiver chooses the secret (and hookplane may generate
    /// it); Stripe, Shopify and Slack issue theirs.
    pub fn receiver_chooses_secret(self) -> bool {
        matches!(self, SignaturePreset::Custom | SignaturePreset::GitHub | SignaturePreset::StandardWebhooks)
    }

    /// Whether the scheme signs a timestamp (and so has a tolerance).
    pub fn signs_timestamp(self) -> bool {
        matches!(self, SignaturePreset::Stripe | SignaturePreset::Slack | SignaturePreset::StandardWebhooks)
    }

    /// The HMAC key a secret stands for: its bytes, or for Standard
    /// Webhooks the base64 after `whsec_` (padding optional and ignored,
    /// as the senders' libraries read it).
    pub fn signing_key(self, secret: &str) -> Result<Vec<u8>, SigningSecretError> {
        use base64::engine::general_purpose::STANDARD_NO_PAD;
        if self != SignaturePreset::StandardWebhooks {
            return Ok(secret.as_bytes().to_vec());
        }
        let encoded = secret.strip_prefix("whsec_").ok_or(SigningSecretError::MissingPrefix)?;
        let key = STANDARD_NO_PAD.decode(encoded.trim_end_matches('=')).map_err(|_| SigningSecretError::NotBase64)?;
        if !(24..=64).contains(&key.len()) {
            return Err(SigningSecretError::WrongSize);
        }
        Ok(key)
    }
}

/// Inbound HMAC signature verification (SPEC §4 item 7). For a preset, the
/// algorithm, encoding, headers and prefix hold what the preset fixes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "R::Expr: Serialize, R::Name: Serialize, R::Secret: Serialize",
    deserialize = "R::Expr: Deserialize<'de>, R::Name: Deserialize<'de>, R::Secret: Deserialize<'de>"
))]
pub struct SignatureSettings<R: Repr = Source> {
    /// Absent in connectors stored before presets existed: custom.
    #[serde(default)]
    pub preset: SignaturePreset,
    pub secret: R::Secret,
    /// The secret the last rotation replaced, while it is still accepted.
    #[serde(default)]
    pub previous: Option<PreviousSecret<R>>,
    pub algorithm: SignatureAlgorithm,
    pub encoding: SignatureEncoding,
    /// Lowercase header name.
    pub header: String,
    pub prefix: String,
    /// Lowercase name of a header holding a signed timestamp; `None`
    /// when there is none (Stripe's is inside its signature header).
    pub timestamp_header: Option<String>,
    /// How far a signed timestamp may be from the node's clock, and how
    /// long a delivery id is remembered (twice that when the timestamp is
    /// signed too).
    pub timestamp_tolerance_secs: u64,
}

/// A replaced signing secret and the end of its overlap period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "R::Expr: Serialize, R::Name: Serialize, R::Secret: Serialize",
    deserialize = "R::Expr: Deserialize<'de>, R::Name: Deserialize<'de>, R::Secret: Deserialize<'de>"
))]
pub struct PreviousSecret<R: Repr = Source> {
    pub secret: R::Secret,
    pub expire_time: Timestamp,
}

impl<R: Repr> SignatureSettings<R> {
    /// The replaced secret if it is still accepted at `now`.
    pub fn previous_at(&self, now: Timestamp) -> Option<&R::Secret> {
        self.previous.as_ref().filter(|p| p.expire_time > now).map(|p| &p.secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_secrets_are_whsec_base64_of_24_to_64_bytes() {
        let sw = SignaturePreset::StandardWebhooks;
        // The example secret of the Standard Webhooks specification.
        let key = sw.signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(key.len(), 24);
        assert_eq!(sw.signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw=="), Ok(key));
        assert_eq!(sw.signing_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), Err(SigningSecretError::MissingPrefix));
        assert_eq!(sw.signing_key("whsec_not base64!"), Err(SigningSecretError::NotBase64));
        assert_eq!(sw.signing_key("whsec_c2hvcnQ="), Err(SigningSecretError::WrongSize));
        assert_eq!(SignaturePreset::Stripe.signing_key("whsec_abc").unwrap(), b"whsec_abc");
    }

    #[test]
    fn presets_fix_their_sender_fields_and_only_some_carry_an_id() {
        assert_eq!(SignaturePreset::Custom.fields(), None);
        for preset in SignaturePreset::ALL.into_iter().skip(1) {
            let fields = preset.fields().unwrap();
            assert_eq!(fields.header, fields.header.to_ascii_lowercase(), "{preset:?}");
            assert_eq!(fields.algorithm, SignatureAlgorithm::Sha256);
        }
        assert_eq!(SignaturePreset::Slack.fields().unwrap().timestamp_header, Some("x-slack-request-timestamp"));
        assert!(SignaturePreset::StandardWebhooks.signs_timestamp() && !SignaturePreset::GitHub.signs_timestamp());
        assert_eq!(SignaturePreset::Stripe.id_header(), None);
    }

    #[test]
    fn an_old_stored_signature_reads_as_custom_without_a_previous_secret() {
        let stored = r#"{"secret":"absent","algorithm":"sha256","encoding":"hex","header":"x-webhook-signature",
            "prefix":"","timestamp_header":null,"timestamp_tolerance_secs":300}"#;
        let settings: SignatureSettings = serde_json::from_str(stored).unwrap();
        assert_eq!((settings.preset, settings.previous), (SignaturePreset::Custom, None));
    }
}
