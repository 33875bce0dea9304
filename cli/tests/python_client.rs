//! The Python SDK (`clients/python`), generated from `proto/` alone, passes
//! its test suite against the real `hookplane dev` binary: the connector
//! lifecycle, triggers performing against a real target, events, pagination,
//! errors, retries against a server started late, and strict typing.
//!
//! The test provisions its own Python environment (pinned in
//! `clients/python/requirements.txt`) under cargo's target dir, so a fresh
//! machine with `python3` and access to PyPI needs nothing installed by hand.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "shared/dev_server.rs"]
mod dev_server;

use dev_server::{DevServer, repo_root, run};

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
    let server = DevServer::start(&data_dir);
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
        .envs(server.environment())
        // Kept beside the venv, so only the first run type-checks cold.
        .env("MYPY_CACHE_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-client-mypy-cache"))
        // No bytecode caches written into the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1"));
    drop(server);
}
