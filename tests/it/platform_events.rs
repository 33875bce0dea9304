//! Where platform events come from besides connector changes (SPEC §8):
//! a failed call on a node, a node's circuit breakers, credentials about
//! to expire, and a test event on request; each delivered to a real
//! receiver and checked as one would.

use crate::support;

use std::collections::HashSet;
use std::time::Duration;

use hookplane_sdk::api;
use support::python::verify_webhooks;
use support::targets::{Behaviour, Target};
use support::triggers::{create, mapped_connector};
use support::webhooks::{settled, subscribe, subscription, verified};
use support::{Backend, TestPlane, eventually};
use tonic::Code;

/// A call that fails on a node becomes `event.failed` once its event is
/// stored; one that completes does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_call_is_delivered_as_event_failed() {
    use support::nodes::start_dev_node;
    use support::targets::{post, trigger_path};
    use support::triggers::ORDER;
    let plane = TestPlane::start(Backend::Sqlite).await;
    let receiver = Target::start(Behaviour::Ok).await;
    let (id, secret) =
        subscribe(&plane.admin, receiver.url("/"), api::SignatureScheme::Hookplane, &["event.failed"]).await;
    let broken = Target::start(Behaviour::AlwaysFail).await;
    let working = Target::start(Behaviour::Ok).await;
    let (failing, failing_token) = create(&plane, mapped_connector(&broken.url(""))).await;
    let (fine, fine_token) = create(&plane, mapped_connector(&working.url(""))).await;
    let node = start_dev_node(&plane, "node-1").await;
    let call = |connector: String, token: String| {
        let address = node.http_address();
        async move {
            post(address, &trigger_path(&connector), &[("authorization", &format!("Bearer {token}"))], ORDER).await
        }
    };
    assert_eq!(call(fine, fine_token).await.status, 200);
    let failed = call(failing.clone(), failing_token).await;
    assert_eq!(failed.body["status"], "failed", "{:?}", failed.body);

    receiver.wait_for(1).await;
    let delivered = &receiver.received()[0];
    let body = delivered.json();
    assert_eq!(body["type"], "event.failed");
    assert_eq!(body["data"]["event"]["connector_id"], failing.as_str());
    assert_eq!(body["data"]["event"]["id"], failed.body["event_id"].to_string().trim_matches('"'));
    assert_eq!(body["data"]["event"]["response_code"], 500);
    assert!(verify_webhooks(&[verified("hookplane", &secret, delivered)]).await[0].is_none());
    assert_eq!(settled(&plane.admin, &id, 1).await.len(), 1, "only the failed call");
    node.shutdown().await;
    plane.finish().await;
}

