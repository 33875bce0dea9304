//! A descriptor of the store's SQLite database file, of the process's
//! own, for the checkpointer to sync the file outside the writers' turn
//! (`checkpoint.rs`).
//!
//! Closing any descriptor of a file drops every POSIX lock the process
//! holds on it, SQLite's among them (SQLite's "How To Corrupt", §2.2):
//! another process could then take the database while this one still
//! writes it. SQLite's own answer is one descriptor per file for the
//! whole process, closed with its last connection; this module does the
//! same for the stores. Invariant: the process has at most one such
//! descriptor per database file (device and inode), shared by the stores
//! on it, and closes it only once every one of them has closed its
//! connections ([`DatabaseFile::release`], from `Store::close`). A store
//! dropped unclosed never releases it, and the descriptor stays open
//! until the process ends, as does one being synced as the last store
//! releases it. Other SQLite connections of the process on the file (none
//! in hookplane's binaries) lose their locks once it closes.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

/// A file, by device and inode: what POSIX locks belong to.
type FileKey = (u64, u64);

/// An open descriptor, and how many stores hold it.
type Held = (Arc<Descriptor>, usize);

/// The descriptors open, by file.
static OPEN: LazyLock<Mutex<HashMap<FileKey, Held>>> = LazyLock::new(Mutex::default);

/// One open descriptor; `None` once closed.
#[derive(Debug)]
struct Descriptor(Mutex<Option<File>>);

impl Drop for Descriptor {
    /// Still open here, it was not closed at its last release (a sync held
    /// it), and it is left open.
    fn drop(&mut self) {
        let file = match self.0.get_mut() {
            Ok(file) => file.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        std::mem::forget(file);
    }
}

/// A store's hold on the descriptor of its database file.
#[derive(Debug)]
pub(super) struct DatabaseFile {
    key: FileKey,
    descriptor: Arc<Descriptor>,
    released: AtomicBool,
}

impl DatabaseFile {
    /// Holds the descriptor of the database file at `path`, which SQLite
    /// created already, opening it if no store holds it yet; `None` where
    /// it cannot be opened (the store then goes without, and its
    /// checkpoints sync the file during the writers' turn), and off Unix.
    pub(super) fn open(path: &Path) -> Option<Arc<DatabaseFile>> {
        match hold(path) {
            Ok(held) => held.map(Arc::new),
            Err(err) => {
                tracing::warn!(error = %err, "could not open the database file to sync it outside the writers' turn");
                None
            }
        }
    }

    /// Writes the file's pages out to the disk, on a thread that may block.
    /// A closed descriptor has nothing to write.
    pub(super) async fn sync(&self) -> io::Result<()> {
        let descriptor = Arc::clone(&self.descriptor);
        let synced = tokio::task::spawn_blocking(move || match &*descriptor.0.lock().expect("not poisoned") {
            Some(file) => file.sync_data(),
            None => Ok(()),
        });
        synced.await.unwrap_or_else(|joined| Err(io::Error::other(joined)))
    }

    /// Lets go of the descriptor, once every connection of the store is
    /// closed; the last store to let go closes it. Once per store: later
    /// calls change nothing.
    pub(super) fn release(&self) {
        if self.released.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut open = OPEN.lock().expect("not poisoned");
        let Some((_, holders)) = open.get_mut(&self.key) else { return };
        *holders -= 1;
        if *holders == 0 {
            open.remove(&self.key);
            // A sync in flight keeps it open (see `Descriptor`'s drop):
            // this runs on an async thread, which does not wait for one.
            if let Ok(mut file) = self.descriptor.0.try_lock() {
                drop(file.take());
            }
        }
    }
}

/// Joins the stores holding the descriptor of the file at `path`, or
/// opens it for the first.
#[cfg(unix)]
fn hold(path: &Path) -> io::Result<Option<DatabaseFile>> {
    use std::os::unix::fs::MetadataExt as _;
    let key = |metadata: std::fs::Metadata| (metadata.dev(), metadata.ino());
    let mut open = OPEN.lock().expect("not poisoned");
    // Looked up before opening: a second descriptor of a file held already
    // could never be closed.
    let by_path = key(std::fs::metadata(path)?);
    if let Some((descriptor, holders)) = open.get_mut(&by_path) {
        *holders += 1;
        let descriptor = Arc::clone(descriptor);
        return Ok(Some(DatabaseFile { key: by_path, descriptor, released: AtomicBool::new(false) }));
    }
    let file = File::open(path)?;
    let key = match file.metadata() {
        Ok(metadata) => key(metadata),
        Err(err) => {
            // Of which file, unknown: closing it could drop a store's locks.
            std::mem::forget(file);
            return Err(err);
        }
    };
    if key != by_path {
        // Replaced between the two: this descriptor is of another file,
        // which a store may hold; it is left open, and unused.
        std::mem::forget(file);
        return Ok(None);
    }
    let descriptor = Arc::new(Descriptor(Mutex::new(Some(file))));
    open.insert(key, (Arc::clone(&descriptor), 1));
    Ok(Some(DatabaseFile { key, descriptor, released: AtomicBool::new(false) }))
}

/// Off Unix no lock is lost by closing a descriptor, but the stores go
/// without one: hookplane runs on Linux.
#[cfg(not(unix))]
fn hold(_path: &Path) -> io::Result<Option<DatabaseFile>> {
    Ok(None)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::os::fd::AsRawFd as _;

    use super::*;

    /// Whether descriptor `fd` of this process is open on `path`.
    fn open_on(fd: i32, path: &Path) -> bool {
        std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok_and(|target| target == path)
    }

    fn descriptor(file: &DatabaseFile) -> i32 {
        file.descriptor.0.lock().unwrap().as_ref().expect("open").as_raw_fd()
    }

    fn database(dir: &tempfile::TempDir) -> std::path::PathBuf {
        let path = dir.path().join("store.db");
        std::fs::write(&path, b"pages").unwrap();
        path
    }

    #[tokio::test]
    async fn the_last_store_to_release_the_file_closes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = database(&dir);
        let first = DatabaseFile::open(&path).expect("opened");
        let second = DatabaseFile::open(&path).expect("held");
        let fd = descriptor(&first);
        assert_eq!(descriptor(&second), fd, "one descriptor for the file");
        first.sync().await.expect("synced");
        first.release();
        first.release();
        assert!(open_on(fd, &path), "still held by the second store, released once by the first");
        second.sync().await.expect("synced");
        second.release();
        assert!(!open_on(fd, &path), "closed");
        second.sync().await.expect("nothing to sync");
        let third = DatabaseFile::open(&path).expect("opened again");
        assert!(open_on(descriptor(&third), &path));
        third.release();
    }

    #[tokio::test]
    async fn an_unreleased_file_stays_open_after_its_stores_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = database(&dir);
        let file = DatabaseFile::open(&path).expect("opened");
        let fd = descriptor(&file);
        drop(file);
        assert!(open_on(fd, &path), "left open, with whatever locks the process holds");
    }

    #[test]
    fn a_missing_file_is_gone_without() {
        let dir = tempfile::tempdir().unwrap();
        assert!(DatabaseFile::open(&dir.path().join("missing.db")).is_none());
    }
}
