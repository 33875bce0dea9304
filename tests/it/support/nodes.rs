//! Data-plane nodes for the end-to-end tests, and a bare HTTP/1.1 probe.

use std::net::SocketAddr;
use std::path::Path;

use hookplane_data_plane::{ClientTls, DataPlane, NodeConfig};
use hookplane_model::sealing::SecretBox;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{NODE_TOKEN, TestPlane};

/// Starts a node following `plane`, caching in `cache_dir`.
pub async fn start_node(plane_url: &str, node_id: &str, cache_dir: Option<&Path>) -> DataPlane {
    start_node_with_token(plane_url, node_id, cache_dir, NODE_TOKEN).await
}

pub async fn start_node_with_token(plane_url: &str, node_id: &str, cache_dir: Option<&Path>, token: &str) -> DataPlane {
    start_node_with(plane_url, node_id, cache_dir, token, None).await
}

pub async fn start_node_with(
    plane_url: &str,
    node_id: &str,
    cache_dir: Option<&Path>,
    token: &str,
    tls: Option<ClientTls>,
) -> DataPlane {
    let mut config =
        NodeConfig::new(node_id.to_owned(), plane_url.to_owned(), token.to_owned(), "127.0.0.1:0".parse().unwrap());
    config.tls = tls;
    keep_in(&mut config, cache_dir);
    // Handed a bound listener, as an embedder would, bound as the
    // `hookplane` binary binds its own.
    let listener = hookplane_data_plane::listener::bind("127.0.0.1:0".parse().unwrap()).expect("a loopback port");
    DataPlane::start_on(config, listener).await.expect("node starts")
}

/// Keeps the node's state in `cache_dir`, its snapshot sealed with one key
/// for every test node, so a node started again opens what it kept.
pub fn keep_in(config: &mut NodeConfig, cache_dir: Option<&Path>) {
    config.cache_dir = cache_dir.map(Path::to_path_buf);
    config.snapshot_key = cache_dir.map(|_| SecretBox::new(&[42; 32]));
}

/// Waits until `node` has applied `version` (or later).
pub async fn applied(node: &DataPlane, version: i64) {
    let mut applied = node.state().applied_versions();
    tokio::time::timeout(std::time::Duration::from_secs(10), applied.wait_for(|v| *v >= version))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for the node to apply version {version}"))
        .expect("node state alive");
}

/// The plane's current config version.
pub async fn current_version(plane: &TestPlane) -> i64 {
    plane.config_version().await
}

/// `GET path` over a fresh connection; returns the status and the body.
pub async fn http_get(address: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// Starts a node whose config `adjust` changed, waiting until it has the
/// plane's current config and an ordinal (so it can serve triggers).
pub async fn start_node_configured(
    plane: &TestPlane,
    node_id: &str,
    cache_dir: Option<&Path>,
    adjust: impl FnOnce(&mut NodeConfig),
) -> DataPlane {
    let mut config =
        NodeConfig::new(node_id.to_owned(), plane.url(), NODE_TOKEN.to_owned(), "127.0.0.1:0".parse().unwrap());
    keep_in(&mut config, cache_dir);
    adjust(&mut config);
    let node = DataPlane::start(config).await.expect("node starts");
    applied(&node, current_version(plane).await).await;
    node
}

/// A node that may call loopback targets, as `hookplane dev` can.
pub async fn start_dev_node(plane: &TestPlane, node_id: &str) -> DataPlane {
    start_node_configured(plane, node_id, None, |c| {
        c.egress = hookplane_egress::EgressPolicy::public_only().with_loopback()
    })
    .await
}

/// A node beside its control plane, as `hookplane dev` runs one: loopback
/// targets, and events handed to the control plane in process rather than
/// over `ReportEvents`.
pub async fn start_embedded_node(plane: &TestPlane, node_id: &str) -> DataPlane {
    let events = plane.control_plane.events().clone();
    let local = hookplane_data_plane::events::LocalEvents::new(move |batch| {
        let events = events.clone();
        async move { events.ingest(batch).await.is_ok() }
    });
    start_node_configured(plane, node_id, None, |c| {
        c.egress = hookplane_egress::EgressPolicy::public_only().with_loopback();
        c.local_events = Some(local);
    })
    .await
}
