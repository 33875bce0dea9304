//! What the trigger benches start and send, shared by `trigger_load` (time
//! and CPU) and `trigger_allocations` (allocations): hookplane as
//! `hookplane dev` runs it, the baselines, their floors, and the
//! comparisons between them.

use std::net::SocketAddr;

use hookplane_data_plane::DataPlane;
use hookplane_data_plane::trigger::signature;
use hookplane_sdk::api;
use tempfile::TempDir;

use crate::baselines;
use crate::event_rows::{EventRows, RowOwner};
use crate::generator::Call;
use crate::hand_written;
use crate::support::nodes::{start_dev_node, start_embedded_node};
use crate::support::triggers::{create, use_plan};
use crate::support::{Backend, TestPlane};

pub const ORDER: &str = r#"{"id":"ord_8f2k1","status":"paid","total":129.5,"currency":"EUR","customer":{"id":"cus_19","email":"  Ada.Lovelace@Example.COM ","name":"Ada Lovelace"},"items":[{"sku":"BK-1","qty":2,"price":40},{"sku":"PN-7","qty":1,"price":49.5}],"created_at":"2026-11-23T10:00:00Z"}"#;
pub const SIGNING_KEY: &str = "whsec-benchmark-signing-key";

/// A knob from the environment, or its default.
pub fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The benches' connector: token auth, a condition, three mappings and a
/// JSON perform to `perform_url`.
pub fn connector(condition: &str, perform_url: &str) -> api::Connector {
    let mapping = |name: &str, expression: &str| api::FieldMapping { name: name.into(), expression: expression.into() };
    let field = |key: &str, value: &str| api::BodyField { key: key.into(), value: value.into(), ..Default::default() };
    api::Connector {
        display_name: "orders to the ERP".into(),
        auth: Some(api::InboundAuth { bearer_token: true, ..Default::default() }),
        condition: condition.into(),
        mappings: vec![
            mapping("order_id", "$payload.id"),
            mapping("email", "lower(trim($payload.customer.email))"),
            mapping("cents", "$payload.total * 100"),
        ],
        perform: Some(api::Perform {
            method: "POST".into(),
            url: perform_url.into(),
            body: vec![
                field("order.id", "$processed.order_id"),
                field("order.amount_cents", "$processed.cents"),
                field("customer.email", "$processed.email"),
            ],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One comparison: a baseline and hookplane doing the same job.
pub struct Pair {
    pub name: &'static str,
    pub baseline_name: &'static str,
    pub baseline: (SocketAddr, Call),
    /// The baseline storing a raw event row per request.
    pub floor: (SocketAddr, Call),
    pub hookplane: (SocketAddr, Call),
}

/// Everything the comparisons run against, started.
pub struct Setup {
    pub plane: TestPlane,
    pub node: DataPlane,
    /// The floors' events.
    pub rows: EventRows,
    pub pairs: [Pair; 4],
    _floor_dir: TempDir,
}

impl Setup {
    /// Starts the control plane on SQLite, one node in this process (events
    /// handed over in process, as `hookplane dev` does; with
    /// `HOOKPLANE_LOAD_EVENTS=stream` reported over `ReportEvents`, as a
    /// fleet's nodes do), the target, the baselines and their floors.
    pub async fn start() -> Setup {
        let plane = TestPlane::start(Backend::Sqlite).await;
        use_plan(&plane, api::Plan { name: "unlimited".into(), ..Default::default() }).await;
        let target = baselines::target().await;
        let orders = format!("http://{target}/orders");
        let (skipping, skipping_token) = create(&plane, connector("$payload.status == \"refunded\"", &orders)).await;
        let mut signed = connector("$payload.status == \"refunded\"", &orders);
        signed.signature =
            Some(api::SignatureSettings { secret: SIGNING_KEY.into(), prefix: "sha256=".into(), ..Default::default() });
        let (signed, signed_token) = create(&plane, signed).await;
        let (performing, performing_token) = create(&plane, connector("$payload.status == \"paid\"", &orders)).await;
        let node = if std::env::var("HOOKPLANE_LOAD_EVENTS").is_ok_and(|v| v == "stream") {
            println!("events: reported over ReportEvents, as a fleet's nodes do");
            start_dev_node(&plane, "bench-node").await
        } else {
            println!("events: handed to the control plane in process, as `hookplane dev` does");
            start_embedded_node(&plane, "bench-node").await
        };
        let settings =
            node.snapshot().connectors[&signed].connector.spec.signature.clone().expect("signature settings");
        let signature = signature::sign(&settings, SIGNING_KEY.as_bytes(), None, ORDER.as_bytes());

        let node_address = node.http_address();
        let trigger = |id: &str, token: &str, extra: &[(&str, &str)], expect: &'static str| {
            let bearer = format!("Bearer {token}");
            let headers: Vec<(&str, &str)> = [&[("Authorization", bearer.as_str())], extra].concat();
            let path = format!("/api/v1/connectors/{id}/trigger");
            (node_address, Call::post(node_address, &path, &headers, ORDER, expect))
        };
        let floor_dir = tempfile::tempdir().expect("a directory for the floor's events");
        let owner = RowOwner::of_bench_node(&plane.organization_id, &skipping);
        let rows = EventRows::start(floor_dir.path(), owner).await;
        println!(
            "floor: {}",
            if rows.durable() { "answers once its row is committed" } else { "answers before its row is stored" }
        );
        let bare = baselines::bare_hyper(None).await;
        let proxy = baselines::bare_proxy(target, None).await;
        // Each floor records under its scenario's connector, as hookplane does.
        let skipping_rows = baselines::bare_hyper(Some(rows.for_connector(&skipping))).await;
        let signed_rows = baselines::bare_hyper(Some(rows.for_connector(&signed))).await;
        let proxy_with_rows = baselines::bare_proxy(target, Some(rows.for_connector(&performing))).await;
        let by_hand = hand_written::connector(target, &performing_token, rows.for_connector(&performing)).await;
        let plain = |address: SocketAddr, expect: &'static str| {
            (address, Call::post(address, "/trigger", &[("Authorization", "Bearer x")], ORDER, expect))
        };
        let pairs = [
            Pair {
                name: "check path, token auth (skipped)",
                baseline_name: "bare hyper",
                baseline: plain(bare, "skipped"),
                floor: plain(skipping_rows, "skipped"),
                hookplane: trigger(&skipping, &skipping_token, &[], "\"skipped\""),
            },
            Pair {
                name: "check path, token + HMAC (skipped)",
                baseline_name: "bare hyper",
                baseline: plain(bare, "skipped"),
                floor: plain(signed_rows, "skipped"),
                hookplane: trigger(&signed, &signed_token, &[("X-Webhook-Signature", &signature)], "\"skipped\""),
            },
            Pair {
                name: "end to end, 3 mappings + JSON perform (completed)",
                baseline_name: "bare proxy",
                baseline: plain(proxy, "\"ok\""),
                floor: plain(proxy_with_rows, "\"ok\""),
                hookplane: trigger(&performing, &performing_token, &[], "\"completed\""),
            },
            // The same hookplane side against the connector's work written
            // by hand: how much of its cost above the floor the work is.
            Pair {
                name: "end to end, against the connector written by hand (completed)",
                baseline_name: "floor",
                baseline: plain(proxy_with_rows, "\"ok\""),
                floor: (
                    by_hand,
                    Call::post(
                        by_hand,
                        "/trigger",
                        &[("Authorization", &format!("Bearer {performing_token}"))],
                        ORDER,
                        "\"completed\"",
                    ),
                ),
                hookplane: trigger(&performing, &performing_token, &[], "\"completed\""),
            },
        ];
        Setup { plane, node, rows, pairs, _floor_dir: floor_dir }
    }

    /// The pairs whose name contains `HOOKPLANE_LOAD_ONLY` (all without it).
    pub fn chosen(&self) -> impl Iterator<Item = &Pair> {
        let only = std::env::var("HOOKPLANE_LOAD_ONLY").unwrap_or_default();
        self.pairs.iter().filter(move |pair| pair.name.contains(&only))
    }

    /// Events the node answered and has not yet stored.
    pub fn node_pending(&self) -> u64 {
        self.node.pending_events() as u64
    }

    pub async fn finish(self) {
        self.node.shutdown().await;
        self.plane.finish().await;
    }
}
