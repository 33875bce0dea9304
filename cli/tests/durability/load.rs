//! The load of the durability suite: a target API on loopback, and clients
//! calling a trigger URL in a loop, keeping every event id a node answered
//! with.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A target answering 200 to everything.
pub struct Target {
    pub address: SocketAddr,
}

impl Target {
    pub async fn start() -> Target {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_: Request<hyper::body::Incoming>| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}"))))
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Target { address }
    }

    pub fn url(&self) -> String {
        format!("http://{}/in", self.address)
    }
}

/// Clients calling one trigger URL until stopped, or until the node stops
/// answering.
pub struct Load {
    answered: Arc<Mutex<Vec<i64>>>,
    stop: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `clients` callers of `path` on `node`; answers with `status` count.
    pub fn start(node: SocketAddr, path: String, token: &str, clients: usize, status: u16) -> Load {
        let answered = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let bearer = format!("Bearer {token}");
        let clients = (0..clients)
            .map(|_| {
                let (answered, stop, path, bearer) = (answered.clone(), stop.clone(), path.clone(), bearer.clone());
                tokio::spawn(async move {
                    let client =
                        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
                    while !stop.load(Ordering::Relaxed) {
                        let request = Request::post(format!("http://{node}{path}"))
                            .header("authorization", &bearer)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(br#"{"id":"A-17","total":3}"#)))
                            .unwrap();
                        // A node that stopped, or was killed, answers no more.
                        let Ok(response) = client.request(request).await else { break };
                        let answer_status = response.status().as_u16();
                        let Ok(body) = response.into_body().collect().await else { break };
                        if answer_status != status {
                            continue;
                        }
                        let answer: serde_json::Value = serde_json::from_slice(&body.to_bytes()).expect("JSON");
                        answered.lock().unwrap().push(answer["event_id"].as_i64().expect("an event id"));
                    }
                })
            })
            .collect();
        Load { answered, stop, clients }
    }

    pub fn count(&self) -> usize {
        self.answered.lock().unwrap().len()
    }

    /// Waits until at least `n` calls were answered.
    pub async fn answered_at_least(&self, n: usize) {
        for _ in 0..1200 {
            if self.count() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("only {} of {n} calls answered", self.count());
    }

    /// Stops the clients; every event id answered.
    pub async fn finish(self) -> Vec<i64> {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            let _ = client.await;
        }
        std::mem::take(&mut *self.answered.lock().unwrap())
    }
}
