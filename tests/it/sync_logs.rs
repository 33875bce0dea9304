//! Secrets never reach either plane's logs, even at TRACE level, while a
//! connector with every kind of secret material is created and synced.
//! (Its own test binary: it installs the process-wide log subscriber.)

use crate::support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use hookplane_sdk::api;
use support::fixtures::{connector, create_connector, secret};
use support::nodes::{applied, current_version, start_node};
use support::{Backend, NODE_TOKEN, TestPlane};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let plane = TestPlane::start(Backend::Sqlite).await;
    let admin_key = plane.admin_key.clone();
    let node = start_node(&plane.url(), "node-logs", None).await;
    let mut spec = connector("secretive");
    spec.auth = Some(api::InboundAuth {
        bearer_token: true,
        custom_headers: vec![api::CustomHeader { name: "X-Key".into(), value: "header-secret-5551".into() }],
        ..Default::default()
    });
    spec.signature = Some(api::SignatureSettings { secret: "signing-secret-5552".into(), ..Default::default() });
    let created = plane.admin.connectors().create_connector(create_connector(spec)).await.unwrap().into_inner();
    plane.admin.secrets().create_secret(secret("API", "secret-value-5553")).await.unwrap();
    // A bad request whose rejected field holds secret-looking text.
    let _ = plane.admin.secrets().create_secret(secret("bad name", "secret-value-5554")).await;
    applied(&node, current_version(&plane).await).await;
    node.shutdown().await;
    plane.finish().await;

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(logs.contains("applied config"), "logs were captured");
    let token = &created.issued_credentials[0].token;
    for secret in [
        "header-secret-5551",
        "signing-secret-5552",
        "secret-value-5553",
        "secret-value-5554",
        token.as_str(),
        admin_key.as_str(),
        NODE_TOKEN,
    ] {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
    }
}
