//! What the target receives (SPEC §7): each body type as built, a lookup
//! feeding the mappings, OAuth 2.0 tokens from a real token endpoint, and
//! the target's own 429 with `Retry-After`. Real planes, real loopback
//! servers.

use crate::support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use hookplane_sdk::api;
use support::nodes::start_dev_node;
use support::targets::{Behaviour, Target, post, trigger_path};
use support::triggers::{ORDER, create, event, mapped_connector, use_plan};
use support::{Backend, TestPlane};

fn field(key: &str, value: &str) -> api::BodyField {
    api::BodyField { key: key.into(), value: value.into(), ..Default::default() }
}

fn file(key: &str, value: &str, filename: &str, content_type: &str) -> api::BodyField {
    api::BodyField {
        key: key.into(),
        value: value.into(),
        file: true,
        filename: filename.into(),
        content_type: content_type.into(),
    }
}

/// A connector whose perform is `perform` against `target`, bearer auth.
fn performing(perform: api::Perform) -> api::Connector {
    api::Connector {
        display_name: "bodies".into(),
        auth: Some(api::InboundAuth { bearer_token: true, ..Default::default() }),
        perform: Some(perform),
        ..Default::default()
    }
}

/// Triggers `id` with `payload` and expects a completed execution.
async fn trigger(node: std::net::SocketAddr, id: &str, token: &str, payload: &str) -> support::targets::Answer {
    let answer =
        post(node, &trigger_path(id), &[("authorization", &format!("Bearer {token}"))], payload.to_owned()).await;
    assert_eq!((answer.status, answer.body["status"].as_str()), (200, Some("completed")), "{:?}", answer.body);
    answer
}

/// The parts of a multipart body: (name, filename, content type, bytes).
async fn multipart_parts(content_type: &str, body: Bytes) -> Vec<(String, Option<String>, Option<String>, Bytes)> {
    let boundary = multer::parse_boundary(content_type).expect("a multipart content type with a boundary");
    let stream = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut parts = Vec::new();
    while let Some(part) = multipart.next_field().await.expect("a well-formed multipart body") {
        let name = part.name().unwrap_or_default().to_owned();
        let filename = part.file_name().map(str::to_owned);
        let content_type = part.content_type().map(ToString::to_string);
        parts.push((name, filename, content_type, part.bytes().await.unwrap()));
    }
    parts
}

