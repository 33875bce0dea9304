//! The last good snapshot on disk, so a node restarted during a
//! control-plane outage serves what it served before.
//!
//! The file is the full snapshot as an encoded `ConfigUpdate`, written to a
//! temporary file, synced and renamed over the old one: a crash leaves
//! either the old or the new snapshot, never a torn one. It holds opened
//! secrets, so it is created with mode 0600.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::Duration;

use hookplane::convert;
use prost::Message as _;
use tokio::sync::watch;

use crate::snapshot::Snapshot;

const FILE: &str = "snapshot.pb";
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
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io { path: path.to_owned(), source }
}

/// Writes `snapshot` as the cache in `dir` atomically.
pub fn store(dir: &Path, snapshot: &Snapshot) -> Result<(), CacheError> {
    let bytes = convert::config_delta_to_api(&snapshot.to_full_delta()).encode_to_vec();
    write_atomically(dir, FILE, &bytes)
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
            write_logged(&dir, snapshot).await;
        }
        tokio::select! {
            () = tokio::time::sleep(WRITE_INTERVAL) => {}
            () = closing(&mut shutdown) => break,
        }
    }
    let newest = latest.borrow().clone();
    if let Some(snapshot) = newest.filter(|s| Some(s.version) != written) {
        write_logged(&dir, snapshot).await;
    }
}

async fn write_logged(dir: &Path, snapshot: Arc<Snapshot>) {
    let dir = dir.to_owned();
    let version = snapshot.version;
    match tokio::task::spawn_blocking(move || store(&dir, &snapshot)).await {
        Ok(Ok(())) => tracing::debug!(version, "snapshot cached"),
        Ok(Err(err)) => tracing::warn!(error = %err, "could not persist the snapshot; serving it anyway"),
        Err(err) => tracing::warn!(error = %err, "snapshot cache writer failed"),
    }
}

async fn closing(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|closing| *closing).await;
}

/// Loads the cached snapshot from `dir`, if there is one.
pub fn load(dir: &Path) -> Result<Option<Snapshot>, CacheError> {
    let path = dir.join(FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io(&path)(err)),
    };
    let update =
        hookplane::api::v1::ConfigUpdate::decode(bytes.as_slice()).map_err(|_| CacheError::Corrupt(path.clone()))?;
    if !update.full {
        return Err(CacheError::Corrupt(path));
    }
    let (delta, rejected) = convert::config_delta_from_api(&update);
    let (snapshot, _) = Snapshot::default().apply(&delta, rejected);
    Ok(Some(snapshot))
}

#[cfg(test)]
mod tests {
    use hookplane::model::{ConfigDelta, DeployedSecret, Versioned};

    use super::*;

    #[test]
    fn a_stored_snapshot_loads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        let delta = ConfigDelta {
            version: 7,
            full: true,
            secrets: vec![Versioned {
                item: DeployedSecret { organization_id: "org".into(), name: "K".into(), value: Some("v".into()) },
                version: 3,
            }],
            ..Default::default()
        };
        let (snapshot, _) = Snapshot::default().apply(&delta, Vec::new());
        store(dir.path(), &snapshot).unwrap();
        let loaded = load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.version, 7);
        assert_eq!(loaded.content_hash, snapshot.content_hash);
        assert_eq!(loaded.secrets[&("org".to_owned(), "K".to_owned())].0.as_deref(), Some("v"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(dir.path().join(FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
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
        let connector = hookplane::model::Connector {
            id: "con_1".into(),
            organization_id: "org".into(),
            spec,
            tokens: Vec::new(),
            create_time: hookplane::model::now(),
            update_time: hookplane::model::now(),
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
        store(dir.path(), &snapshot).unwrap();
        let loaded = load(dir.path()).unwrap().unwrap();
        let restored = loaded.to_full_delta().connectors;
        assert_eq!(restored.len(), 1);
        assert_eq!(restored[0].item.spec, connector.spec);
        assert_eq!(restored[0].version, 2);
    }

    #[test]
    fn garbage_is_reported_not_served() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE), b"\xff\xff not a snapshot").unwrap();
        assert!(matches!(load(dir.path()), Err(CacheError::Corrupt(_))));
    }
}
