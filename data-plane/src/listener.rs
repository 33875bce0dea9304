//! The node's HTTP listener: connections accepted within the node's caps,
//! and closed when they hold capacity without using it (SPEC §4: slow or
//! abusive clients cannot exhaust the node).
//!
//! - At most `max_connections` at once; more wait in the kernel's backlog.
//! - At most `max_connections_per_ip` from one address, so one client
//!   cannot take the node's capacity; more are closed at once. Trusted
//!   proxies are exempt: every client behind them shares their address.
//! - A connection that sends nothing within `first_byte_timeout`, or
//!   begins no call for `idle_timeout` with none in flight, is closed. (The
//!   protocol sniffing of hyper's auto builder waits on a new connection's
//!   first bytes with no timeout, and its header read timeout starts only
//!   once they came: 10 050 silent connections held every permit, and
//!   `/healthz` with them.)
//! - `header_read_timeout` bounds the time an HTTP/1.1 request head takes.
//!   hyper starts it when it begins waiting for a head: on a new
//!   connection once the first bytes came, on a kept-alive one as soon as
//!   the previous answer is written. So it also closes an HTTP/1.1
//!   connection quiet for that long between calls (10 s by default, before
//!   `idle_timeout`'s 60 s); `idle_timeout` is what closes HTTP/2
//!   connections that make no calls.
//! - On stop, no new connection is accepted; those open finish their calls
//!   for up to `drain_timeout`, and are then closed.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::http;
use crate::trigger::Ingress;

/// How the node's listener treats connections.
#[derive(Clone, Debug)]
pub struct ConnectionSettings {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Time a new connection gets to send its first byte.
    pub first_byte_timeout: Duration,
    /// Time a client gets to send its request headers, from the first byte.
    pub header_read_timeout: Duration,
    /// Quiet time after which a connection with no call in flight closes.
    pub idle_timeout: Duration,
    /// Time calls in flight get to finish when the node stops.
    pub drain_timeout: Duration,
    /// Time between `/readyz` turning 503 and the listener closing, when
    /// the node stops: a load balancer's health checks notice and stop
    /// sending, while calls already on their way are still served.
    pub drain_delay: Duration,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            first_byte_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
            drain_delay: Duration::ZERO,
        }
    }
}

/// Connections the kernel holds for a listener before it accepts them.
/// tokio's `TcpListener::bind` asks for 128: a burst of more new
/// connections than that while the workers are busy (senders reconnecting
/// after a deploy, a load balancer warming its pool, a fleet's nodes after
/// a control-plane restart) overflowed it, and the kernel drops the SYN of
/// each connection beyond, which its client sends again only after a
/// second. The trigger-load bench's 256 connections opened at once did
/// that 22 times in one run, and each such connection's first call took a
/// second. Linux caps the value at `net.core.somaxconn` (4096 by default).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a TCP listener on `address` with a [`LISTEN_BACKLOG`]-deep accept
/// queue, as tokio's bind does otherwise (address reuse on Unix, so a
/// restarted process binds its port while old connections linger).
/// `DataPlane::start` and every listener of the `hookplane` binary bind
/// here; an embedder handing `DataPlane::start_on` its own listener
/// chooses its own queue.
pub fn bind(address: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = if address.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves HTTP on `listener` until `stop`, then drains.
pub async fn serve(
    listener: TcpListener,
    ingress: Arc<Ingress>,
    settings: ConnectionSettings,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Half-closed connections allowed: a sender that closes its connection
    // while its call runs (as a client that stops waiting does) would
    // otherwise have the call dropped mid-execution (`trigger/running.rs`);
    // it runs to its end and its own event instead. It also spares each
    // call hyper's look for that early end: a `read` and a fresh 8 KiB read
    // buffer per call (check path under callgrind: 84.0k → 82.8k
    // instructions, 12.2 → 4.6 KB allocated; `docs/benchmarks.md`).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .keep_alive(true)
        .half_close(true);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(256);
    let permits = Arc::new(tokio::sync::Semaphore::new(settings.max_connections));
    let per_ip = Arc::new(PerIp {
        counts: Mutex::default(),
        cap: settings.max_connections_per_ip,
        exempt: ingress.settings.trusted_proxies.clone(),
    });
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let Ok(permit) = permit else { break };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    continue;
                }
            },
            _ = stop.wait_for(|stop| *stop) => break,
        };
        // Finished connections are collected as they go.
        while connections.try_join_next().is_some() {}
        let Some(slot) = per_ip.admit(peer.ip()) else {
            tracing::debug!(peer = %peer.ip(), "closing a connection over the per-address cap");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::default());
        let io = TokioIo::new(Watched { inner: stream, activity: activity.clone() });
        let (ingress, counted) = (ingress.clone(), activity.clone());
        // The call's future is `http::handle`'s own, holding the call's
        // in-flight mark, not one wrapped in an `async` block: hyper copies
        // a call's future into its slot, and each level of futures copies
        // its inner one when first polled. The wrapper cost two copies of
        // 3 760 bytes per trigger (9.4 KiB of copies with hyper's larger
        // slot; counted with a uprobe on `memmove`, 2026-12-01).
        let service = hyper::service::service_fn(move |request| {
            http::handle(ingress.clone(), request, peer, InFlight::begin(&counted))
        });
        let connection = graceful.watch(builder.serve_connection(io, service).into_owned());
        let (first_byte, idle) = (settings.first_byte_timeout, settings.idle_timeout);
        connections.spawn(async move {
            tokio::select! {
                served = connection => {
                    if let Err(err) = served {
                        tracing::debug!(error = %err, "connection ended with an error");
                    }
                }
                () = activity.unused_for(first_byte, idle) => tracing::debug!("closing an idle connection"),
            }
            drop((permit, slot));
        });
    }
    drop(listener);
    if tokio::time::timeout(settings.drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "calls still running after the drain timeout; closing their connections"
        );
    }
    connections.shutdown().await;
}

