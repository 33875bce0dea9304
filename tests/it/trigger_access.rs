//! Who may trigger and how often (SPEC §4, §9), and serving through config
//! churn (SPEC §5): per-IP and organization limits behind a trusted proxy,
//! custom-header auth, credential expiry and rotation grace, and a thousand
//! snapshot swaps while triggers run.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hookplane_sdk::api;
use support::fixtures::mask;
use support::nodes::{applied, current_version, start_dev_node, start_node_configured};
use support::targets::{Behaviour, Target, post, trigger_path};
use support::triggers::{ORDER, create, mapped_connector, use_plan};
use support::{Backend, TestPlane, eventually};

/// A plan without rate limits, so tests that call often measure what they
/// mean to.
async fn unlimited(plane: &TestPlane) {
    use_plan(plane, api::Plan { name: "unlimited".into(), ..Default::default() }).await;
}

fn seconds(secs: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds: secs, nanos: 0 })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_limits_follow_the_trusted_proxy_and_org_limits_span_connectors() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let limited = api::Plan { name: "limited".into(), per_ip_per_minute: 3, org_per_minute: 5, ..Default::default() };
    use_plan(&plane, limited).await;
    let target = Target::start(Behaviour::Ok).await;
    let (first, first_token) = create(&plane, mapped_connector(&target.url(""))).await;
    let (second, second_token) = create(&plane, mapped_connector(&target.url(""))).await;
    let node = start_node_configured(&plane, "node-1", None, |c| {
        c.egress = hookplane_egress::EgressPolicy::public_only().with_loopback();
        c.ingress.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let address = node.http_address();
    let call = |id: &str, token: &str, client: &'static str| {
        let (path, bearer) = (trigger_path(id), format!("Bearer {token}"));
        async move { post(address, &path, &[("authorization", &bearer), ("x-forwarded-for", client)], ORDER).await }
    };

    // The per-IP limit counts every call from a client, authenticated or
    // not, across connectors.
    support::early_in_a_minute().await;
    assert_eq!(call(&first, "wrong", "203.0.113.7").await.status, 401);
    assert_eq!(call(&first, &first_token, "203.0.113.7").await.status, 200);
    assert_eq!(call(&second, &second_token, "203.0.113.7").await.status, 200);
    let refused = call(&second, &second_token, "203.0.113.7").await;
    assert_eq!((refused.status, refused.code()), (429, "ip_rate_limited"));
    assert!(refused.headers["retry-after"].parse::<u64>().unwrap() >= 1);
    assert_eq!(refused.headers["x-ratelimit-limit"], "3");
    assert_eq!(refused.headers["x-ratelimit-remaining"], "0");

    // Another client behind the same proxy has its own allowance; the
    // organization's five calls a minute are shared by both connectors.
    assert_eq!(call(&first, &first_token, "203.0.113.8").await.status, 200);
    assert_eq!(call(&second, &second_token, "203.0.113.8").await.status, 200);
    assert_eq!(call(&first, &first_token, "203.0.113.9").await.status, 200);
    let org = call(&second, &second_token, "203.0.113.9").await;
    assert_eq!((org.status, org.code()), (429, "organization_rate_limited"), "{:?}", org.body);
    assert_eq!(target.count(), 5);
    node.shutdown().await;

    // Without the trusted proxy the header is the sender's word, ignored:
    // every call is the loopback peer's.
    let plain = start_dev_node(&plane, "node-2").await;
    let path = trigger_path(&first);
    support::early_in_a_minute().await;
    for (n, client) in ["198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"].into_iter().enumerate() {
        let answer = post(plain.http_address(), &path, &[("x-forwarded-for", client)], ORDER).await;
        let expected = if n < 3 { 401 } else { 429 };
        assert_eq!(answer.status, expected, "call {n} from {client}");
    }
    plain.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_header_auth_needs_every_header_with_its_exact_value() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(Behaviour::Ok).await;
    let mut connector = mapped_connector(&target.url(""));
    let header = |name: &str, value: &str| api::CustomHeader { name: name.into(), value: value.into() };
    connector.auth = Some(api::InboundAuth {
        custom_headers: vec![header("X-Partner-Key", "pk-4f1c9e"), header("X-Partner-Id", "acme")],
        ..Default::default()
    });
    let (id, _) = create(&plane, connector).await;
    let stored = plane.admin.connectors().get_connector(api::GetConnectorRequest { id: id.clone() }).await.unwrap();
    assert!(!format!("{:?}", stored.into_inner()).contains("pk-4f1c9e"), "the value is never returned");
    let node = start_dev_node(&plane, "node-1").await;
    let path = trigger_path(&id);
    let both = post(node.http_address(), &path, &[("x-partner-key", "pk-4f1c9e"), ("x-partner-id", "acme")], ORDER);
    assert_eq!(both.await.status, 200);
    for headers in [
        vec![("x-partner-key", "pk-4f1c9e")],
        vec![("x-partner-key", "pk-4f1c9e"), ("x-partner-id", "ACME")],
        vec![("x-partner-key", "pk-4f1c9"), ("x-partner-id", "acme")],
        vec![("x-partner-key", ""), ("x-partner-id", "acme")],
        vec![],
    ] {
        let answer = post(node.http_address(), &path, &headers, ORDER).await;
        assert_eq!((answer.status, answer.code()), (401, "unauthenticated"), "{headers:?}");
    }
    assert_eq!(target.count(), 1);
    node.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_credentials_are_refused_and_rotated_ones_keep_working_through_the_grace_period() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    unlimited(&plane).await;
    let target = Target::start(Behaviour::Ok).await;
    let mut expiring = mapped_connector(&target.url(""));
    expiring.auth.as_mut().unwrap().token_ttl = seconds(3);
    let (short_lived, short_token) = create(&plane, expiring).await;
    let (rotating, old_token) = create(&plane, mapped_connector(&target.url(""))).await;
    let node = start_dev_node(&plane, "node-1").await;
    let address = node.http_address();
    let status = |id: &str, token: &str| {
        let (path, bearer) = (trigger_path(id), format!("Bearer {token}"));
        async move { post(address, &path, &[("authorization", &bearer)], ORDER).await.status }
    };

    assert_eq!(status(&short_lived, &short_token).await, 200, "a fresh credential works");
    eventually(Duration::from_secs(10), "the credential expires", || async {
        (status(&short_lived, &short_token).await == 401).then_some(())
    })
    .await;

    let rotated = plane
        .admin
        .connectors()
        .rotate_connector_tokens(api::RotateConnectorTokensRequest { id: rotating.clone(), grace_period: seconds(3) })
        .await
        .unwrap()
        .into_inner();
    let new_token = rotated.issued_credentials[0].token.clone();
    let old = rotated.tokens.iter().find(|t| t.superseded).expect("the replaced credential is listed");
    assert!(old.expire_time.is_some(), "it ends with the grace period");
    applied(&node, current_version(&plane).await).await;
    assert_eq!(status(&rotating, &new_token).await, 200);
    assert_eq!(status(&rotating, &old_token).await, 200, "the old credential works during the grace period");
    eventually(Duration::from_secs(10), "the grace period ends", || async {
        (status(&rotating, &old_token).await == 401).then_some(())
    })
    .await;
    assert_eq!(status(&rotating, &new_token).await, 200);

    // Without a grace period the old credential stops at once.
    let again = plane
        .admin
        .connectors()
        .rotate_connector_tokens(api::RotateConnectorTokensRequest { id: rotating.clone(), grace_period: None })
        .await
        .unwrap()
        .into_inner();
    applied(&node, current_version(&plane).await).await;
    assert_eq!(status(&rotating, &new_token).await, 401);
    assert_eq!(status(&rotating, &again.issued_credentials[0].token).await, 200);
    node.shutdown().await;
    plane.finish().await;
}

