//! Calls accepted for later: the asynchronous mode of SPEC §4.
//!
//! A connector in asynchronous mode answers 202 once a call passed every
//! check and is on the node's disk: one file per call under
//! `cache_dir/accepted/`, written and synced before the answer, removed
//! once the call ran and its event is kept (stored by the control plane,
//! or in the event spool on disk). A node that stops, or dies, with calls
//! on disk runs them when it starts again: accepted work is not lost, and
//! it runs at least once (a node killed between the target's answer and
//! the file's removal runs it again; the event keeps its id, so the
//! control plane stores it once).
//!
//! The files hold what the execution needs and nothing more secret than
//! the event will: the inbound credentials (`Authorization` and the
//! connector's own credential headers) are replaced before the write.
//! Without a cache dir, calls wait in memory, as the event spool does.
//!
//! At most `NodeConfig::max_accepted_calls` calls wait at once; beyond,
//! the endpoint sheds with 503, as it does when too many calls run.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use prost::Message;
use tokio::sync::mpsc;

use crate::cache::{CacheError, write_atomically};

const SUFFIX: &str = ".call";

/// Default of `NodeConfig::max_accepted_calls`.
pub const MAX_ACCEPTED_CALLS: usize = 10_000;

/// One accepted call, as kept on disk.
#[derive(Clone, PartialEq, Message)]
pub struct AcceptedCall {
    #[prost(int64, tag = "1")]
    pub event_id: i64,
    #[prost(string, tag = "2")]
    pub connector_id: String,
    /// When the call arrived, Unix microseconds.
    #[prost(int64, tag = "3")]
    pub received_micros: i64,
    #[prost(string, tag = "4")]
    pub client_ip: String,
    #[prost(string, tag = "5")]
    pub auth_method: String,
    #[prost(uint32, tag = "6")]
    pub depth: u32,
    /// Header names and values in order, credentials replaced.
    #[prost(message, repeated, tag = "7")]
    pub headers: Vec<StoredHeader>,
    /// The body, checked to be JSON when the call was accepted.
    #[prost(bytes = "bytes", tag = "8")]
    pub body: Bytes,
    /// For the event of a call whose connector is gone when it runs.
    #[prost(string, tag = "9")]
    pub organization_id: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct StoredHeader {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

/// Why a call could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("{0} accepted calls already wait")]
    Full(usize),
    #[error(transparent)]
    Write(#[from] CacheError),
}

/// The accepted calls waiting to run, and the queue to their runner.
#[derive(Debug)]
pub struct Inbox {
    dir: Option<PathBuf>,
    capacity: usize,
    waiting: Arc<AtomicUsize>,
    queue: mpsc::UnboundedSender<AcceptedCall>,
}

impl Inbox {
    /// An inbox under `cache_dir/accepted` (or in memory), the receiving
    /// end of its queue, and the calls a previous run left on disk, oldest
    /// first; they count against `capacity` until they ran.
    pub fn open(
        cache_dir: Option<&Path>,
        capacity: usize,
    ) -> (Inbox, mpsc::UnboundedReceiver<AcceptedCall>, Vec<AcceptedCall>) {
        let dir = cache_dir.map(|d| d.join("accepted"));
        let left = dir.as_deref().map(read_all).unwrap_or_default();
        let (queue, receiver) = mpsc::unbounded_channel();
        let inbox = Inbox { dir, capacity, waiting: Arc::new(AtomicUsize::new(left.len())), queue };
        (inbox, receiver, left)
    }

    /// Keeps `call` until it ran: on disk (synced) before this returns,
    /// then queued for the runner. Once it has taken the call's place, a
    /// caller that goes away (the sender hung up, hyper dropped the call)
    /// no longer matters: the write and the queueing finish on the
    /// blocking pool. Done here, a cut-off acceptance held its place until
    /// the node restarted, and its written call waited for that restart.
    pub async fn accept(&self, call: AcceptedCall) -> Result<(), InboxError> {
        let reserved =
            self.waiting.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.capacity).then_some(n + 1));
        if reserved.is_err() {
            return Err(InboxError::Full(self.capacity));
        }
        // The runner is gone only at shutdown; a written call then waits for
        // the next start.
        let Some(dir) = &self.dir else {
            let _ = self.queue.send(call);
            return Ok(());
        };
        let (dir, name, bytes) = (dir.clone(), file_name(call.event_id), call.encode_to_vec());
        let path = dir.join(&name);
        let (queue, waiting) = (self.queue.clone(), self.waiting.clone());
        // Syncing waits on the disk: off the runtime's workers.
        let kept = tokio::task::spawn_blocking(move || match write_atomically(&dir, &name, &bytes) {
            Ok(()) => {
                let _ = queue.send(call);
                Ok(())
            }
            Err(err) => {
                waiting.fetch_sub(1, Ordering::AcqRel);
                Err(err)
            }
        })
        .await;
        match kept {
            Ok(kept) => kept.map_err(InboxError::from),
            // It panicked, or never ran (the runtime stopping).
            Err(err) => {
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                Err(CacheError::Io { path, source: std::io::Error::other(err) }.into())
            }
        }
    }

