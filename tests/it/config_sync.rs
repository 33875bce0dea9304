//! Config sync end to end (SPEC §5): a real control plane and real nodes
//! over the gRPC stream, all in-process on port 0.

use crate::support;

use std::time::Duration;

use hookplane_model::{self as model, Connector};
use hookplane_sdk::api;
use support::fixtures::{connector, create_connector, mask, secret};
use support::nodes::{applied, current_version, http_get, start_node, start_node_with_token};
use support::{Backend, TestPlane, eventually};

on_both_stores!(changes_reach_every_node_and_the_api_lists_them);

async fn changes_reach_every_node_and_the_api_lists_them(backend: Backend) {
    let plane = TestPlane::start(backend).await;
    let nodes = [
        start_node(&plane.url(), "node-a", None).await,
        start_node(&plane.url(), "node-b", None).await,
        start_node(&plane.url(), "node-c", None).await,
    ];
    let created =
        plane.admin.connectors().create_connector(create_connector(connector("fleet"))).await.unwrap().into_inner();
    plane.admin.secrets().create_secret(secret("TOKEN", "fleet-secret")).await.unwrap();
    let version = current_version(&plane).await;
    for node in &nodes {
        applied(node, version).await;
        let snapshot = node.snapshot();
        let deployed = &snapshot.connectors[&created.id];
        assert_eq!(deployed.connector.spec.display_name, "fleet");
        let token = &created.issued_credentials[0].token;
        let hash = hookplane_control_plane::crypto::hash_credential(token);
        let mut digest = [0u8; 32];
        hex::decode_to_slice(&hash, &mut digest).unwrap();
        assert!(deployed.credential(model::TokenKind::Bearer, &digest).is_some(), "credential hashes arrive");
        assert!(deployed.credential(model::TokenKind::ApiKey, &digest).is_none(), "kinds do not mix");
        assert_eq!(
            snapshot.secrets[&(plane.organization_id.clone(), "TOKEN".to_owned())].0.as_deref(),
            Some("fleet-secret")
        );
        let (status, body) = http_get(node.http_address(), "/readyz").await;
        assert_eq!(status, 200);
        assert!(body.contains(&format!("\"config_version\":{version}")), "{body}");
    }

    let listed = eventually(Duration::from_secs(10), "every node to report the version", || async {
        let nodes = plane.admin.nodes().list_nodes(api::ListNodesRequest::default()).await.unwrap().into_inner();
        (nodes.nodes.len() == 3 && nodes.nodes.iter().all(|n| n.applied_config_version == version && n.connected))
            .then_some(nodes)
    })
    .await;
    assert_eq!(listed.current_config_version, version);
    assert!(listed.nodes.iter().all(|n| n.lag == 0 && !n.address.is_empty()));

    let update = api::UpdateConnectorRequest {
        connector: Some(api::Connector {
            id: created.id.clone(),
            display_name: "fleet v2".into(),
            ..Default::default()
        }),
        update_mask: mask(&["display_name"]),
    };
    plane.admin.connectors().update_connector(update).await.unwrap();
    plane
        .admin
        .connectors()
        .delete_connector(api::DeleteConnectorRequest { id: created.id.clone(), etag: String::new() })
        .await
        .unwrap();
    let version = current_version(&plane).await;
    for node in &nodes {
        applied(node, version).await;
        assert!(!node.snapshot().connectors.contains_key(&created.id), "deletions reach the nodes");
        let (full, deltas) = node.state().updates_received();
        assert_eq!(full, 1, "only the first update is a full snapshot");
        assert!(deltas >= 1);
    }
    for node in nodes {
        node.shutdown().await;
    }
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_connector_is_rejected_alone_and_not_resent() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let good =
        plane.admin.connectors().create_connector(create_connector(connector("good"))).await.unwrap().into_inner();
    // A connector this node cannot serve, as a newer control plane might
    // write: stored directly, bypassing the API's validation.
    let mut stored = plane.control_plane.store().get_connector(&plane.organization_id, &good.id).await.unwrap();
    stored.id = "con_brokenBrokenBroken0000".to_owned();
    stored.spec.perform.url = String::new();
    stored.tokens.clear();
    let broken = Connector { create_time: model::now(), update_time: model::now(), ..stored.clone() };
    plane.control_plane.store().create_connector(&broken, None).await.unwrap();
    // And one whose expression does not compile on this node.
    let mut bad_expression = Connector { id: "con_badExpressionBadExpr00".to_owned(), ..broken.clone() };
    bad_expression.spec.perform.url = "https://example.com".to_owned();
    bad_expression.spec.condition = Some("uper($payload.kind)".to_owned());
    plane.control_plane.store().create_connector(&bad_expression, None).await.unwrap();
    let sibling =
        plane.admin.connectors().create_connector(create_connector(connector("sibling"))).await.unwrap().into_inner();
    let version = current_version(&plane).await;
    // Started now, the node gets all of them in one snapshot and one NACK.
    let node = start_node(&plane.url(), "node-a", None).await;

    applied(&node, version).await;
    let snapshot = node.snapshot();
    assert!(snapshot.connectors.contains_key(&good.id) && snapshot.connectors.contains_key(&sibling.id));
    assert!(!snapshot.connectors.contains_key(&broken.id), "the invalid connector is left out");
    assert!(!snapshot.connectors.contains_key(&bad_expression.id));
    let listed = eventually(Duration::from_secs(10), "the nack to be recorded", || async {
        let nodes = plane.admin.nodes().list_nodes(api::ListNodesRequest::default()).await.unwrap().into_inner();
        nodes.nodes.into_iter().find(|n| n.sync_errors > 0 && n.applied_config_version == version)
    })
    .await;
    assert!(
        listed.last_error.contains(&broken.id) && listed.last_error.contains("perform.url"),
        "{}",
        listed.last_error
    );

    // Later changes apply as deltas that do not carry the rejected connector.
    plane.admin.secrets().create_secret(secret("LATER", "x")).await.unwrap();
    let later = current_version(&plane).await;
    applied(&node, later).await;
    let nodes = plane.admin.nodes().list_nodes(api::ListNodesRequest::default()).await.unwrap().into_inner();
    assert_eq!(nodes.nodes[0].sync_errors, 1, "the rejected connector was not sent again");
    node.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_serve_through_an_outage_and_catch_up_with_deltas() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let caches = tempfile::tempdir().unwrap();
    let cache_a = caches.path().join("a");
    let node_a = start_node(&plane.url(), "node-a", Some(&cache_a)).await;
    let node_b = start_node(&plane.url(), "node-b", Some(&caches.path().join("b"))).await;
    let first =
        plane.admin.connectors().create_connector(create_connector(connector("before"))).await.unwrap().into_inner();
    let version = current_version(&plane).await;
    applied(&node_a, version).await;
    applied(&node_b, version).await;

    let stopped = plane.stopped().await;
    eventually(Duration::from_secs(10), "nodes to notice the outage", || async {
        (!node_a.state().is_connected() && !node_b.state().is_connected()).then_some(())
    })
    .await;
    let (status, body) = http_get(node_b.http_address(), "/readyz").await;
    assert_eq!(status, 200, "a node keeps serving its snapshot through the outage");
    assert!(body.contains(&format!("\"config_version\":{version}")));

    // Node A restarts while the control plane is down: it serves its cache.
    node_a.shutdown().await;
    let node_a = start_node(&stopped_url(&stopped), "node-a", Some(&cache_a)).await;
    assert_eq!(node_a.snapshot().version, version);
    assert!(node_a.snapshot().connectors.contains_key(&first.id));
    let token = &first.issued_credentials[0].token;
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hookplane_control_plane::crypto::hash_credential(token), &mut digest).unwrap();
    let cached = &node_a.snapshot().connectors[&first.id];
    assert!(cached.credential(model::TokenKind::Bearer, &digest).is_some(), "credentials survive the cache");
    assert_eq!(http_get(node_a.http_address(), "/readyz").await.0, 200);

    let plane = stopped.start_again().await;
    let second =
        plane.admin.connectors().create_connector(create_connector(connector("after"))).await.unwrap().into_inner();
    let caught_up = current_version(&plane).await;
    for node in [&node_a, &node_b] {
        applied(node, caught_up).await;
        assert!(node.snapshot().connectors.contains_key(&second.id));
    }
    assert_eq!(node_a.state().updates_received().0, 0, "the restarted node resumed from its cache with deltas only");
    assert_eq!(node_b.state().updates_received().0, 1, "the running node got no second full snapshot");
    node_a.shutdown().await;
    node_b.shutdown().await;
    plane.finish().await;
}

