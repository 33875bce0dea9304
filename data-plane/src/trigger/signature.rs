//! Signatures over the raw body (SPEC §4 item 7), in a custom scheme or as
//! a named sender writes them.
//!
//! A scheme says where the signature candidates are (one value, or a list:
//! Stripe's `v1=` items, Standard Webhooks' `v1,` entries), which timestamp
//! and delivery id it signs, and what exactly is signed. The MAC of that
//! message is computed once per accepted secret (the current one and,
//! during a rotation's overlap, the previous one) and every candidate is
//! compared with it in constant time, so a sender rolling its secret may
//! send a signature for each. Nothing is allocated: candidates and keys
//! decode into stack buffers. Whatever fails, the caller answers one 401;
//! the reason is only logged, at debug level.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use hookplane_model::{Deployed, Repr, SignatureAlgorithm, SignatureEncoding, SignaturePreset, SignatureSettings};
use hookplane_model::{OpenedSecret, Timestamp};
use hyper::HeaderMap;
use subtle::ConstantTimeEq as _;

/// Candidates of one call looked at; more are ignored, so a header of
/// thousands of entries costs no more than this many comparisons.
const MAX_CANDIDATES: usize = 16;
/// Longest delivery id looked at; real ones are UUIDs or `msg_` + 27.
pub const MAX_DELIVERY_ID_BYTES: usize = 256;
/// Room for the largest MAC (SHA-512), and for its base64 decoded with
/// the decoder's estimate of 3 bytes per 4 characters.
const BUFFER: usize = 72;

/// Why a call's signature was refused (logged; the caller sees one 401).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("a header the signing scheme needs is missing")]
    Missing,
    #[error("the signature, timestamp or delivery id is malformed")]
    Malformed,
    #[error("the signed timestamp is outside the tolerance")]
    Stale,
    #[error("no signature matches the body with an accepted secret")]
    Mismatch,
}

/// What a verified call told about itself.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified<'r> {
    /// The sender's id of this delivery, repeated on its retries, for
    /// presets that send one.
    pub delivery_id: Option<&'r str>,
}

/// Verifies a call's signature with the connector's (opened) secrets.
pub fn verify<'r>(
    settings: &SignatureSettings<Deployed>,
    headers: &'r HeaderMap,
    body: &[u8],
    now: Timestamp,
) -> Result<Verified<'r>, SignatureError> {
    let preset = settings.preset;
    let header = |name: &str| headers.get(name).map(|v| v.as_bytes().trim_ascii()).ok_or(SignatureError::Missing);
    let value = header(&settings.header)?;
    let (separator, prefix): (Option<u8>, &[u8]) = match preset {
        SignaturePreset::Stripe => (Some(b','), b"v1="),
        SignaturePreset::StandardWebhooks => (Some(b' '), b"v1,"),
        _ => (None, settings.prefix.as_bytes()),
    };
    let timestamp = match preset {
        SignaturePreset::Stripe => Some(stripe_timestamp(value)?),
        _ => settings.timestamp_header.as_deref().map(header).transpose()?,
    };
    if let Some(timestamp) = timestamp {
        let seconds: i64 =
            std::str::from_utf8(timestamp).ok().and_then(|t| t.parse().ok()).ok_or(SignatureError::Malformed)?;
        if now.timestamp().abs_diff(seconds) > settings.timestamp_tolerance_secs {
            return Err(SignatureError::Stale);
        }
    }
    let delivery_id = delivery_id(preset, headers)?;
    let timestamp = timestamp.unwrap_or_default();
    let message: [&[u8]; 5] = match preset {
        SignaturePreset::Slack => [b"v0:", timestamp, b":", body, b""],
        SignaturePreset::StandardWebhooks => [delivery_id.unwrap_or_default().as_bytes(), b".", timestamp, b".", body],
        _ if timestamp.is_empty() => [body, b"", b"", b"", b""],
        _ => [timestamp, b".", body, b"", b""],
    };
    let current = Digest::of(settings, &settings.secret, &message)?;
    let previous = settings.previous_at(now).map(|secret| Digest::of(settings, secret, &message)).transpose()?;
    let candidates = value
        .split(|byte| Some(*byte) == separator)
        .filter_map(|item| item.trim_ascii().strip_prefix(prefix))
        .take(MAX_CANDIDATES);
    let mut buffer = [0u8; BUFFER];
    for candidate in candidates {
        let Some(signature) = decode(settings.encoding, candidate, &mut buffer) else { continue };
        if current.matches(signature) || previous.as_ref().is_some_and(|p| p.matches(signature)) {
            return Ok(Verified { delivery_id });
        }
    }
    Err(SignatureError::Mismatch)
}

/// The `t=` item of a `Stripe-Signature` header.
fn stripe_timestamp(value: &[u8]) -> Result<&[u8], SignatureError> {
    value
        .split(|byte| *byte == b',')
        .find_map(|item| item.trim_ascii().strip_prefix(b"t="))
        .ok_or(SignatureError::Malformed)
}

