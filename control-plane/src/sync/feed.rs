//! The config feed: one read per change for the whole fleet.
//!
//! Every session of this process asks the feed for the changes after the
//! version its node holds. The first to ask for a starting version reads
//! the store, opens the sealed values and converts the result to the wire
//! types; every other session asking for the same start meanwhile waits
//! for that one result and shares it. In a steady fleet all nodes hold the
//! same version, so a commit costs one read, one opening and one
//! conversion however many nodes follow this replica; a reconnect storm of
//! empty nodes shares one full snapshot. What remains per node is cloning
//! the parts into its stream and encoding them (measured in
//! `benches/fleet_sync.rs`).
//!
//! The feed also keeps the version this process knows to be current:
//! raised by its own commits, by other replicas' notifications, and by one
//! poll a second for notifications lost. Sessions wake on it, so waiting
//! costs a node nothing at the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use hookplane::api::v1 as api;
use hookplane_convert as convert;
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore, watch};

use super::open::open_delta;
use super::routes::encode;
use crate::crypto::SecretBox;
use crate::store::{Store, StoreError};

/// How often the feed reads the current version itself, for commits whose
/// notification was lost (SQLite's single writer never needs it).
const POLL: Duration = Duration::from_secs(1);

/// Full snapshots on their way to nodes at once. Each costs its
/// transport's buffers (a 1 000-connector snapshot is 1 MiB); 1 000 empty
/// nodes connecting at once took 1 GiB without this bound
/// (`benches/fleet_sync.rs`).
const FULL_SNAPSHOTS_IN_FLIGHT: usize = 32;

/// Connectors per part of a large update: keeps every message far below
/// gRPC's message size limit and lets the node start decoding early.
const CONNECTORS_PER_PART: usize = 500;

/// The changes from one version to a later one, ready to send.
#[derive(Debug)]
pub(super) struct Changes {
    /// The version the node holds once it applied every part.
    pub version: i64,
    pub full: bool,
    pub connectors: usize,
    /// Each an encoded `SyncResponse` carrying one part of the update.
    pub parts: Vec<Bytes>,
}

/// One starting version's changes, read once.
#[derive(Debug)]
struct Pending {
    /// The current version when the read was asked for: the changes reach
    /// it or beyond.
    reaches: i64,
    changes: Arc<OnceCell<Arc<Changes>>>,
}

/// Shared by every session of a control plane.
#[derive(Clone, Debug)]
pub(super) struct ConfigFeed {
    store: Store,
    secret_box: SecretBox,
    current: watch::Receiver<i64>,
    /// By starting version. Entries that no longer reach the current
    /// version are dropped as soon as anyone asks again; sessions still
    /// sending one hold it until they are done.
    pending: Arc<Mutex<HashMap<i64, Pending>>>,
    full_snapshots: Arc<Semaphore>,
}

impl ConfigFeed {
    /// A feed over `store`; polls the current version until `closing`.
    pub(super) fn new(store: Store, secret_box: SecretBox, closing: watch::Receiver<bool>) -> ConfigFeed {
        tokio::spawn(poll_current_version(store.clone(), closing));
        ConfigFeed {
            current: store.config_commits(),
            store,
            secret_box,
            pending: Arc::default(),
            full_snapshots: Arc::new(Semaphore::new(FULL_SNAPSHOTS_IN_FLIGHT)),
        }
    }

    /// The current version as this process knows it; changes whenever it
    /// grows.
    pub(super) fn current(&self) -> watch::Receiver<i64> {
        self.current.clone()
    }

    /// The changes after `since` (a full snapshot when `since` is 0 or a
    /// version the store never reached), read once for every session that
    /// asks while they are current.
    pub(super) async fn changes_since(&self, since: i64) -> Result<Arc<Changes>, StoreError> {
        let since = since.max(0);
        let cell = {
            let current = *self.current.borrow();
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending.retain(|_, entry| entry.reaches >= current);
            pending
                .entry(since)
                .or_insert_with(|| Pending { reaches: current, changes: Arc::default() })
                .changes
                .clone()
        };
        cell.get_or_try_init(|| self.read(since)).await.cloned()
    }

    /// A place for one full snapshot on its way to a node, to hold until
    /// the node answers it: bounds what a storm of empty nodes costs in
    /// memory, and serves them in turn.
    pub(super) async fn admit_full_snapshot(&self) -> OwnedSemaphorePermit {
        self.full_snapshots.clone().acquire_owned().await.expect("the semaphore is never closed")
    }

    async fn read(&self, since: i64) -> Result<Arc<Changes>, StoreError> {
        let sealed = self.store.config_delta(since).await?;
        let (delta, unopened) = open_delta(sealed, &self.secret_box);
        for (connector, field) in &unopened.connector_fields {
            tracing::error!(
                connector = %connector, field,
                "a connector's sealed secret does not open with this key; nodes reject the connector until the field is set again"
            );
        }
        for (organization, name) in &unopened.secrets {
            tracing::error!(
                organization = %organization, secret = %name,
                "a sealed secret does not open with this key; nodes hold the connectors that read it until it is set again"
            );
        }
        let parts = split_into_parts(convert::config_delta_to_api(&delta))
            .into_iter()
            .map(|part| encode(&api::SyncResponse { update: Some(part), ..Default::default() }))
            .collect();
        tracing::debug!(
            from = since,
            to = delta.version,
            full = delta.full,
            connectors = delta.connectors.len(),
            "read config changes"
        );
        Ok(Arc::new(Changes { version: delta.version, full: delta.full, connectors: delta.connectors.len(), parts }))
    }
}

