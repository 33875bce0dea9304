//! The end-to-end connector written by hand: what hookplane does for the
//! benches' connector (`setup::connector`), for that one connector alone,
//! in straight-line code with `serde_json` and hyper: about the least
//! that doing that work in plain Rust costs. It shows how much of
//! hookplane's cost above the bare proxy's floor is the work itself, which
//! any product doing the SPEC's job pays, and how much is hookplane's own.
//!
//! Per call, as hookplane does it (SPEC §7): check the bearer token
//! against its SHA-256 hash (tokens are stored hashed, SPEC §11); parse
//! the body as JSON (a 400 otherwise); the condition; the three mappings;
//! the JSON body; a `POST` with the content type, the depth header and the
//! perform's timeout; the answer read; an event row holding the inbound
//! headers (the credential redacted), the payload, `$processed` and the
//! exchange (method, URL, headers and body sent; status and answer
//! received; its duration); and the answer once the row is committed.
//! Nothing general: no expression language, no templates, no
//! configuration, no limits, no metrics. And written lean, as a skilled
//! hand would for speed: the payload read into a typed struct that borrows
//! its strings and skips (while checking) what the connector does not
//! read, as hookplane's projection does; bodies serialised from structs;
//! the trace plain bytes, not an encoded message. A first version parsed
//! the payload into a `serde_json::Value` and formatted its trace with
//! `write!`: 163k instructions per call against this one's (see
//! `docs/benchmarks.md`), so the leaner it is, the lower the floor.

use std::borrow::Cow;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, StatusCode, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::baselines::{json as answer, serve};
use crate::event_rows::EventRows;

/// The payload's fields the connector reads (`$payload.id`, `.status`,
/// `.total`, `.customer.email`); the parser checks and skips the rest.
#[derive(Deserialize)]
struct Order<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
    total: Option<f64>,
    #[serde(borrow, default)]
    customer: Option<Customer<'a>>,
}

#[derive(Deserialize)]
struct Customer<'a> {
    #[serde(borrow, default)]
    email: Option<Cow<'a, str>>,
}

/// `$processed`: the three mappings.
#[derive(Serialize)]
struct Processed<'a> {
    order_id: Option<&'a RawValue>,
    email: Option<String>,
    cents: Option<f64>,
}

/// The perform's body: `order.id`, `order.amount_cents`, `customer.email`.
#[derive(Serialize)]
struct Sent<'a> {
    order: SentOrder<'a>,
    customer: SentCustomer<'a>,
}

#[derive(Serialize)]
struct SentOrder<'a> {
    id: Option<&'a RawValue>,
    amount_cents: Option<f64>,
}

#[derive(Serialize)]
struct SentCustomer<'a> {
    email: Option<&'a str>,
}

/// The answer hookplane gives.
#[derive(Serialize)]
struct Completion<'a> {
    status: &'a str,
    event_id: i64,
    response_code: Option<u16>,
}

/// Serves the connector, whose token is `token`, performing against
/// `target`; records every call in `rows`.
pub async fn connector(target: SocketAddr, token: &str, rows: EventRows) -> SocketAddr {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let url: hyper::Uri = format!("http://{target}/orders").parse().unwrap();
    let traced_url: Bytes = format!("\nperform: POST {url}\n").into();
    let token_hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    serve(move |request: Request<Incoming>| {
        let (client, url, traced_url, rows) = (client.clone(), url.clone(), traced_url.clone(), rows.clone());
        async move {
            let started = Instant::now();
            let (parts, body) = request.into_parts();
            let presented = parts.headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
            let presented = presented.and_then(|v| v.strip_prefix(b"Bearer ")).unwrap_or_default();
            if <[u8; 32]>::from(Sha256::digest(presented)) != token_hash {
                return answer(StatusCode::UNAUTHORIZED, Bytes::new());
            }
            let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
                return answer(StatusCode::BAD_REQUEST, Bytes::new());
            };
            let Ok(order) = serde_json::from_slice::<Order<'_>>(&body) else {
                return answer(StatusCode::BAD_REQUEST, Bytes::new());
            };
            let mut trace = inbound(&parts.headers, &body);
            if order.status.as_deref() != Some("paid") {
                let id = rows.record_trace(trace).await;
                return answer(StatusCode::OK, completion("skipped", id, None));
            }
            let email = order.customer.as_ref().and_then(|c| c.email.as_deref()).map(|e| e.trim().to_lowercase());
            let processed = Processed { order_id: order.id, email, cents: order.total.map(|total| total * 100.0) };
            let sent = Sent {
                order: SentOrder { id: processed.order_id, amount_cents: processed.cents },
                customer: SentCustomer { email: processed.email.as_deref() },
            };
            let sent = Bytes::from(serde_json::to_vec(&sent).expect("structs of plain fields serialise"));
            trace.extend_from_slice(b"processed: ");
            serde_json::to_writer(&mut trace, &processed).expect("structs of plain fields serialise");
            let forward = Request::post(url)
                .header(header::CONTENT_TYPE, "application/json")
                .header("x-hookplane-depth", "1")
                .body(Full::new(sent.clone()))
                .expect("a valid request");
            trace.extend_from_slice(&traced_url);
            push_headers(&mut trace, forward.headers());
            trace.extend_from_slice(&sent);
            let exchange = async {
                let received = client.request(forward).await.ok()?;
                let status = received.status();
                Some((status, received.into_body().collect().await.ok()?.to_bytes()))
            };
            let Ok(Some((status, received))) = tokio::time::timeout(Duration::from_secs(30), exchange).await else {
                let id = rows.record_trace(trace).await;
                return answer(StatusCode::BAD_GATEWAY, completion("failed", id, None));
            };
            trace.extend_from_slice(b"\nstatus: ");
            trace.extend_from_slice(status.as_str().as_bytes());
            trace.push(b'\n');
            trace.extend_from_slice(&received);
            let _ = write!(trace, "\nduration: {} us\n", started.elapsed().as_micros());
            let id = rows.record_trace(trace).await;
            answer(StatusCode::OK, completion("completed", id, Some(status.as_u16())))
        }
    })
    .await
}

/// The inbound call's part of the trace: its headers, the credential
/// redacted, and its payload.
fn inbound(headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let mut trace = Vec::with_capacity(1024 + body.len());
    for (name, value) in headers {
        let value = if name == header::AUTHORIZATION { b"[redacted]" } else { value.as_bytes() };
        push_header(&mut trace, name.as_str(), value);
    }
    trace.extend_from_slice(body);
    trace.push(b'\n');
    trace
}

fn push_headers(trace: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        push_header(trace, name.as_str(), value.as_bytes());
    }
}

fn push_header(trace: &mut Vec<u8>, name: &str, value: &[u8]) {
    trace.extend_from_slice(name.as_bytes());
    trace.extend_from_slice(b": ");
    trace.extend_from_slice(value);
    trace.push(b'\n');
}

/// The answer's body: the outcome, the event and the target's status.
fn completion(status: &str, event_id: i64, response_code: Option<u16>) -> Bytes {
    let body = Completion { status, event_id, response_code };
    Bytes::from(serde_json::to_vec(&body).expect("structs of plain fields serialise"))
}
