//! Fuzzes what the trigger endpoint reads from a request before any
//! pipeline runs: headers (credentials, origin, forwarded-for, depth),
//! the query (an API key), the signature and the body (validated, then
//! projected for a connector's programs). None of it may panic, and a
//! valid credential is never refused because of what surrounds it.
#![no_main]

use std::net::IpAddr;

use base64::Engine as _;
use hookplane::api::v1 as api;
use hookplane_model::{
    Connector, ConnectorToken, Deployed, HashedField, OpenedSecret, PreviousSecret, SignatureAlgorithm,
    SignatureEncoding, SignaturePreset, TokenKind,
};
use hookplane_data_plane::snapshot::DeployedConnector;
use hookplane_data_plane::trigger::{auth, client_ip, signature};
use hyper::HeaderMap;
use hyper::header::{HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use sha2::Digest as _;

#[derive(Debug, arbitrary::Arbitrary)]
struct Request {
    headers: Vec<(String, Vec<u8>)>,
    query: Option<String>,
    body: Vec<u8>,
    peer: [u8; 4],
    algorithm: u8,
    encoding: u8,
    timestamped: bool,
    preset: u8,
    rotating: bool,
}

const TOKEN: &str = "hpt_fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzz";

fn connector() -> DeployedConnector {
    let spec = convert_spec();
    let sha = |text: &str| hex::encode(sha2::Sha256::digest(text.as_bytes()));
    let tokens = [TokenKind::Bearer, TokenKind::SecretToken, TokenKind::ApiKey, TokenKind::BasicPassword]
        .into_iter()
        .enumerate()
        .map(|(i, kind)| ConnectorToken {
            id: format!("tok_{i}"),
            kind,
            hash: sha(TOKEN),
            hint: String::new(),
            create_time: hookplane_model::now(),
            expire_time: None,
            superseded: false,
        })
        .collect();
    let connector = Connector {
        id: "con_fuzz".into(),
        organization_id: "org_fuzz".into(),
        spec,
        tokens,
        create_time: hookplane_model::now(),
        update_time: hookplane_model::now(),
        revision: 1,
    };
    DeployedConnector::prepare(connector, 1).expect("the fuzz connector prepares")
}

fn convert_spec() -> hookplane_model::ConnectorSpec {
    let named = |name: &str, value: &str| api::NamedTemplate { name: name.into(), value: value.into() };
    let mut spec = hookplane_convert::connector_from_api(
        &api::Connector {
            display_name: "fuzz".into(),
            auth: Some(api::InboundAuth {
                bearer_token: true,
                secret_token: true,
                api_key: Some(api::ApiKeyAuth { name: "key".into(), location: api::ApiKeyLocation::Query as i32 }),
                basic: Some(api::BasicAuth { username: "user".into() }),
                custom_headers: vec![api::CustomHeader { name: "x-custom".into(), value: "expected".into() }],
                ..Default::default()
            }),
            allowed_origins: vec!["https://app.example.com".into()],
            condition: "$payload.status == \"paid\" && $payload.items[0].qty > 1".into(),
            mappings: vec![api::FieldMapping { name: "email".into(), expression: "lower($payload.customer.email)".into() }],
            perform: Some(api::Perform {
                url: "https://example.com/$payload.id".into(),
                headers: vec![named("X-Tags", "${ join($payload.tags, \",\") }")],
                ..Default::default()
            }),
            ..Default::default()
        },
        "connector",
    )
    .expect("the fuzz connector converts");
    for header in &mut spec.auth.custom_headers {
        header.value = HashedField::Sha256(hex::encode(sha2::Sha256::digest(b"expected")));
    }
    spec
}

fuzz_target!(|request: Request| {
    let deployed = connector();
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value)) {
            headers.append(name, value);
        }
    }
    let now = hookplane_model::now();
    let trusted = ["10.0.0.0/8".parse().unwrap()];
    let _ = client_ip(IpAddr::from(request.peer), &headers, &trusted);
    let _ = auth::origin_allowed(&deployed.connector.spec.allowed_origins, &headers);
    let _ = auth::authenticate(&deployed, &headers, request.query.as_deref(), now);
    // The right bearer token works whatever else the request carries.
    let mut with_token = headers.clone();
    with_token.insert("authorization", HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap());
    assert!(auth::authenticate(&deployed, &with_token, request.query.as_deref(), now).is_some());
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("user:{TOKEN}"));
    with_token.insert("authorization", HeaderValue::from_str(&format!("Basic {basic}")).unwrap());
    assert!(auth::authenticate(&deployed, &with_token, request.query.as_deref(), now).is_some());

    // Every scheme, with a previous secret in overlap or not; a custom
    // scheme with any algorithm and encoding.
    let preset = SignaturePreset::ALL[usize::from(request.preset) % SignaturePreset::ALL.len()];
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let mut settings = hookplane_model::SignatureSettings::<Deployed> {
        preset,
        secret: OpenedSecret::new(secret.into()),
        previous: request.rotating.then(|| PreviousSecret {
            secret: OpenedSecret::new(secret.into()),
            expire_time: now + chrono::Duration::seconds(60),
        }),
        algorithm: [SignatureAlgorithm::Sha256, SignatureAlgorithm::Sha1, SignatureAlgorithm::Sha512, SignatureAlgorithm::Md5]
            [usize::from(request.algorithm % 4)],
        encoding: [SignatureEncoding::Hex, SignatureEncoding::Base64, SignatureEncoding::Base64Url]
            [usize::from(request.encoding % 3)],
        header: "x-webhook-signature".into(),
        prefix: "sha256=".into(),
        timestamp_header: request.timestamped.then(|| "x-webhook-timestamp".into()),
        timestamp_tolerance_secs: 300,
    };
    if let Some(fields) = preset.fields() {
        settings.algorithm = fields.algorithm;
        settings.encoding = fields.encoding;
        settings.header = fields.header.into();
        settings.prefix = fields.prefix.into();
        settings.timestamp_header = fields.timestamp_header.map(Into::into);
    }
    let _ = signature::verify(&settings, &headers, &request.body, now);

    // The body as the endpoint takes it: UTF-8, then the JSON check, which
    // is the projection's capture, then the values the programs read, made
    // from the capture (here also as a tree, to compare with the full one). The capture accepts what a validating scan
    // accepts; what else it refuses (nesting past the parser's depth limit
    // along a read path, a lone surrogate where a path expected an object)
    // no full tree can be built of either.
    if let Ok(text) = std::str::from_utf8(&request.body) {
        let valid = serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
        let full = serde_json::from_str::<serde_json::Value>(text);
        match deployed.programs.capture_payload(text) {
            Ok(captured) => {
                assert!(valid, "the capture accepted what validation refuses: {text:?}");
                // The trigger's form of the capture (values where paths
                // end) is made of exactly the texts the tree is.
                let kept = deployed.programs.capture_payload(text).map(|again| again.into_projected().is_ok());
                let built = captured.into_value();
                assert_eq!(kept.ok(), Some(built.is_ok()), "projected and built differ on {text:?}");
                // Both parsers stop at serde_json's depth limit; what both
                // read must agree on every path a program reads.
                if let (Ok(projected), Ok(full)) = (built, full) {
                    for path in ["/status", "/customer/email", "/id", "/tags"] {
                        assert_eq!(projected.pointer(path), full.pointer(path), "{path} of {text:?}");
                    }
                }
            }
            Err(_) => assert!(!valid || full.is_err(), "the capture refused a buildable body: {text:?}"),
        }
    }
});
