//! The node-only measurement's floor: bare hyper recording every request
//! as a row that a store in another process keeps, as a fleet's node has
//! its events kept by the control plane.
//!
//! The least a node can do for that: copy the request into a row
//! (`EventRows::record`, the in-process floor's row byte for byte), queue
//! it, and have one task send what queued up while the last batch was in
//! flight, then wait for the store's word that the batch is committed
//! before the handlers answer. That is the shape of hookplane's reporter
//! (`data-plane/src/events/reporter.rs`) without its protocol: a batch is
//! length-prefixed rows on a bare TCP stream, the ack the count of rows
//! stored. The store ([`serve`]) runs in the control plane's process and
//! inserts each batch with the raw insert of `benches/shared/raw_events.rs`.
//!
//! A batch on the wire: its length in bytes and its row count (both
//! `u32`), then per row the id (`i64`), the connector's id (a `u16`
//! length, then the bytes) and the trace (a `u32` length, then the bytes).
//! Integers are big-endian, as tokio's `read_u32` reads them.

use std::net::SocketAddr;
use std::path::Path;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::event_rows::{self, BATCH, EventRows, Queued, RowOwner};

/// Rows recorded under `connector_id`, kept by the store at `store`. They
/// are always durable: a handler returns once its row is committed there.
pub async fn connect(store: SocketAddr, connector_id: &str) -> EventRows {
    let stream = TcpStream::connect(store).await.expect("the remote floor's store accepts");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let (rows, mut queue, pending) = EventRows::queued(connector_id, true);
    tokio::spawn(async move {
        let (mut acks, mut sends) = stream.into_split();
        let (mut batch, mut frame) = (Vec::with_capacity(BATCH), Vec::new());
        while queue.recv_many(&mut batch, BATCH).await > 0 {
            encode(&batch, &mut frame);
            sends.write_all(&frame).await.expect("the store takes the batch");
            let stored = acks.read_u32().await.expect("the store acks the batch");
            assert_eq!(stored as usize, batch.len(), "the store kept the whole batch");
            event_rows::release(&mut batch, &pending);
        }
    });
    rows
}

/// Writes `batch` into `frame` as it goes on the wire.
fn encode(batch: &[Queued], frame: &mut Vec<u8>) {
    frame.clear();
    frame.extend_from_slice(&[0; 8]);
    for (id, connector_id, trace, _) in batch {
        frame.extend_from_slice(&id.to_be_bytes());
        frame.extend_from_slice(&(connector_id.len() as u16).to_be_bytes());
        frame.extend_from_slice(connector_id.as_bytes());
        frame.extend_from_slice(&(trace.len() as u32).to_be_bytes());
        frame.extend_from_slice(trace);
    }
    let length = (frame.len() - 8) as u32;
    frame[..4].copy_from_slice(&length.to_be_bytes());
    frame[4..8].copy_from_slice(&(batch.len() as u32).to_be_bytes());
}

/// The rows of a batch's body, borrowed from it: (id, connector, trace).
fn decode(mut body: &[u8], count: u32) -> Vec<(i64, &str, &[u8])> {
    fn take<'b>(body: &mut &'b [u8], n: usize) -> &'b [u8] {
        let (head, rest) = body.split_at(n);
        *body = rest;
        head
    }
    (0..count)
        .map(|_| {
            let id = i64::from_be_bytes(take(&mut body, 8).try_into().unwrap());
            let length = u16::from_be_bytes(take(&mut body, 2).try_into().unwrap());
            let connector_id = std::str::from_utf8(take(&mut body, length.into())).expect("a connector id");
            let length = u32::from_be_bytes(take(&mut body, 4).try_into().unwrap());
            (id, connector_id, take(&mut body, length as usize))
        })
        .collect()
}

/// Serves the store on a loopback port: each batch a connection sends is
/// stored in a fresh events database in `dir` under `owner`, then acked.
pub async fn serve(dir: &Path, owner: RowOwner) -> SocketAddr {
    let pool = event_rows::raw_events::open(&dir.join("remote-floor.db")).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let address = listener.local_addr().expect("bound");
    let owner = std::sync::Arc::new(owner);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (pool, owner) = (pool.clone(), owner.clone());
            stream.set_nodelay(true).expect("TCP_NODELAY");
            tokio::spawn(async move {
                let mut body = Vec::new();
                // Until the node hangs up.
                while let Ok(length) = stream.read_u32().await {
                    let count = stream.read_u32().await.expect("a batch's row count");
                    body.resize(length as usize, 0);
                    stream.read_exact(&mut body).await.expect("a batch's rows");
                    event_rows::store(&pool, &owner, decode(&body, count).into_iter()).await;
                    stream.write_u32(count).await.expect("the node takes the ack");
                }
            });
        }
    });
    address
}
