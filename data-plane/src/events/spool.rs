//! Event batches waiting for the control plane.
//!
//! With a cache dir, each batch is one file under `events/`, named by an
//! increasing number and written atomically; it is deleted once the control
//! plane acknowledged it, so batches survive outages and node restarts.
//! Without one, batches wait in memory (and are lost with the process).

use std::collections::VecDeque;
use std::fs;
use std::path::PathBuf;

use hookplane::api::v1 as api;
use prost::Message as _;

use crate::cache::{CacheError, write_atomically};

const SUFFIX: &str = ".batch";

/// Batches in arrival order.
#[derive(Debug)]
pub struct Spool {
    dir: Option<PathBuf>,
    memory: VecDeque<Vec<api::NodeEvent>>,
    next: u64,
    /// Batch files in `dir`, counted so emptiness costs no directory read.
    files: usize,
}

impl Spool {
    /// A spool under `cache_dir/events`, or in memory.
    pub fn open(cache_dir: Option<PathBuf>) -> Spool {
        let dir = cache_dir.map(|d| d.join("events"));
        let numbers = dir.as_deref().map(numbers).unwrap_or_default();
        let next = numbers.last().map_or(0, |n| n + 1);
        Spool { dir, memory: VecDeque::new(), next, files: numbers.len() }
    }

    /// Whether batches are kept on disk (else in memory).
    pub fn is_durable(&self) -> bool {
        self.dir.is_some()
    }

    /// Keeps a batch until it is acknowledged. The write syncs the file
    /// and the directory, so it runs off the runtime's workers: a node
    /// spools while it is busiest, when the control plane lags.
    /// Returns the batch's handle on disk (none in memory).
    pub async fn push(&mut self, events: Vec<api::NodeEvent>) -> Result<Option<u64>, CacheError> {
        let Some(dir) = &self.dir else {
            self.memory.push_back(events);
            return Ok(None);
        };
        let bytes = api::ReportEventsRequest { batch: self.next, events }.encode_to_vec();
        let (dir, name) = (dir.clone(), format!("{:020}{SUFFIX}", self.next));
        let path = dir.join(&name);
        tokio::task::spawn_blocking(move || write_atomically(&dir, &name, &bytes))
            .await
            .map_err(|err| CacheError::Io { path, source: std::io::Error::other(err) })??;
        let handle = self.next;
        self.next += 1;
        self.files += 1;
        Ok(Some(handle))
    }

    /// The oldest batch, with the handle to remove it.
    pub fn oldest(&mut self) -> Option<(Option<u64>, Vec<api::NodeEvent>)> {
        let Some(dir) = &self.dir else {
            return self.memory.front().map(|b| (None, b.clone()));
        };
        for number in numbers(dir) {
            let path = dir.join(format!("{number:020}{SUFFIX}"));
            match fs::read(&path).ok().and_then(|b| api::ReportEventsRequest::decode(b.as_slice()).ok()) {
                Some(batch) => return Some((Some(number), batch.events)),
                None => {
                    tracing::error!(path = %path.display(), "dropping an unreadable event batch");
                    let _ = fs::remove_file(&path);
                    self.files = self.files.saturating_sub(1);
                }
            }
        }
        // Nothing readable is left, whatever the count said (files removed
        // by hand): callers loop while the spool is not empty.
        self.files = 0;
        None
    }

    /// Forgets an acknowledged batch: the one on disk with `handle`, or
    /// the oldest in memory.
    pub fn remove(&mut self, handle: Option<u64>) {
        match (handle, &self.dir) {
            (Some(number), Some(dir)) => {
                let _ = fs::remove_file(dir.join(format!("{number:020}{SUFFIX}")));
                self.files = self.files.saturating_sub(1);
            }
            _ => {
                self.memory.pop_front();
            }
        }
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        match &self.dir {
            Some(_) => self.files == 0,
            None => self.memory.is_empty(),
        }
    }
}

/// The batch numbers in `dir`, ascending.
fn numbers(dir: &std::path::Path) -> Vec<u64> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut numbers: Vec<u64> =
        entries.filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(SUFFIX)?.parse().ok()).collect();
    numbers.sort_unstable();
    numbers
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

    #[tokio::test]
    async fn batches_survive_reopening_in_order_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(Some(dir.path().to_owned()));
        assert!(spool.is_empty());
        spool.push(batch(1)).await.unwrap();
        spool.push(batch(2)).await.unwrap();
        let mut reopened = Spool::open(Some(dir.path().to_owned()));
        let (handle, events) = reopened.oldest().unwrap();
        assert_eq!(events[0].event.as_ref().unwrap().id, 1);
        reopened.remove(handle);
        reopened.push(batch(3)).await.unwrap();
        let ids: Vec<i64> = std::iter::from_fn(|| {
            let (handle, events) = reopened.oldest()?;
            reopened.remove(handle);
            Some(events[0].event.as_ref().unwrap().id)
        })
        .collect();
        assert_eq!(ids, vec![2, 3]);
        assert!(reopened.is_empty());
    }

    #[tokio::test]
    async fn files_removed_behind_its_back_leave_the_spool_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(Some(dir.path().to_owned()));
        spool.push(batch(1)).await.unwrap();
        for entry in fs::read_dir(dir.path().join("events")).unwrap() {
            fs::remove_file(entry.unwrap().path()).unwrap();
        }
        assert!(!spool.is_empty(), "the count does not read the directory");
        assert!(spool.oldest().is_none());
        assert!(spool.is_empty(), "finding nothing resets the count, so a flush ends");
    }

    #[tokio::test]
    async fn without_a_directory_batches_wait_in_memory() {
        let mut spool = Spool::open(None);
        spool.push(batch(1)).await.unwrap();
        let (handle, _) = spool.oldest().unwrap();
        spool.remove(handle);
        assert!(spool.is_empty());
    }
}
