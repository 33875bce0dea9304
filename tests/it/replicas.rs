//! Control-plane replicas on one PostgreSQL: a change committed through
//! one reaches the nodes that follow another, woken by PostgreSQL's
//! `NOTIFY` rather than found by the sessions' poll.

use crate::support;

use std::time::Duration;

use hookplane_control_plane::store::Store;
use support::nodes::{applied, start_node};
use support::targets::{Behaviour, Target};
use support::triggers::{create, mapped_connector};
use support::{Backend, TestPlane};

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
