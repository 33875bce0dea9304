//! Platform webhooks end to end (SPEC §8): subscriptions through the API,
//! connector changes delivered to real receivers on loopback, signatures
//! checked as receivers check them (the official `standardwebhooks`
//! library; Python's `hmac` for the hookplane scheme), retries, the
//! delivery log, resends, and replicas sharing the work. Where the other
//! platform events come from is `platform_events`.

use crate::support;

use std::collections::HashSet;
use std::time::Duration;

use hookplane_sdk::api;
use support::fixtures::mask;
use support::python::{Received as Delivered, verify_webhooks};
use support::targets::{Behaviour, Received, Target};
use support::triggers::{create, mapped_connector};
use support::webhooks::{ALL_CHANGES, change_a_connector, deliveries, settled, subscribe, subscription, verified};
use support::{Backend, TestPlane, eventually};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_changes_are_delivered_signed_in_either_scheme() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let (everything, only_created) = (Target::start(Behaviour::Ok).await, Target::start(Behaviour::Ok).await);
    let (all_id, all_secret) =
        subscribe(&plane.admin, everything.url("/hooks"), api::SignatureScheme::Hookplane, &[]).await;
    let (created_id, created_secret) = subscribe(
        &plane.admin,
        only_created.url("/sw"),
        api::SignatureScheme::StandardWebhooks,
        &["connector.created"],
    )
    .await;
    assert!(all_secret.starts_with("whsec_") && created_secret.starts_with("whsec_"));
    let connector = change_a_connector(&plane).await;

    everything.wait_for(4).await;
    only_created.wait_for(1).await;
    let received = everything.received();
    let types: HashSet<String> = received.iter().map(|r| r.json()["type"].as_str().unwrap().to_owned()).collect();
    assert_eq!(types, ALL_CHANGES.iter().map(|t| (*t).to_owned()).collect());
    for delivery in &received {
        let body = delivery.json();
        assert_eq!(delivery.method, "POST");
        assert_eq!(delivery.uri, "/hooks");
        assert_eq!(delivery.headers["content-type"], "application/json");
        assert_eq!(delivery.headers["x-webhook-id"], body["id"].as_str().unwrap());
        assert_eq!(delivery.headers["x-webhook-event"], body["type"].as_str().unwrap());
        chrono::DateTime::parse_from_rfc3339(&delivery.headers["x-webhook-timestamp"]).expect("RFC 3339");
        chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).expect("RFC 3339");
        assert_eq!(body["organization_id"], plane.organization_id.as_str());
        assert_eq!(body["data"]["connector"]["id"], connector.as_str());
        assert!(!delivery.body.windows(7).any(|w| w == b"secret\""), "no spec, no secret: {body}");
    }
    let standard = only_created.received();
    assert_eq!(standard[0].json()["type"], "connector.created");
    assert!(standard[0].headers.contains_key("webhook-signature") && !standard[0].headers.contains_key("x-webhook-id"));
    let mut checks: Vec<Delivered> = received.iter().map(|r| verified("hookplane", &all_secret, r)).collect();
    checks.push(verified("standard_webhooks", &created_secret, &standard[0]));
    let tampered = Received { body: bytes::Bytes::from("{}"), ..standard[0].clone() };
    checks.push(verified("standard_webhooks", &created_secret, &tampered));
    let results = verify_webhooks(&checks).await;
    assert!(results[..5].iter().all(Option::is_none), "{results:?}");
    assert!(results[5].is_some(), "a tampered body does not verify");

    // The log: every delivery succeeded at its first attempt; the
    // subscription filtered to `connector.created` got nothing else.
    let log = settled(&plane.admin, &all_id, 4).await;
    for delivery in &log {
        assert_eq!(delivery.status, api::DeliveryStatus::Succeeded as i32);
        assert_eq!(delivery.attempts.len(), 1);
        assert_eq!(delivery.attempts[0].status_code, 200);
        assert_eq!(delivery.attempts[0].response_excerpt, r#"{"ok":true}"#);
    }
    assert_eq!(settled(&plane.admin, &created_id, 1).await.len(), 1);
    assert_eq!(only_created.count(), 1, "unmatched types are not delivered");
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_keep_the_webhook_id_and_honour_retry_after() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let flaky = Target::start(Behaviour::FailFirst(2)).await;
    let slow_down = Target::start(Behaviour::TooManyFirst { n: 1, retry_after_secs: 1 }).await;
    let refused = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/gone", listener.local_addr().unwrap())
    };
    let created = ["connector.created"];
    let (flaky_id, _) = subscribe(&plane.admin, flaky.url("/"), api::SignatureScheme::Hookplane, &created).await;
    let (slow_id, _) = subscribe(&plane.admin, slow_down.url("/"), api::SignatureScheme::Hookplane, &created).await;
    let (refused_id, _) = subscribe(&plane.admin, refused, api::SignatureScheme::Hookplane, &created).await;
    create(&plane, mapped_connector("https://erp.example.com")).await;

    let log = settled(&plane.admin, &flaky_id, 1).await;
    let codes: Vec<i32> = log[0].attempts.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, [503, 503, 200]);
    assert_eq!(log[0].status, api::DeliveryStatus::Succeeded as i32);
    let ids: HashSet<String> = flaky.received().iter().map(|r| r.headers["x-webhook-id"].clone()).collect();
    assert_eq!((flaky.count(), ids.len()), (3, 1), "one webhook id across the attempts");
    assert_eq!(ids.into_iter().next().unwrap(), log[0].webhook_id);

    let log = settled(&plane.admin, &slow_id, 1).await;
    let times: Vec<_> = log[0].attempts.iter().map(|a| a.time.unwrap()).collect();
    let waited = (times[1].seconds - times[0].seconds) as f64 + f64::from(times[1].nanos - times[0].nanos) / 1e9;
    assert!(waited >= 0.99, "Retry-After: 1 honoured (waited {waited} s), not the 100 ms backoff");
    assert_eq!(log[0].attempts.iter().map(|a| a.status_code).collect::<Vec<_>>(), [429, 200]);

    let log = settled(&plane.admin, &refused_id, 1).await;
    assert_eq!(log[0].status, api::DeliveryStatus::Failed as i32);
    assert_eq!(log[0].attempts.len(), 3, "connection refused is retried, 3 attempts in all");
    assert!(log[0].attempts.iter().all(|a| a.status_code == 0 && a.error.contains("connection")), "{log:?}");

    // The control plane's metrics count each attempt by what it led to.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = plane.control_plane.clone();
    let server = tokio::spawn(async move { serving.serve_metrics(listener, async { drop(stopped.await) }).await });
    let text = support::nodes::http_get(address, "/metrics").await.1;
    let samples = support::python::parse_metrics(text).await;
    let count = |name: &str, outcome: Option<&str>| {
        samples
            .iter()
            .find(|s| s.name == name && outcome.is_none_or(|o| s.labels.get("outcome").map(String::as_str) == Some(o)))
            .map_or(0.0, |s| s.value)
    };
    assert_eq!(count("hookplane_webhook_attempts_total", Some("succeeded")), 2.0);
    assert_eq!(count("hookplane_webhook_attempts_total", Some("retrying")), 5.0, "2 + 1 + 2");
    assert_eq!(count("hookplane_webhook_attempts_total", Some("failed")), 1.0);
    assert_eq!(count("hookplane_outbox_depth", None), 0.0);
    let _ = stop.send(());
    server.await.unwrap();
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_not_worth_retrying_fail_at_once_and_410_disables() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let bad_request = Target::start(Behaviour::Status(400)).await;
    let gone = Target::start(Behaviour::Status(410)).await;
    let (bad_id, _) = subscribe(&plane.admin, bad_request.url("/"), api::SignatureScheme::Hookplane, &[]).await;
    let (gone_id, _) = subscribe(&plane.admin, gone.url("/"), api::SignatureScheme::Hookplane, &[]).await;
    create(&plane, mapped_connector("https://erp.example.com")).await;

    let log = settled(&plane.admin, &bad_id, 1).await;
    assert_eq!((log[0].status, log[0].attempts.len()), (api::DeliveryStatus::Failed as i32, 1));
    assert_eq!(log[0].attempts[0].error, "the endpoint answered 400 Bad Request");
    let log = settled(&plane.admin, &gone_id, 1).await;
    assert_eq!((log[0].status, log[0].attempts.len()), (api::DeliveryStatus::Failed as i32, 1));
    let get = api::GetSubscriptionRequest { id: gone_id.clone() };
    let disabled = plane.admin.subscriptions().get_subscription(get).await.unwrap().into_inner();
    assert!(!disabled.enabled);
    assert_eq!(disabled.disabled_reason, "the endpoint answered 410 Gone");

    // Disabled subscriptions receive nothing more, through the API's
    // switch too; resending to one is refused until it is enabled.
    let disable = api::DisableSubscriptionRequest { id: bad_id.clone() };
    assert!(!plane.admin.subscriptions().disable_subscription(disable).await.unwrap().into_inner().enabled);
    create(&plane, mapped_connector("https://erp.example.com")).await;
    let store = plane.control_plane.store();
    eventually(Duration::from_secs(10), "the event is fanned out", || async {
        (store.outbox_depth().await.unwrap() == 0).then_some(())
    })
    .await;
    let resend = api::ResendDeliveryRequest { id: log[0].id.clone() };
    let refused = plane.admin.subscriptions().resend_delivery(resend.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let enable = api::EnableSubscriptionRequest { id: gone_id.clone() };
    assert!(plane.admin.subscriptions().enable_subscription(enable).await.unwrap().into_inner().enabled);
    gone.set(Behaviour::Ok);
    plane.admin.subscriptions().resend_delivery(resend).await.unwrap();
    let log = eventually(Duration::from_secs(10), "the resend succeeds", || async {
        let log = deliveries(&plane.admin, &gone_id).await;
        (log[0].status == api::DeliveryStatus::Succeeded as i32).then_some(log)
    })
    .await;
    assert_eq!(log.len(), 1, "events while disabled were not queued for it");
    assert_eq!(log[0].attempts.iter().map(|a| a.status_code).collect::<Vec<_>>(), [410, 200]);
    assert_eq!((bad_request.count(), gone.count()), (1, 2));
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_signs_with_both_secrets_during_its_overlap_only() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let receiver = Target::start(Behaviour::Ok).await;
    let created = ["connector.created"];
    let (id, first) =
        subscribe(&plane.admin, receiver.url("/"), api::SignatureScheme::StandardWebhooks, &created).await;
    let overlap = Some(prost_types::Duration { seconds: 3600, nanos: 0 });
    let rotate = api::RotateSubscriptionSecretRequest { id: id.clone(), overlap };
    let rotated = plane.admin.subscriptions().rotate_subscription_secret(rotate).await.unwrap().into_inner();
    let second = rotated.secret;
    assert!(rotated.subscription.unwrap().previous_secret_expire_time.is_some());
    create(&plane, mapped_connector("https://erp.example.com")).await;
    receiver.wait_for(1).await;
    let rotate = api::RotateSubscriptionSecretRequest { id: id.clone(), overlap: None };
    let third = plane.admin.subscriptions().rotate_subscription_secret(rotate).await.unwrap().into_inner().secret;
    create(&plane, mapped_connector("https://erp.example.com")).await;
    receiver.wait_for(2).await;

    let received = receiver.received();
    let check = |secret, delivery| verified("standard_webhooks", secret, delivery);
    let results = verify_webhooks(&[
        check(&first, &received[0]),
        check(&second, &received[0]),
        check(&second, &received[1]),
        check(&third, &received[1]),
    ])
    .await;
    assert!(results[0].is_none() && results[1].is_none(), "both secrets during the overlap: {results:?}");
    assert!(results[2].is_some(), "a rotation without overlap ends the previous secret at once");
    assert!(results[3].is_none(), "{results:?}");
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_naming_the_field_and_nothing_is_stored() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let mut subscriptions = plane.admin.subscriptions();
    let cases = [
        (subscription("not a url".into(), api::SignatureScheme::Hookplane, &[]), "subscription.url"),
        (subscription("http://hooks.example.com/in".into(), api::SignatureScheme::Hookplane, &[]), "subscription.url"),
        (subscription("https://10.1.2.3/in".into(), api::SignatureScheme::Hookplane, &[]), "subscription.url"),
        (subscription("http://169.254.169.254/".into(), api::SignatureScheme::Hookplane, &[]), "subscription.url"),
        (
            subscription(
                "https://hooks.example.com/in".into(),
                api::SignatureScheme::Hookplane,
                &["connector.exploded"],
            ),
            "subscription.event_types[0]",
        ),
    ];
    for (request, field) in cases {
        let status = subscriptions.create_subscription(request.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{request:?}");
        let violations = hookplane_sdk::Error::from(status).violations().to_vec();
        assert_eq!(violations.iter().map(|v| v.field.as_str()).collect::<Vec<_>>(), [field], "{request:?}");
    }
    let listed = subscriptions.list_subscriptions(api::ListSubscriptionsRequest::default()).await.unwrap();
    assert!(listed.into_inner().subscriptions.is_empty(), "nothing stored");

    let receiver = Target::start(Behaviour::Ok).await;
    let (id, _) = subscribe(&plane.admin, receiver.url("/"), api::SignatureScheme::Hookplane, &[]).await;
    let zero = api::RotateSubscriptionSecretRequest { id: id.clone(), overlap: Some(prost_types::Duration::default()) };
    let status = subscriptions.rotate_subscription_secret(zero).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("overlap"), "{}", status.message());
    let (_, other) = plane.new_organization("other").await;
    let theirs = other.subscriptions().get_subscription(api::GetSubscriptionRequest { id: id.clone() }).await;
    assert_eq!(theirs.unwrap_err().code(), Code::NotFound, "another organization's subscription is not there");
    let request = api::ListDeliveriesRequest { subscription_id: id.clone(), ..Default::default() };
    assert_eq!(other.subscriptions().list_deliveries(request).await.unwrap_err().code(), Code::NotFound);

    // A change that fails writes no outbox row: no delivery for it.
    let (connector, _) = create(&plane, mapped_connector("https://erp.example.com")).await;
    let stale = api::Connector { id: connector, display_name: "x".into(), etag: "r99".into(), ..Default::default() };
    let update = api::UpdateConnectorRequest { connector: Some(stale), update_mask: mask(&["display_name"]) };
    assert_eq!(plane.admin.connectors().update_connector(update).await.unwrap_err().code(), Code::Aborted);
    let log = settled(&plane.admin, &id, 1).await;
    assert_eq!(log[0].event_type, "connector.created", "the failed update left nothing to deliver");
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_log_pages_filters_and_resends() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let receiver = Target::start(Behaviour::Ok).await;
    let (id, _) = subscribe(&plane.admin, receiver.url("/"), api::SignatureScheme::Hookplane, &[]).await;
    change_a_connector(&plane).await;
    let all = settled(&plane.admin, &id, 4).await;
    let time = |d: &api::Delivery| d.create_time.map(|t| (t.seconds, t.nanos));
    assert!(all.windows(2).all(|w| time(&w[0]) >= time(&w[1])), "newest first");

    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = api::ListDeliveriesRequest {
            subscription_id: id.clone(),
            page_size: 3,
            page_token: page_token.clone(),
            ..Default::default()
        };
        let page = plane.admin.subscriptions().list_deliveries(request).await.unwrap().into_inner();
        seen.extend(page.deliveries.into_iter().map(|d| d.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, all.iter().map(|d| d.id.clone()).collect::<Vec<_>>(), "pages cover the log once, in order");

    let request = api::ListDeliveriesRequest {
        subscription_id: id.clone(),
        event_type: "connector.updated".into(),
        status: api::DeliveryStatus::Succeeded as i32,
        ..Default::default()
    };
    let updated = plane.admin.subscriptions().list_deliveries(request).await.unwrap().into_inner().deliveries;
    assert_eq!(updated.len(), 1);
    let request = api::ListDeliveriesRequest {
        subscription_id: id.clone(),
        status: api::DeliveryStatus::Failed as i32,
        ..Default::default()
    };
    assert!(plane.admin.subscriptions().list_deliveries(request).await.unwrap().into_inner().deliveries.is_empty());

    let resend = api::ResendDeliveryRequest { id: updated[0].id.clone() };
    plane.admin.subscriptions().resend_delivery(resend).await.unwrap();
    receiver.wait_for(5).await;
    let again: Vec<_> =
        receiver.received().into_iter().filter(|r| r.headers["x-webhook-id"] == updated[0].webhook_id).collect();
    assert_eq!(again.len(), 2, "a resend is the same webhook id");
    assert_eq!(again[0].body, again[1].body, "byte for byte");
    let get = api::GetDeliveryRequest { id: updated[0].id.clone() };
    let after = eventually(Duration::from_secs(10), "the resend is logged", || async {
        let d = plane.admin.subscriptions().get_delivery(get.clone()).await.unwrap().into_inner();
        (d.attempts.len() == 2 && d.status == api::DeliveryStatus::Succeeded as i32).then_some(d)
    })
    .await;
    assert_eq!(after.attempts[1].status_code, 200);

    // Retention: settled deliveries older than the cutoff leave the log,
    // their attempts with them; a pending one stays whatever its age.
    let store = plane.control_plane.store();
    assert_eq!(store.prune_deliveries(hookplane_model::now() - chrono::TimeDelta::hours(1)).await.unwrap(), 0);
    let pending = Target::start(Behaviour::Hang).await;
    let (hanging, _) = subscribe(&plane.admin, pending.url("/"), api::SignatureScheme::Hookplane, &[]).await;
    create(&plane, mapped_connector("https://erp.example.com")).await;
    pending.wait_for(1).await;
    settled(&plane.admin, &id, 5).await;
    let pruned = store.prune_deliveries(hookplane_model::now() + chrono::TimeDelta::seconds(1)).await.unwrap();
    assert_eq!(pruned, 5, "the four settled deliveries of the first subscription and its new one");
    assert!(deliveries(&plane.admin, &id).await.is_empty());
    let get = api::GetDeliveryRequest { id: updated[0].id.clone() };
    assert_eq!(plane.admin.subscriptions().get_delivery(get).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(deliveries(&plane.admin, &hanging).await.len(), 1, "the pending delivery stays");
    plane.finish().await;
}

/// Two control planes on one PostgreSQL each run a dispatcher: every
/// delivery is made once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_postgres_deliver_each_attempt_once() {
    let plane = TestPlane::start(Backend::Postgres).await;
    let replica = plane.replica().await;
    let receiver = Target::start(Behaviour::Ok).await;
    let (id, _) = subscribe(&plane.admin, receiver.url("/"), api::SignatureScheme::Hookplane, &[]).await;
    for _ in 0..5 {
        change_a_connector(&plane).await;
    }
    let log = settled(&plane.admin, &id, 20).await;
    assert!(log.iter().all(|d| d.attempts.len() == 1 && d.status == api::DeliveryStatus::Succeeded as i32));
    receiver.wait_for(20).await;
    let ids: HashSet<String> = receiver.received().iter().map(|r| r.headers["x-webhook-id"].clone()).collect();
    assert_eq!((receiver.count(), ids.len()), (20, 20), "each event delivered once");
    replica.stop().await;
    plane.finish().await;
}

/// A subscription whose endpoint hangs holds its own 8 slots and nothing
/// more: another subscription's deliveries go out meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_delays_only_its_own_deliveries() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let (hanging, healthy) = (Target::start(Behaviour::Hang).await, Target::start(Behaviour::Ok).await);
    subscribe(&plane.admin, hanging.url("/"), api::SignatureScheme::Hookplane, &[]).await;
    let (id, _) = subscribe(&plane.admin, healthy.url("/"), api::SignatureScheme::Hookplane, &[]).await;
    for _ in 0..6 {
        change_a_connector(&plane).await;
    }
    // 24 deliveries each; the healthy endpoint gets all of its own while
    // the hanging one's first 8 attempts are still waiting on it.
    tokio::time::timeout(Duration::from_secs(2), healthy.wait_for(24)).await.expect("not held up by the other");
    assert!(hanging.count() <= 8, "at most 8 attempts in flight to one subscription: {}", hanging.count());
    assert_eq!(settled(&plane.admin, &id, 24).await.len(), 24);
    plane.finish().await;
}

