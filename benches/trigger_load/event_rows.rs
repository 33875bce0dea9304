//! The floor under any server that records every request as an event on
//! the machine that answers it: a baseline's handler copies the request's
//! header block and body into a row, hands it to a writer task, and the
//! writer stores rows in batches with the raw insert of
//! `benches/shared/raw_events.rs` (one SQLite connection, WAL). No
//! protocol between answering and storing, no encoding, no checks: what a
//! bare server plus a bare insert cost. Hookplane's ratio to bare hyper
//! cannot exceed this floor's on the same cores.
//!
//! Its rows hold what hookplane's hold, byte for byte where the size
//! matters to SQLite: the organization's and the connector's real ids (26
//! characters each, in the row and in the three indexes that hold them)
//! and ids as large as hookplane's (SQLite stores an integer in as few
//! bytes as it fits). With `org_bench` and ids counted from 1, as this
//! floor once had, its rows and index entries were a third smaller, and its
//! SQLite thread wrote that much less to the WAL per row. Each scenario's
//! floor records under the connector hookplane's side of it uses: with one
//! connector for all, every row went to the end of the connector index,
//! where SQLite appends cheaply, while hookplane's rows for the check path
//! went into its middle once the end-to-end scenario's connector had rows
//! (hookplane's SQLite cost per event rose from 12.5 to 15.4 µs there
//! between a first and a second round, the floor's not at all).
//!
//! It answers before its row is stored, which promises less than
//! hookplane, whose answer waits until the event is kept. With
//! `HOOKPLANE_LOAD_FLOOR=durable` the floor keeps that promise too: each
//! handler waits until the transaction holding its row committed (rows
//! still go in batches, so concurrent calls share a commit).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use bytes::Bytes;
use hyper::HeaderMap;
use tokio::sync::{mpsc, oneshot};

#[path = "../shared/raw_events.rs"]
pub(crate) mod raw_events;

/// Rows the writer takes off its queue and stores at once.
pub(crate) const BATCH: usize = 1_000;
/// The first row's id: as many significant bits as hookplane's event ids
/// have today (milliseconds since 2025 shifted past 12 bits of node and
/// sequence).
const FIRST_ID: i64 = 1 << 47;

/// Whose events the rows are: hookplane's own ids, so rows are as long
/// (the connector's is the first scenario's; see [`EventRows::for_connector`]).
pub struct RowOwner {
    pub organization_id: String,
    pub connector_id: String,
    pub node_id: String,
}

impl RowOwner {
    /// Rows of `connector_id` in `organization_id`, from the node the
    /// benches start (`bench-node`).
    pub fn of_bench_node(organization_id: &str, connector_id: &str) -> RowOwner {
        RowOwner {
            organization_id: organization_id.into(),
            connector_id: connector_id.into(),
            node_id: "bench-node".into(),
        }
    }
}

/// A row queued for the writer: its id, connector, trace, and whom to tell
/// once it is committed.
pub(crate) type Queued = (i64, Arc<str>, Vec<u8>, Option<oneshot::Sender<()>>);

/// Where a handler records its request. Cheap to clone.
#[derive(Clone)]
pub struct EventRows {
    queue: mpsc::UnboundedSender<Queued>,
    /// The connector the rows are recorded under.
    connector_id: Arc<str>,
    /// Whether handlers wait for their row's commit.
    durable: bool,
    next_id: Arc<AtomicI64>,
    pending: Arc<AtomicU64>,
}