/// The delivery id of presets that send one: required where it is signed
/// (Standard Webhooks), remembered where it is present otherwise.
fn delivery_id(preset: SignaturePreset, headers: &HeaderMap) -> Result<Option<&str>, SignatureError> {
    let Some(name) = preset.id_header() else { return Ok(None) };
    let signed = preset == SignaturePreset::StandardWebhooks;
    let id = headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.len() <= MAX_DELIVERY_ID_BYTES);
    match id {
        None if signed => {
            Err(if headers.contains_key(name) { SignatureError::Malformed } else { SignatureError::Missing })
        }
        id => Ok(id),
    }
}

/// A MAC of the signed message under one secret.
struct Digest {
    bytes: [u8; 64],
    len: usize,
}

impl Digest {
    fn of(
        settings: &SignatureSettings<Deployed>,
        secret: &OpenedSecret,
        message: &[&[u8]],
    ) -> Result<Digest, SignatureError> {
        let mut key_buffer = [0u8; BUFFER];
        let key = match settings.preset {
            // Checked when the snapshot was built; the base64 after `whsec_`.
            SignaturePreset::StandardWebhooks => {
                let encoded = secret.expose().strip_prefix("whsec_").unwrap_or_default().trim_end_matches('=');
                let len = base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode_slice(encoded, &mut key_buffer)
                    .map_err(|_| SignatureError::Mismatch)?;
                &key_buffer[..len]
            }
            _ => secret.expose().as_bytes(),
        };
        let mut digest = Digest { bytes: [0; 64], len: 0 };
        let mut keep = |out: &[u8]| {
            digest.len = out.len();
            digest.bytes[..out.len()].copy_from_slice(out);
        };
        match settings.algorithm {
            SignatureAlgorithm::Sha256 => keep(&mac::<Hmac<sha2::Sha256>>(key, message)),
            SignatureAlgorithm::Sha512 => keep(&mac::<Hmac<sha2::Sha512>>(key, message)),
            SignatureAlgorithm::Sha1 => keep(&mac::<Hmac<sha1::Sha1>>(key, message)),
            SignatureAlgorithm::Md5 => keep(&mac::<Hmac<md5::Md5>>(key, message)),
        }
        Ok(digest)
    }

    /// Constant-time for equal lengths; the length is no secret.
    fn matches(&self, signature: &[u8]) -> bool {
        bool::from(self.bytes[..self.len].ct_eq(signature))
    }
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[&[u8]]) -> hmac::digest::Output<M> {
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in message {
        mac.update(part);
    }
    mac.finalize().into_bytes()
}

fn decode<'b>(encoding: SignatureEncoding, text: &[u8], buffer: &'b mut [u8; BUFFER]) -> Option<&'b [u8]> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let len = match encoding {
        SignatureEncoding::Hex => {
            let out = buffer.get_mut(..text.len() / 2)?;
            hex::decode_to_slice(text, out).ok()?;
            text.len() / 2
        }
        SignatureEncoding::Base64 => {
            STANDARD.decode_slice(text, buffer).or_else(|_| STANDARD_NO_PAD.decode_slice(text, buffer)).ok()?
        }
        SignatureEncoding::Base64Url => {
            URL_SAFE_NO_PAD.decode_slice(text, buffer).or_else(|_| URL_SAFE.decode_slice(text, buffer)).ok()?
        }
    };
    Some(&buffer[..len])
}

/// Signs `body` in a custom scheme as a sender would: for tests, examples
/// and benchmarks.
pub fn sign<R: Repr>(settings: &SignatureSettings<R>, secret: &[u8], timestamp: Option<i64>, body: &[u8]) -> String {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let ts = timestamp.map(|t| t.to_string());
    let message: [&[u8]; 3] = match &ts {
        Some(ts) => [ts.as_bytes(), b".", body],
        None => [body, b"", b""],
    };
    let raw = match settings.algorithm {
        SignatureAlgorithm::Sha256 => mac::<Hmac<sha2::Sha256>>(secret, &message).to_vec(),
        SignatureAlgorithm::Sha512 => mac::<Hmac<sha2::Sha512>>(secret, &message).to_vec(),
        SignatureAlgorithm::Sha1 => mac::<Hmac<sha1::Sha1>>(secret, &message).to_vec(),
        SignatureAlgorithm::Md5 => mac::<Hmac<md5::Md5>>(secret, &message).to_vec(),
    };
    let encoded = match settings.encoding {
        SignatureEncoding::Hex => hex::encode(raw),
        SignatureEncoding::Base64 => STANDARD.encode(raw),
        SignatureEncoding::Base64Url => URL_SAFE_NO_PAD.encode(raw),
    };
    format!("{}{encoded}", settings.prefix)
}

#[cfg(test)]
#[path = "signature_tests.rs"]
mod tests;
