//! A Python client generated from `proto/` alone runs the whole connector
//! lifecycle against the real `hookplane dev` binary.
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
fn generated_python_client_runs_the_connector_lifecycle_against_dev() {
    let python = python_env();
    let work = tempfile::tempdir().expect("temp dir");
    let generated = work.path().join("generated");
    run(Command::new(&python).arg(repo_root().join("clients/python/generate.py")).arg(&generated));

    let data_dir = work.path().join("data");
    let child = Command::new(env!("CARGO_BIN_EXE_hookplane"))
        .args(["dev", "--grpc-listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .env("HOOKPLANE_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start hookplane dev");
    let mut server = Running(child);
    let stdout = server.0.stdout.take().expect("stdout");
    // Keep draining stdout after the address line: a closed pipe would kill
    // the server on its next print.
    let (address_tx, address_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(address) = line.trim().strip_prefix("gRPC API (reflection on):") {
                let _ = address_tx.send(address.trim().to_owned());
            }
        }
    });
    let address =
        address_rx.recv_timeout(std::time::Duration::from_secs(60)).expect("hookplane dev prints its gRPC address");

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
        .arg(repo_root().join("clients/python/lifecycle_test.py"))
        .arg(&generated)
        .arg(&address)
        .arg(&admin_key));
    drop(server);
}
