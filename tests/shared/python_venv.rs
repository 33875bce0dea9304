//! A Python virtualenv with pinned requirements, under cargo's target
//! directory, made once and reused across runs while the requirements
//! file is unchanged: a fresh machine needs only `python3` and PyPI.
//! Shared by the end-to-end suite and the CLI's Python client test.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(command: &mut Command) {
    let status = command.status().unwrap_or_else(|err| panic!("running {command:?}: {err}"));
    assert!(status.success(), "{command:?} failed with {status}");
}

/// The Python of the virtualenv at `venv` holding `requirements`.
pub fn python_env(requirements: &Path, venv: &Path) -> PathBuf {
    let wanted = std::fs::read_to_string(requirements).expect("requirements file");
    let marker = venv.join("installed-requirements.txt");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(wanted.as_str()) {
        let _ = std::fs::remove_dir_all(venv);
        run(Command::new("python3").args(["-m", "venv"]).arg(venv));
        run(Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(requirements));
        std::fs::write(&marker, wanted).expect("marker");
    }
    venv.join("bin/python")
}