/// Raises the store's current version from the database every [`POLL`]
/// until `closing`: the fallback for a lost notification, and the first
/// value a fresh process starts from.
async fn poll_current_version(store: Store, mut closing: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = closing.wait_for(|closing| *closing) => return,
        }
        if let Err(err) = store.refresh_config_version().await {
            tracing::warn!(error = %err, "reading the config version failed; trying again");
        }
    }
}

/// Splits an update into parts of at most [`CONNECTORS_PER_PART`]
/// connectors; everything else travels in the first part.
fn split_into_parts(mut update: api::ConfigUpdate) -> Vec<api::ConfigUpdate> {
    if update.connectors.len() <= CONNECTORS_PER_PART {
        return vec![update];
    }
    let connectors = std::mem::take(&mut update.connectors);
    let header = api::ConfigUpdate {
        version: update.version,
        full: update.full,
        base_version: update.base_version,
        ..Default::default()
    };
    let mut parts: Vec<_> = connectors
        .chunks(CONNECTORS_PER_PART)
        .map(|chunk| api::ConfigUpdate { connectors: chunk.to_vec(), more_parts: true, ..header.clone() })
        .collect();
    let first = &mut parts[0];
    first.removed_connector_ids = std::mem::take(&mut update.removed_connector_ids);
    first.secrets = std::mem::take(&mut update.secrets);
    first.removed_secrets = std::mem::take(&mut update.removed_secrets);
    first.plans = std::mem::take(&mut update.plans);
    first.organizations = std::mem::take(&mut update.organizations);
    let last = parts.last_mut().expect("at least one part");
    last.more_parts = false;
    last.content_hash = update.content_hash;
    parts
}

#[cfg(test)]
mod tests {
    use hookplane_model::{Secret, SecretField};

    use super::*;
    use crate::crypto::secret_owner;

    async fn store_with_a_secret(dir: &tempfile::TempDir, key: &SecretBox) -> (Store, String) {
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("feed.db").display());
        let store = Store::connect(&url).await.unwrap();
        let org = crate::bootstrap::default_organization(&store, "Feed", "free").await.unwrap().unwrap();
        let org = org.organization.id;
        add_secret(&store, key, &org, "FIRST").await;
        (store, org)
    }

    async fn add_secret(store: &Store, key: &SecretBox, org: &str, name: &str) {
        let now = hookplane_model::now();
        let secret = Secret {
            organization_id: org.to_owned(),
            name: name.to_owned(),
            value: SecretField::Sealed(key.seal(&secret_owner(org, name), b"value")),
            description: String::new(),
            create_time: now,
            update_time: now,
            revision: 1,
        };
        store.create_secret(&secret, None).await.unwrap();
    }

    fn update(changes: &Changes, part: usize) -> api::ConfigUpdate {
        let response: api::SyncResponse = prost::Message::decode(changes.parts[part].clone()).unwrap();
        response.update.unwrap()
    }

    #[tokio::test]
    async fn sessions_asking_for_the_same_changes_share_one_read() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretBox::new(&[7; 32]);
        let (store, org) = store_with_a_secret(&dir, &key).await;
        let (_closing, closed) = watch::channel(false);
        let feed = ConfigFeed::new(store.clone(), key.clone(), closed);
        let first = store.config_version().await.unwrap();
        feed.current().wait_for(|v| *v == first).await.unwrap();

        let (a, b) = tokio::join!(feed.changes_since(0), feed.changes_since(0));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(Arc::ptr_eq(&a, &b), "one full snapshot for both");
        assert!(a.full && a.version == first);
        assert_eq!(update(&a, 0).secrets.len(), 1);
        assert!(Arc::ptr_eq(&a, &feed.changes_since(0).await.unwrap()), "still current: kept");

        add_secret(&store, &key, &org, "SECOND").await;
        let second = store.config_version().await.unwrap();
        let (c, d) = tokio::join!(feed.changes_since(first), feed.changes_since(first));
        let (c, d) = (c.unwrap(), d.unwrap());
        assert!(Arc::ptr_eq(&c, &d), "one delta for both");
        assert!(!c.full && c.version == second);
        assert_eq!(update(&c, 0).secrets.iter().map(|s| s.name.clone()).collect::<Vec<_>>(), ["SECOND"]);
        let e = feed.changes_since(0).await.unwrap();
        assert!(!Arc::ptr_eq(&a, &e) && e.version == second, "a commit retires the older snapshot");
        assert_eq!(feed.pending.lock().unwrap().len(), 2, "only entries reaching the current version are kept");
    }

    #[test]
    fn large_updates_split_into_parts_that_merge_back() {
        let update = api::ConfigUpdate {
            version: 9,
            full: true,
            connectors: (0..1201).map(|i| api::NodeConnector { item_version: i, ..Default::default() }).collect(),
            removed_connector_ids: vec!["con_gone".into()],
            content_hash: "h".into(),
            ..Default::default()
        };
        let parts = split_into_parts(update.clone());
        assert_eq!(parts.iter().map(|p| p.connectors.len()).collect::<Vec<_>>(), [500, 500, 201]);
        assert!(parts[..2].iter().all(|p| p.more_parts && p.version == 9 && p.full));
        assert!(!parts[2].more_parts);
        assert_eq!(parts[2].content_hash, "h");
        assert_eq!(parts[0].removed_connector_ids, ["con_gone"]);
        let mut merged = parts[0].clone();
        for part in &parts[1..] {
            hookplane_convert::merge_update_parts(&mut merged, part.clone());
        }
        assert_eq!(merged, update);
        assert_eq!(split_into_parts(api::ConfigUpdate::default()).len(), 1);
    }
}
