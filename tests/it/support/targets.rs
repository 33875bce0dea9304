//! Real HTTP servers on loopback that play the target API, and a small
//! client for trigger calls.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::watch;

/// How a target answers.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// 200 `{"ok":true}`.
    Ok,
    /// 503 for the first `n` requests, then 200.
    FailFirst(u32),
    /// Always 500.
    AlwaysFail,
    /// 429 with `Retry-After: secs` for the first `n` requests, then 200.
    TooManyFirst { n: u32, retry_after_secs: u32 },
    /// Never answers.
    Hang,
    /// 200 `{"ok":true}`, this many milliseconds after the request.
    Slow(u64),
    /// 400 with what it was sent: the `Authorization` header, then the
    /// body (a token endpoint that echoes a refused request).
    EchoRefusal,
    /// Always this status, with a short body.
    Status(u16),
    /// 200 with `{"tier":"gold","customer":{"name":"Ada"}}` (for lookups).
    Lookup,
    /// An OAuth 2.0 token endpoint: 200 with `{"access_token":"at-N",...}`,
    /// N counting the requests.
    TokenEndpoint,
}

/// A request as the target received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub headers: HashMap<String, String>,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("target got JSON")
    }
}

/// A running target.
pub struct Target {
    pub address: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    count: watch::Receiver<usize>,
    behaviour: Arc<Mutex<Behaviour>>,
}

impl Target {
    /// A target that keeps every request it receives, for assertions.
    pub async fn start(behaviour: Behaviour) -> Target {
        Target::serve(behaviour, true).await
    }

    /// A target that only counts what it receives: for long runs, where
    /// keeping every request would be a leak of the harness's own.
    pub async fn counting(behaviour: Behaviour) -> Target {
        Target::serve(behaviour, false).await
    }

    async fn serve(behaviour: Behaviour, keep: bool) -> Target {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let behaviour = Arc::new(Mutex::new(behaviour));
        let (count_tx, count) = watch::channel(0usize);
        let count_tx = Arc::new(count_tx);
        let (log, mode) = (received.clone(), behaviour.clone());
        let total = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (log, mode, count_tx, total) = (log.clone(), mode.clone(), count_tx.clone(), total.clone());
                let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let (log, mode, count_tx, total) = (log.clone(), mode.clone(), count_tx.clone(), total.clone());
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let seen = total.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        if keep {
                            log.lock().unwrap().push(Received {
                                method: parts.method.to_string(),
                                uri: parts.uri.to_string(),
                                headers: parts
                                    .headers
                                    .iter()
                                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                                    .collect(),
                                body: body.clone(),
                            });
                        }
                        count_tx.send_replace(seen);
                        let behaviour = *mode.lock().unwrap();
                        let echo = || {
                            let authorization = parts.headers.get("authorization").and_then(|v| v.to_str().ok());
                            format!("{} {}", authorization.unwrap_or_default(), String::from_utf8_lossy(&body))
                        };
                        let n = seen as u32;
                        let ok = || r#"{"ok":true}"#.to_owned();
                        let (status, retry_after, body) = match behaviour {
                            Behaviour::Ok => (200, None, ok()),
                            Behaviour::FailFirst(k) if n <= k => (503, None, "unavailable".into()),
                            Behaviour::FailFirst(_) => (200, None, ok()),
                            Behaviour::AlwaysFail => (500, None, "broken".into()),
                            Behaviour::TooManyFirst { n: k, retry_after_secs } if n <= k => {
                                (429, Some(retry_after_secs), "slow down".into())
                            }
                            Behaviour::TooManyFirst { .. } => (200, None, ok()),
                            Behaviour::Hang => std::future::pending().await,
                            Behaviour::EchoRefusal => (400, None, echo()),
                            Behaviour::Slow(ms) => {
                                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                                (200, None, ok())
                            }
                            Behaviour::Status(code) => (code, None, format!("status {code}")),
                            Behaviour::Lookup => (200, None, r#"{"tier":"gold","customer":{"name":"Ada"}}"#.into()),
                            Behaviour::TokenEndpoint => (
                                200,
                                None,
                                format!(r#"{{"access_token":"at-{n}","token_type":"Bearer","expires_in":3600}}"#),
                            ),
                        };
                        let mut response = Response::new(Full::new(Bytes::from(body)));
                        *response.status_mut() = StatusCode::from_u16(status).unwrap();
                        if let Some(secs) = retry_after {
                            response.headers_mut().insert("retry-after", secs.into());
                        }
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Target { address, received, count, behaviour }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        *self.count.borrow()
    }

    /// Waits until the target has received `n` requests.
    pub async fn wait_for(&self, n: usize) {
        let mut count = self.count.clone();
        tokio::time::timeout(Duration::from_secs(10), count.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("the target received {} requests, not {n}", self.count()))
            .unwrap();
    }
}

/// The answer to a trigger call.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: serde_json::Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// POSTs `body` to `path` on `node` with `headers`.
pub async fn post(node: SocketAddr, path: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Answer {
    call(node, "POST", path, headers, body.into()).await
}

pub async fn call(node: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: Bytes) -> Answer {
    try_call(node, method, path, headers, body).await.expect("node answers")
}

/// POSTs like [`post`]; `None` when the node does not answer (it stopped).
pub async fn try_post(
    node: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Option<Answer> {
    try_call(node, "POST", path, headers, body.into()).await
}

async fn try_call(node: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: Bytes) -> Option<Answer> {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::builder().method(method).uri(format!("http://{node}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client.request(request.body(Full::new(body)).unwrap()).await.ok()?;
    let status = response.status().as_u16();
    let headers =
        response.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned())).collect();
    let bytes = response.into_body().collect().await.ok()?.to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("JSON answer, got {bytes:?}"));
    Some(Answer { status, headers, body })
}

/// The trigger path of a connector.
pub fn trigger_path(connector_id: &str) -> String {
    format!("/api/v1/connectors/{connector_id}/trigger")
}