impl EventRows {
    /// A fresh events database in `dir` and its writer task.
    pub async fn start(dir: &std::path::Path, owner: RowOwner) -> EventRows {
        let pool = raw_events::open(&dir.join("floor.db")).await;
        let durable = std::env::var("HOOKPLANE_LOAD_FLOOR").is_ok_and(|v| v == "durable");
        let (rows, mut queue, pending) = EventRows::queued(&owner.connector_id, durable);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while queue.recv_many(&mut batch, BATCH).await > 0 {
                let stored = batch.iter().map(|(id, connector_id, trace, _)| (*id, &**connector_id, &trace[..]));
                store(&pool, &owner, stored).await;
                release(&mut batch, &pending);
            }
        });
        rows
    }

    /// Rows for `connector_id`, the queue their writer takes them from,
    /// and the count of those not yet stored, which the writer lowers.
    pub(crate) fn queued(
        connector_id: &str,
        durable: bool,
    ) -> (EventRows, mpsc::UnboundedReceiver<Queued>, Arc<AtomicU64>) {
        let (queue, rows) = mpsc::unbounded_channel::<Queued>();
        let pending = Arc::new(AtomicU64::new(0));
        let recorder = EventRows {
            queue,
            connector_id: connector_id.into(),
            durable,
            next_id: Arc::new(AtomicI64::new(FIRST_ID)),
            pending: pending.clone(),
        };
        (recorder, rows, pending)
    }

    /// The same rows, recorded under `connector_id`.
    pub fn for_connector(&self, connector_id: &str) -> EventRows {
        EventRows { connector_id: connector_id.into(), ..self.clone() }
    }

    /// Whether handlers wait for their row's commit.
    pub fn durable(&self) -> bool {
        self.durable
    }

    /// Copies the request's headers and body (and `answer`, if any) into a
    /// row and queues it; when durable, returns once it is stored.
    pub async fn record(&self, headers: &HeaderMap, body: &Bytes, answer: &[u8]) {
        let mut trace = Vec::with_capacity(256 + body.len() + answer.len());
        for (name, value) in headers {
            trace.extend_from_slice(name.as_str().as_bytes());
            trace.extend_from_slice(b": ");
            trace.extend_from_slice(value.as_bytes());
            trace.extend_from_slice(b"\r\n");
        }
        trace.extend_from_slice(body);
        trace.extend_from_slice(answer);
        self.record_trace(trace).await;
    }

    /// Queues a row holding `trace`; when durable, returns once it is
    /// stored. Returns the row's id.
    pub async fn record_trace(&self, trace: impl Into<Vec<u8>>) -> i64 {
        self.pending.fetch_add(1, Ordering::Relaxed);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connector_id = self.connector_id.clone();
        if !self.durable {
            let _ = self.queue.send((id, connector_id, trace.into(), None));
            return id;
        }
        let (committed, stored) = oneshot::channel();
        let _ = self.queue.send((id, connector_id, trace.into(), Some(committed)));
        let _ = stored.await;
        id
    }

    /// Rows queued and not yet stored.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }
}

/// Stores `rows` (id, connector, trace) of `owner` in one batch.
pub(crate) async fn store<'a>(
    pool: &sqlx::SqlitePool,
    owner: &RowOwner,
    rows: impl Iterator<Item = (i64, &'a str, &'a [u8])>,
) {
    // Stamped as they are stored, so the time index grows as hookplane's
    // does.
    let now = chrono::Utc::now().timestamp_micros();
    let rows: Vec<raw_events::RawRow<'_>> = rows
        .map(|(id, connector_id, trace)| raw_events::RawRow {
            id,
            organization_id: &owner.organization_id,
            connector_id,
            status: "skipped",
            response_code: None,
            error: "",
            node_id: &owner.node_id,
            create_time: now,
            duration_ms: 0,
            trace,
        })
        .collect();
    raw_events::insert(pool, &rows).await;
}

/// Tells the handlers waiting on `batch` that it is stored, and empties it.
pub(crate) fn release(batch: &mut Vec<Queued>, pending: &AtomicU64) {
    pending.fetch_sub(batch.len() as u64, Ordering::Relaxed);
    for (_, _, _, committed) in batch.drain(..) {
        if let Some(committed) = committed {
            let _ = committed.send(());
        }
    }
}
