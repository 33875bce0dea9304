//! The `redis` limiting policy end to end (SPEC §9): nodes of one control
//! plane count limits and deliveries in a real Redis, exactly across the
//! fleet, and ride out a Redis outage as configured.

use crate::support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hookplane_data_plane::DataPlane;
use hookplane_model::{LimitingPolicy, RedisPolicy};
use hookplane_sdk::api;
use support::nodes::{http_get, start_dev_node};
use support::python::{Signing, sign};
use support::targets::{Answer, Behaviour, Target, post, trigger_path};
use support::triggers::{ORDER, create, mapped_connector, use_plan};
use support::{Backend, TestPlane, eventually};

const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn redis_policy(url: &str, fail_closed: bool) -> LimitingPolicy {
    LimitingPolicy::Redis(RedisPolicy {
        url: url.to_owned(),
        fail_closed,
        // Keys of their own: suites run at once on one Redis.
        key_prefix: format!("hookplane-it-{}", uuid::Uuid::new_v4().simple()),
        // A busy CI machine must not turn a slow answer into a failure.
        timeout: Duration::from_secs(5),
    })
}

fn shared_redis() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Waits until `node` follows the plane's `redis` policy.
async fn follows_redis(node: &DataPlane) -> serde_json::Value {
    eventually(Duration::from_secs(10), "the node to follow the redis policy", || async {
        let (_, body) = http_get(node.http_address(), "/readyz").await;
        let ready: serde_json::Value = serde_json::from_str(&body).ok()?;
        (ready["limiting"]["policy"] == "redis").then(|| ready["limiting"].clone())
    })
    .await
}

async fn send(node: &DataPlane, id: &str, headers: &[(String, String)]) -> Answer {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    post(node.http_address(), &trigger_path(id), &headers, ORDER).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_exact_across_nodes_and_a_delivery_is_a_duplicate_on_every_node() {
    // Fail closed: a Redis failure cannot pass for a local count here.
    let plane = TestPlane::start_limiting(Backend::Sqlite, redis_policy(&shared_redis(), true)).await;
    let four = api::Plan { name: "four".into(), per_connector_per_minute: 4, ..Default::default() };
    use_plan(&plane, four).await;
    let target = Target::start(Behaviour::Ok).await;
    let signed_connector = || {
        let mut connector = mapped_connector(&target.url(""));
        connector.auth = None;
        connector.signature = Some(api::SignatureSettings {
            preset: api::SignaturePreset::StandardWebhooks as i32,
            secret: SW_SECRET.into(),
            ..Default::default()
        });
        connector
    };
    let (id, _) = create(&plane, signed_connector()).await;
    // Another tenant's connector on the same fleet and plan.
    let (other_org, other_admin) = plane.new_organization("Other tenant").await;
    plane
        .operator
        .organizations()
        .update_organization(api::UpdateOrganizationRequest {
            organization: Some(api::Organization { id: other_org.clone(), plan: "four".into(), ..Default::default() }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["plan".into()] }),
        })
        .await
        .unwrap();
    let request = support::fixtures::create_connector(signed_connector());
    let other = other_admin.connectors().create_connector(request).await.unwrap().into_inner().id;
    let nodes = [
        start_dev_node(&plane, "node-a").await,
        start_dev_node(&plane, "node-b").await,
        start_dev_node(&plane, "node-c").await,
    ];
    for node in &nodes {
        follows_redis(node).await;
    }
    let now = chrono::Utc::now().timestamp();
    let ids = ["msg_0", "msg_1", "msg_2", "msg_3", "msg_4", "msg_5", "msg_other"];
    let signed = sign(
        ids.iter()
            .map(|&id| Signing {
                preset: "standard_webhooks",
                secrets: vec![SW_SECRET],
                timestamp: now,
                body: ORDER,
                id,
            })
            .collect(),
    )
    .await;
    support::early_in_a_minute().await;

    // A delivery run by node A is a duplicate on nodes B and C.
    let first = send(&nodes[0], &id, &signed[0]).await;
    assert_eq!(first.body["status"], "completed", "{first:?}");
    let replayed = send(&nodes[1], &id, &signed[0]).await;
    assert_eq!(
        (replayed.body["status"].as_str(), &replayed.body["event_id"]),
        (Some("duplicate"), &first.body["event_id"])
    );
    // Four calls a minute for the connector, wherever they land: the two
    // above, two more, then refusals on every node.
    let mut answers = Vec::new();
    for (i, headers) in signed[1..6].iter().enumerate() {
        answers.push(send(&nodes[i % 3], &id, headers).await);
    }
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 200, 429, 429, 429], "{answers:?}");
    assert_eq!(answers[2].code(), "connector_rate_limited");
    assert_eq!(answers[1].headers["x-ratelimit-remaining"], "0", "the count is the fleet's");
    // The other tenant's connector has its own four.
    let theirs = send(&nodes[2], &other, &signed[6]).await;
    assert_eq!((theirs.status, theirs.headers["x-ratelimit-remaining"].as_str()), (200, "3"), "{theirs:?}");
    assert_eq!(target.count(), 4, "the duplicate did not run");
    for node in &nodes {
        assert_eq!(follows_redis(node).await["redis_failures"], 0);
    }
    for node in nodes {
        node.shutdown().await;
    }
    plane.finish().await;
}