    /// Forgets a call that ran (its event is kept).
    pub async fn done(&self, event_id: i64) {
        if let Some(dir) = &self.dir {
            let path = dir.join(file_name(event_id));
            let removed = tokio::task::spawn_blocking(move || fs::remove_file(&path).map_err(|e| (path, e))).await;
            if let Ok(Err((path, err))) = removed {
                tracing::error!(path = %path.display(), error = %err, "could not remove a call that ran; it will run again on restart");
            }
        }
        self.waiting.fetch_sub(1, Ordering::AcqRel);
    }

    /// Queues a call that could not run now to run again after `delay`;
    /// it stays on disk (and counted) meanwhile, and a node stopped before
    /// then runs it on its next start.
    pub fn retry_later(&self, call: AcceptedCall, delay: std::time::Duration) {
        let queue = self.queue.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = queue.send(call);
        });
    }

    /// Calls accepted and not run yet.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }
}

fn file_name(event_id: i64) -> String {
    format!("{event_id:020}{SUFFIX}")
}

/// Every readable call in `dir`, by event id; unreadable files are logged
/// and set aside (renamed), never run half-read.
fn read_all(dir: &Path) -> Vec<AcceptedCall> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == &SUFFIX[1..]))
        .collect();
    names.sort_unstable();
    let mut calls = Vec::with_capacity(names.len());
    for path in names {
        match fs::read(&path).ok().and_then(|bytes| AcceptedCall::decode(bytes.as_slice()).ok()) {
            Some(call) => calls.push(call),
            None => {
                tracing::error!(path = %path.display(), "setting aside an unreadable accepted call");
                let _ = fs::rename(&path, path.with_extension("unreadable"));
            }
        }
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An acceptance dropped while its call is being written (its sender
    /// gone) still keeps and queues the call: it runs without waiting for
    /// a restart, and holds its place only until then.
    #[tokio::test]
    async fn an_acceptance_cut_off_while_writing_still_keeps_and_queues_the_call() {
        let dir = tempfile::tempdir().unwrap();
        let (inbox, mut receiver, _) = Inbox::open(Some(dir.path()), 10);
        let mut accepting = Box::pin(inbox.accept(call(7)));
        let first = std::future::poll_fn(|cx| std::task::Poll::Ready(accepting.as_mut().poll(cx))).await;
        assert!(first.is_pending(), "a synced write takes longer than one poll");
        drop(accepting);
        let queued = tokio::time::timeout(std::time::Duration::from_secs(10), receiver.recv()).await;
        assert_eq!(queued.expect("queued all the same").expect("a call").event_id, 7);
        assert_eq!(inbox.waiting(), 1, "its place, until it ran");
        assert!(dir.path().join("accepted").join(file_name(7)).exists());
        inbox.done(7).await;
        assert_eq!(inbox.waiting(), 0);
    }

    fn call(event_id: i64) -> AcceptedCall {
        AcceptedCall {
            event_id,
            connector_id: "con_1".into(),
            headers: vec![StoredHeader { name: "content-type".into(), value: Bytes::from_static(b"application/json") }],
            body: Bytes::from_static(br#"{"id":1}"#),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn accepted_calls_survive_reopening_in_order_until_done() {
        let dir = tempfile::tempdir().unwrap();
        let (inbox, mut queue, left) = Inbox::open(Some(dir.path()), 10);
        assert!(left.is_empty());
        for id in [12, 3, 7] {
            inbox.accept(call(id)).await.unwrap();
        }
        assert_eq!(queue.recv().await.unwrap(), call(12), "queued as accepted");
        inbox.done(7).await;
        assert_eq!(inbox.waiting(), 2);

        let (reopened, _queue, left) = Inbox::open(Some(dir.path()), 10);
        assert_eq!(left, vec![call(3), call(12)], "what did not run, by event id");
        assert_eq!(reopened.waiting(), 2, "left calls count until they ran");
        reopened.done(3).await;
        reopened.done(12).await;
        assert!(Inbox::open(Some(dir.path()), 10).2.is_empty());
    }

    #[tokio::test]
    async fn a_full_inbox_refuses_and_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (inbox, _queue, _) = Inbox::open(Some(dir.path()), 2);
        inbox.accept(call(1)).await.unwrap();
        inbox.accept(call(2)).await.unwrap();
        assert!(matches!(inbox.accept(call(3)).await, Err(InboxError::Full(2))));
        assert_eq!(Inbox::open(Some(dir.path()), 2).2.len(), 2, "the refused call left no file");
        inbox.done(1).await;
        inbox.accept(call(3)).await.unwrap();
    }

    #[tokio::test]
    async fn unreadable_files_are_set_aside_not_run() {
        let dir = tempfile::tempdir().unwrap();
        let (inbox, _queue, _) = Inbox::open(Some(dir.path()), 10);
        inbox.accept(call(1)).await.unwrap();
        fs::write(dir.path().join("accepted").join(file_name(2)), b"\xff\xff not a call").unwrap();
        let (_, _, left) = Inbox::open(Some(dir.path()), 10);
        assert_eq!(left, vec![call(1)]);
        assert!(dir.path().join("accepted").join(format!("{:020}.unreadable", 2)).exists());
    }

    #[tokio::test]
    async fn without_a_directory_calls_wait_in_memory() {
        let (inbox, mut queue, left) = Inbox::open(None, 10);
        assert!(left.is_empty());
        inbox.accept(call(1)).await.unwrap();
        assert_eq!(queue.recv().await.unwrap().event_id, 1);
        inbox.done(1).await;
        assert_eq!(inbox.waiting(), 0);
    }
}
