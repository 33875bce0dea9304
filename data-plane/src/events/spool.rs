//! Event batches waiting for the control plane.
//!
//! With a cache dir, each batch is one file under `events/`, named by an
//! increasing number and written atomically; it is deleted once the control
//! plane acknowledged it, so batches survive outages and node restarts.
//! Without one, batches wait in memory (and are lost with the process).
//!
//! The numbers of the batches on disk are kept in memory, read from the
//! directory once at start: an outage under load leaves many batches, and
//! finding the oldest must not list them all each time. Files are read,
//! written and removed on tokio's blocking pool, never on a runtime worker.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};

use hookplane::api::v1 as api;
use prost::Message as _;

use crate::cache::{CacheError, write_atomically};

const SUFFIX: &str = ".batch";

/// Batches in arrival order.
#[derive(Debug)]
pub struct Spool {
    dir: Option<PathBuf>,
    memory: VecDeque<Vec<api::NodeEvent>>,
    /// Numbers of the batches on disk, oldest first.
    numbers: VecDeque<u64>,
    next: u64,
}

impl Spool {
    /// A spool under `cache_dir/events`, or in memory.
    pub async fn open(cache_dir: Option<PathBuf>) -> Spool {
        let dir = cache_dir.map(|d| d.join("events"));
        let numbers = match dir.clone() {
            Some(dir) => tokio::task::spawn_blocking(move || numbers(&dir)).await.unwrap_or_default(),
            None => VecDeque::new(),
        };
        let next = numbers.back().map_or(0, |n| n + 1);
        Spool { dir, memory: VecDeque::new(), numbers, next }
    }

    /// Whether batches are kept on disk (else in memory).
    pub fn is_durable(&self) -> bool {
        self.dir.is_some()
    }

    /// Keeps a batch until it is acknowledged; returns its handle on disk
    /// (none in memory). The write syncs the file and the directory.
    pub async fn push(&mut self, events: Vec<api::NodeEvent>) -> Result<Option<u64>, CacheError> {
        let Some(dir) = &self.dir else {
            self.memory.push_back(events);
            return Ok(None);
        };
        let number = self.next;
        let bytes = api::ReportEventsRequest { batch: number, events }.encode_to_vec();
        let (dir, name) = (dir.clone(), file_name(number));
        let path = dir.join(&name);
        tokio::task::spawn_blocking(move || write_atomically(&dir, &name, &bytes))
            .await
            .map_err(|err| CacheError::Io { path, source: std::io::Error::other(err) })??;
        self.next += 1;
        self.numbers.push_back(number);
        Ok(Some(number))
    }

    /// The oldest batch, with the handle to remove it. An unreadable file
    /// is logged and dropped.
    pub async fn oldest(&mut self) -> Option<(Option<u64>, Vec<api::NodeEvent>)> {
        let Some(dir) = &self.dir else {
            return self.memory.front().map(|b| (None, b.clone()));
        };
        while let Some(&number) = self.numbers.front() {
            let path = dir.join(file_name(number));
            let read = path.clone();
            let batch = tokio::task::spawn_blocking(move || {
                fs::read(&read).ok().and_then(|b| api::ReportEventsRequest::decode(b.as_slice()).ok())
            })
            .await
            .ok()
            .flatten();
            match batch {
                Some(batch) => return Some((Some(number), batch.events)),
                None => {
                    tracing::error!(path = %path.display(), "dropping an unreadable event batch");
                    let _ = fs::remove_file(&path);
                    self.numbers.pop_front();
                }
            }
        }
        None
    }

    /// Forgets an acknowledged batch: the one on disk with `handle`, or
    /// the oldest in memory.
    pub async fn remove(&mut self, handle: Option<u64>) {
        match (handle, &self.dir) {
            (Some(number), Some(dir)) => {
                if self.numbers.front() == Some(&number) {
                    self.numbers.pop_front();
                } else {
                    self.numbers.retain(|&n| n != number);
                }
                let path = dir.join(file_name(number));
                let _ = tokio::task::spawn_blocking(move || fs::remove_file(path)).await;
            }
            _ => {
                self.memory.pop_front();
            }
        }
    }

    /// Events waiting in memory (none are counted on disk).
    pub fn events_in_memory(&self) -> usize {
        self.memory.iter().map(Vec::len).sum()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        match &self.dir {
            Some(_) => self.numbers.is_empty(),
            None => self.memory.is_empty(),
        }
    }
}

fn file_name(number: u64) -> String {
    format!("{number:020}{SUFFIX}")
}

/// The batch numbers in `dir`, ascending.
fn numbers(dir: &Path) -> VecDeque<u64> {
    let Ok(entries) = fs::read_dir(dir) else {
        return VecDeque::new();
    };
    let mut numbers: Vec<u64> =
        entries.filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(SUFFIX)?.parse().ok()).collect();
    numbers.sort_unstable();
    numbers.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(id: i64) -> Vec<api::NodeEvent> {
        vec![api::NodeEvent {
            organization_id: "org".into(),
            event: Some(api::Event { id, ..Default::default() }),
            ..Default::default()
        }]
    }

    async fn drain(spool: &mut Spool) -> Vec<i64> {
        let mut ids = Vec::new();
        while let Some((handle, events)) = spool.oldest().await {
            spool.remove(handle).await;
            ids.push(events[0].event.as_ref().unwrap().id);
        }
        ids
    }

    #[tokio::test]
    async fn batches_survive_reopening_in_order_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(Some(dir.path().to_owned())).await;
        assert!(spool.is_empty());
        spool.push(batch(1)).await.unwrap();
        spool.push(batch(2)).await.unwrap();
        let mut reopened = Spool::open(Some(dir.path().to_owned())).await;
        let (handle, events) = reopened.oldest().await.unwrap();
        assert_eq!(events[0].event.as_ref().unwrap().id, 1);
        reopened.remove(handle).await;
        reopened.push(batch(3)).await.unwrap();
        assert_eq!(drain(&mut reopened).await, vec![2, 3]);
        assert!(reopened.is_empty());
    }

    #[tokio::test]
    async fn a_batch_removed_out_of_order_leaves_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(Some(dir.path().to_owned())).await;
        let _ = spool.push(batch(1)).await.unwrap();
        let second = spool.push(batch(2)).await.unwrap();
        spool.push(batch(3)).await.unwrap();
        // A late ack removes the copy of a batch that was in flight.
        spool.remove(second).await;
        assert_eq!(drain(&mut spool).await, vec![1, 3]);
    }

    #[tokio::test]
    async fn files_removed_behind_its_back_leave_the_spool_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(Some(dir.path().to_owned())).await;
        spool.push(batch(1)).await.unwrap();
        for entry in fs::read_dir(dir.path().join("events")).unwrap() {
            fs::remove_file(entry.unwrap().path()).unwrap();
        }
        assert!(!spool.is_empty(), "the count does not read the directory");
        assert!(spool.oldest().await.is_none());
        assert!(spool.is_empty(), "finding nothing readable empties it, so a flush ends");
    }

    #[tokio::test]
    async fn without_a_directory_batches_wait_in_memory() {
        let mut spool = Spool::open(None).await;
        spool.push(batch(1)).await.unwrap();
        let (handle, _) = spool.oldest().await.unwrap();
        spool.remove(handle).await;
        assert!(spool.is_empty());
    }
}
