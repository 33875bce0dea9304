//! A small HTTP/1.1 load generator over raw keep-alive sockets.
//!
//! It writes prepared request bytes and reads just enough of each answer
//! (status line, `Content-Length`, body) to check it, so it costs the
//! shared CPU far less than a full client would and the servers under test
//! get most of it. Two modes:
//! - closed loop: every connection sends its next request as soon as the
//!   last is answered, giving the maximum throughput;
//! - open loop: requests are due at a fixed rate whatever the answers do,
//!   and latency counts from when a request was due, so a stall shows up
//!   in the tail instead of silently slowing the load (no coordinated
//!   omission).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// One kind of request and how to tell a good answer.
#[derive(Clone, Debug)]
pub struct Call {
    pub request: Bytes,
    /// Text a good answer's body contains.
    pub expect: &'static str,
}

impl Call {
    /// A `POST path` with `headers` and a JSON `body`.
    pub fn post(address: SocketAddr, path: &str, headers: &[(&str, &str)], body: &str, expect: &'static str) -> Call {
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head.push_str(body);
        Call { request: Bytes::from(head), expect }
    }
}

/// What one run measured.
#[derive(Debug, Default)]
pub struct Report {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// CPU the generator's thread spent on this run.
    pub cpu: Duration,
    /// Time the generator's thread was ready to run and waited for a core:
    /// its requests went out and its answers were read that much late.
    pub waited: Duration,
    /// Sorted.
    pub latencies: Vec<Duration>,
}

impl Report {
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        self.latencies[((self.latencies.len() - 1) as f64 * p).round() as usize]
    }

    /// Adds a later run against the same server: counts, time and CPU add
    /// up and the latencies pool.
    pub fn absorb(&mut self, other: Report) {
        self.elapsed += other.elapsed;
        self.cpu += other.cpu;
        self.waited += other.waited;
        self.merge(other);
        self.latencies.sort_unstable();
    }

    fn merge(&mut self, other: Report) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
        self.latencies.extend(other.latencies);
    }
}

/// How requests are paced.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// As fast as answers come back.
    Closed,
    /// This many requests per second across all connections.
    Rate(f64),
}

/// Runs `call` over `connections` sockets for `duration`.
pub async fn run(address: SocketAddr, call: &Call, connections: usize, pace: Pace, duration: Duration) -> Report {
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + duration;
    let mut tasks = Vec::with_capacity(connections);
    for index in 0..connections {
        let call = call.clone();
        let due = move |k: u64| match pace {
            Pace::Closed => None,
            Pace::Rate(rate) => {
                let slot = (k * connections as u64 + index as u64) as f64 / rate;
                Some(start + Duration::from_secs_f64(slot))
            }
        };
        tasks.push(tokio::spawn(connection(address, call, start, end, due)));
    }
    let mut report = Report::default();
    for task in tasks {
        report.merge(task.await.expect("load task"));
    }
    report.elapsed = duration;
    report.latencies.sort_unstable();
    report
}

async fn connection(
    address: SocketAddr,
    call: Call,
    start: Instant,
    end: Instant,
    due: impl Fn(u64) -> Option<Instant>,
) -> Report {
    let mut report = Report::default();
    let mut socket = None;
    let mut buffer = Vec::with_capacity(4096);
    tokio::time::sleep_until(start).await;
    for k in 0.. {
        let planned = due(k);
        if let Some(at) = planned {
            tokio::time::sleep_until(at).await;
        }
        let sent = planned.unwrap_or_else(Instant::now);
        if sent >= end {
            break;
        }
        if socket.is_none() {
            match TcpStream::connect(address).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    socket = Some(stream);
                }
                Err(err) => {
                    report.fail(format!("connect: {err}"));
                    continue;
                }
            }
        }
        let stream = socket.as_mut().expect("connected above");
        match exchange(stream, &call, &mut buffer).await {
            Ok(()) => {
                report.ok += 1;
                report.latencies.push(sent.elapsed());
            }
            Err(err) => {
                report.fail(err);
                socket = None;
            }
        }
    }
    report
}

impl Report {
    fn fail(&mut self, error: String) {
        self.errors += 1;
        self.first_error.get_or_insert(error);
    }
}

/// Sends one request and reads its answer; `Err` describes a bad answer.
async fn exchange(stream: &mut TcpStream, call: &Call, buffer: &mut Vec<u8>) -> Result<(), String> {
    stream.write_all(&call.request).await.map_err(|e| format!("write: {e}"))?;
    buffer.clear();
    let head_end = loop {
        if let Some(at) = find(buffer, b"\r\n\r\n") {
            break at + 4;
        }
        read_more(stream, buffer).await?;
    };
    let head = std::str::from_utf8(&buffer[..head_end]).map_err(|_| "head is not UTF-8".to_owned())?;
    // A number, not a copy of the text: the generator allocates nothing per
    // request, so that `trigger_allocations` counts only the servers'.
    let status: u16 = head.get(9..12).and_then(|code| code.parse().ok()).unwrap_or(0);
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
        })
        .ok_or_else(|| format!("answer {status} has no Content-Length"))?;
    while buffer.len() < head_end + length {
        read_more(stream, buffer).await?;
    }
    let body = &buffer[head_end..head_end + length];
    if status != 200 || find(body, call.expect.as_bytes()).is_none() {
        return Err(format!("answer {status}: {}", String::from_utf8_lossy(body)));
    }
    Ok(())
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("the server closed the connection".into());
    }
    buffer.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
