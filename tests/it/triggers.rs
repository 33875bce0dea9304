//! Trigger execution end to end (SPEC §4, §7, §11): a real control plane, a
//! real node and real target servers on loopback.

use crate::support;

use std::time::Duration;

use hookplane_data_plane::trigger::signature;
use hookplane_sdk::api;
use support::fixtures::{create_connector, secret};
use support::nodes::{applied, current_version, start_dev_node, start_node_configured};
use support::targets::{Behaviour, Target, post, trigger_path};
use support::triggers::{ORDER, create, event, mapped_connector, use_plan};
use support::{Backend, TestPlane, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_performs_the_mapped_request_and_records_a_redacted_event() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(Behaviour::Ok).await;
    plane.admin.secrets().create_secret(secret("TARGET_KEY", "tk-very-secret-value")).await.unwrap();
    let mut connector = mapped_connector(&target.url(""));
    let header = api::NamedTemplate { name: "X-Api-Key".into(), value: "$secret.TARGET_KEY".into() };
    connector.perform.as_mut().unwrap().headers.push(header);
    let (id, token) = create(&plane, connector).await;
    let node = start_dev_node(&plane, "node-1").await;
    let bearer = format!("Bearer {token}");

    let answer = post(node.http_address(), &trigger_path(&id), &[("authorization", &bearer)], ORDER).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "completed");
    assert_eq!(answer.body["response_code"], 200);
    assert!(answer.headers.contains_key("x-ratelimit-remaining"));
    let received = &target.received()[0];
    assert_eq!(received.method, "PUT");
    assert_eq!(received.uri, "/orders/A-17?source=hookplane");
    assert_eq!(received.headers["x-api-key"], "tk-very-secret-value");
    assert_eq!(received.headers["x-hookplane-depth"], "1");
    assert_eq!(received.headers["content-type"], "application/json");
    assert_eq!(
        received.json(),
        serde_json::json!({"customer": {"email": "ada@example.com"}, "amount": {"cents": 1250}, "note": "order A-17"})
    );

    let event_id = answer.body["event_id"].as_i64().unwrap();
    let recorded = event(&plane, event_id).await;
    assert_eq!(recorded.status, api::EventStatus::Completed as i32);
    assert_eq!(recorded.node_id, "node-1");
    let trace = recorded.trace.unwrap();
    assert_eq!(trace.condition_result, Some(true));
    assert_eq!(trace.request.as_ref().unwrap().auth_method, "bearer_token");
    assert_eq!(trace.perform_attempts.len(), 1);
    assert_eq!(trace.perform_attempts[0].status, Some(200));
    let text = format!("{trace:?}");
    assert!(!text.contains("tk-very-secret-value"), "the $secret value is redacted: {text}");
    assert!(!text.contains(&token), "the inbound token is redacted");
    assert!(text.contains("[redacted]"));

    let skipped = post(
        node.http_address(),
        &trigger_path(&id),
        &[("authorization", &bearer)],
        r#"{"id":"B","total":0,"customer":{"email":"x"}}"#,
    )
    .await;
    assert_eq!((skipped.status, skipped.body["status"].as_str()), (200, Some("skipped")));
    assert_eq!(target.count(), 1, "a false condition performs nothing");

    // Valid JSON, but a part a program reads nests past the parser's depth
    // limit: the payload cannot become the programs' tree.
    let deep = format!(r#"{{"id":"C","total":{}1{}}}"#, "[".repeat(200), "]".repeat(200));
    let refused = post(node.http_address(), &trigger_path(&id), &[("authorization", &bearer)], deep).await;
    assert_eq!((refused.status, refused.body["error"]["code"].as_str()), (400, Some("invalid_json")));
    assert_eq!(target.count(), 1);
    node.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_refuses_with_its_status_and_code() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(Behaviour::Ok).await;
    let mut connector = mapped_connector(&target.url(""));
    connector.allowed_origins = vec!["https://app.example.com".into()];
    let (id, token) = create(&plane, connector).await;
    let node = start_dev_node(&plane, "node-1").await;
    let address = node.http_address();
    let path = trigger_path(&id);
    let bearer = format!("Bearer {token}");
    let good: &[(&str, &str)] = &[("authorization", &bearer), ("origin", "https://app.example.com")];

    // (what, path, headers, body, status, code)
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, String, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        ("missing id", trigger_path(""), good.to_vec(), ORDER.into(), 400, "missing_connector_id"),
        ("unknown id", trigger_path("con_nope"), good.to_vec(), ORDER.into(), 404, "connector_not_found"),
        ("invalid JSON", path.clone(), good.to_vec(), "{\"id\":".into(), 400, "invalid_json"),
        ("loop", path.clone(), [good, &[("x-hookplane-depth", "6")]].concat(), ORDER.into(), 429, "loop_detected"),
        (
            "bad depth",
            path.clone(),
            [good, &[("x-hookplane-depth", "-1")]].concat(),
            ORDER.into(),
            400,
            "invalid_depth",
        ),
        ("no token", path.clone(), vec![("origin", "https://app.example.com")], ORDER.into(), 401, "unauthenticated"),
        (
            "wrong token",
            path.clone(),
            vec![("authorization", "Bearer hpt_wrong"), ("origin", "https://app.example.com")],
            ORDER.into(),
            401,
            "unauthenticated",
        ),
        (
            "other origin",
            path.clone(),
            vec![("authorization", &bearer), ("origin", "https://evil.example.com")],
            ORDER.into(),
            403,
            "origin_not_allowed",
        ),
        ("no origin", path.clone(), vec![("authorization", &bearer)], ORDER.into(), 403, "origin_not_allowed"),
    ];
    for (what, path, headers, body, status, code) in cases {
        let answer = post(address, &path, &headers, body).await;
        assert_eq!((answer.status, answer.code()), (status, code), "{what}: {:?}", answer.body);
        assert!(answer.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what} explains itself");
    }
    // Invalid UTF-8 is not JSON, even in a field no program of the
    // connector reads (the payload tree is built of read fields only).
    let not_utf8 = post(address, &path, good, bytes::Bytes::from_static(b"{\"id\":\"A\",\"notes\":\"\xff\"}")).await;
    assert_eq!((not_utf8.status, not_utf8.code()), (400, "invalid_json"), "{:?}", not_utf8.body);
    assert!(not_utf8.body["error"]["message"].as_str().is_some_and(|m| m.contains("UTF-8")));
    // A declared oversize body is refused before it is read; sent over a
    // raw socket so the client is not still writing when the answer comes.
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let head =
        format!("POST {path} HTTP/1.1\r\nHost: node\r\nAuthorization: {bearer}\r\nContent-Length: 2000000\r\n\r\n{{");
    tokio::io::AsyncWriteExt::write_all(&mut socket, head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::io::AsyncReadExt::read(&mut socket, &mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413") && answer.contains("payload_too_large"), "{answer}");
    let referer =
        post(address, &path, &[("authorization", &bearer), ("referer", "https://app.example.com/x")], ORDER).await;
    assert_eq!(referer.status, 200, "Referer stands in for Origin");
    assert_eq!(target.count(), 1, "no refused call reached the target");

    plane.admin.connectors().disable_connector(api::DisableConnectorRequest { id: id.clone() }).await.unwrap();
    applied(&node, current_version(&plane).await).await;
    let disabled = post(address, &path, good, ORDER).await;
    assert_eq!((disabled.status, disabled.code()), (404, "connector_not_found"));
    node.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_are_required_when_configured() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(Behaviour::Ok).await;
    let mut connector = mapped_connector(&target.url(""));
    connector.signature = Some(api::SignatureSettings {
        secret: "whsec-signing-key".into(),
        algorithm: api::SignatureAlgorithm::Sha256 as i32,
        encoding: api::SignatureEncoding::Hex as i32,
        prefix: "sha256=".into(),
        timestamp_header: "X-Webhook-Timestamp".into(),
        ..Default::default()
    });
    let (id, token) = create(&plane, connector).await;
    let node = start_dev_node(&plane, "node-1").await;
    let snapshot = node.snapshot();
    let settings = snapshot.connectors[&id].connector.spec.signature.clone().unwrap();
    let now = chrono::Utc::now().timestamp();
    let valid = signature::sign(&settings, b"whsec-signing-key", Some(now), ORDER.as_bytes());
    let bearer = format!("Bearer {token}");
    let stamp = now.to_string();
    let address = node.http_address();
    let call = |sig: String, ts: String| {
        let bearer = bearer.clone();
        let path = trigger_path(&id);
        async move {
            post(
                address,
                &path,
                &[("authorization", &bearer), ("x-webhook-signature", &sig), ("x-webhook-timestamp", &ts)],
                ORDER,
            )
            .await
        }
    };
    assert_eq!(call(valid.clone(), stamp.clone()).await.status, 200);
    for bad in ["".to_owned(), "sha256=".to_owned(), valid[..valid.len() - 4].to_owned(), valid.replace("sha256=", "")]
    {
        let answer = call(bad.clone(), stamp.clone()).await;
        assert_eq!((answer.status, answer.code()), (401, "invalid_signature"), "{bad:?}");
    }
    let stale = (now - 3600).to_string();
    let old = signature::sign(&settings, b"whsec-signing-key", Some(now - 3600), ORDER.as_bytes());
    assert_eq!(call(old, stale).await.code(), "invalid_signature", "a stale timestamp gets the one answer");
    assert_eq!(target.count(), 1);
    node.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_plan_and_the_breaker_opens_and_recovers() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(Behaviour::FailFirst(2)).await;
    let (id, token) = create(&plane, mapped_connector(&target.url(""))).await;
    plane.set_plan("starter").await;
    let node = start_node_configured(&plane, "node-1", None, |c| {
        c.egress = hookplane_egress::EgressPolicy::public_only().with_loopback();
        c.breaker.min_requests = 3;
        c.breaker.cooldown = Duration::from_millis(300);
    })
    .await;
    let bearer = format!("Bearer {token}");
    let address = node.http_address();
    let path = trigger_path(&id);

    let answer = post(address, &path, &[("authorization", &bearer)], ORDER).await;
    assert_eq!((answer.status, answer.body["status"].as_str()), (200, Some("completed")), "{:?}", answer.body);
    assert_eq!(target.count(), 3, "two 503s and a success: three attempts on the starter plan");
    let recorded = event(&plane, answer.body["event_id"].as_i64().unwrap()).await;
    let attempts: Vec<Option<i32>> = recorded.trace.unwrap().perform_attempts.iter().map(|a| a.status).collect();
    assert_eq!(attempts, vec![Some(503), Some(503), Some(200)]);

    plane.set_plan("free").await;
    applied(&node, current_version(&plane).await).await;
    target.set(Behaviour::AlwaysFail);
    let before = target.count();
    let failed = post(address, &path, &[("authorization", &bearer)], ORDER).await;
    assert_eq!((failed.status, failed.body["status"].as_str()), (500, Some("failed")));
    assert_eq!(failed.body["response_code"], 500);
    assert_eq!(target.count(), before + 1, "the free plan makes one attempt");

    // Four calls in the window, three failed: the breaker opened.
    let open = post(address, &path, &[("authorization", &bearer)], ORDER).await;
    assert_eq!(open.body["error"], "circuit_open", "{:?}", open.body);
    let reached = target.count();
    target.set(Behaviour::Ok);
    let recovered = eventually(Duration::from_secs(5), "the probe closes the breaker", || async {
        let answer = post(address, &path, &[("authorization", &bearer)], ORDER).await;
        (answer.body["status"] == "completed").then_some(answer)
    })
    .await;
    assert_eq!(recovered.status, 200);
    assert_eq!(target.count(), reached + 1, "while open nothing reached the target; the probe did");
    node.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ssrf_guard_refuses_private_targets_without_the_dev_allow_list() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(Behaviour::Ok).await;
    let port = target.address.port();
    let node = start_node_configured(&plane, "node-1", None, |_| {}).await;
    for url in [
        format!("http://127.0.0.1:{port}"),
        format!("http://[::ffff:127.0.0.1]:{port}"),
        format!("http://localhost:{port}"),
        "http://169.254.169.254".to_owned(),
        format!("http://2130706433:{port}"),
    ] {
        let (id, token) = create(&plane, mapped_connector(&url)).await;
        applied(&node, current_version(&plane).await).await;
        let answer =
            post(node.http_address(), &trigger_path(&id), &[("authorization", &format!("Bearer {token}"))], ORDER)
                .await;
        assert_eq!(answer.status, 500, "{url}: {:?}", answer.body);
        let error = answer.body["error"].as_str().unwrap();
        assert!(error.contains("SSRF") || error.contains("refused"), "{url}: {error}");
    }
    assert_eq!(target.count(), 0, "nothing reached the loopback target");
    node.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_limits_answer_429_with_retry_after_and_count_only_authenticated_calls() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let tiny = api::Plan {
        name: "tiny".into(),
        per_ip_per_minute: 100,
        per_connector_per_minute: 2,
        org_per_minute: 100,
        ..Default::default()
    };
    use_plan(&plane, tiny).await;
    let target = Target::start(Behaviour::Ok).await;
    let (id, token) = create(&plane, mapped_connector(&target.url(""))).await;
    let node = start_dev_node(&plane, "node-1").await;
    let path = trigger_path(&id);
    let bearer = format!("Bearer {token}");
    support::early_in_a_minute().await;
    for _ in 0..5 {
        let refused = post(node.http_address(), &path, &[("authorization", "Bearer wrong")], ORDER).await;
        assert_eq!(refused.status, 401);
    }
    for remaining in ["1", "0"] {
        let answer = post(node.http_address(), &path, &[("authorization", &bearer)], ORDER).await;
        assert_eq!(answer.status, 200, "unauthenticated calls did not use the connector's quota");
        assert_eq!(answer.headers["x-ratelimit-limit"], "2");
        assert_eq!(answer.headers["x-ratelimit-remaining"], remaining);
    }
    let unix_now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let before = unix_now();
    let limited = post(node.http_address(), &path, &[("authorization", &bearer)], ORDER).await;
    let after = unix_now();
    assert_eq!((limited.status, limited.code()), (429, "connector_rate_limited"));
    // Fixed windows: the refusal lasts to the end of this minute.
    let retry_after: u64 = limited.headers["retry-after"].parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let reset: u64 = limited.headers["x-ratelimit-reset"].parse().unwrap();
    assert_eq!(reset % 60, 0, "the window ends on a minute of the clock");
    assert!((before..=after).contains(&(reset - retry_after)), "Retry-After counts down to the reset");
    node.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_a_control_plane_outage_and_a_node_restart() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(Behaviour::Ok).await;
    let (id, token) = create(&plane, mapped_connector(&target.url(""))).await;
    let cache = tempfile::tempdir().unwrap();
    let loopback = |c: &mut hookplane_data_plane::NodeConfig| {
        c.egress = hookplane_egress::EgressPolicy::public_only().with_loopback();
    };
    let node = start_node_configured(&plane, "node-1", Some(cache.path()), loopback).await;
    let bearer = format!("Bearer {token}");
    // Let the write-behind cache hold the snapshot before the outage.
    eventually(Duration::from_secs(5), "the snapshot is cached", || async {
        cache.path().join("snapshot.sealed").exists().then_some(())
    })
    .await;
    let stopped = plane.stopped().await;
    let first = post(node.http_address(), &trigger_path(&id), &[("authorization", &bearer)], ORDER).await;
    assert_eq!(first.body["status"], "completed", "the node serves through the outage");
    node.shutdown().await;
    let node = hookplane_data_plane::DataPlane::start({
        let mut config = hookplane_data_plane::NodeConfig::new(
            "node-1".into(),
            stopped.url(),
            support::NODE_TOKEN.into(),
            "127.0.0.1:0".parse().unwrap(),
        );
        support::nodes::keep_in(&mut config, Some(cache.path()));
        loopback(&mut config);
        config
    })
    .await
    .unwrap();
    let second = post(node.http_address(), &trigger_path(&id), &[("authorization", &bearer)], ORDER).await;
    assert_eq!(second.body["status"], "completed", "a restarted node serves from its cache");
    let plane = stopped.start_again().await;
    for answer in [&first, &second] {
        let recorded = event(&plane, answer.body["event_id"].as_i64().unwrap()).await;
        assert_eq!(recorded.connector_id, id);
    }
    assert_ne!(first.body["event_id"], second.body["event_id"]);
    node.shutdown().await;
    plane.finish().await;
}

/// A control plane that stores events slower than the node answers:
/// beyond its limit the node's queue moves to its spool instead of growing
/// in memory, and once the control plane catches up every event is stored,
/// each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_control_plane_costs_the_node_disk_not_memory() {
    use sqlx::{Connection as _, Executor as _};
    const LIMIT: usize = 5;
    const TRIGGERS: usize = 30;
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(Behaviour::Ok).await;
    let (id, token) = create(&plane, mapped_connector(&target.url(""))).await;
    let cache = tempfile::tempdir().unwrap();
    let node = start_node_configured(&plane, "node-1", Some(cache.path()), |c| {
        c.egress = hookplane_egress::EgressPolicy::public_only().with_loopback();
        c.max_queued_events = LIMIT;
    })
    .await;
    let spooled = || std::fs::read_dir(cache.path().join("events")).map_or(0, |d| d.count());
    // Another connection holds SQLite's write lock: the control plane's
    // insert waits on it, and so does the ack of the batch in flight.
    let mut blocker = sqlx::SqliteConnection::connect(&plane.database.url).await.unwrap();
    blocker.execute("BEGIN IMMEDIATE").await.unwrap();
    let bearer = format!("Bearer {token}");
    let mut ids = Vec::new();
    for _ in 0..TRIGGERS {
        let answer = post(node.http_address(), &trigger_path(&id), &[("authorization", &bearer)], ORDER).await;
        assert_eq!(answer.body["status"], "completed");
        ids.push(answer.body["event_id"].as_i64().unwrap());
    }
    // Triggers are sent one after another, so the batch in flight is the
    // first one's event alone: the reporter was idle when it came.
    eventually(Duration::from_secs(5), "the queue is held to its limit", || async {
        (node.pending_events() <= LIMIT + 1 && spooled() > 0).then_some(())
    })
    .await;
    blocker.execute("ROLLBACK").await.unwrap();
    let mut stored: Vec<i64> = eventually(Duration::from_secs(10), "every event is stored", || async {
        let filter = api::EventFilter { connector_id: id.clone(), ..Default::default() };
        let events = plane.admin.list_all_events(Some(filter)).await.unwrap();
        (events.len() >= TRIGGERS).then(|| events.iter().map(|e| e.id).collect())
    })
    .await;
    stored.sort_unstable();
    ids.sort_unstable();
    assert_eq!(stored, ids, "each event once");
    eventually(Duration::from_secs(5), "the spool is empty", || async { (spooled() == 0).then_some(()) }).await;
    assert_eq!(node.pending_events(), 0);
    node.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_target_times_out_and_fails_the_event() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(Behaviour::Hang).await;
    let mut connector = mapped_connector(&target.url(""));
    connector.perform.as_mut().unwrap().timeout = Some(prost_types::Duration { seconds: 0, nanos: 300_000_000 });
    let (id, token) = create(&plane, connector).await;
    let node = start_dev_node(&plane, "node-1").await;
    let answer =
        post(node.http_address(), &trigger_path(&id), &[("authorization", &format!("Bearer {token}"))], ORDER).await;
    assert_eq!((answer.status, answer.body["status"].as_str()), (500, Some("failed")));
    assert!(answer.body["error"].as_str().unwrap().contains("no response within"), "{:?}", answer.body);
    assert_eq!(answer.body["response_code"], serde_json::Value::Null);
    node.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_inbound_auth_method_accepts_its_credential_and_refuses_others() {
    use base64::Engine as _;
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(Behaviour::Ok).await;
    let mut connector = mapped_connector(&target.url(""));
    connector.auth = Some(api::InboundAuth {
        bearer_token: false,
        secret_token: true,
        api_key: Some(api::ApiKeyAuth { location: api::ApiKeyLocation::Query as i32, name: "key".into() }),
        basic: Some(api::BasicAuth { username: "sender".into() }),
        ..Default::default()
    });
    let created = plane.admin.connectors().create_connector(create_connector(connector)).await.unwrap().into_inner();
    let token_of = |kind: api::TokenKind| {
        created.issued_credentials.iter().find(|c| c.kind == kind as i32).map(|c| c.token.clone()).unwrap()
    };
    let secret_token = token_of(api::TokenKind::SecretToken);
    let api_key = token_of(api::TokenKind::ApiKey);
    let password = token_of(api::TokenKind::BasicPassword);
    let node = start_dev_node(&plane, "node-1").await;
    let path = trigger_path(&created.id);
    let basic = |user: &str, pass: &str| {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))
    };
    let accepted: Vec<(String, Vec<(&str, String)>)> = vec![
        (path.clone(), vec![("x-secret-token", secret_token.clone())]),
        (format!("{path}?key={api_key}"), vec![]),
        (path.clone(), vec![("authorization", basic("sender", &password))]),
    ];
    for (path, headers) in &accepted {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = post(node.http_address(), path, &headers, ORDER).await;
        assert_eq!(answer.status, 200, "{path} {headers:?}: {:?}", answer.body);
    }
    let refused: Vec<(String, Vec<(&str, String)>)> = vec![
        (path.clone(), vec![("x-secret-token", api_key.clone())]),
        (format!("{path}?key={secret_token}"), vec![]),
        (path.clone(), vec![("authorization", basic("someone", &password))]),
        (path.clone(), vec![("authorization", basic("sender", &secret_token))]),
        (path.clone(), vec![("authorization", format!("Bearer {secret_token}"))]),
    ];
    for (path, headers) in &refused {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = post(node.http_address(), path, &headers, ORDER).await;
        assert_eq!((answer.status, answer.code()), (401, "unauthenticated"), "{path} {headers:?}");
    }
    assert_eq!(target.count(), 3);
    node.shutdown().await;
    plane.finish().await;
}