const INVOICE: &str = r#"{"id":"INV-9","customer":"Ada & Bob","note":null,
  "pdf":"JVBERi0xLjQK","scans":["AAEC","/w=="],"lines":[1,2]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_multipart_raw_and_empty_bodies_arrive_as_built() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(Behaviour::Ok).await;
    let url = target.url("/in");
    let form = api::Perform {
        url: url.clone(),
        body_type: api::BodyType::FormUrlencoded as i32,
        body: vec![field("invoice", "$payload.id"), field("who", "$payload.customer"), field("note", "$payload.note")],
        skip_null_values: true,
        ..Default::default()
    };
    let multipart = api::Perform {
        url: url.clone(),
        body_type: api::BodyType::Multipart as i32,
        body: vec![
            field("invoice", "$payload.id"),
            file("document", "$payload.pdf", "invoice.pdf", "application/pdf"),
            file("scans[]", "$payload.scans", "scan.bin", ""),
        ],
        ..Default::default()
    };
    let raw = api::Perform {
        url: url.clone(),
        body_type: api::BodyType::Raw as i32,
        raw_body: "<invoice id=\"$payload.id\">$payload.customer</invoice>".into(),
        raw_content_type: "application/xml".into(),
        ..Default::default()
    };
    let none = api::Perform {
        method: "DELETE".into(),
        url: format!("{url}/$payload.id"),
        body_type: api::BodyType::None as i32,
        ..Default::default()
    };
    let json_without_nulls = api::Perform {
        url: url.clone(),
        body: vec![field("id", "$payload.id"), field("note", "$payload.note"), field("lines", "$payload.lines")],
        skip_null_values: true,
        ..Default::default()
    };
    let mut ids = Vec::new();
    for perform in [form, multipart, raw, none, json_without_nulls] {
        ids.push(create(&plane, performing(perform)).await);
    }
    let node = start_dev_node(&plane, "node-1").await;
    for (id, token) in &ids {
        trigger(node.http_address(), id, token, INVOICE).await;
    }
    let received = target.received();
    assert_eq!(received.len(), 5);

    let form = &received[0];
    assert_eq!((form.method.as_str(), form.uri.as_str()), ("POST", "/in"));
    assert_eq!(form.headers["content-type"], "application/x-www-form-urlencoded");
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&form.body).into_owned().collect();
    assert_eq!(pairs, [("invoice".into(), "INV-9".into()), ("who".into(), "Ada & Bob".into())], "null skipped");

    let multipart = &received[1];
    let parts = multipart_parts(&multipart.headers["content-type"], multipart.body.clone()).await;
    let summary: Vec<(&str, Option<&str>, Option<&str>)> =
        parts.iter().map(|(n, f, c, _)| (n.as_str(), f.as_deref(), c.as_deref())).collect();
    assert_eq!(
        summary,
        [
            ("invoice", None, None),
            ("document", Some("invoice.pdf"), Some("application/pdf")),
            ("scans[]", Some("scan.bin"), Some("application/octet-stream")),
            ("scans[]", Some("scan-1.bin"), Some("application/octet-stream")),
        ]
    );
    assert_eq!(&parts[0].3[..], b"INV-9");
    assert_eq!(&parts[1].3[..], b"%PDF-1.4\n", "files are sent decoded from base64");
    assert_eq!((&parts[2].3[..], &parts[3].3[..]), (&[0u8, 1, 2][..], &[0xffu8][..]));

    let raw = &received[2];
    assert_eq!(raw.headers["content-type"], "application/xml");
    assert_eq!(&raw.body[..], b"<invoice id=\"INV-9\">Ada & Bob</invoice>");

    let none = &received[3];
    assert_eq!((none.method.as_str(), none.uri.as_str()), ("DELETE", "/in/INV-9"));
    assert!(none.body.is_empty() && !none.headers.contains_key("content-type"), "{none:?}");

    assert_eq!(received[4].json(), serde_json::json!({"id": "INV-9", "lines": [1, 2]}));
    node.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_base64_fails_the_event_and_sends_nothing() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(Behaviour::Ok).await;
    let (id, token) = create(
        &plane,
        performing(api::Perform {
            url: target.url("/in"),
            body_type: api::BodyType::Multipart as i32,
            body: vec![file("document", "$payload.customer", "x.pdf", "")],
            ..Default::default()
        }),
    )
    .await;
    let node = start_dev_node(&plane, "node-1").await;
    let answer =
        post(node.http_address(), &trigger_path(&id), &[("authorization", &format!("Bearer {token}"))], INVOICE).await;
    assert_eq!((answer.status, answer.body["status"].as_str()), (500, Some("failed")));
    let error = answer.body["error"].as_str().unwrap();
    assert!(error.contains("perform.body[0].value") && error.contains("base64"), "{error}");
    assert_eq!(target.count(), 0);
    node.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_answer_feeds_the_mappings_and_its_failure_fails_the_event() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let crm = Target::start(Behaviour::Lookup).await;
    let target = Target::start(Behaviour::Ok).await;
    let mut connector = mapped_connector(&target.url(""));
    connector.lookup = Some(api::Lookup {
        url: crm.url("/customers/$payload.id"),
        headers: vec![api::NamedTemplate { name: "X-Crm-Key".into(), value: "crm-key".into() }],
        query: vec![api::NamedTemplate { name: "expand".into(), value: "tier".into() }],
        ..Default::default()
    });
    connector.mappings.push(api::FieldMapping { name: "tier".into(), expression: "upper($lookup.tier)".into() });
    connector.perform.as_mut().unwrap().body.push(field("customer.tier", "$processed.tier"));
    let (id, token) = create(&plane, connector).await;
    let node = start_dev_node(&plane, "node-1").await;

    let answer = trigger(node.http_address(), &id, &token, ORDER).await;
    let asked = &crm.received()[0];
    assert_eq!((asked.method.as_str(), asked.uri.as_str()), ("GET", "/customers/A-17?expand=tier"));
    assert_eq!(asked.headers["x-crm-key"], "crm-key");
    assert_eq!(target.received()[0].json()["customer"]["tier"], "GOLD");
    let recorded = event(&plane, answer.body["event_id"].as_i64().unwrap()).await;
    let lookup = recorded.trace.unwrap().lookup.expect("the lookup is traced");
    assert_eq!(lookup.status, Some(200));
    assert!(lookup.response_excerpt.contains("gold"));

    crm.set(Behaviour::AlwaysFail);
    let failed =
        post(node.http_address(), &trigger_path(&id), &[("authorization", &format!("Bearer {token}"))], ORDER).await;
    assert_eq!((failed.status, failed.body["status"].as_str()), (500, Some("failed")));
    assert_eq!(failed.body["error"], "lookup failed: the lookup URL answered 500");
    assert_eq!(target.count(), 1, "a failed lookup performs nothing");
    node.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_tokens_come_from_the_token_endpoint_once_and_stay_out_of_events() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let issuer = Target::start(Behaviour::TokenEndpoint).await;
    let target = Target::start(Behaviour::Ok).await;
    let oauth = |grant: api::Oauth2Grant| {
        let mut connector = mapped_connector(&target.url(""));
        connector.perform.as_mut().unwrap().auth = Some(api::OutboundAuth {
            method: Some(api::outbound_auth::Method::Oauth2(api::OAuth2Outbound {
                token_url: issuer.url("/oauth/token"),
                client_id: "hookplane client".into(),
                client_secret: "cs-very-secret".into(),
                scopes: vec!["orders:write".into(), "orders:read".into()],
                grant: grant as i32,
                refresh_token: "rt-long-lived".into(),
                ..Default::default()
            })),
        });
        connector
    };
    let (id, token) = create(&plane, oauth(api::Oauth2Grant::ClientCredentials)).await;
    let node = start_dev_node(&plane, "node-1").await;

    let first = trigger(node.http_address(), &id, &token, ORDER).await;
    trigger(node.http_address(), &id, &token, ORDER).await;
    assert_eq!(issuer.count(), 1, "the token is cached until it expires");
    let asked = &issuer.received()[0];
    assert_eq!((asked.method.as_str(), asked.uri.as_str()), ("POST", "/oauth/token"));
    let basic = base64::engine::general_purpose::STANDARD.encode("hookplane+client:cs-very-secret");
    assert_eq!(asked.headers["authorization"], format!("Basic {basic}"), "RFC 6749 §2.3.1 client authentication");
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&asked.body).into_owned().collect();
    assert_eq!(
        form,
        [("grant_type".into(), "client_credentials".into()), ("scope".into(), "orders:write orders:read".into())]
    );
    for request in target.received() {
        assert_eq!(request.headers["authorization"], "Bearer at-1");
    }
    let trace = format!("{:?}", event(&plane, first.body["event_id"].as_i64().unwrap()).await.trace);
    assert!(!trace.contains("at-1") && !trace.contains("cs-very-secret"), "{trace}");

    let (refreshing, refresh_token) = create(&plane, oauth(api::Oauth2Grant::RefreshToken)).await;
    support::nodes::applied(&node, support::nodes::current_version(&plane).await).await;
    trigger(node.http_address(), &refreshing, &refresh_token, ORDER).await;
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&issuer.received()[1].body).into_owned().collect();
    assert_eq!(
        form[..2],
        [("grant_type".into(), "refresh_token".into()), ("refresh_token".into(), "rt-long-lived".into())]
    );
    assert_eq!(target.received()[2].headers["authorization"], "Bearer at-2", "each connector has its own token");

    issuer.set(Behaviour::AlwaysFail);
    let (refused, refused_token) = create(&plane, oauth(api::Oauth2Grant::ClientCredentials)).await;
    support::nodes::applied(&node, support::nodes::current_version(&plane).await).await;
    let failed = post(
        node.http_address(),
        &trigger_path(&refused),
        &[("authorization", &format!("Bearer {refused_token}"))],
        ORDER,
    )
    .await;
    assert_eq!((failed.status, failed.body["status"].as_str()), (500, Some("failed")));
    assert_eq!(failed.body["error"], "perform.auth.oauth2: token endpoint answered 500: broken");
    assert_eq!(target.count(), 3, "no token, no perform request");

    // An endpoint that echoes a refused request into its answer, which
    // the error quotes: no secret of it reaches the answer or the event.
    issuer.set(Behaviour::EchoRefusal);
    let (echoed, echoed_token) = create(&plane, oauth(api::Oauth2Grant::RefreshToken)).await;
    support::nodes::applied(&node, support::nodes::current_version(&plane).await).await;
    let bearer = format!("Bearer {echoed_token}");
    let failed = post(node.http_address(), &trigger_path(&echoed), &[("authorization", &bearer)], ORDER).await;
    assert_eq!(failed.status, 500, "{:?}", failed.body);
    let error = failed.body["error"].as_str().expect("an error").to_owned();
    assert!(error.starts_with("perform.auth.oauth2: token endpoint answered 400: "), "{error}");
    assert!(error.contains("grant_type=refresh_token"), "the answer is quoted: {error}");
    let recorded = event(&plane, failed.body["event_id"].as_i64().unwrap()).await;
    assert_eq!(recorded.error, error);
    for secret in ["rt-long-lived", "cs-very-secret", basic.as_str()] {
        assert!(!error.contains(secret), "{secret} in {error}");
    }
    node.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_429_is_retried_after_its_retry_after_and_a_long_one_ends_the_retries() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    use_plan(&plane, api::Plan { name: "retrying".into(), retries_enabled: true, ..Default::default() }).await;
    let target = Target::start(Behaviour::TooManyFirst { n: 1, retry_after_secs: 1 }).await;
    let (id, token) = create(&plane, mapped_connector(&target.url(""))).await;
    let node = start_dev_node(&plane, "node-1").await;

    let started = Instant::now();
    let answer = trigger(node.http_address(), &id, &token, ORDER).await;
    assert!(started.elapsed() >= Duration::from_secs(1), "the retry waited for Retry-After, not the 20 ms backoff");
    assert_eq!(target.count(), 2);
    let recorded = event(&plane, answer.body["event_id"].as_i64().unwrap()).await;
    let attempts: Vec<Option<i32>> = recorded.trace.unwrap().perform_attempts.iter().map(|a| a.status).collect();
    assert_eq!(attempts, [Some(429), Some(200)]);

    // A target asking for more than the 30 s cap gets no retry.
    target.set(Behaviour::TooManyFirst { n: u32::MAX, retry_after_secs: 120 });
    let before = target.count();
    let answer =
        post(node.http_address(), &trigger_path(&id), &[("authorization", &format!("Bearer {token}"))], ORDER).await;
    assert_eq!((answer.status, answer.body["status"].as_str()), (500, Some("failed")));
    assert_eq!(answer.body["response_code"], 429);
    assert_eq!(target.count(), before + 1);
    node.shutdown().await;
    plane.finish().await;
}
