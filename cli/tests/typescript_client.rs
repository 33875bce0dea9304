//! The TypeScript SDK (`clients/typescript`, generated from `proto/` with
//! protobuf-es and Connect) passes its own test suite against the real
//! `hookplane dev` binary.
//!
//! The suite regenerates the client from `proto/` on every run, so it can
//! never test stale generated code. It needs Node.js 20+ and npm on PATH and
//! the npm registry (or npm's cache) for `npm ci`; it never skips.

use std::path::Path;
use std::process::Command;

#[path = "shared/dev_server.rs"]
mod dev_server;

use dev_server::{DevServer, repo_root, run};

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
    let server = DevServer::start(&work.path().join("data"));
    run(npm(&package).arg("test").envs(server.environment()));
    drop(server);
}