/// A Redis server of the test's own, on a Unix socket in a directory of
/// its own (no port another test could take between stop and start).
struct OwnRedis {
    dir: tempfile::TempDir,
    process: Option<Child>,
}

impl OwnRedis {
    async fn start() -> OwnRedis {
        let mut redis = OwnRedis { dir: tempfile::tempdir().unwrap(), process: None };
        redis.restart().await;
        redis
    }

    fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("redis.sock")
    }

    fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    async fn restart(&mut self) {
        let socket = self.socket();
        let process = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no", "--unixsocket"])
            .arg(&socket)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (Debian's redis-server package)");
        self.process = Some(process);
        eventually(Duration::from_secs(10), "redis-server to listen", || async {
            tokio::net::UnixStream::connect(&socket).await.ok().map(drop)
        })
        .await;
    }

    fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_fails_open_or_closed_as_configured_and_heals_by_itself() {
    let mut redis = OwnRedis::start().await;
    let target = Target::start(Behaviour::Ok).await;
    let mut fleets = Vec::new();
    for fail_closed in [true, false] {
        let plane = TestPlane::start_limiting(Backend::Sqlite, redis_policy(&redis.url(), fail_closed)).await;
        let (id, token) = create(&plane, mapped_connector(&target.url(""))).await;
        let node = start_dev_node(&plane, if fail_closed { "closed" } else { "open" }).await;
        follows_redis(&node).await;
        fleets.push((plane, node, id, format!("Bearer {token}")));
    }
    let call = |node: &DataPlane, id: &str, bearer: &str| {
        let (address, path, bearer) = (node.http_address(), trigger_path(id), bearer.to_owned());
        async move { post(address, &path, &[("authorization", &bearer)], ORDER).await }
    };
    for (_, node, id, bearer) in &fleets {
        assert_eq!(call(node, id, bearer).await.status, 200);
    }

    redis.stop();
    let (_, closed, closed_id, closed_bearer) = &fleets[0];
    let refused = call(closed, closed_id, closed_bearer).await;
    assert_eq!((refused.status, refused.code()), (503, "limits_unavailable"), "{refused:?}");
    let (_, open, open_id, open_bearer) = &fleets[1];
    let counted_here = call(open, open_id, open_bearer).await;
    assert_eq!(counted_here.status, 200, "fail open: the node counts on its own meanwhile");
    let limiting = follows_redis(closed).await;
    assert!(limiting["redis_failures"].as_u64().unwrap() >= 1, "{limiting}");
    assert!(limiting["last_redis_error"].is_string(), "{limiting}");

    redis.restart().await;
    eventually(Duration::from_secs(20), "the fail-closed node to count in Redis again", || async {
        (call(closed, closed_id, closed_bearer).await.status == 200).then_some(())
    })
    .await;
    for (plane, node, _, _) in fleets {
        node.shutdown().await;
        plane.finish().await;
    }
}
