//! Real `hookplane` processes for the durability suite: `dev` alone, or a
//! `control-plane` and a `data-plane` node, each started, signalled and
//! killed the way an operator (or the kernel) would.

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hookplane_sdk::{Client, api};

/// A running `hookplane` process; killed if the test ends without
/// stopping it.
pub struct Process {
    child: Child,
    name: &'static str,
}

impl Process {
    fn spawn(name: &'static str, command: &mut Command) -> (Process, std::sync::mpsc::Receiver<String>) {
        let mut child = command
            .env("HOOKPLANE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|err| panic!("starting {name}: {err}"));
        let stdout = child.stdout.take().expect("stdout");
        // Drained to the end: a closed pipe would kill the process on its
        // next print.
        let (lines_tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        (Process { child, name }, lines)
    }

    /// `kill -9`: no chance to drain or flush anything.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(mut self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
        let exited = self.child.wait().expect("exits");
        assert!(exited.success(), "{} exits cleanly on SIGTERM: {exited}", self.name);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_hookplane")
}

/// A port nothing listens on now, so a process can be restarted on it.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `hookplane dev` in `dir`: the control plane and one node in a process.
pub struct Dev {
    pub process: Process,
    pub grpc: String,
    pub http: SocketAddr,
}

impl Dev {
    pub fn start(dir: &Path) -> Dev {
        Dev::start_with(dir, &[])
    }

    /// `hookplane dev` with extra `HOOKPLANE_*` settings in its environment.
    pub fn start_with(dir: &Path, settings: &[(&str, &str)]) -> Dev {
        let (grpc, http) = (free_port(), free_port());
        let (process, lines) = Process::spawn(
            "hookplane dev",
            Command::new(binary())
                .envs(settings.iter().copied())
                .arg("dev")
                .args(["--grpc-listen", &format!("127.0.0.1:{grpc}"), "--http-listen", &format!("127.0.0.1:{http}")])
                .arg("--data-dir")
                .arg(dir),
        );
        let started = lines.recv_timeout(Duration::from_secs(60)).expect("hookplane dev starts");
        assert!(started.contains("hookplane dev is running"), "{started}");
        std::thread::spawn(move || while lines.recv().is_ok() {});
        Dev { process, grpc: format!("http://127.0.0.1:{grpc}"), http: SocketAddr::from(([127, 0, 0, 1], http)) }
    }

    /// The default organization's admin client and an operator client.
    pub async fn clients(&self, dir: &Path) -> (Client, Client) {
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect(name).trim().to_owned();
        let operator = connect(&self.grpc, &read("operator-key")).await;
        let admin = operator.with_api_key(&read("admin-key")).expect("admin key");
        (admin, operator)
    }
}

/// Connects to a control plane, waiting for it to listen.
pub async fn connect(url: &str, key: &str) -> Client {
    for _ in 0..600 {
        if let Ok(client) = Client::connect(url.to_owned(), key).await {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no control plane at {url}");
}

/// A `hookplane control-plane` on SQLite and a `hookplane data-plane`
/// node, each its own process; either can be stopped and started again.
pub struct Split {
    pub dir: PathBuf,
    pub grpc_port: u16,
    pub http: SocketAddr,
    operator_key: String,
}

impl Split {
    /// Writes the keys and config the two processes share.
    pub fn prepare(dir: &Path) -> Split {
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            #[cfg(unix)]
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        };
        let hex = |n: u8| (0..32u8).map(|i| format!("{:02x}", i.wrapping_mul(7).wrapping_add(n))).collect::<String>();
        write("secret-key", &hex(1));
        write("snapshot-key", &hex(2));
        let (node_token, operator_key) =
            ("hpn_durabilitynodetoken00000000000000", "hpo_durabilityoperatorkey000000000000");
        write("node-token", node_token);
        let sha = |text: &str| {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(text.as_bytes()))
        };
        let grpc_port = free_port();
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        std::fs::write(
            dir.join("hookplane.toml"),
            format!(
                "operator_key_hash = \"{}\"\nnode_token_hashes = [\"{}\"]\negress_allowed_networks = [\"127.0.0.0/8\"]\n\
                 drain_delay_secs = 1\n",
                sha(operator_key),
                sha(node_token)
            ),
        )
        .unwrap();
        Split { dir: dir.to_owned(), grpc_port, http, operator_key: operator_key.to_owned() }
    }

    pub fn start_control_plane(&self) -> Process {
        let database = format!("sqlite://{}?mode=rwc", self.dir.join("control-plane.db").display());
        let (process, lines) = Process::spawn(
            "hookplane control-plane",
            Command::new(binary())
                .arg("--config")
                .arg(self.dir.join("hookplane.toml"))
                .arg("control-plane")
                .args(["--database-url", &database, "--grpc-listen", &format!("127.0.0.1:{}", self.grpc_port)])
                .arg("--secret-key-file")
                .arg(self.dir.join("secret-key")),
        );
        std::thread::spawn(move || while lines.recv().is_ok() {});
        process
    }

    pub fn start_node(&self) -> Process {
        let (process, lines) = Process::spawn(
            "hookplane data-plane",
            Command::new(binary())
                .arg("--config")
                .arg(self.dir.join("hookplane.toml"))
                .arg("data-plane")
                .args(["--control-plane", &self.url(), "--node-id", "node-1"])
                .args(["--http-listen", &self.http.to_string()])
                .arg("--node-token-file")
                .arg(self.dir.join("node-token"))
                .arg("--cache-dir")
                .arg(self.dir.join("node-cache"))
                .arg("--snapshot-key-file")
                .arg(self.dir.join("snapshot-key")),
        );
        std::thread::spawn(move || while lines.recv().is_ok() {});
        process
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// An organization on the unlimited plan, and its admin client.
    pub async fn organization(&self) -> Client {
        let operator = connect(&self.url(), &self.operator_key).await;
        unlimited(&operator).await;
        let organization = operator
            .organizations()
            .create_organization(api::CreateOrganizationRequest {
                organization: Some(api::Organization {
                    display_name: "durability".into(),
                    plan: "unlimited".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let key = operator
            .api_keys()
            .create_api_key(api::CreateApiKeyRequest {
                organization_id: organization.id.clone(),
                api_key: Some(api::ApiKey {
                    display_name: "admin".into(),
                    role: api::ApiKeyRole::Admin as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        operator.with_api_key(&key.key).unwrap()
    }
}

/// Creates the `unlimited` plan (no rate limits: the load is the point),
/// unless a previous round did.
pub async fn unlimited(operator: &Client) {
    let plan = api::Plan { name: "unlimited".into(), display_name: "unlimited".into(), ..Default::default() };
    match operator.plans().create_plan(api::CreatePlanRequest { plan: Some(plan) }).await {
        Ok(_) => {}
        Err(status) if status.code() == tonic::Code::AlreadyExists => {}
        Err(status) => panic!("creating the plan: {status}"),
    }
}