fn stopped_url(stopped: &support::StoppedPlane) -> String {
    stopped.url()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_wrong_token_gets_nothing() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    plane.admin.connectors().create_connector(create_connector(connector("secret stuff"))).await.unwrap();
    let intruder = start_node_with_token(&plane.url(), "intruder", None, "hpn_wrongWrongWrongWrongWrongWrong00").await;
    eventually(Duration::from_secs(10), "the refusal to be counted", || async {
        (intruder.state().sync_errors() > 0).then_some(())
    })
    .await;
    assert_eq!(intruder.snapshot().version, 0);
    assert!(intruder.snapshot().connectors.is_empty());
    assert_eq!(http_get(intruder.http_address(), "/readyz").await.0, 503, "never ready without a snapshot");
    let nodes = plane.admin.nodes().list_nodes(api::ListNodesRequest::default()).await.unwrap().into_inner();
    assert!(nodes.nodes.is_empty(), "a refused node is not registered");
    intruder.shutdown().await;
    plane.finish().await;
}

/// A node whose previous session failed on its side (a snapshot it could
/// not build, its sync task crashing) says so in its next hello, and the
/// node list shows it; a node is never the only one to know it is stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reported_sync_failure_is_listed() {
    use api::node_sync_service_client::NodeSyncServiceClient;
    use api::sync_request::Message;
    use tokio_stream::StreamExt as _;

    let plane = TestPlane::start(Backend::Sqlite).await;
    let mut client = NodeSyncServiceClient::connect(plane.url()).await.unwrap();
    let hello = api::NodeHello {
        node_id: "crashed-node".into(),
        build_version: "test".into(),
        previous_failure: "the sync task crashed: task 7 panicked".into(),
        ..Default::default()
    };
    let first = api::SyncRequest { message: Some(Message::Hello(hello)) };
    let mut request = tonic::Request::new(tokio_stream::iter([first]).chain(tokio_stream::pending()));
    request.metadata_mut().insert("authorization", format!("Bearer {}", support::NODE_TOKEN).parse().unwrap());
    let mut updates = client.sync(request).await.unwrap().into_inner();
    assert!(updates.message().await.unwrap().unwrap().registration.is_some());
    let listed = eventually(Duration::from_secs(10), "the node to be listed", || async {
        let nodes = plane.admin.nodes().list_nodes(api::ListNodesRequest::default()).await.unwrap().into_inner();
        nodes.nodes.into_iter().find(|n| n.id == "crashed-node")
    })
    .await;
    assert_eq!(listed.sync_errors, 1);
    assert_eq!(listed.last_error, "node: the sync task crashed: task 7 panicked");
    drop(updates);
    plane.finish().await;
}