/// What a tenant can pile up is bounded: 100 subscriptions (each event is
/// fanned out to all of them at once), and a delivery shows its latest 50
/// attempts however often it is resent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_pile_up_subscriptions_or_attempts() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let refusing = Target::start(Behaviour::Status(400)).await;
    let (id, _) = subscribe(&plane.admin, refusing.url("/"), api::SignatureScheme::Hookplane, &[]).await;
    let mut subscriptions = plane.admin.subscriptions();
    for _ in 1..hookplane_control_plane::store::MAX_SUBSCRIPTIONS {
        subscriptions
            .create_subscription(subscription(refusing.url("/x"), api::SignatureScheme::Hookplane, &["circuit.closed"]))
            .await
            .unwrap();
    }
    let over =
        subscriptions.create_subscription(subscription(refusing.url("/x"), api::SignatureScheme::Hookplane, &[])).await;
    assert_eq!(over.unwrap_err().code(), Code::ResourceExhausted);

    create(&plane, mapped_connector("https://erp.example.com")).await;
    let delivery = settled(&plane.admin, &id, 1).await.remove(0);
    for resent in 2..=55 {
        subscriptions.resend_delivery(api::ResendDeliveryRequest { id: delivery.id.clone() }).await.unwrap();
        let get = api::GetDeliveryRequest { id: delivery.id.clone() };
        let refusing = &refusing;
        eventually(Duration::from_secs(10), "the resend is made", || {
            let (mut subscriptions, get) = (plane.admin.subscriptions(), get.clone());
            async move {
                let d = subscriptions.get_delivery(get).await.ok()?.into_inner();
                (refusing.count() >= resent && d.status == api::DeliveryStatus::Failed as i32).then_some(())
            }
        })
        .await;
    }
    let shown = subscriptions.get_delivery(api::GetDeliveryRequest { id: delivery.id }).await.unwrap().into_inner();
    assert_eq!(shown.attempts.len(), 50, "the latest 50 of 55");
    let times: Vec<_> = shown.attempts.iter().map(|a| a.time.map(|t| (t.seconds, t.nanos))).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    plane.finish().await;
}