/// Triggers `id` in a loop until `stop`; counts answers by outcome.
async fn keep_triggering(
    address: std::net::SocketAddr,
    id: String,
    token: String,
    stop: Arc<AtomicBool>,
    completed: Arc<AtomicUsize>,
) -> Vec<String> {
    let (path, bearer) = (trigger_path(&id), format!("Bearer {token}"));
    let mut failures = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let answer = post(address, &path, &[("authorization", &bearer)], ORDER).await;
        if answer.status == 200 && answer.body["status"] == "completed" {
            completed.fetch_add(1, Ordering::Relaxed);
        } else {
            failures.push(format!("{} {}", answer.status, answer.body));
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_snapshot_swaps_under_load_fail_or_misroute_no_trigger() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    unlimited(&plane).await;
    let target = Target::start(Behaviour::Ok).await;
    let routed = |name: &str| {
        let mut connector = mapped_connector(&target.url(&format!("/{name}")));
        let body = &mut connector.perform.as_mut().unwrap().body;
        body.push(api::BodyField { key: "connector".into(), value: name.into(), ..Default::default() });
        connector
    };
    let (first, first_token) = create(&plane, routed("first")).await;
    let (second, second_token) = create(&plane, routed("second")).await;
    let (churned, _) = create(&plane, routed("churned")).await;
    let node = start_dev_node(&plane, "node-1").await;
    let stop = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for (id, token) in [(&first, &first_token), (&second, &second_token)].repeat(2) {
        let task = keep_triggering(node.http_address(), id.clone(), token.clone(), stop.clone(), completed.clone());
        load.push(tokio::spawn(task));
    }

    // Each change commits a new version; waiting for the node to apply it
    // makes every one a separate swap. Every tenth also rewrites a
    // connector under load.
    let mut connectors = plane.admin.connectors();
    for i in 0..1000 {
        let (id, name) = if i % 10 == 0 { (&first, "first") } else { (&churned, "churned") };
        let mut connector = routed(name);
        connector.id = id.clone();
        connector.display_name = format!("{name} v{i}");
        let update =
            api::UpdateConnectorRequest { connector: Some(connector), update_mask: mask(&["display_name", "perform"]) };
        connectors.update_connector(update).await.unwrap();
        applied(&node, current_version(&plane).await).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for task in load {
        failures.extend(task.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} triggers failed during the swaps, e.g. {:?}",
        failures.len(),
        &failures[..3.min(failures.len())]
    );
    let completed = completed.load(Ordering::Relaxed);
    assert!(completed >= 50, "the load kept running through the swaps ({completed} triggers)");
    let received = target.received();
    assert_eq!(received.len(), completed);
    for request in &received {
        let name = request.json()["connector"].as_str().unwrap().to_owned();
        assert!(request.uri.starts_with(&format!("/{name}/")), "{} carried {name}'s body", request.uri);
        assert_ne!(name, "churned", "nothing triggered the churned connector");
    }
    node.shutdown().await;
    plane.finish().await;
}
