//! The durability suite (SPEC §4: an answered 200/202 means the event will
//! exist): real `hookplane` processes under load, stopped with SIGTERM or
//! killed with SIGKILL, with the control plane up and down. Every event id
//! a node answered with must be stored, each once, after the processes
//! come back.

mod cluster;
mod load;
mod receiver;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use cluster::{Dev, Split, unlimited};
use hookplane_sdk::{Client, api};
use load::{Load, Target};

/// Rounds of each killing scenario: a crash lands somewhere else each time.
const ROUNDS: usize = 2;
/// Callers at once per connector.
const CLIENTS: usize = 8;

/// A connector posting to `target`, asynchronous or not; its id and token.
async fn connector(admin: &Client, target: &Target, async_mode: bool) -> (String, String) {
    let connector = api::Connector {
        display_name: if async_mode { "async".into() } else { "sync".into() },
        auth: Some(api::InboundAuth { bearer_token: true, ..Default::default() }),
        async_mode,
        mappings: vec![api::FieldMapping { name: "id".into(), expression: "$payload.id".into() }],
        perform: Some(api::Perform {
            method: "POST".into(),
            url: target.url(),
            body_type: api::BodyType::Json as i32,
            body: vec![api::BodyField { key: "id".into(), value: "$processed.id".into(), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let request = api::CreateConnectorRequest { connector: Some(connector), request_id: String::new() };
    let created = admin.connectors().create_connector(request).await.unwrap().into_inner();
    (created.id, created.issued_credentials[0].token.clone())
}

fn trigger(id: &str) -> String {
    format!("/api/v1/connectors/{id}/trigger")
}

/// Waits until the node at `http` serves connector `id` (it answers 401
/// without a token, not 404).
async fn served(http: std::net::SocketAddr, id: &str) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    for _ in 0..600 {
        let request = hyper::Request::post(format!("http://{http}{}", trigger(id)))
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
            .unwrap();
        if let Ok(response) = client.request(request).await
            && response.status() == 401
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the node never served {id}");
}

/// Every answered id is stored, once, and has run (`completed`).
async fn every_answered_event_is_stored(admin: &Client, connector: &str, answered: &[i64]) {
    assert!(!answered.is_empty());
    eprintln!("checking the {} answered events of {connector}", answered.len());
    let wanted: HashSet<i64> = answered.iter().copied().collect();
    assert_eq!(wanted.len(), answered.len(), "a node never answers two calls with one id");
    let mut last = Vec::new();
    for _ in 0..600 {
        let filter = api::EventFilter { connector_id: connector.to_owned(), ..Default::default() };
        let events = admin.list_all_events(Some(filter)).await.unwrap_or_default();
        let stored: Vec<i64> = events.iter().map(|e| e.id).collect();
        let unique: HashSet<i64> = stored.iter().copied().collect();
        assert_eq!(unique.len(), stored.len(), "an event is stored once");
        let done: HashSet<i64> =
            events.iter().filter(|e| e.status == api::EventStatus::Completed as i32).map(|e| e.id).collect();
        if wanted.is_subset(&done) {
            return;
        }
        last = wanted.difference(&done).copied().collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{} of {} answered events are not stored as completed, e.g. {:?}",
        last.len(),
        wanted.len(),
        &last[..last.len().min(5)]
    );
}

/// Sync and async connectors under load in `dev`, which is stopped by
/// `stop` once both answered `calls`; then `dev` starts again and every
/// answered event must be there.
async fn dev_round(dir: &Path, target: &Target, stop: impl FnOnce(cluster::Process), calls: usize) {
    let dev = Dev::start(dir);
    let (admin, operator) = dev.clients(dir).await;
    unlimited(&operator).await;
    let org = operator.organizations().list_organizations(api::ListOrganizationsRequest::default()).await.unwrap();
    let mut default = org.into_inner().organizations.remove(0);
    default.plan = "unlimited".into();
    let mask = prost_types::FieldMask { paths: vec!["plan".into()] };
    operator
        .organizations()
        .update_organization(api::UpdateOrganizationRequest { organization: Some(default), update_mask: Some(mask) })
        .await
        .unwrap();
    let (sync_id, sync_token) = connector(&admin, target, false).await;
    let (async_id, async_token) = connector(&admin, target, true).await;
    served(dev.http, &sync_id).await;
    served(dev.http, &async_id).await;
    let sync = Load::start(dev.http, trigger(&sync_id), &sync_token, CLIENTS, 200);
    let kept = Load::start(dev.http, trigger(&async_id), &async_token, CLIENTS, 202);
    sync.answered_at_least(calls).await;
    kept.answered_at_least(calls).await;
    stop(dev.process);
    let (sync, kept) = (sync.finish().await, kept.finish().await);
    let dev = Dev::start(dir);
    let (admin, _) = dev.clients(dir).await;
    every_answered_event_is_stored(&admin, &sync_id, &sync).await;
    every_answered_event_is_stored(&admin, &async_id, &kept).await;
    dev.process.terminate();
    // A clean stop closes the store: SQLite's log is checkpointed into the
    // database and removed, so the data directory holds one database file.
    let log = dir.join("hookplane.db-wal");
    assert!(!log.exists(), "{} outlives a clean stop", log.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dev_stopped_with_sigterm_under_load_keeps_every_answered_event() {
    let (dir, target) = (tempfile::tempdir().unwrap(), Target::start().await);
    dev_round(dir.path(), &target, cluster::Process::terminate, 150).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dev_killed_under_load_keeps_every_answered_event() {
    let (dir, target) = (tempfile::tempdir().unwrap(), Target::start().await);
    for round in 0..ROUNDS {
        // A crash lands in a different place each round.
        dev_round(dir.path(), &target, cluster::Process::kill, 100 + 75 * round).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_during_a_control_plane_outage_keeps_every_answered_event() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::start().await;
    let split = Split::prepare(dir.path());
    let control_plane = split.start_control_plane();
    let admin = split.organization().await;
    let (sync_id, sync_token) = connector(&admin, &target, false).await;
    let (async_id, async_token) = connector(&admin, &target, true).await;
    let mut control_plane = Some(control_plane);
    let mut node = split.start_node();
    for round in 0..ROUNDS {
        served(split.http, &sync_id).await;
        served(split.http, &async_id).await;
        let sync = Load::start(split.http, trigger(&sync_id), &sync_token, CLIENTS, 200);
        let kept = Load::start(split.http, trigger(&async_id), &async_token, CLIENTS, 202);
        sync.answered_at_least(50).await;
        kept.answered_at_least(50).await;
        // The control plane goes away; the node keeps answering, spooling
        // events and keeping calls on its disk, until it is killed too.
        control_plane.take().expect("running").kill();
        let (sync_before, kept_before) = (sync.count(), kept.count());
        sync.answered_at_least(sync_before + 100 + 50 * round).await;
        kept.answered_at_least(kept_before + 100).await;
        node.kill();
        let (sync, kept) = (sync.finish().await, kept.finish().await);
        control_plane = Some(split.start_control_plane());
        node = split.start_node();
        every_answered_event_is_stored(&admin, &sync_id, &sync).await;
        every_answered_event_is_stored(&admin, &async_id, &kept).await;
    }
    node.terminate();
    control_plane.expect("running").terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_stopped_with_sigterm_under_load_keeps_every_answered_event() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::start().await;
    let split = Split::prepare(dir.path());
    let control_plane = split.start_control_plane();
    let admin = split.organization().await;
    let (sync_id, sync_token) = connector(&admin, &target, false).await;
    let node = split.start_node();
    served(split.http, &sync_id).await;
    let sync = Load::start(split.http, trigger(&sync_id), &sync_token, CLIENTS * 2, 200);
    sync.answered_at_least(200).await;
    node.terminate();
    let answered = sync.finish().await;
    // Nothing was left to spool: the node drained into the control plane.
    let spooled = std::fs::read_dir(dir.path().join("node-cache/events")).map_or(0, |d| d.count());
    assert_eq!(spooled, 0, "a node stopped with the control plane up leaves no spooled batch");
    every_answered_event_is_stored(&admin, &sync_id, &answered).await;
    control_plane.terminate();
    let log = dir.path().join("control-plane.db-wal");
    assert!(!log.exists(), "{} outlives a clean stop", log.display());
}

/// Platform webhooks survive `kill -9` of the control plane between two
/// attempts and in the middle of one: the delivery, the attempts made and
/// the next one due are in the store, and the same webhook id arrives
/// until one attempt succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn platform_webhooks_survive_kill_9_between_and_during_attempts() {
    use receiver::{Answer, Receiver};
    let dir = tempfile::tempdir().unwrap();
    let settings = [("HOOKPLANE_WEBHOOK_RETRY_BASE_MS", "300"), ("HOOKPLANE_WEBHOOK_TIMEOUT_MS", "1000")];
    let receiver = Receiver::start(Answer::Unavailable).await;
    let dev = Dev::start_with(dir.path(), &settings);
    let (admin, _) = dev.clients(dir.path()).await;
    let subscription =
        api::Subscription { url: receiver.url(), event_types: vec!["connector.created".into()], ..Default::default() };
    let request = api::CreateSubscriptionRequest { subscription: Some(subscription), request_id: String::new() };
    let subscription = admin.subscriptions().create_subscription(request).await.unwrap().into_inner();
    let subscription_id = subscription.subscription.unwrap().id;
    connector(&admin, &Target::start().await, false).await;

    // Between attempts: the first was answered 503, the next is due.
    receiver.requests(1).await;
    dev.process.kill();
    receiver.answer(Answer::Hang);
    let dev = Dev::start_with(dir.path(), &settings);
    // During an attempt: the receiver holds the request when the process dies.
    receiver.requests(2).await;
    dev.process.kill();
    receiver.answer(Answer::Ok);
    let dev = Dev::start_with(dir.path(), &settings);
    let (admin, _) = dev.clients(dir.path()).await;

    let request = api::ListDeliveriesRequest { subscription_id, ..Default::default() };
    let mut delivery = None;
    for _ in 0..600 {
        let listed = admin.subscriptions().list_deliveries(request.clone()).await.unwrap().into_inner();
        if listed.deliveries.iter().any(|d| d.status == api::DeliveryStatus::Succeeded as i32) {
            delivery = listed.deliveries.into_iter().next();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivery = delivery.expect("the delivery succeeds after the restarts");
    let seen = receiver.seen();
    assert!(seen.iter().all(|(id, _)| *id == delivery.webhook_id), "one webhook id throughout: {seen:?}");
    assert_eq!(seen.last().unwrap().1, Answer::Ok);
    assert!(seen.len() >= 3, "503, the attempt cut short, then 200: {seen:?}");
    let codes: Vec<i32> = delivery.attempts.iter().map(|a| a.status_code).collect();
    assert_eq!(codes.first(), Some(&503));
    assert_eq!(codes.last(), Some(&200));
    dev.process.terminate();
}
