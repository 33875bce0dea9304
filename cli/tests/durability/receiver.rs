//! A platform-webhook receiver on loopback whose answer the test sets:
//! hang, 503, or 200. It keeps the webhook id of every request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// How the receiver answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Answer {
    Hang = 0,
    Unavailable = 1,
    Ok = 2,
}

pub struct Receiver {
    pub address: SocketAddr,
    answer: Arc<AtomicU8>,
    /// The `x-webhook-id` of each request, with what it was answered.
    seen: Arc<Mutex<Vec<(String, Answer)>>>,
}

impl Receiver {
    pub async fn start(answer: Answer) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (mode, seen) = (Arc::new(AtomicU8::new(answer as u8)), Arc::new(Mutex::new(Vec::new())));
        let (serving_mode, serving_seen) = (mode.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (mode, seen) = (serving_mode.clone(), serving_seen.clone());
                let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let (mode, seen) = (mode.clone(), seen.clone());
                    async move {
                        let id = request.headers().get("x-webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("");
                        let answer = match mode.load(Ordering::SeqCst) {
                            0 => Answer::Hang,
                            1 => Answer::Unavailable,
                            _ => Answer::Ok,
                        };
                        seen.lock().unwrap().push((id.to_owned(), answer));
                        let status = match answer {
                            Answer::Hang => std::future::pending().await,
                            Answer::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                            Answer::Ok => StatusCode::OK,
                        };
                        let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
                        *response.status_mut() = status;
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
        Receiver { address, answer: mode, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.address)
    }

    pub fn answer(&self, answer: Answer) {
        self.answer.store(answer as u8, Ordering::SeqCst);
    }

    pub fn seen(&self) -> Vec<(String, Answer)> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `n` requests arrived.
    pub async fn requests(&self, n: usize) -> Vec<(String, Answer)> {
        for _ in 0..600 {
            let seen = self.seen();
            if seen.len() >= n {
                return seen;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the receiver never got {n} requests: {:?}", self.seen());
    }
}
