//! The one outbound HTTP client of every path that calls what tenants
//! configure (a node's lookups, performs and OAuth token calls; the
//! control plane's platform webhooks): pooled connections, rustls, the
//! SSRF guard, no proxies, no redirects.
//!
//! `hyper-util`'s client reads no proxy environment variables and follows
//! no redirects, which is what SPEC §11 asks for. The egress policy is
//! applied to IP literals here and to resolved names in
//! [`crate::resolver`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::destination::Destination;
use crate::{EgressError, EgressPolicy};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt as _, Full};
use hyper::header::HOST;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::resolver::{GuardedResolver, ResolveError};

/// A request ready to send.
#[derive(Clone, Debug)]
pub struct OutboundRequest {
    pub method: Method,
    pub destination: Destination,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub timeout: Duration,
}

/// A response, its body read up to a cap.
#[derive(Debug)]
pub struct OutboundResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// True when the body was longer than the cap and cut.
    pub truncated: bool,
}

/// Why an exchange got no response.
///
/// The texts end up in events, so the client's errors are shown with
/// their whole chain of causes (hyper's own text is only "client error").
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("refused by the SSRF guard: {0}")]
    Egress(#[from] EgressError),
    /// The name did not resolve (refused addresses are `Egress`).
    #[error("{0}")]
    Resolve(ResolveError),
    #[error("connection failed: {}", Chain(.0))]
    Connect(hyper_util::client::legacy::Error),
    #[error("connection failed: reading the response: {}", Chain(.0))]
    Read(hyper::Error),
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("the request could not be built: {0}")]
    Invalid(hyper::http::Error),
}

impl OutboundError {
    /// Whether trying again may help (SPEC §7: connection errors and
    /// timeouts are retried; refusals and malformed requests are not).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            OutboundError::Connect(_) | OutboundError::Read(_) | OutboundError::Timeout(_) | OutboundError::Resolve(_)
        )
    }
}

/// An error followed by its causes: `a: b: c`.
struct Chain<'e>(&'e dyn std::error::Error);

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(inner) = cause {
            write!(f, ": {inner}")?;
            cause = inner.source();
        }
        Ok(())
    }
}

/// Idle connections kept per target host. A node's calls to one target run
/// as concurrently as its triggers (up to `max_in_flight`, 4096 by
/// default), and every call beyond what the pool holds opens a connection
/// (and its TLS session) and closes it again. At 64, the trigger-load
/// bench's end-to-end scenario spent a tenth of the node's worker CPU in
/// `connect` once 256 senders' calls overlapped; the bare proxy it is
/// compared with, on hyper-util's unbounded default, spent none. Idle
/// connections still close after the idle timeout.
const MAX_IDLE_PER_HOST: usize = 1024;

type Connector = HttpsConnector<HttpConnector<GuardedResolver>>;

/// The shared client.
#[derive(Clone)]
pub struct Outbound {
    client: Client<Connector, Full<Bytes>>,
    policy: Arc<EgressPolicy>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl Outbound {
    /// A client that calls only what `policy` allows.
    pub fn new(policy: EgressPolicy) -> Outbound {
        let policy = Arc::new(policy);
        let mut http = HttpConnector::new_with_resolver(GuardedResolver::new(policy.clone()));
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .build(https);
        Outbound { client, policy }
    }

    /// Sends `request` and reads up to `max_body` bytes of the answer.
    pub async fn send(&self, request: OutboundRequest, max_body: usize) -> Result<OutboundResponse, OutboundError> {
        self.policy.check_url(request.destination.url())?;
        let deadline = Instant::now() + request.timeout;
        let (uri, host) = request.destination.for_hyper().map_err(|e| OutboundError::Invalid(e.into()))?;
        let mut builder = Request::builder().method(request.method).uri(uri);
        if let Some(headers) = builder.headers_mut() {
            *headers = request.headers;
            if let Some(host) = host {
                headers.entry(HOST).or_insert(host);
            }
        }
        let http_request = builder.body(Full::new(request.body)).map_err(OutboundError::Invalid)?;
        let exchange = async {
            let response = self.client.request(http_request).await.map_err(describe)?;
            let (parts, mut body) = response.into_parts();
            let mut collected = BytesMut::new();
            let mut truncated = false;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(OutboundError::Read)?;
                if let Ok(data) = frame.into_data() {
                    let room = max_body - collected.len();
                    if data.len() > room {
                        collected.extend_from_slice(&data[..room]);
                        truncated = true;
                        break;
                    }
                    collected.extend_from_slice(&data);
                }
            }
            Ok(OutboundResponse { status: parts.status, headers: parts.headers, body: collected.freeze(), truncated })
        };
        tokio::time::timeout_at(deadline.into(), exchange).await.map_err(|_| OutboundError::Timeout(request.timeout))?
    }
}

