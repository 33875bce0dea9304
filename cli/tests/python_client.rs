//! The Python SDK (`clients/python`), generated from `proto/` alone, passes
//! its test suite against the real `hookplane dev` binary: the connector
//! lifecycle, triggers performing against a real target, events, pagination,
//! errors, retries against a server started late, and strict typing.
//!
//! The test provisions its own Python environment (pinned in
//! `clients/python/requirements.txt`) under cargo's target dir, so a fresh
//! machine with `python3` and access to PyPI needs nothing installed by hand.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Kills the dev server even when an assertion fails.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn run(command: &mut Command) {
    let status = command.status().unwrap_or_else(|err| panic!("running {command:?}: {err}"));
    assert!(status.success(), "{command:?} failed with {status}");
}

#[path = "../../tests/shared/python_venv.rs"]
mod python_venv;

/// A virtualenv with the pinned client requirements.
fn python_env() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-client-venv");
    python_venv::python_env(&repo_root().join("clients/python/requirements.txt"), &venv)
}

#[test]
fn python_sdk_suite_passes_against_dev() {
    let python = python_env();
    let package = repo_root().join("clients/python");
    // Regenerated on every run, so the SDK is tested against today's protos;
    // the output (`src/hookplane/`) is git-ignored.
    run(Command::new(&python).arg(package.join("generate.py")));
    // Editable, so the generated modules are read from `src/` as they are;
    // without build isolation and dependencies (all pinned in the venv), so
    // the install needs no network after the venv exists.
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-build-isolation",
            "--editable",
        ])
        .arg(&package));

    let work = tempfile::tempdir().expect("temp dir");
    let data_dir = work.path().join("data");
    let child = Command::new(env!("CARGO_BIN_EXE_hookplane"))
        .args(["dev", "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .env("HOOKPLANE_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start hookplane dev");
    let mut server = Running(child);
    let stdout = server.0.stdout.take().expect("stdout");
    // Keep draining stdout after the address lines: a closed pipe would kill
    // the server on its next print.
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });
    let (mut grpc_address, mut trigger_base) = (None, None);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while grpc_address.is_none() || trigger_base.is_none() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = line_rx.recv_timeout(left).expect("hookplane dev prints its gRPC and trigger addresses");
        if let Some(address) = line.trim().strip_prefix("gRPC API (reflection on):") {
            grpc_address = Some(address.trim().to_owned());
        } else if let Some(base) = line.trim().strip_prefix("triggers (data plane):") {
            trigger_base = Some(base.trim().to_owned());
        }
    }

    let admin_key = data_dir.join("admin-key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for file in ["admin-key", "operator-key", "secret-key"] {
            let mode = std::fs::metadata(data_dir.join(file)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{file} must be private");
        }
    }
    run(Command::new(&python)
        .args(["-m", "pytest", "-p", "no:cacheprovider"])
        .current_dir(&package)
        .env("HOOKPLANE_GRPC", grpc_address.expect("gRPC address"))
        .env("HOOKPLANE_HTTP", trigger_base.expect("trigger base URL"))
        .env("HOOKPLANE_ADMIN_KEY_FILE", &admin_key)
        // The suite starts servers of its own (the retry test's late one).
        .env("HOOKPLANE_BIN", env!("CARGO_BIN_EXE_hookplane"))
        // Kept beside the venv, so only the first run type-checks cold.
        .env("MYPY_CACHE_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-client-mypy-cache"))
        // No bytecode caches written into the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1"));
    drop(server);
}
