//! A node's `/metrics` and its control plane's after known traffic, read
//! by Prometheus's own parser (`support::python::parse_metrics`), with the
//! counts asserted.

use crate::support;

use hookplane_sdk::api;
use support::nodes::{current_version, http_get};
use support::python::{Sample, parse_metrics};
use support::targets::{Behaviour, Target, post, trigger_path};
use support::triggers::{ORDER, create, mapped_connector, use_plan};
use support::{Backend, TestPlane};

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .unwrap_or_else(|| panic!("no sample {name} {labels:?} in {samples:#?}"))
        .value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_traffic_and_parse_as_prometheus_reads_them() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let two =
        api::Plan { name: "two".into(), per_connector_per_minute: 2, retries_enabled: true, ..Default::default() };
    use_plan(&plane, two).await;
    // The first perform is answered 503 and retried.
    let target = Target::start(Behaviour::FailFirst(1)).await;
    let (id, token) = create(&plane, mapped_connector(&target.url(""))).await;
    let node = support::nodes::start_node_configured(&plane, "node-1", None, |config| {
        config.egress = hookplane_egress::EgressPolicy::public_only().with_loopback();
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let (address, path, bearer) = (node.http_address(), trigger_path(&id), format!("Bearer {token}"));
    support::early_in_a_minute().await;
    for _ in 0..3 {
        post(address, &path, &[("authorization", &bearer)], ORDER).await;
    }
    post(address, &path, &[("authorization", "Bearer wrong")], ORDER).await;
    post(address, "/api/v1/connectors/con_nope/trigger", &[], ORDER).await;

    assert_eq!(http_get(address, "/metrics").await.0, 404, "never on the senders' port");
    let (status, text) = http_get(node.metrics_address().expect("a metrics port"), "/metrics").await;
    assert_eq!(status, 200);
    let samples = parse_metrics(text).await;
    let answers = "hookplane_trigger_requests_total";
    assert_eq!(value(&samples, answers, &[("outcome", "completed"), ("code", "none")]), 2.0);
    assert_eq!(value(&samples, answers, &[("outcome", "refused"), ("code", "connector_rate_limited")]), 1.0);
    assert_eq!(value(&samples, answers, &[("outcome", "refused"), ("code", "unauthenticated")]), 1.0);
    assert_eq!(value(&samples, answers, &[("outcome", "refused"), ("code", "connector_not_found")]), 1.0);
    let decisions = "hookplane_limit_decisions_total";
    assert_eq!(value(&samples, decisions, &[("scope", "client_ip"), ("decision", "admitted")]), 4.0);
    assert_eq!(value(&samples, decisions, &[("scope", "connector"), ("decision", "refused")]), 1.0);
    assert_eq!(value(&samples, "hookplane_perform_attempts_total", &[("status", "2xx")]), 2.0);
    assert_eq!(value(&samples, "hookplane_perform_attempts_total", &[("status", "5xx")]), 1.0);
    assert_eq!(value(&samples, "hookplane_perform_retries_total", &[]), 1.0);
    // One failure in ten calls' window opens nothing.
    assert_eq!(value(&samples, "hookplane_circuits_open", &[]), 0.0);
    assert_eq!(value(&samples, "hookplane_circuits_opened_total", &[]), 0.0);
    assert!(value(&samples, "hookplane_config_apply_seconds_count", &[]) >= 1.0, "the first snapshot at least");
    assert_eq!(value(&samples, "hookplane_trigger_duration_seconds_count", &[("outcome", "completed")]), 2.0);
    assert_eq!(value(&samples, "hookplane_config_version", &[]), current_version(&plane).await as f64);
    assert_eq!(value(&samples, "hookplane_connectors", &[]), 1.0);
    assert_eq!(value(&samples, "hookplane_connected", &[]), 1.0);

    // The control plane's, on a port of their own.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = plane.control_plane.clone();
    let server = tokio::spawn(async move { serving.serve_metrics(listener, async { drop(stopped.await) }).await });
    let version = current_version(&plane).await as f64;
    // Events may have been spooled and reported later: wait for both.
    let samples =
        support::eventually(std::time::Duration::from_secs(20), "the node current, its events in", || async {
            let samples = parse_metrics(http_get(metrics_address, "/metrics").await.1).await;
            let current = value(&samples, "hookplane_node_lag", &[("node", "node-1")]) == 0.0;
            (current && value(&samples, "hookplane_events_ingested_total", &[]) >= 2.0).then_some(samples)
        })
        .await;
    assert_eq!(value(&samples, "hookplane_events_ingested_total", &[]), 2.0, "the two completed calls' events");
    assert_eq!(value(&samples, "hookplane_sync_streams", &[]), 1.0);
    assert_eq!(value(&samples, "hookplane_nodes_connected", &[]), 1.0);
    assert_eq!(value(&samples, "hookplane_config_version", &[]), version);
    let timed = "hookplane_store_operation_seconds_count";
    assert!(value(&samples, timed, &[("operation", "insert_events")]) >= 1.0);
    assert!(value(&samples, timed, &[("operation", "config_delta")]) >= 1.0, "the node's first update");
    assert_eq!(http_get(metrics_address, "/other").await.0, 404);
    let _ = stop.send(());
    server.await.unwrap();
    node.shutdown().await;
    plane.finish().await;
}
