//! HMAC signatures over the raw body (SPEC §4 item 7).
//!
//! The signed message is the raw body, or `{timestamp}.{body}` when replay
//! protection is on (the timestamp header holds Unix seconds and must be
//! within the tolerance of the node's clock). The comparison is the MAC
//! crate's constant-time `verify_slice`, which also refuses a signature of
//! the wrong length, so empty, truncated and prefix-only signatures fail.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use hookplane_model::{Deployed, Repr, SignatureAlgorithm, SignatureEncoding, SignatureSettings};
use hyper::HeaderMap;

use super::response::Refusal;

/// Verifies the call's signature with the connector's (opened) secret.
pub fn verify(
    settings: &SignatureSettings<Deployed>,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
) -> Result<(), Refusal> {
    let timestamp = match &settings.timestamp_header {
        None => None,
        Some(name) => {
            let value = headers.get(name.as_str()).ok_or(Refusal::StaleTimestamp)?;
            let seconds: i64 =
                value.to_str().ok().and_then(|v| v.trim().parse().ok()).ok_or(Refusal::StaleTimestamp)?;
            if now_unix.abs_diff(seconds) > settings.timestamp_tolerance_secs {
                return Err(Refusal::StaleTimestamp);
            }
            Some(value.as_bytes())
        }
    };
    let header = headers.get(settings.header.as_str()).ok_or(Refusal::InvalidSignature)?;
    let encoded = header.as_bytes().trim_ascii();
    let encoded = encoded.strip_prefix(settings.prefix.as_bytes()).ok_or(Refusal::InvalidSignature)?;
    let signature = decode(settings.encoding, encoded).ok_or(Refusal::InvalidSignature)?;
    let parts: [&[u8]; 3] = match timestamp {
        Some(ts) => [ts, b".", body],
        None => [body, b"", b""],
    };
    let secret = settings.secret.expose().as_bytes();
    let valid = match settings.algorithm {
        SignatureAlgorithm::Sha256 => check::<Hmac<sha2::Sha256>>(secret, &parts, &signature),
        SignatureAlgorithm::Sha512 => check::<Hmac<sha2::Sha512>>(secret, &parts, &signature),
        SignatureAlgorithm::Sha1 => check::<Hmac<sha1::Sha1>>(secret, &parts, &signature),
        SignatureAlgorithm::Md5 => check::<Hmac<md5::Md5>>(secret, &parts, &signature),
    };
    if valid { Ok(()) } else { Err(Refusal::InvalidSignature) }
}

fn check<M: Mac + hmac::digest::KeyInit>(secret: &[u8], parts: &[&[u8]], signature: &[u8]) -> bool {
    let Ok(mut mac) = <M as hmac::digest::KeyInit>::new_from_slice(secret) else {
        return false;
    };
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(signature).is_ok()
}

fn decode(encoding: SignatureEncoding, text: &[u8]) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    match encoding {
        SignatureEncoding::Hex => hex::decode(text).ok(),
        SignatureEncoding::Base64 => STANDARD.decode(text).or_else(|_| STANDARD_NO_PAD.decode(text)).ok(),
        SignatureEncoding::Base64Url => URL_SAFE_NO_PAD.decode(text).or_else(|_| URL_SAFE.decode(text)).ok(),
    }
}

/// Signs `body` as a sender would: for tests, examples and benchmarks.
pub fn sign<R: Repr>(settings: &SignatureSettings<R>, secret: &[u8], timestamp: Option<i64>, body: &[u8]) -> String {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let ts = timestamp.map(|t| t.to_string());
    let parts: [&[u8]; 3] = match &ts {
        Some(ts) => [ts.as_bytes(), b".", body],
        None => [body, b"", b""],
    };
    let raw = match settings.algorithm {
        SignatureAlgorithm::Sha256 => mac::<Hmac<sha2::Sha256>>(secret, &parts),
        SignatureAlgorithm::Sha512 => mac::<Hmac<sha2::Sha512>>(secret, &parts),
        SignatureAlgorithm::Sha1 => mac::<Hmac<sha1::Sha1>>(secret, &parts),
        SignatureAlgorithm::Md5 => mac::<Hmac<md5::Md5>>(secret, &parts),
    };
    let encoded = match settings.encoding {
        SignatureEncoding::Hex => hex::encode(raw),
        SignatureEncoding::Base64 => STANDARD.encode(raw),
        SignatureEncoding::Base64Url => URL_SAFE_NO_PAD.encode(raw),
    };
    format!("{}{encoded}", settings.prefix)
}

