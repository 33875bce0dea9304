//! Each scheme against signatures computed here, independently of
//! `verify`, from the senders' documentation. The senders' own libraries
//! sign in the end-to-end tests (`tests/it/signature_presets.rs`).

use base64::engine::general_purpose::STANDARD;
use hookplane_model::{OpenedSecret, PreviousSecret};
use hyper::header::{HeaderName, HeaderValue};

use super::*;

const NOW: i64 = 1_700_000_000;

fn at(seconds: i64) -> Timestamp {
    chrono::DateTime::from_timestamp(seconds, 0).unwrap()
}

fn custom(
    algorithm: SignatureAlgorithm,
    encoding: SignatureEncoding,
    prefix: &str,
    key: &str,
) -> SignatureSettings<Deployed> {
    SignatureSettings {
        preset: SignaturePreset::Custom,
        secret: OpenedSecret::new(key.into()),
        previous: None,
        algorithm,
        encoding,
        header: "x-webhook-signature".into(),
        prefix: prefix.into(),
        timestamp_header: None,
        timestamp_tolerance_secs: 300,
    }
}

/// A preset's settings as the conversion fills them.
fn preset(preset: SignaturePreset, key: &str) -> SignatureSettings<Deployed> {
    let fields = preset.fields().unwrap();
    SignatureSettings {
        preset,
        secret: OpenedSecret::new(key.into()),
        previous: None,
        algorithm: fields.algorithm,
        encoding: fields.encoding,
        header: fields.header.into(),
        prefix: fields.prefix.into(),
        timestamp_header: fields.timestamp_header.map(Into::into),
        timestamp_tolerance_secs: 300,
    }
}

fn with(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| (HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap()))
        .collect()
}

