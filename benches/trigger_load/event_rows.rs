//! The floor under any server that records every request as an event on
//! the machine that answers it: a baseline's handler copies the request's
//! header block and body into a row, hands it to a writer task, and the
//! writer stores rows in batches with the raw insert of
//! `benches/shared/raw_events.rs` (one SQLite connection, WAL). No
//! protocol between answering and storing, no encoding, no checks: what a
//! bare server plus a bare insert cost. Hookplane's ratio to bare hyper
//! cannot exceed this floor's on the same cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use bytes::Bytes;
use hyper::HeaderMap;
use tokio::sync::mpsc;

#[path = "../shared/raw_events.rs"]
mod raw_events;

/// Rows the writer takes off its queue and stores in one transaction.
const BATCH: usize = 1_000;

/// Where a handler records its request. Cheap to clone.
#[derive(Clone)]
pub struct EventRows {
    queue: mpsc::UnboundedSender<(i64, Vec<u8>)>,
    next_id: Arc<AtomicI64>,
    pending: Arc<AtomicU64>,
}

impl EventRows {
    /// A fresh events database in `dir` and its writer task.
    pub async fn start(dir: &std::path::Path) -> EventRows {
        let pool = raw_events::open(&dir.join("floor.db")).await;
        let (queue, mut rows) = mpsc::unbounded_channel::<(i64, Vec<u8>)>();
        let pending = Arc::new(AtomicU64::new(0));
        let stored = pending.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            let now = chrono::Utc::now().timestamp_micros();
            while rows.recv_many(&mut batch, BATCH).await > 0 {
                let rows: Vec<raw_events::RawRow<'_>> = batch
                    .iter()
                    .map(|(id, trace)| raw_events::RawRow {
                        id: *id,
                        organization_id: "org_bench",
                        connector_id: "con_bench",
                        status: "skipped",
                        response_code: None,
                        error: "",
                        node_id: "bench-floor",
                        create_time: now,
                        duration_ms: 0,
                        trace,
                    })
                    .collect();
                raw_events::insert(&pool, &rows).await;
                stored.fetch_sub(batch.len() as u64, Ordering::Relaxed);
                batch.clear();
            }
        });
        EventRows { queue, next_id: Arc::new(AtomicI64::new(1)), pending }
    }

    /// Copies the request's headers and body (and `answer`, if any) into a
    /// row and queues it.
    pub fn record(&self, headers: &HeaderMap, body: &Bytes, answer: &[u8]) {
        let mut trace = Vec::with_capacity(256 + body.len() + answer.len());
        for (name, value) in headers {
            trace.extend_from_slice(name.as_str().as_bytes());
            trace.extend_from_slice(b": ");
            trace.extend_from_slice(value.as_bytes());
            trace.extend_from_slice(b"\r\n");
        }
        trace.extend_from_slice(body);
        trace.extend_from_slice(answer);
        self.pending.fetch_add(1, Ordering::Relaxed);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let _ = self.queue.send((id, trace));
    }

    /// Rows queued and not yet stored.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }
}
