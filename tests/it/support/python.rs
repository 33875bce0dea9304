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

fn run(command: &mut Command) {
    let status = command.status().unwrap_or_else(|err| panic!("running {command:?}: {err}"));
    assert!(status.success(), "{command:?} failed with {status}");
}

/// The environment's Python, made once per run of the suite and reused
/// across runs while the requirements are unchanged.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let requirements = scripts_dir().join("requirements.txt");
        let wanted = std::fs::read_to_string(&requirements).expect("requirements file");
        let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-venv");
        let marker = venv.join("installed-requirements.txt");
        if std::fs::read_to_string(&marker).ok().as_deref() != Some(wanted.as_str()) {
            let _ = std::fs::remove_dir_all(&venv);
            run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
            run(Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
                .arg(&requirements));
            std::fs::write(&marker, wanted).expect("marker");
        }
        venv.join("bin/python")
    })
}

/// The headers each sender would send with each call, in order.
pub async fn sign(calls: Vec<Signing<'static>>) -> Vec<Vec<(String, String)>> {
    tokio::task::spawn_blocking(move || sign_blocking(&calls)).await.expect("signing ran")
}

fn sign_blocking(calls: &[Signing<'_>]) -> Vec<Vec<(String, String)>> {
    let mut child = Command::new(python())
        .arg(scripts_dir().join("sign.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start sign.py");
    let calls: Vec<serde_json::Value> = calls
        .iter()
        .map(|c| {
            serde_json::json!({
                "preset": c.preset, "secrets": c.secrets, "timestamp": c.timestamp, "body": c.body, "id": c.id,
            })
        })
        .collect();
    let input = serde_json::to_vec(&calls).expect("calls serialise");
    child.stdin.take().expect("stdin").write_all(&input).expect("write the calls");
    let output = child.wait_with_output().expect("sign.py ran");
    assert!(output.status.success(), "sign.py failed with {}", output.status);
    let signed: Vec<HashMap<String, String>> = serde_json::from_slice(&output.stdout).expect("sign.py's JSON");
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
        let mut child = Command::new(python())
            .arg(scripts_dir().join("parse_metrics.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start parse_metrics.py");
        child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write the text");
        let output = child.wait_with_output().expect("parse_metrics.py ran");
        assert!(output.status.success(), "Prometheus's parser refused the text:\n{text}");
        let samples: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).expect("the samples' JSON");
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