fn hmac256(key: &[u8], message: &str) -> Vec<u8> {
    let mut mac = <Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(key).unwrap();
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

const BODY: &str = r#"{"id":"evt_1","type":"order.paid"}"#;
const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn sw_key(secret: &str) -> Vec<u8> {
    SignaturePreset::StandardWebhooks.signing_key(secret).unwrap()
}

/// Every preset's headers for `BODY` signed with `key` at `ts`, as its
/// sender documents them.
fn signed(p: SignaturePreset, key: &str, ts: i64) -> Vec<(String, String)> {
    let pairs: Vec<(&str, String)> = match p {
        SignaturePreset::Stripe => {
            vec![(
                "stripe-signature",
                format!("t={ts},v1={}", hex::encode(hmac256(key.as_bytes(), &format!("{ts}.{BODY}")))),
            )]
        }
        SignaturePreset::GitHub => {
            vec![("x-hub-signature-256", format!("sha256={}", hex::encode(hmac256(key.as_bytes(), BODY))))]
        }
        SignaturePreset::Shopify => vec![("x-shopify-hmac-sha256", STANDARD.encode(hmac256(key.as_bytes(), BODY)))],
        SignaturePreset::Slack => vec![
            ("x-slack-signature", format!("v0={}", hex::encode(hmac256(key.as_bytes(), &format!("v0:{ts}:{BODY}"))))),
            ("x-slack-request-timestamp", ts.to_string()),
        ],
        SignaturePreset::StandardWebhooks => vec![
            ("webhook-id", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W".into()),
            ("webhook-timestamp", ts.to_string()),
            (
                "webhook-signature",
                format!(
                    "v1,{}",
                    STANDARD.encode(hmac256(&sw_key(key), &format!("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W.{ts}.{BODY}")))
                ),
            ),
        ],
        SignaturePreset::Custom => unreachable!("custom has its own tests"),
    };
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn headers_of(pairs: &[(String, String)]) -> HeaderMap {
    with(&pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>())
}

const PRESETS: [SignaturePreset; 5] = [
    SignaturePreset::Stripe,
    SignaturePreset::GitHub,
    SignaturePreset::Shopify,
    SignaturePreset::Slack,
    SignaturePreset::StandardWebhooks,
];

#[test]
fn every_preset_verifies_its_senders_signature_and_refuses_a_tampered_body_or_another_secret() {
    let other = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for p in PRESETS {
        let settings = preset(p, SW_SECRET);
        let headers = headers_of(&signed(p, SW_SECRET, NOW));
        let verified = verify(&settings, &headers, BODY.as_bytes(), at(NOW));
        assert!(verified.is_ok(), "{p:?}: {verified:?}");
        let tampered = BODY.replace("paid", "void");
        assert_eq!(verify(&settings, &headers, tampered.as_bytes(), at(NOW)), Err(SignatureError::Mismatch), "{p:?}");
        let foreign = headers_of(&signed(p, other, NOW));
        assert_eq!(verify(&settings, &foreign, BODY.as_bytes(), at(NOW)), Err(SignatureError::Mismatch), "{p:?}");
        for (missing, _) in signed(p, SW_SECRET, NOW) {
            let mut partial = headers.clone();
            partial.remove(missing.as_str());
            assert_eq!(verify(&settings, &partial, BODY.as_bytes(), at(NOW)), Err(SignatureError::Missing), "{p:?}");
        }
    }
}

#[test]
fn signed_timestamps_must_be_fresh_and_are_part_of_the_signature() {
    for p in [SignaturePreset::Stripe, SignaturePreset::Slack, SignaturePreset::StandardWebhooks] {
        let settings = preset(p, SW_SECRET);
        let headers = headers_of(&signed(p, SW_SECRET, NOW));
        assert!(verify(&settings, &headers, BODY.as_bytes(), at(NOW + 299)).is_ok(), "{p:?}");
        assert_eq!(verify(&settings, &headers, BODY.as_bytes(), at(NOW + 301)), Err(SignatureError::Stale), "{p:?}");
        assert_eq!(verify(&settings, &headers, BODY.as_bytes(), at(NOW - 301)), Err(SignatureError::Stale), "{p:?}");
        // The same signature with a fresher timestamp claimed.
        let moved: Vec<(String, String)> = signed(p, SW_SECRET, NOW)
            .into_iter()
            .map(|(k, v)| (k, v.replace(&NOW.to_string(), &(NOW + 60).to_string())))
            .collect();
        let signature_only: Vec<_> =
            signed(p, SW_SECRET, NOW).into_iter().filter(|(k, _)| k.contains("signature")).collect();
        let mut forged = headers_of(&moved);
        if p == SignaturePreset::Stripe {
            let v1 = signature_only[0].1.split_once(",v1=").unwrap().1.to_owned();
            forged.insert("stripe-signature", HeaderValue::from_str(&format!("t={},v1={v1}", NOW + 60)).unwrap());
        } else {
            forged.insert(signature_only[0].0.parse::<HeaderName>().unwrap(), signature_only[0].1.parse().unwrap());
        }
        assert_eq!(verify(&settings, &forged, BODY.as_bytes(), at(NOW)), Err(SignatureError::Mismatch), "{p:?}");
    }
}

#[test]
fn any_of_several_signatures_may_match_and_the_rest_are_ignored() {
    let stripe = preset(SignaturePreset::Stripe, "whsec_new");
    let ts = NOW.to_string();
    let valid = hex::encode(hmac256(b"whsec_new", &format!("{ts}.{BODY}")));
    let old = hex::encode(hmac256(b"whsec_old", &format!("{ts}.{BODY}")));
    let header = format!("t={ts},v1={old},v0=ignored,v1={valid}");
    assert!(verify(&stripe, &with(&[("stripe-signature", &header)]), BODY.as_bytes(), at(NOW)).is_ok());

    let sw = preset(SignaturePreset::StandardWebhooks, SW_SECRET);
    let good = signed(SignaturePreset::StandardWebhooks, SW_SECRET, NOW);
    let entries = format!("v1a,ZmFrZQ== v1,bm90LXRoaXMtb25l {}", good[2].1);
    let mut headers = headers_of(&good);
    headers.insert("webhook-signature", HeaderValue::from_str(&entries).unwrap());
    let verified = verify(&sw, &headers, BODY.as_bytes(), at(NOW)).unwrap();
    assert_eq!(verified.delivery_id, Some("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"));

    // Past the cap of candidates, a valid signature is not looked at.
    let many = format!("t={ts},{}v1={valid}", "v1=00,".repeat(MAX_CANDIDATES));
    let headers = with(&[("stripe-signature", &many)]);
    assert_eq!(verify(&stripe, &headers, BODY.as_bytes(), at(NOW)), Err(SignatureError::Mismatch));
}

#[test]
fn the_previous_secret_verifies_only_until_its_overlap_ends() {
    let mut settings = preset(SignaturePreset::GitHub, "new-secret");
    settings.previous =
        Some(PreviousSecret { secret: OpenedSecret::new("old-secret".into()), expire_time: at(NOW + 60) });
    let old = headers_of(&signed(SignaturePreset::GitHub, "old-secret", NOW));
    let new = headers_of(&signed(SignaturePreset::GitHub, "new-secret", NOW));
    assert!(verify(&settings, &old, BODY.as_bytes(), at(NOW)).is_ok());
    assert!(verify(&settings, &new, BODY.as_bytes(), at(NOW)).is_ok());
    assert_eq!(verify(&settings, &old, BODY.as_bytes(), at(NOW + 60)), Err(SignatureError::Mismatch));
    assert!(verify(&settings, &new, BODY.as_bytes(), at(NOW + 60)).is_ok());
}

#[test]
fn delivery_ids_are_read_where_the_sender_sends_them() {
    let github = preset(SignaturePreset::GitHub, "key-for-github");
    let mut headers = headers_of(&signed(SignaturePreset::GitHub, "key-for-github", NOW));
    assert_eq!(verify(&github, &headers, BODY.as_bytes(), at(NOW)).unwrap().delivery_id, None);
    headers.insert("x-github-delivery", HeaderValue::from_static("72d3162e-cc78-11e3-81ab-4c9367dc0958"));
    let verified = verify(&github, &headers, BODY.as_bytes(), at(NOW)).unwrap();
    assert_eq!(verified.delivery_id, Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"));
    headers.insert("x-github-delivery", HeaderValue::from_str(&"x".repeat(MAX_DELIVERY_ID_BYTES + 1)).unwrap());
    assert_eq!(verify(&github, &headers, BODY.as_bytes(), at(NOW)).unwrap().delivery_id, None, "too long: not kept");
    let sw = preset(SignaturePreset::StandardWebhooks, SW_SECRET);
    let mut headers = headers_of(&signed(SignaturePreset::StandardWebhooks, SW_SECRET, NOW));
    headers.insert("webhook-id", HeaderValue::from_static(""));
    assert_eq!(verify(&sw, &headers, BODY.as_bytes(), at(NOW)), Err(SignatureError::Malformed));
}

#[test]
fn every_algorithm_and_encoding_verifies_and_tampering_fails() {
    let body = br#"{"a":1}"#;
    for algorithm in
        [SignatureAlgorithm::Sha256, SignatureAlgorithm::Sha1, SignatureAlgorithm::Sha512, SignatureAlgorithm::Md5]
    {
        for encoding in [SignatureEncoding::Hex, SignatureEncoding::Base64, SignatureEncoding::Base64Url] {
            let s = custom(algorithm, encoding, "sha=", "key");
            let signature = sign(&s, b"key", None, body);
            let ok = with(&[("x-webhook-signature", &signature)]);
            assert!(verify(&s, &ok, body, at(0)).is_ok(), "{algorithm:?} {encoding:?}");
            let other = custom(algorithm, encoding, "sha=", "other");
            assert_eq!(verify(&other, &ok, body, at(0)), Err(SignatureError::Mismatch));
            assert_eq!(verify(&s, &ok, br#"{"a":2}"#, at(0)), Err(SignatureError::Mismatch));
        }
    }
}

#[test]
fn empty_short_prefix_only_and_unprefixed_signatures_fail() {
    let s = custom(SignatureAlgorithm::Sha256, SignatureEncoding::Hex, "sha256=", "key");
    let body = b"{}";
    let signature = sign(&s, b"key", None, body);
    let hex_part = signature.strip_prefix("sha256=").unwrap();
    for bad in ["", "sha256=", &signature[..signature.len() - 2], &signature[..20], hex_part, "sha256=zz"] {
        let headers = with(&[("x-webhook-signature", bad)]);
        assert_eq!(verify(&s, &headers, body, at(0)), Err(SignatureError::Mismatch), "{bad:?}");
    }
    assert_eq!(verify(&s, &with(&[]), body, at(0)), Err(SignatureError::Missing));
}

#[test]
fn a_custom_signed_timestamp_must_be_fresh_and_part_of_the_signature() {
    let mut s = custom(SignatureAlgorithm::Sha256, SignatureEncoding::Hex, "", "key");
    s.timestamp_header = Some("x-webhook-timestamp".into());
    let body = b"{}";
    let signature = sign(&s, b"key", Some(NOW), body);
    let fresh = with(&[("x-webhook-signature", &signature), ("x-webhook-timestamp", &NOW.to_string())]);
    assert!(verify(&s, &fresh, body, at(NOW + 299)).is_ok());
    assert_eq!(verify(&s, &fresh, body, at(NOW + 301)), Err(SignatureError::Stale));
    let moved = with(&[("x-webhook-signature", &signature), ("x-webhook-timestamp", &(NOW + 1).to_string())]);
    assert_eq!(verify(&s, &moved, body, at(NOW)), Err(SignatureError::Mismatch), "the timestamp is signed");
    let missing = with(&[("x-webhook-signature", &signature)]);
    assert_eq!(verify(&s, &missing, body, at(NOW)), Err(SignatureError::Missing));
    let garbled = with(&[("x-webhook-signature", &signature), ("x-webhook-timestamp", "soon")]);
    assert_eq!(verify(&s, &garbled, body, at(NOW)), Err(SignatureError::Malformed));
}
