//! The TypeScript SDK (`clients/typescript`, generated from `proto/` with
//! protobuf-es and Connect) passes its own test suite against the real
//! `hookplane dev` binary.
//!
//! The suite regenerates the client from `proto/` on every run, so it can
//! never test stale generated code. It needs Node.js 20+ and npm on PATH and
//! the npm registry (or npm's cache) for `npm ci`; it never skips.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

fn npm(package: &Path) -> Command {
    let mut command = Command::new("npm");
    command.current_dir(package);
    command
}

/// Installs the locked dependencies unless `node_modules` already holds
/// exactly these manifests: `npm ci` deletes `node_modules` first, so running
/// it every time would reinstall everything on every test run.
fn npm_ci(package: &Path) {
    let mut manifests = std::fs::read(package.join("package.json")).expect("clients/typescript/package.json");
    manifests.extend(std::fs::read(package.join("package-lock.json")).expect("clients/typescript/package-lock.json"));
    let marker = Path::new(env!("CARGO_TARGET_TMPDIR")).join("typescript-client-npm-ci");
    let installed = std::fs::read(&marker).ok();
    if package.join("node_modules").is_dir() && installed.as_deref() == Some(manifests.as_slice()) {
        return;
    }
    run(npm(package).args(["ci", "--prefer-offline", "--no-audit", "--no-fund"]));
    std::fs::write(&marker, &manifests).expect("write the npm ci marker");
}

#[test]
fn typescript_sdk_passes_its_suite_against_dev() {
    let package = repo_root().join("clients/typescript");
    npm_ci(&package);
    run(npm(&package).args(["run", "generate"]));
    run(npm(&package).args(["run", "build"]));

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
    let (mut grpc, mut triggers) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while grpc.is_none() || triggers.is_none() {
        let line = line_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("hookplane dev prints its gRPC and trigger addresses");
        let line = line.trim();
        if let Some(address) = line.strip_prefix("gRPC API (reflection on):") {
            grpc = Some(address.trim().to_owned());
        } else if let Some(url) = line.strip_prefix("triggers (data plane):") {
            triggers = Some(url.trim().to_owned());
        }
    }
    drop(line_rx);
    let (grpc, triggers) = (grpc.expect("gRPC address"), triggers.expect("trigger base URL"));

    run(npm(&package)
        .arg("test")
        .env("HOOKPLANE_GRPC", &grpc)
        .env("HOOKPLANE_HTTP", &triggers)
        .env("HOOKPLANE_ADMIN_KEY_FILE", data_dir.join("admin-key"))
        // The retry tests start servers of their own on ports they choose.
        .env("HOOKPLANE_BIN", env!("CARGO_BIN_EXE_hookplane")));
    drop(server);
}
