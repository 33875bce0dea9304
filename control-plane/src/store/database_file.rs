//! A descriptor of the store's SQLite database file, of the store's own,
//! for the checkpointer to sync the file outside the writers' turn
//! (`checkpoint.rs`).
//!
//! Invariant: it is closed only once every connection of the store is.
//! Closing any descriptor of a file drops every POSIX lock the process
//! holds on it, SQLite's among them (SQLite's "How To Corrupt", §2.2):
//! another process could then take the database while this one still
//! writes it. So the descriptor is opened once, for the store's life, and
//! only [`DatabaseFile::release`], which `Store::close` calls after
//! closing its connections, closes it; a store dropped unclosed leaves it
//! open until the process ends (its connections close in the background,
//! after the drop).

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The database file, open until released (see the module's invariant).
#[derive(Debug)]
pub(super) struct DatabaseFile {
    file: Mutex<Option<File>>,
}

impl DatabaseFile {
    /// Opens the database file at `path`, which SQLite created already;
    /// `None` where it cannot be opened, and the store then goes without.
    pub(super) fn open(path: &Path) -> Option<Arc<DatabaseFile>> {
        match File::open(path) {
            Ok(file) => Some(Arc::new(DatabaseFile { file: Mutex::new(Some(file)) })),
            Err(err) => {
                tracing::warn!(error = %err, "could not open the database file to sync it; checkpoints sync it during the writers' turn");
                None
            }
        }
    }

    /// Writes the file's pages out to the disk, on a thread that may block.
    /// A released file has nothing to write.
    pub(super) async fn sync(self: &Arc<DatabaseFile>) -> io::Result<()> {
        let this = Arc::clone(self);
        let synced = tokio::task::spawn_blocking(move || match &*this.file.lock().expect("not poisoned") {
            Some(file) => file.sync_data(),
            None => Ok(()),
        });
        synced.await.unwrap_or_else(|joined| Err(io::Error::other(joined)))
    }

    /// Closes the descriptor: only once every connection of the store is
    /// closed.
    pub(super) fn release(&self) {
        drop(self.file.lock().expect("not poisoned").take());
    }
}

impl Drop for DatabaseFile {
    /// Unreleased, the descriptor is left open: closing it could drop
    /// SQLite's locks while a connection still closes.
    fn drop(&mut self) {
        let file = match self.file.get_mut() {
            Ok(file) => file.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        std::mem::forget(file);
    }
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
        file.file.lock().unwrap().as_ref().expect("open").as_raw_fd()
    }

    #[tokio::test]
    async fn a_released_file_is_closed_and_syncs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        std::fs::write(&path, b"pages").unwrap();
        let file = DatabaseFile::open(&path).expect("opened");
        file.sync().await.expect("synced");
        let fd = descriptor(&file);
        assert!(open_on(fd, &path));
        file.release();
        assert!(!open_on(fd, &path), "closed");
        file.sync().await.expect("nothing to sync");
    }

    #[tokio::test]
    async fn an_unreleased_file_stays_open_after_it_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        std::fs::write(&path, b"pages").unwrap();
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