/// A node beside its control plane (`hookplane dev`) hands its events over
/// in process; an answered call's event is kept whatever the store does:
/// while it refuses, the batch is spooled, and stored once it takes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_beside_its_control_plane_hands_events_over_in_process() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(Behaviour::Ok).await;
    let (id, token) = create(&plane, mapped_connector(&target.url(""))).await;
    let refusing = Arc::new(AtomicBool::new(false));
    let handed = Arc::new(AtomicUsize::new(0));
    let local = {
        let (events, refusing, handed) = (plane.control_plane.events().clone(), refusing.clone(), handed.clone());
        hookplane_data_plane::events::LocalEvents::new(move |batch| {
            let (events, refusing, handed) = (events.clone(), refusing.clone(), handed.clone());
            async move {
                handed.fetch_add(batch.len(), Ordering::SeqCst);
                !refusing.load(Ordering::SeqCst) && events.ingest(batch).await.is_ok()
            }
        })
    };
    let cache = tempfile::tempdir().unwrap();
    let node = start_node_configured(&plane, "embedded", Some(cache.path()), |c| {
        c.egress = hookplane_egress::EgressPolicy::public_only().with_loopback();
        c.local_events = Some(local);
    })
    .await;
    let bearer = format!("Bearer {token}");
    let (path, headers) = (trigger_path(&id), [("authorization", bearer.as_str())]);

    let answer = post(node.http_address(), &path, &headers, ORDER).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let stored = event(&plane, answer.body["event_id"].as_i64().unwrap()).await;
    assert_eq!(stored.node_id, "embedded");
    assert!(handed.load(Ordering::SeqCst) >= 1, "handed over in process");

    refusing.store(true, Ordering::SeqCst);
    let kept = post(node.http_address(), &path, &headers, ORDER).await;
    assert_eq!(kept.status, 200, "answered: the event is on the node's disk");
    let id_kept = kept.body["event_id"].as_i64().unwrap();
    let missing = plane.admin.events().get_event(api::GetEventRequest { id: id_kept }).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound, "not stored while the store refuses");
    // A refusing store is retried with backoff, not in a loop. (A fixed
    // wait on purpose: what is measured is that little happens in it.)
    let before = handed.load(Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let tries = handed.load(Ordering::SeqCst) - before;
    assert!(tries <= 6, "{tries} hand-overs in 800 ms while the store refused");
    refusing.store(false, Ordering::SeqCst);
    event(&plane, id_kept).await;
    node.shutdown().await;
    plane.finish().await;
}
