//! Python's part of the suite, in an environment it provisions itself from
//! the pinned `tests/python/requirements.txt` (a fresh machine needs only
//! `python3` and PyPI): signatures made by the senders' own libraries
//! (`sign.py`), and metrics read by Prometheus's own parser
//! (`parse_metrics.py`).

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// One call to sign.
#[derive(Clone, Debug)]
pub struct Signing<'a> {
    /// As the API's preset is named: `stripe`, `github`, `shopify`, `slack`,
    /// `standard_webhooks`.
    pub preset: &'a str,
    /// One signature per secret, as a sender rolling its secret sends.
    pub secrets: Vec<&'a str>,
    pub timestamp: i64,
    pub body: &'a str,
    /// The delivery id, for the senders that send one.
    pub id: &'a str,
}

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python")
}

#[path = "../../shared/python_venv.rs"]
mod python_venv;

/// The environment's Python, made once per run of the suite.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-venv");
        python_venv::python_env(&scripts_dir().join("requirements.txt"), &venv)
    })
}

/// Runs `script` of `tests/python` with `input` on stdin; its stdout.
/// `refused` says what a failing script means.
fn run_script(script: &str, input: &[u8], refused: &dyn Fn() -> String) -> Vec<u8> {
    let mut child = Command::new(python())
        .arg(scripts_dir().join(script))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("starting {script}: {err}"));
    child.stdin.take().expect("stdin").write_all(input).expect("write the script's input");
    let output = child.wait_with_output().unwrap_or_else(|err| panic!("running {script}: {err}"));
    assert!(output.status.success(), "{script} failed with {}: {}", output.status, refused());
    output.stdout
}

/// The headers each sender would send with each call, in order.
pub async fn sign(calls: Vec<Signing<'static>>) -> Vec<Vec<(String, String)>> {
    tokio::task::spawn_blocking(move || sign_blocking(&calls)).await.expect("signing ran")
}

fn sign_blocking(calls: &[Signing<'_>]) -> Vec<Vec<(String, String)>> {
    let calls: Vec<serde_json::Value> = calls
        .iter()
        .map(|c| {
            serde_json::json!({
                "preset": c.preset, "secrets": c.secrets, "timestamp": c.timestamp, "body": c.body, "id": c.id,
            })
        })
        .collect();
    let input = serde_json::to_vec(&calls).expect("calls serialise");
    let output = run_script("sign.py", &input, &|| "see its error above".to_owned());
    let signed: Vec<HashMap<String, String>> = serde_json::from_slice(&output).expect("sign.py's JSON");
    signed.into_iter().map(|headers| headers.into_iter().collect()).collect()
}

/// One sample of a metrics text.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: HashMap<String, String>,
    pub value: f64,
}

/// `text` parsed by Prometheus's own parser; panics if it refuses it.
pub async fn parse_metrics(text: String) -> Vec<Sample> {
    tokio::task::spawn_blocking(move || {
        let refused = || format!("Prometheus's parser refused the text:\n{text}");
        let output = run_script("parse_metrics.py", text.as_bytes(), &refused);
        let samples: Vec<serde_json::Value> = serde_json::from_slice(&output).expect("the samples' JSON");
        samples
            .into_iter()
            .map(|s| Sample {
                name: s["name"].as_str().unwrap().to_owned(),
                labels: serde_json::from_value(s["labels"].clone()).unwrap(),
                value: s["value"].as_f64().unwrap(),
            })
            .collect()
    })
    .await
    .expect("parsing ran")
}

/// One delivery as a receiver gets it.
#[derive(Clone, Debug)]
pub struct Received<'a> {
    /// `hookplane` or `standard_webhooks`.
    pub scheme: &'a str,
    pub secret: &'a str,
    pub body: &'a str,
    pub headers: &'a HashMap<String, String>,
}

/// Verifies each delivery as a receiver would (`verify_webhooks.py`: the
/// official `standardwebhooks` library, or Python's `hmac`): `None` when
/// it verifies, else why not.
pub async fn verify_webhooks(deliveries: &[Received<'_>]) -> Vec<Option<String>> {
    let items: Vec<serde_json::Value> = deliveries
        .iter()
        .map(|d| serde_json::json!({ "scheme": d.scheme, "secret": d.secret, "body": d.body, "headers": d.headers }))
        .collect();
    let input = serde_json::to_vec(&items).expect("deliveries serialise");
    tokio::task::spawn_blocking(move || {
        let output = run_script("verify_webhooks.py", &input, &|| "see its error above".to_owned());
        serde_json::from_slice(&output).expect("verify_webhooks.py's JSON")
    })
    .await
    .expect("verifying ran")
}

/// A real SMTP server (`smtp_sink.py`, aiosmtpd) on a loopback port,
/// stopped when dropped.
pub struct SmtpSink {
    pub port: u16,
    child: std::process::Child,
    mails: std::sync::Mutex<std::sync::mpsc::Receiver<serde_json::Value>>,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        // Let go of before the server binds it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        SmtpSink::start_on(port)
    }

    /// Serves on `port`, which nothing else may hold.
    pub fn start_on(port: u16) -> SmtpSink {
        let mut child = Command::new(python())
            .arg(scripts_dir().join("smtp_sink.py"))
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting smtp_sink.py");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, mails) = std::sync::mpsc::channel::<serde_json::Value>();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.send(serde_json::from_str(&line).expect("smtp_sink.py prints JSON"));
            }
        });
        let ready = mails.recv_timeout(std::time::Duration::from_secs(60)).expect("the SMTP server starts");
        assert_eq!(ready["ready"], true);
        SmtpSink { port, child, mails: std::sync::Mutex::new(mails) }
    }

    /// The next mail the server accepted, waiting up to `timeout`.
    pub async fn next(&self, timeout: std::time::Duration) -> Option<serde_json::Value> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(mail) = self.mails.lock().unwrap().try_recv() {
                return Some(mail);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
