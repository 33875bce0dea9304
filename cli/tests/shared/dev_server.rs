//! A real `hookplane dev` for the SDK suites: started on free ports in a
//! fresh data directory, its addresses read from what it prints, killed
//! when dropped (also when an assertion fails).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Runs `command`, failing the test unless it succeeds.
pub fn run(command: &mut Command) {
    let status = command.status().unwrap_or_else(|err| panic!("running {command:?}: {err}"));
    assert!(status.success(), "{command:?} failed with {status}");
}

/// A running `hookplane dev`.
pub struct DevServer {
    child: Child,
    /// `127.0.0.1:PORT` of the gRPC API.
    pub grpc: String,
    /// `http://127.0.0.1:PORT` of the node's triggers.
    pub triggers: String,
    /// The admin API key's file.
    pub admin_key: PathBuf,
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl DevServer {
    /// Starts `hookplane dev` with its data in `data_dir`.
    pub fn start(data_dir: &Path) -> DevServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hookplane"))
            .args(["dev", "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("HOOKPLANE_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start hookplane dev");
        let stdout = child.stdout.take().expect("stdout");
        // Keep draining stdout after the address lines: a closed pipe would
        // kill the server on its next print.
        let (line_tx, line_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = line_tx.send(line);
            }
        });
        let mut server =
            DevServer { child, grpc: String::new(), triggers: String::new(), admin_key: data_dir.join("admin-key") };
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.grpc.is_empty() || server.triggers.is_empty() {
            let line = line_rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("hookplane dev prints its gRPC and trigger addresses");
            let line = line.trim();
            if let Some(address) = line.strip_prefix("gRPC API (reflection on):") {
                server.grpc = address.trim().to_owned();
            } else if let Some(url) = line.strip_prefix("triggers (data plane):") {
                server.triggers = url.trim().to_owned();
            }
        }
        server
    }

    /// The variables the SDK suites read to reach this server.
    pub fn environment(&self) -> [(&'static str, String); 4] {
        [
            ("HOOKPLANE_GRPC", self.grpc.clone()),
            ("HOOKPLANE_HTTP", self.triggers.clone()),
            ("HOOKPLANE_ADMIN_KEY_FILE", self.admin_key.display().to_string()),
            // The suites start servers of their own (a late one, for retries).
            ("HOOKPLANE_BIN", env!("CARGO_BIN_EXE_hookplane").to_owned()),
        ]
    }
}
