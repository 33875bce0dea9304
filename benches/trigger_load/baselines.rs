//! What hookplane is measured against, on the same hyper server settings
//! as the node (auto HTTP/1.1 + HTTP/2, keep-alive, TCP_NODELAY):
//! - a bare hyper server that reads the body and answers a fixed JSON;
//! - a bare hyper proxy that forwards the body to the target with a pooled
//!   hyper-util client and relays the answer;
//! - the target both end-to-end runs call, answering `{"ok":true}`.
//!
//! Given `EventRows`, the first two also record every request as a row
//! (`event_rows.rs`): the floor of any server that stores its events on
//! the cores that answer. `hand_written.rs` adds the end-to-end
//! connector's own work to the second.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

use crate::event_rows::EventRows;

type Answer = Response<Full<Bytes>>;

/// Serves `handle` on a loopback port; returns the address.
pub async fn serve<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Answer> + Send + 'static,
{
    // With the node's backlog: tokio's default of 128 drops SYNs when the
    // open loop's 256 connections arrive at once.
    let listener = hookplane_data_plane::listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let _ = stream.set_nodelay(true);
            let handle = handle.clone();
            let service = hyper::service::service_fn(move |request| {
                let answer = handle(request);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    address
}

pub fn json(status: StatusCode, body: Bytes) -> Answer {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response
}

/// Reads the body, answers what a skipped trigger answers; records the
/// request first if given `rows`.
pub async fn bare_hyper(rows: Option<EventRows>) -> SocketAddr {
    serve(move |request: Request<Incoming>| {
        let rows = rows.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            if let Some(rows) = rows {
                rows.record(&parts.headers, &body, b"").await;
            }
            json(StatusCode::OK, Bytes::from_static(br#"{"status":"skipped","event_id":1,"response_code":null}"#))
        }
    })
    .await
}

/// The target: reads the body, answers `{"ok":true}`.
pub async fn target() -> SocketAddr {
    serve(|request: Request<Incoming>| async move {
        let _ = request.into_body().collect().await;
        json(StatusCode::OK, Bytes::from_static(br#"{"ok":true}"#))
    })
    .await
}

/// Forwards each request's body to `target` as a `POST /orders`; records
/// the request and the target's answer if given `rows`.
pub async fn bare_proxy(target: SocketAddr, rows: Option<EventRows>) -> SocketAddr {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let url: hyper::Uri = format!("http://{target}/orders").parse().unwrap();
    serve(move |request: Request<Incoming>| {
        let (client, url, rows) = (client.clone(), url.clone(), rows.clone());
        async move {
            let (parts, body) = request.into_parts();
            let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
                return json(StatusCode::BAD_REQUEST, Bytes::new());
            };
            let forward = Request::post(url)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(body.clone()))
                .expect("a valid request");
            match client.request(forward).await {
                Ok(answer) => {
                    let status = answer.status();
                    let answer = answer.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    if let Some(rows) = rows {
                        rows.record(&parts.headers, &body, &answer).await;
                    }
                    json(status, answer)
                }
                Err(_) => json(StatusCode::BAD_GATEWAY, Bytes::new()),
            }
        }
    })
    .await
}
