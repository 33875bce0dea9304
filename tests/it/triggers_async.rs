//! Asynchronous mode end to end (SPEC §4): a real control plane, real
//! nodes with a cache dir and real target servers on loopback. A call
//! that passed every check is answered 202 and kept on the node's disk
//! until it ran, across restarts.

use crate::support;

use std::path::Path;
use std::time::Duration;

use hookplane_data_plane::{DataPlane, NodeConfig};
use hookplane_sdk::api;
use support::nodes::start_node_configured;
use support::targets::{Answer, Behaviour, Target, post, trigger_path};
use support::triggers::{ORDER, create, mapped_connector};
use support::{Backend, TestPlane, eventually};

/// A node that may call loopback targets and keeps its state in `cache`.
async fn node(plane: &TestPlane, cache: &Path, max_accepted_calls: usize) -> DataPlane {
    start_node_configured(plane, "node-1", Some(cache), |c: &mut NodeConfig| {
        c.egress = hookplane_egress::EgressPolicy::public_only().with_loopback();
        c.max_accepted_calls = max_accepted_calls;
    })
    .await
}

/// A control plane, a target answering as `behaviour`, an asynchronous
/// connector calling it (with its token) and a cache dir for the node.
struct Setup {
    plane: TestPlane,
    target: Target,
    id: String,
    token: String,
    cache: tempfile::TempDir,
}

async fn setup(behaviour: Behaviour) -> Setup {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(behaviour).await;
    let mut connector = mapped_connector(&target.url(""));
    connector.async_mode = true;
    let (id, token) = create(&plane, connector).await;
    Setup { plane, target, id, token, cache: tempfile::tempdir().unwrap() }
}

async fn trigger(node: &DataPlane, id: &str, token: &str) -> Answer {
    post(node.http_address(), &trigger_path(id), &[("authorization", &format!("Bearer {token}"))], ORDER).await
}

/// The files of calls kept and not run yet.
fn kept_files(cache: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(cache.join("accepted")) else { return Vec::new() };
    entries.filter_map(|e| Some(e.ok()?.path())).filter(|p| p.extension().is_some_and(|x| x == "call")).collect()
}

/// Waits until every kept call ran and was forgotten.
async fn all_forgotten(cache: &Path) {
    eventually(Duration::from_secs(5), "the kept calls are forgotten", || async {
        kept_files(cache).is_empty().then_some(())
    })
    .await;
}

/// Waits until event `id` is stored with `status`.
async fn stored_event(plane: &TestPlane, id: i64, status: api::EventStatus) -> api::Event {
    eventually(Duration::from_secs(10), "the accepted call's event", || async {
        let recorded = plane.admin.events().get_event(api::GetEventRequest { id }).await.ok()?.into_inner();
        (recorded.status == status as i32).then_some(recorded)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_connector_answers_202_and_performs_the_call_after() {
    let Setup { plane, target, id, token, cache } = setup(Behaviour::Ok).await;
    let node = node(&plane, cache.path(), 100).await;

    let answer = trigger(&node, &id, &token).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let event_id = answer.body["event_id"].as_i64().expect("an event id");
    assert_eq!(answer.body, serde_json::json!({"status": "accepted", "event_id": event_id}));
    assert!(answer.headers.contains_key("x-ratelimit-remaining"));

    target.wait_for(1).await;
    let received = &target.received()[0];
    assert_eq!((received.method.as_str(), received.uri.as_str()), ("PUT", "/orders/A-17?source=hookplane"));
    assert_eq!(received.json()["customer"]["email"], "ada@example.com");
    let recorded = stored_event(&plane, event_id, api::EventStatus::Completed).await;
    let trace = recorded.trace.expect("a trace");
    let request = trace.request.expect("the inbound request");
    assert_eq!(request.headers["authorization"], "[redacted]");
    assert_eq!(request.auth_method, "bearer_token");
    assert_eq!(trace.payload, ORDER);
    assert_eq!(trace.perform_attempts.len(), 1);
    all_forgotten(cache.path()).await;
    node.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_calls_survive_a_node_restart_and_keep_no_credentials() {
    let Setup { plane, target, id, token, cache } = setup(Behaviour::Hang).await;
    let first = node(&plane, cache.path(), 100).await;

    // The target hangs: the answer does not wait for the execution.
    let answer = trigger(&first, &id, &token).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let event_id = answer.body["event_id"].as_i64().unwrap();
    target.wait_for(1).await;
    let files = kept_files(cache.path());
    assert_eq!(files.len(), 1, "kept until it ran");
    let kept = std::fs::read(&files[0]).unwrap();
    assert!(!kept.windows(token.len()).any(|w| w == token.as_bytes()), "the caller's token is not on disk");
    first.shutdown().await;
    assert_eq!(kept_files(cache.path()).len(), 1, "a call cut off by the stop stays kept");

    target.set(Behaviour::Ok);
    let second = node(&plane, cache.path(), 100).await;
    let recorded = stored_event(&plane, event_id, api::EventStatus::Completed).await;
    assert_eq!(recorded.connector_id, id);
    assert!(target.count() >= 2, "the hung attempt, then the run after the restart");
    all_forgotten(cache.path()).await;
    second.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_come_before_keeping_and_a_full_inbox_sheds_with_503() {
    let Setup { plane, target: _target, id, token, cache } = setup(Behaviour::Hang).await;
    let node = node(&plane, cache.path(), 1).await;

    let wrong = trigger(&node, &id, "hpt_not-the-token").await;
    assert_eq!((wrong.status, wrong.code()), (401, "unauthenticated"));
    let bearer = format!("Bearer {token}");
    let invalid = post(node.http_address(), &trigger_path(&id), &[("authorization", &bearer)], "{not json").await;
    assert_eq!((invalid.status, invalid.code()), (400, "invalid_json"));
    assert!(kept_files(cache.path()).is_empty(), "refused calls are not kept");

    assert_eq!(trigger(&node, &id, &token).await.status, 202);
    let shed = trigger(&node, &id, &token).await;
    assert_eq!((shed.status, shed.code()), (503, "accepted_calls_full"), "{:?}", shed.body);
    assert_eq!(kept_files(cache.path()).len(), 1, "the shed call left nothing behind");
    node.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_connector_was_deleted_meanwhile_fails_its_event() {
    let Setup { plane, target, id, token, cache } = setup(Behaviour::Hang).await;
    let first = node(&plane, cache.path(), 100).await;
    let event_id = trigger(&first, &id, &token).await.body["event_id"].as_i64().unwrap();
    target.wait_for(1).await;
    first.shutdown().await;

    let mut connectors = plane.admin.connectors();
    let stored = connectors.get_connector(api::GetConnectorRequest { id: id.clone() }).await.unwrap().into_inner();
    connectors.delete_connector(api::DeleteConnectorRequest { id: id.clone(), etag: stored.etag }).await.unwrap();
    let second = node(&plane, cache.path(), 100).await;
    let recorded = stored_event(&plane, event_id, api::EventStatus::Failed).await;
    assert!(recorded.error.contains("deleted"), "{}", recorded.error);
    assert_eq!(recorded.trace.unwrap().payload, ORDER, "the event still shows what was sent");
    assert_eq!(target.count(), 1, "nothing more reached the target");
    second.shutdown().await;
    plane.finish().await;
}
