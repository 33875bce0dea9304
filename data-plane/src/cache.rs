//! The last good snapshot on disk, so a node restarted during a
//! control-plane outage serves what it served before.
//!
//! The file is the full snapshot as an encoded `ConfigUpdate`, sealed with
//! the node's snapshot key (SPEC §11: it holds opened `$secret` values,
//! signing and OAuth secrets), written to a temporary file, synced and
//! renamed over the old one: a crash leaves either the old or the new
//! snapshot, never a torn one (mode 0600 besides). A node without a key
//! keeps its snapshot in memory only, and removes one an older version
//! left in the clear.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::Duration;

use hookplane_convert as convert;
use hookplane_model::sealing::SecretBox;
use prost::Message as _;
use tokio::sync::watch;

use crate::snapshot::Snapshot;

const FILE: &str = "snapshot.sealed";
/// What versions before sealing wrote: opened secrets in the clear.
const PLAINTEXT_FILE: &str = "snapshot.pb";
/// What the snapshot is sealed for, so no other sealed file of the node
/// opens as one.
const OWNER: &str = "hookplane:node-snapshot-cache:v1";
/// At most one cache write per interval: a write is O(snapshot), so writing
/// per delta would make every change cost as much as the whole fleet config.
const WRITE_INTERVAL: Duration = Duration::from_millis(500);

/// What failed reading or writing the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("snapshot cache I/O at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("snapshot cache at {0} is not a snapshot")]
    Corrupt(PathBuf),
    #[error("snapshot cache at {0} does not open with this node's snapshot key (another key, or altered)")]
    Unopenable(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io { path: path.to_owned(), source }
}

/// Writes `snapshot` as the cache in `dir` atomically, sealed with `key`.
pub fn store(dir: &Path, key: &SecretBox, snapshot: &Snapshot) -> Result<(), CacheError> {
    let bytes = zeroize::Zeroizing::new(convert::config_delta_to_api(&snapshot.to_full_delta()).encode_to_vec());
    write_atomically(dir, FILE, &key.seal_bytes(OWNER, &bytes))
}

/// Removes a snapshot an older version cached in the clear, and, when the
/// node has no key to seal with, any sealed one (it could not be read).
pub fn forget_unsealed(dir: &Path, keyed: bool) {
    let names: &[&str] = if keyed { &[PLAINTEXT_FILE] } else { &[PLAINTEXT_FILE, FILE] };
    for name in names {
        let path = dir.join(name);
        if fs::remove_file(&path).is_ok() {
            tracing::warn!(path = %path.display(), "removed a snapshot cache this node cannot use safely");
        }
    }
}

/// Writes `bytes` to `dir/name` (0600, in a 0700 directory) through a
/// synced temporary file and a rename: readers see the old or the new
/// content, never a torn one.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), CacheError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io(dir))?;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    let target = dir.join(name);
    fs::rename(&tmp, &target).map_err(io(&target))?;
    // The rename is durable once the directory entry is.
    if let Ok(dir_handle) = fs::File::open(dir) {
        let _ = dir_handle.sync_all();
    }
    Ok(())
}

const ORDINAL_FILE: &str = "ordinal";

/// Remembers the node's ordinal, so a node restarted while the control
/// plane is away still mints fleet-unique event ids.
pub fn store_ordinal(dir: &Path, ordinal: i64) -> Result<(), CacheError> {
    write_atomically(dir, ORDINAL_FILE, ordinal.to_string().as_bytes())
}

/// The remembered ordinal, if any.
pub fn load_ordinal(dir: &Path) -> Option<i64> {
    fs::read_to_string(dir.join(ORDINAL_FILE)).ok()?.trim().parse().ok()
}

/// Persists the newest snapshot published on `latest` in the background,
/// coalescing bursts, and once more on shutdown if anything is unwritten.
pub async fn write_behind(
    dir: PathBuf,
    key: SecretBox,
    mut latest: watch::Receiver<Option<Arc<Snapshot>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut written = None;
    loop {
        tokio::select! {
            changed = latest.changed() => if changed.is_err() { break },
            () = closing(&mut shutdown) => break,
        }
        let snapshot = latest.borrow_and_update().clone();
        if let Some(snapshot) = snapshot {
            written = Some(snapshot.version);
            write_logged(&dir, &key, snapshot).await;
        }
        tokio::select! {
            () = tokio::time::sleep(WRITE_INTERVAL) => {}
            () = closing(&mut shutdown) => break,
        }
    }
    let newest = latest.borrow().clone();
    if let Some(snapshot) = newest.filter(|s| Some(s.version) != written) {
        write_logged(&dir, &key, snapshot).await;
    }
}

async fn write_logged(dir: &Path, key: &SecretBox, snapshot: Arc<Snapshot>) {
    let (dir, key) = (dir.to_owned(), key.clone());
    let version = snapshot.version;
    match tokio::task::spawn_blocking(move || store(&dir, &key, &snapshot)).await {
        Ok(Ok(())) => tracing::debug!(version, "snapshot cached"),
        Ok(Err(err)) => tracing::warn!(error = %err, "could not persist the snapshot; serving it anyway"),
        Err(err) => tracing::warn!(error = %err, "snapshot cache writer failed"),
    }
}

async fn closing(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|closing| *closing).await;
}

