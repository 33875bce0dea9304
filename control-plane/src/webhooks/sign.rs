//! Signing a delivery (SPEC §8), in either scheme a subscription chooses.
//!
//! Both schemes key HMAC-SHA256 with the secret's bytes: the base64 after
//! `whsec_`, decoded (the Standard Webhooks convention, so one secret means
//! the same key in both). During a rotation's overlap a delivery carries a
//! signature under each secret, the new one first; receivers accept a
//! delivery when any signature matches a secret they hold.
//!
//! - `hookplane`: `X-Webhook-Signature` is the hex HMAC of the raw body
//!   (several separated by `,`), beside `X-Webhook-Id`, `X-Webhook-Event`
//!   and `X-Webhook-Timestamp` (RFC 3339, the attempt's time).
//! - `standard_webhooks`: `webhook-signature` is `v1,<base64 HMAC>` over
//!   `{webhook-id}.{webhook-timestamp}.{body}` (several separated by a
//!   space), `webhook-timestamp` the attempt's Unix seconds.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use hookplane_model::{SignaturePreset, SignatureScheme, Timestamp};
use hyper::HeaderMap;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use sha2::Sha256;

/// A signing secret that does not decode to a key.
#[derive(Debug, thiserror::Error)]
#[error("the subscription's signing secret is not a whsec_ secret; rotate it")]
pub struct BadSecret;

/// The headers of one attempt at delivering `body` under `webhook_id`,
/// signed with each of `secrets` (the current one first).
pub fn headers(
    scheme: SignatureScheme,
    webhook_id: &str,
    event_type: &str,
    body: &str,
    at: Timestamp,
    secrets: &[&str],
) -> Result<HeaderMap, BadSecret> {
    let keys = secrets
        .iter()
        .map(|secret| SignaturePreset::StandardWebhooks.signing_key(secret).map_err(|_| BadSecret))
        .collect::<Result<Vec<_>, _>>()?;
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut put = |name: &'static str, value: String| {
        // Ids, event names, timestamps and signatures are ASCII.
        let value = HeaderValue::try_from(value).expect("header values here are ASCII");
        headers.insert(HeaderName::from_static(name), value);
    };
    match scheme {
        SignatureScheme::Hookplane => {
            let signatures: Vec<String> = keys.iter().map(|key| hex::encode(mac(key, &[body.as_bytes()]))).collect();
            put("x-webhook-id", webhook_id.to_owned());
            put("x-webhook-event", event_type.to_owned());
            put("x-webhook-timestamp", at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            put("x-webhook-signature", signatures.join(","));
        }
        SignatureScheme::StandardWebhooks => {
            let timestamp = at.timestamp().to_string();
            let signatures: Vec<String> = keys
                .iter()
                .map(|key| {
                    let signed = [webhook_id.as_bytes(), b".", timestamp.as_bytes(), b".", body.as_bytes()];
                    format!("v1,{}", STANDARD.encode(mac(key, &signed)))
                })
                .collect();
            put("webhook-id", webhook_id.to_owned());
            put("webhook-timestamp", timestamp);
            put("webhook-signature", signatures.join(" "));
        }
    }
    Ok(headers)
}

fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn standard_webhooks_signs_as_its_specification_example() {
        // The Standard Webhooks specification's example: this secret, id,
        // timestamp and body sign to this value.
        let at = chrono::DateTime::from_timestamp(1_614_265_330, 0).unwrap();
        let body = r#"{"test": 2432232314}"#;
        let headers =
            headers(SignatureScheme::StandardWebhooks, "msg_p5jXN8AQM9LWM0D4loKWxJek", "x", body, at, &[SECRET])
                .unwrap();
        assert_eq!(headers["webhook-signature"], "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(headers["webhook-timestamp"], "1614265330");
    }

    #[test]
    fn hookplane_signs_the_raw_body_with_every_secret() {
        let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let other = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let headers =
            headers(SignatureScheme::Hookplane, "pev_1", "connector.updated", "{}", at, &[SECRET, other]).unwrap();
        let key = SignaturePreset::StandardWebhooks.signing_key(SECRET).unwrap();
        let expected = hex::encode(mac(&key, &[b"{}"]));
        let signatures: Vec<_> = headers["x-webhook-signature"].to_str().unwrap().split(',').collect();
        assert_eq!(signatures.len(), 2);
        assert_eq!(signatures[0], expected, "the current secret first");
        assert_eq!(headers["x-webhook-timestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(headers["x-webhook-event"], "connector.updated");
        assert!(super::headers(SignatureScheme::Hookplane, "i", "t", "{}", at, &["plain"]).is_err());
    }
}