/// What a connection did: whether it moved any byte, the calls it made,
/// and those in flight.
#[derive(Debug, Default)]
struct Activity {
    transfers: AtomicU64,
    calls: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    /// Completes once the connection sent nothing for `first_byte` after
    /// it opened, or later began no call for `idle` with none in flight.
    /// Calls, not bytes, count as use: an HTTP/2 client that only pings
    /// holds a slot as surely as a silent one. Wakes once per period, not
    /// per byte.
    async fn unused_for(&self, first_byte: Duration, idle: Duration) {
        tokio::time::sleep(first_byte).await;
        if self.transfers.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut seen = u64::MAX;
        loop {
            let calls = self.calls.load(Ordering::Acquire);
            if calls == seen && self.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            seen = calls;
            tokio::time::sleep(idle).await;
        }
    }
}

/// A call in flight on a connection, for as long as it lives.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.calls.fetch_add(1, Ordering::AcqRel);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A socket that counts the reads and writes that moved bytes.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl Watched {
    fn moved(&self, bytes: usize) {
        if bytes > 0 {
            self.activity.transfers.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.moved(buf.filled().len() - before);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = polled {
            self.moved(n);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, data);
        if let Poll::Ready(Ok(n)) = polled {
            self.moved(n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Connections per client address.
#[derive(Debug)]
struct PerIp {
    counts: Mutex<HashMap<IpAddr, usize>>,
    cap: usize,
    /// Proxies every client shares: not capped per address.
    exempt: Vec<IpNet>,
}

impl PerIp {
    /// A slot for one more connection from `ip`, or none at the cap.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        if self.exempt.iter().any(|net| net.contains(&ip)) {
            return Some(IpSlot { per_ip: None, ip });
        }
        let mut counts = self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = counts.entry(ip).or_default();
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(IpSlot { per_ip: Some(self.clone()), ip })
    }
}

/// One connection's place in its address's count.
struct IpSlot {
    per_ip: Option<Arc<PerIp>>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Some(per_ip) = &self.per_ip {
            let mut counts = per_ip.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(count) = counts.get_mut(&self.ip) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&self.ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_of_connections_beyond_128_waits_in_the_backlog() {
        // Nothing accepts: every connection beyond the accept queue's depth
        // would have its SYN dropped, again at each retry, so a queue of
        // 128 fails the 129th connect's timeout whatever the machine's load.
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = listener.local_addr().unwrap();
        let mut connected = Vec::new();
        for n in 0..200 {
            let connect = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(address)).await;
            match connect {
                Ok(Ok(stream)) => connected.push(stream),
                Ok(Err(err)) => panic!("connection {n}: {err}"),
                Err(_) => panic!("connection {n} was not queued"),
            }
        }
        let (first, _) = listener.accept().await.unwrap();
        assert_eq!(first.peer_addr().unwrap(), connected[0].local_addr().unwrap(), "queued in order");
    }

    #[test]
    fn addresses_are_capped_and_proxies_exempt() {
        let per_ip = Arc::new(PerIp { counts: Mutex::default(), cap: 2, exempt: vec!["10.0.0.0/8".parse().unwrap()] });
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let (a, b) = (per_ip.admit(client).unwrap(), per_ip.admit(client).unwrap());
        assert!(per_ip.admit(client).is_none(), "the third is refused");
        assert!(per_ip.admit("192.0.2.8".parse().unwrap()).is_some(), "others are not");
        drop(a);
        assert!(per_ip.admit(client).is_some(), "a closed one frees its slot");
        drop(b);
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let slots: Vec<_> = (0..5).map(|_| per_ip.admit(proxy).expect("proxies are not capped")).collect();
        drop(slots);
        assert!(per_ip.counts.lock().unwrap().get(&proxy).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_unused_after_the_first_byte_timeout() {
        let activity = Activity::default();
        let started = tokio::time::Instant::now();
        activity.unused_for(Duration::from_secs(10), Duration::from_secs(60)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_in_flight_keeps_its_connection() {
        let activity = Arc::new(Activity::default());
        activity.transfers.fetch_add(1, Ordering::Relaxed);
        let call = InFlight::begin(&activity);
        let watched = activity.clone();
        let idle =
            tokio::spawn(async move { watched.unused_for(Duration::from_secs(10), Duration::from_secs(60)).await });
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!idle.is_finished(), "a ten-minute call is not idle");
        drop(call);
        tokio::time::sleep(Duration::from_secs(121)).await;
        assert!(idle.is_finished(), "no call began for a period, none in flight");
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_without_calls_do_not_keep_a_connection() {
        let activity = Arc::new(Activity::default());
        let watched = activity.clone();
        let idle =
            tokio::spawn(async move { watched.unused_for(Duration::from_secs(10), Duration::from_secs(60)).await });
        for _ in 0..20 {
            // An HTTP/2 ping every ten seconds.
            activity.transfers.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        assert!(idle.is_finished(), "pings are not calls");
    }
}