/// Names what failed, looking through the client's error chain for the
/// guard's answer so a refusal is reported as such.
fn describe(err: hyper_util::client::legacy::Error) -> OutboundError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(current) = source {
        if let Some(resolve) = current.downcast_ref::<ResolveError>() {
            return match resolve {
                ResolveError::Refused { reason, .. } => OutboundError::Egress(reason.clone()),
                ResolveError::Lookup { name, source } => OutboundError::Resolve(ResolveError::Lookup {
                    name: name.clone(),
                    source: std::io::Error::new(source.kind(), source.to_string()),
                }),
            };
        }
        source = current.source();
    }
    OutboundError::Connect(err)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use hyper::header::HeaderValue;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::sync::Barrier;

    use super::*;

    /// Calls one target holds at once in the test below: more than the 64
    /// idle connections the pool once kept.
    const CONCURRENT: usize = 100;

    /// A keep-alive HTTP/1.1 target on a loopback port that answers a
    /// request only once `CONCURRENT` of them are in, so that many calls
    /// overlap; returns its address and the count of connections it took.
    async fn overlapping_target() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(CONCURRENT));
        let counted = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        let Ok(n @ 1..) = stream.read(&mut chunk).await else { return };
                        request.extend_from_slice(&chunk[..n]);
                        if request.windows(4).any(|w| w == b"\r\n\r\n") {
                            request.clear();
                            barrier.wait().await;
                            let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                            if stream.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (address, accepted)
    }

    /// The request heads a one-shot HTTP/1.1 target on a loopback port
    /// reads, one per connection, as text.
    async fn recording_target() -> (std::net::SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (heads, received) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let heads = heads.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        let Ok(n @ 1..) = stream.read(&mut chunk).await else { return };
                        request.extend_from_slice(&chunk[..n]);
                    }
                    let _ = heads.send(String::from_utf8_lossy(&request).into_owned());
                    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
                    let _ = stream.write_all(answer).await;
                });
            }
        });
        (address, received)
    }

    /// A destination prepared once sends the very bytes hyper writes for a
    /// URL parsed per call, `Host` included; a `Host` the request sets
    /// itself is kept, as hyper keeps it.
    #[tokio::test]
    async fn a_prepared_destination_sends_the_request_hyper_would() {
        let (address, mut heads) = recording_target().await;
        let outbound = Outbound::new(EgressPolicy::public_only().with_loopback());
        let url = url::Url::parse(&format!("http://{address}/orders/%7Bid%7D?page=2")).unwrap();
        let send = |destination: Destination, headers: HeaderMap| {
            let request = OutboundRequest {
                method: Method::POST,
                destination,
                headers,
                body: Bytes::from_static(b"{}"),
                timeout: Duration::from_secs(30),
            };
            let outbound = outbound.clone();
            async move { outbound.send(request, 1024).await.expect("the target answers") }
        };
        for (shape, request_line) in [
            (format!("http://{address}/orders/%7Bid%7D?page=2"), "POST /orders/%7Bid%7D?page=2 HTTP/1.1\r\n"),
            (format!("http://user:pw@{address}"), "POST / HTTP/1.1\r\n"),
            (format!("http://{address}/a b?q=ä"), "POST /a%20b?q=%C3%A4 HTTP/1.1\r\n"),
        ] {
            let url = url::Url::parse(&shape).unwrap();
            send(Destination::new(url.clone()), HeaderMap::new()).await;
            let per_call = heads.recv().await.unwrap();
            send(Destination::prepared(url), HeaderMap::new()).await;
            let prepared = heads.recv().await.unwrap();
            assert_eq!(prepared, per_call, "{shape}");
            assert!(prepared.starts_with(request_line), "{prepared}");
            assert!(prepared.contains(&format!("host: {address}\r\n")), "{prepared}");
        }

        let mut own = HeaderMap::new();
        own.insert(HOST, HeaderValue::from_static("erp.internal"));
        send(Destination::prepared(url), own).await;
        let kept = heads.recv().await.unwrap();
        assert!(kept.contains("host: erp.internal\r\n") && !kept.contains(&address.to_string()), "{kept}");
    }

    /// The egress policy checks a prepared destination's URL, the one its
    /// `Uri` was made from.
    #[tokio::test]
    async fn a_prepared_destination_is_checked_by_the_policy() {
        let outbound = Outbound::new(EgressPolicy::public_only());
        let request = OutboundRequest {
            method: Method::GET,
            destination: Destination::prepared(url::Url::parse("http://127.0.0.1:9/").unwrap()),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            timeout: Duration::from_secs(5),
        };
        assert!(matches!(outbound.send(request, 1024).await, Err(OutboundError::Egress(_))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn overlapping_calls_to_one_target_reuse_their_connections() {
        let (address, accepted) = overlapping_target().await;
        let outbound = Outbound::new(EgressPolicy::public_only().with_loopback());
        let url = url::Url::parse(&format!("http://{address}/orders")).unwrap();
        const WAVES: usize = 4;
        for _ in 0..WAVES {
            let mut calls = tokio::task::JoinSet::new();
            for _ in 0..CONCURRENT {
                let (outbound, url) = (outbound.clone(), url.clone());
                calls.spawn(async move {
                    let request = OutboundRequest {
                        method: Method::GET,
                        destination: Destination::prepared(url),
                        headers: HeaderMap::new(),
                        body: Bytes::new(),
                        timeout: Duration::from_secs(30),
                    };
                    outbound.send(request, 1024).await
                });
            }
            while let Some(call) = calls.join_next().await {
                let response = call.unwrap().expect("the target answers");
                assert_eq!((response.status, &response.body[..]), (StatusCode::OK, &b"ok"[..]));
            }
        }
        // Each wave needs `CONCURRENT` connections. A pool that keeps fewer
        // idle opens the difference again in every later wave (64 kept:
        // at least 100 + 3 × 36 = 208 in all); one that keeps them all
        // opens only what a wave's calls start before the last wave's
        // connections are back in the pool.
        let opened = accepted.load(Ordering::SeqCst);
        assert!(opened >= CONCURRENT, "{opened} connections for {CONCURRENT} overlapping calls");
        assert!(opened < CONCURRENT + CONCURRENT / 2, "{opened} connections for {WAVES} waves of {CONCURRENT} calls");
    }
}