/// Loads the cached snapshot from `dir`, if there is one, opening it with
/// `key`.
pub fn load(dir: &Path, key: &SecretBox) -> Result<Option<Snapshot>, CacheError> {
    let path = dir.join(FILE);
    let sealed = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io(&path)(err)),
    };
    let bytes = key.open_bytes(OWNER, &sealed).map_err(|_| CacheError::Unopenable(path.clone()))?;
    let update =
        hookplane::api::v1::ConfigUpdate::decode(bytes.as_slice()).map_err(|_| CacheError::Corrupt(path.clone()))?;
    if !update.full {
        return Err(CacheError::Corrupt(path));
    }
    let (delta, rejected) = convert::config_delta_from_api(&update);
    let (mut snapshot, rejected) = Snapshot::default().apply(&delta, rejected);
    if !rejected.is_empty() {
        // The cache holds what the control plane sent and this node served,
        // so this is rare (another build of the node, say); those
        // connectors would stay out until they changed, since the content
        // hash still counts them. Asking for a full snapshot sends them again.
        for r in &rejected {
            tracing::warn!(connector = %r.connector_id, reason = %r.reason, "a cached connector does not load");
        }
        snapshot.version = 0;
    }
    Ok(Some(snapshot))
}

#[cfg(test)]
mod tests {
    use hookplane_model::{ConfigDelta, DeployedSecret, Versioned};

    use super::*;

    fn key() -> SecretBox {
        SecretBox::new(&[3; 32])
    }

    #[test]
    fn a_stored_snapshot_loads_back_whole_and_sealed() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path(), &key()).unwrap().is_none());
        let delta = ConfigDelta {
            version: 7,
            full: true,
            secrets: vec![Versioned {
                item: DeployedSecret {
                    organization_id: "org".into(),
                    name: "K".into(),
                    value: Some("hunter2-secret-value".into()),
                },
                version: 3,
            }],
            ..Default::default()
        };
        let (snapshot, _) = Snapshot::default().apply(&delta, Vec::new());
        store(dir.path(), &key(), &snapshot).unwrap();
        let loaded = load(dir.path(), &key()).unwrap().unwrap();
        assert_eq!(loaded.version, 7);
        assert_eq!(loaded.content_hash, snapshot.content_hash);
        assert_eq!(loaded.secrets[&("org".to_owned(), "K".to_owned())].0.as_deref(), Some("hunter2-secret-value"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(dir.path().join(FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // The finding: `$secret` values, signing and OAuth secrets lay in
        // the cache in the clear.
        let on_disk = fs::read(dir.path().join(FILE)).unwrap();
        assert!(!on_disk.windows(20).any(|w| w == b"hunter2-secret-value"), "the value is sealed");
        assert!(matches!(load(dir.path(), &SecretBox::new(&[4; 32])), Err(CacheError::Unopenable(_))));
    }

    #[test]
    fn a_node_without_a_key_keeps_no_snapshot_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(PLAINTEXT_FILE), b"an old version's cache, secrets in the clear").unwrap();
        fs::write(dir.path().join(FILE), b"sealed with a key this node no longer has").unwrap();
        forget_unsealed(dir.path(), true);
        assert!(!dir.path().join(PLAINTEXT_FILE).exists(), "a keyed node removes the clear one");
        assert!(dir.path().join(FILE).exists());
        forget_unsealed(dir.path(), false);
        assert!(!dir.path().join(FILE).exists(), "a node without a key keeps none");
    }

    #[test]
    fn connectors_come_back_with_their_expressions() {
        use hookplane::api::v1 as api;
        let named = |name: &str, value: &str| api::NamedTemplate { name: name.into(), value: value.into() };
        // Sources in printed form, so they come back byte for byte.
        let spec = convert::connector_from_api(
            &api::Connector {
                display_name: "orders".into(),
                auth: Some(api::InboundAuth { bearer_token: true, ..Default::default() }),
                condition: "($payload.status == \"paid\")".into(),
                mappings: vec![api::FieldMapping { name: "id".into(), expression: "$payload.id".into() }],
                perform: Some(api::Perform {
                    url: "https://erp.test/orders/${ $processed.id }".into(),
                    headers: vec![named("Authorization", "Bearer ${ $secret.ERP }")],
                    body: vec![api::BodyField {
                        key: "total".into(),
                        value: "($payload.amount / 100)".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            },
            "connector",
        )
        .unwrap();
        let connector = hookplane_model::Connector {
            id: "con_1".into(),
            organization_id: "org".into(),
            spec,
            tokens: Vec::new(),
            create_time: hookplane_model::now(),
            update_time: hookplane_model::now(),
            revision: 1,
        };
        let delta = ConfigDelta {
            version: 2,
            full: true,
            connectors: vec![Versioned { item: connector.clone(), version: 2 }],
            ..Default::default()
        };
        let (snapshot, rejected) = Snapshot::default().apply(&delta, Vec::new());
        assert!(rejected.is_empty());
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), &key(), &snapshot).unwrap();
        let loaded = load(dir.path(), &key()).unwrap().unwrap();
        let restored = loaded.to_full_delta().connectors;
        assert_eq!(restored.len(), 1);
        assert_eq!(restored[0].item.spec, connector.spec);
        assert_eq!(restored[0].version, 2);
    }

    #[test]
    fn garbage_is_reported_not_served() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE), key().seal_bytes(OWNER, b"\xff\xff not a snapshot")).unwrap();
        assert!(matches!(load(dir.path(), &key()), Err(CacheError::Corrupt(_))));
    }
}