/// Credentials expiring within 7 days are told of once each, across
/// restarts; ones further out, and ones a rotation superseded, are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_credentials_are_told_of_once() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let receiver = Target::start(Behaviour::Ok).await;
    let types = ["connector.token_expiring"];
    subscribe(&plane.admin, receiver.url("/"), api::SignatureScheme::Hookplane, &types).await;
    let expiring = |days: i64| {
        let mut connector = mapped_connector("https://erp.example.com");
        connector.auth.as_mut().unwrap().token_ttl = Some(prost_types::Duration { seconds: days * 86_400, nanos: 0 });
        connector
    };
    let (soon, _) = create(&plane, expiring(2)).await;
    create(&plane, expiring(30)).await;
    receiver.wait_for(1).await;
    let body = receiver.received()[0].json();
    assert_eq!(body["type"], "connector.token_expiring");
    assert_eq!(body["data"]["connector"]["id"], soon.as_str());
    assert!(body["data"]["token"]["hint"].as_str().unwrap().starts_with("hpt_"), "{body}");
    chrono::DateTime::parse_from_rfc3339(body["data"]["token"]["expire_time"].as_str().unwrap()).unwrap();

    // Rotating with a grace period supersedes the told-of credential (not
    // told again) and mints one expiring in 2 days (told of).
    let grace = Some(prost_types::Duration { seconds: 3600, nanos: 0 });
    let rotate = api::RotateConnectorTokensRequest { id: soon.clone(), grace_period: grace };
    plane.admin.connectors().rotate_connector_tokens(rotate).await.unwrap();
    receiver.wait_for(2).await;
    let plane = plane.restart().await;
    let (later, _) = create(&plane, expiring(3)).await;
    receiver.wait_for(3).await;
    let received = receiver.received();
    assert_eq!(received[2].json()["data"]["connector"]["id"], later.as_str());
    let tokens: HashSet<String> =
        received.iter().map(|r| r.json()["data"]["token"]["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(tokens.len(), 3, "each credential once, the restart notwithstanding");
    assert_eq!(receiver.count(), 3);
    plane.finish().await;
}

/// A breaker opening on a node, and a probe closing it, reach the
/// connector's organization as `circuit.opened` and `circuit.closed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_transitions_on_a_node_are_delivered() {
    use hookplane_data_plane::BreakerSettings;
    use support::nodes::start_node_configured;
    use support::targets::{post, trigger_path};
    use support::triggers::ORDER;
    let plane = TestPlane::start(Backend::Sqlite).await;
    let receiver = Target::start(Behaviour::Ok).await;
    let types = ["circuit.opened", "circuit.closed"];
    let (id, _) = subscribe(&plane.admin, receiver.url("/"), api::SignatureScheme::Hookplane, &types).await;
    let target = Target::start(Behaviour::AlwaysFail).await;
    // A bot token in the path, as chat APIs take it: never in the notice.
    let bot = support::fixtures::secret("BOT", "bot-token-1234567890");
    plane.admin.secrets().create_secret(bot).await.unwrap();
    let mut failing = mapped_connector(&target.url("/bot$secret.BOT"));
    failing.perform.as_mut().unwrap().url = target.url("/bot$secret.BOT/orders/$payload.id");
    let (connector, token) = create(&plane, failing).await;
    let node = start_node_configured(&plane, "node-1", None, |config| {
        config.egress = hookplane_egress::EgressPolicy::public_only().with_loopback();
        config.breaker = BreakerSettings {
            window: Duration::from_secs(60),
            min_requests: 2,
            failure_rate: 0.5,
            cooldown: Duration::from_millis(300),
        };
    })
    .await;
    let (address, path, bearer) = (node.http_address(), trigger_path(&connector), format!("Bearer {token}"));
    let call = || {
        let (path, bearer) = (path.clone(), bearer.clone());
        async move { post(address, &path, &[("authorization", bearer.as_str())], ORDER).await }
    };
    call().await;
    call().await;
    receiver.wait_for(1).await;
    let opened = receiver.received()[0].json();
    assert_eq!(opened["type"], "circuit.opened");
    assert_eq!(opened["data"]["circuit"]["connector_id"], connector.as_str());
    assert_eq!(opened["data"]["circuit"]["state"], "open");
    let url = opened["data"]["circuit"]["target"].as_str().unwrap().to_owned();
    assert_eq!(url, target.url(""), "the target's origin alone: no path, so no secret in it");

    target.set(Behaviour::Ok);
    eventually(Duration::from_secs(10), "a probe closes the breaker", || async {
        (call().await.body["status"] == "completed").then_some(())
    })
    .await;
    receiver.wait_for(2).await;
    let closed = receiver.received()[1].json();
    assert_eq!(closed["type"], "circuit.closed");
    assert_eq!(closed["data"]["circuit"]["target"], url.as_str());
    assert_eq!(settled(&plane.admin, &id, 2).await.len(), 2);
    node.shutdown().await;
    plane.finish().await;
}

/// `SendTestEvent` delivers `webhook.test` to one subscription, whatever
/// the types it chose, signed and logged like any other delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_event_reaches_one_subscription() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let (receiver, other) = (Target::start(Behaviour::Ok).await, Target::start(Behaviour::Ok).await);
    let created = ["connector.created"];
    let (id, secret) =
        subscribe(&plane.admin, receiver.url("/"), api::SignatureScheme::StandardWebhooks, &created).await;
    subscribe(&plane.admin, other.url("/"), api::SignatureScheme::Hookplane, &[]).await;
    let mut subscriptions = plane.admin.subscriptions();
    let sent = subscriptions.send_test_event(api::SendTestEventRequest { id: id.clone() }).await.unwrap().into_inner();
    assert_eq!((sent.event_type.as_str(), sent.subscription_id.as_str()), ("webhook.test", id.as_str()));
    receiver.wait_for(1).await;
    let delivered = &receiver.received()[0];
    assert_eq!(delivered.json()["type"], "webhook.test");
    assert_eq!(delivered.json()["data"]["subscription_id"], id.as_str());
    assert!(verify_webhooks(&[verified("standard_webhooks", &secret, delivered)]).await[0].is_none());
    assert_eq!(settled(&plane.admin, &id, 1).await[0].status, api::DeliveryStatus::Succeeded as i32);
    assert_eq!(other.count(), 0, "to that subscription alone");

    let mut request = subscription(receiver.url("/"), api::SignatureScheme::Hookplane, &["webhook.test"]);
    request.request_id.clear();
    let refused = subscriptions.create_subscription(request).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "webhook.test is not subscribed to");
    subscriptions.disable_subscription(api::DisableSubscriptionRequest { id: id.clone() }).await.unwrap();
    let disabled = subscriptions.send_test_event(api::SendTestEventRequest { id }).await.unwrap_err();
    assert_eq!(disabled.code(), Code::FailedPrecondition);
    plane.finish().await;
}