fn mac<M: Mac + hmac::digest::KeyInit>(secret: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use hookplane_model::OpenedSecret;
    use hyper::header::{HeaderName, HeaderValue};

    use super::*;

    fn settings(
        algorithm: SignatureAlgorithm,
        encoding: SignatureEncoding,
        prefix: &str,
        key: &str,
    ) -> SignatureSettings<Deployed> {
        SignatureSettings {
            secret: OpenedSecret::new(key.into()),
            algorithm,
            encoding,
            header: "x-webhook-signature".into(),
            prefix: prefix.into(),
            timestamp_header: None,
            timestamp_tolerance_secs: 300,
        }
    }

    fn with(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap()))
            .collect()
    }

    #[test]
    fn every_algorithm_and_encoding_verifies_and_tampering_fails() {
        let body = br#"{"a":1}"#;
        for algorithm in
            [SignatureAlgorithm::Sha256, SignatureAlgorithm::Sha1, SignatureAlgorithm::Sha512, SignatureAlgorithm::Md5]
        {
            for encoding in [SignatureEncoding::Hex, SignatureEncoding::Base64, SignatureEncoding::Base64Url] {
                let s = settings(algorithm, encoding, "sha=", "key");
                let signature = sign(&s, b"key", None, body);
                let ok = with(&[("x-webhook-signature", &signature)]);
                assert_eq!(verify(&s, &ok, body, 0), Ok(()), "{algorithm:?} {encoding:?}");
                let other = settings(algorithm, encoding, "sha=", "other");
                assert_eq!(verify(&other, &ok, body, 0), Err(Refusal::InvalidSignature));
                assert_eq!(verify(&s, &ok, br#"{"a":2}"#, 0), Err(Refusal::InvalidSignature));
            }
        }
    }

    #[test]
    fn empty_short_prefix_only_and_unprefixed_signatures_fail() {
        let s = settings(SignatureAlgorithm::Sha256, SignatureEncoding::Hex, "sha256=", "key");
        let body = b"{}";
        let signature = sign(&s, b"key", None, body);
        let hex_part = signature.strip_prefix("sha256=").unwrap();
        for bad in ["", "sha256=", &signature[..signature.len() - 2], &signature[..20], hex_part, "sha256=zz"] {
            let headers = with(&[("x-webhook-signature", bad)]);
            assert_eq!(verify(&s, &headers, body, 0), Err(Refusal::InvalidSignature), "{bad:?}");
        }
        assert_eq!(verify(&s, &with(&[]), body, 0), Err(Refusal::InvalidSignature));
    }

    #[test]
    fn a_signed_timestamp_must_be_fresh_and_part_of_the_signature() {
        let mut s = settings(SignatureAlgorithm::Sha256, SignatureEncoding::Hex, "", "key");
        s.timestamp_header = Some("x-webhook-timestamp".into());
        let body = b"{}";
        let now = 1_700_000_000;
        let signature = sign(&s, b"key", Some(now), body);
        let fresh = with(&[("x-webhook-signature", &signature), ("x-webhook-timestamp", &now.to_string())]);
        assert_eq!(verify(&s, &fresh, body, now + 299), Ok(()));
        assert_eq!(verify(&s, &fresh, body, now + 301), Err(Refusal::StaleTimestamp));
        let moved = with(&[("x-webhook-signature", &signature), ("x-webhook-timestamp", &(now + 1).to_string())]);
        assert_eq!(verify(&s, &moved, body, now), Err(Refusal::InvalidSignature), "the timestamp is signed");
        let missing = with(&[("x-webhook-signature", &signature)]);
        assert_eq!(verify(&s, &missing, body, now), Err(Refusal::StaleTimestamp));
    }
}
