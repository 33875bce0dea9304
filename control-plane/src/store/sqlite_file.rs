//! The SQLite database file a store's URL names: told apart from a
//! database in memory, and made private to its owner when the store
//! creates it. Both read the path from the options the store connects
//! with, as sqlx's `Any` driver reads it, so it is the file sqlx opens.

use sqlx::any::AnyConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

/// Whether `url` names a database in memory, as sqlx reads it: it has no
/// file, and so no log to checkpoint. (sqlx keeps that in a field of its
/// own, and names the database `file:sqlx-in-memory-N`.)
pub(super) fn in_memory(url: &str) -> bool {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let database = rest.split_once('?').map_or(rest, |(database, _)| database);
    database == ":memory:" || asks_for(url, "mode=memory")
}

/// Creates the SQLite database file of `url` with mode 0600 when the URL
/// lets SQLite create it (`mode=rwc`) and it does not exist yet: SQLite
/// would create it with the process's umask (0644 as a rule), and it holds
/// sealed secrets, credential hashes and every event's payload. SQLite
/// gives its `-wal` and `-shm` files the database file's permissions. An
/// existing file is left as its owner set it.
pub(super) fn create_private(url: &str, options: &AnyConnectOptions) {
    let Ok(options) = SqliteConnectOptions::try_from(options) else { return };
    let path = options.get_filename();
    if !asks_for(url, "mode=rwc") || path.as_os_str().is_empty() || in_memory(url) {
        return;
    }
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    // An existing file is kept; a missing directory and the like are
    // reported by SQLite, in its words, when it opens the file.
    let _ = file.open(path);
}

/// Whether `url`'s query holds `parameter` (`name=value`) as it is.
fn asks_for(url: &str, parameter: &str) -> bool {
    url.split_once('?').is_some_and(|(_, query)| query.split('&').any(|p| p == parameter))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn databases_in_memory_are_told_from_files() {
        let read = in_memory;
        assert!(read("sqlite::memory:"));
        assert!(read("sqlite::memory:?mode=rwc"), "no file made for it");
        assert!(read("sqlite://:memory:"));
        assert!(read("sqlite://file:shared?mode=memory&cache=shared"));
        assert!(read("sqlite://?mode=memory"));
        assert!(!read("sqlite:///var/lib/hookplane/hookplane.db?mode=rwc"));
        assert!(!read("sqlite:///var/lib/hookplane/memory.db?cache=shared"));
        assert!(!read("sqlite:///var/lib/hookplane/:memory:.db"));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn database_files_are_private_to_the_owner() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hookplane.db");
        let store = Store::connect(&format!("sqlite://{}?mode=rwc", path.display())).await.unwrap();
        store.config_version().await.unwrap();
        for name in ["hookplane.db", "hookplane.db-wal", "hookplane.db-shm"] {
            let mode = std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        store.close().await;
    }

    /// sqlx's `Any` driver reads a SQLite URL as a URL (`a/../b` is `b`);
    /// the file made private and the typed event connection open the file
    /// its pools open, not the text's literal path.
    #[cfg(unix)]
    #[tokio::test]
    async fn every_connection_opens_the_file_the_url_names() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/absent/../hookplane.db?mode=rwc", dir.path().display());
        let store = Store::connect(&url).await.unwrap();
        let mode = std::fs::metadata(dir.path().join("hookplane.db")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(store.insert_events(&crate::store::test_events(1..=1)).await.unwrap(), [1]);
        assert_eq!(store.get_event("org_1", 1).await.unwrap().id, 1);
        assert!(!dir.path().join("absent").exists());
        store.close().await;
    }
}
