//! Control-plane replicas on one PostgreSQL: a change committed through
//! one reaches the nodes that follow another, woken by PostgreSQL's
//! `NOTIFY` rather than found by the sessions' poll; a node given every
//! replica's URL moves to another when its own stops.

use crate::support;

use std::time::Duration;

use hookplane_control_plane::store::Store;
use hookplane_sdk::{Client, api};
use support::nodes::{applied, start_node, start_node_configured};
use support::targets::{Behaviour, Target, post, trigger_path};
use support::triggers::{ORDER, create, mapped_connector};
use support::{Backend, TestPlane, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_through_one_replica_wakes_another_by_notification() {
    let plane = TestPlane::start(Backend::Postgres).await;
    let replica = Store::connect(&plane.database.url).await.unwrap();
    let mut commits = replica.config_commits();
    // The replica's watch moves only on its own commits or a notification;
    // its listener is connected once an unrelated commit got through.
    let target = Target::start(Behaviour::Ok).await;
    let mut version = 0;
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            create(&plane, mapped_connector(&target.url(""))).await;
            version = plane.config_version().await;
            if tokio::time::timeout(Duration::from_millis(500), commits.wait_for(|v| *v >= version)).await.is_ok() {
                return;
            }
        }
    })
    .await
    .expect("a commit through one replica is notified to the other");
    // From then on every commit is, at once.
    create(&plane, mapped_connector(&target.url(""))).await;
    let next = plane.config_version().await;
    assert!(next > version);
    tokio::time::timeout(Duration::from_secs(10), commits.wait_for(|v| *v >= next)).await.unwrap().unwrap();
    replica.close().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_following_one_replica_applies_changes_made_through_another() {
    let plane = TestPlane::start(Backend::Postgres).await;
    let replica = plane.replica().await;
    let node = start_node(&replica.url(), "node-on-replica", None).await;
    let target = Target::start(Behaviour::Ok).await;
    let (id, _) = create(&plane, mapped_connector(&target.url(""))).await;
    applied(&node, plane.config_version().await).await;
    assert!(node.snapshot().connectors.contains_key(&id));
    node.shutdown().await;
    replica.stop().await;
    plane.finish().await;
}

/// The replica (0: the plane, 1: the replica) holding the node's stream.
async fn holder(plane: &TestPlane, replica: &support::Replica) -> usize {
    eventually(Duration::from_secs(10), "one replica to hold the node's stream", || async {
        match (plane.control_plane.sync_streams(), replica.control_plane.sync_streams()) {
            (1, 0) => Some(0),
            (0, 1) => Some(1),
            _ => None,
        }
    })
    .await
}

// Two nodes whose ids pick different replicas first (FNV-1a's last step
// keeps the parity of the id's last byte): each replica is stopped once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_moves_to_another_replica_when_its_own_stops_and_loses_no_event() {
    let first = moves_when_its_replica_stops("node-1").await;
    let second = moves_when_its_replica_stops("node-2").await;
    assert_ne!(first, second, "each replica was the one stopped once");
}

async fn moves_when_its_replica_stops(node_id: &str) -> usize {
    let plane = TestPlane::start(Backend::Postgres).await;
    let replica = plane.replica().await;
    let target = Target::start(Behaviour::Ok).await;
    let (id, token) = create(&plane, mapped_connector(&target.url(""))).await;
    let urls = format!("{}, {}", plane.url(), replica.url());
    let node = start_node_configured(&plane, node_id, None, |c| {
        c.control_plane_url = urls;
        c.egress = hookplane_egress::EgressPolicy::public_only().with_loopback();
    })
    .await;
    let (address, path, bearer) = (node.http_address(), trigger_path(&id), format!("Bearer {token}"));
    let call = || {
        let (path, bearer) = (path.clone(), bearer.clone());
        async move { post(address, &path, &[("authorization", &bearer)], ORDER).await }
    };
    let before = call().await;
    assert_eq!(before.body["status"], "completed");

    // Stop whichever replica holds the stream; the other takes the node.
    let held_by = holder(&plane, &replica).await;
    let (survivor, stopped) = match held_by {
        0 => {
            let stopped = plane.stopped().await;
            (replica.url(), Stopped::Plane(stopped, replica))
        }
        _ => {
            let url = plane.url();
            replica.stop().await;
            (url, Stopped::Replica(plane))
        }
    };
    let survivor_client = Client::connect(survivor, stopped.admin_key()).await.unwrap();
    let after = call().await;
    assert_eq!(after.body["status"], "completed", "the node serves through the move: {after:?}");
    for answered in [&before, &after] {
        let id = answered.body["event_id"].as_i64().unwrap();
        eventually(Duration::from_secs(20), "the event to reach the surviving replica", || async {
            survivor_client.events().get_event(api::GetEventRequest { id }).await.ok()
        })
        .await;
    }
    // Changes made through the survivor reach the node.
    let request = support::fixtures::create_connector(mapped_connector(&target.url("")));
    let created = survivor_client.connectors().create_connector(request).await.unwrap().into_inner();
    eventually(Duration::from_secs(20), "the change to reach the node", || async {
        node.snapshot().connectors.contains_key(&created.id).then_some(())
    })
    .await;
    node.shutdown().await;
    stopped.finish().await;
    held_by
}

/// What is left to clean up once one replica stopped.
enum Stopped {
    /// The test plane stopped (its database kept); the replica runs.
    Plane(support::StoppedPlane, support::Replica),
    /// The replica stopped; the test plane runs.
    Replica(TestPlane),
}

impl Stopped {
    fn admin_key(&self) -> &str {
        match self {
            Stopped::Plane(stopped, _) => stopped.admin_key(),
            Stopped::Replica(plane) => &plane.admin_key,
        }
    }

    async fn finish(self) {
        match self {
            Stopped::Plane(stopped, replica) => {
                replica.stop().await;
                stopped.start_again().await.finish().await;
            }
            Stopped::Replica(plane) => plane.finish().await,
        }
    }
}

/// Background work (pruning, and what else one replica must do alone) is
/// claimed through a lease: replicas claiming at once on PostgreSQL never
/// both win, and the work moves when its holder lets go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_claiming_one_lease_at_once_never_both_hold_it() {
    let plane = TestPlane::start(Backend::Postgres).await;
    let replica = Store::connect(&plane.database.url).await.unwrap();
    let stores = [plane.control_plane.store().clone(), replica.clone()];
    let lease = Duration::from_secs(60);
    for round in 0..20 {
        let name = format!("work-{round}");
        let (a, b) = tokio::join!(stores[0].claim_lease(&name, "a", lease), stores[1].claim_lease(&name, "b", lease));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(a != b, "round {round}: exactly one replica holds the lease (a: {a}, b: {b})");
        let (holder, other, other_name) = if a { (&stores[0], &stores[1], "b") } else { (&stores[1], &stores[0], "a") };
        assert!(!other.claim_lease(&name, other_name, lease).await.unwrap(), "still held");
        holder.release_lease(&name, if a { "a" } else { "b" }).await.unwrap();
        assert!(other.claim_lease(&name, other_name, lease).await.unwrap(), "let go: the other takes it");
    }
    replica.close().await;
    plane.finish().await;
}
