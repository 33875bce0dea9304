//! Shared harness of the end-to-end tests: a real control plane on port 0
//! over a real SQLite file or a fresh PostgreSQL database, driven through
//! the SDK.
#![allow(dead_code)]

pub mod fixtures;
pub mod nodes;
pub mod python;
pub mod targets;
pub mod triggers;
pub mod webhooks;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use hookplane_control_plane::crypto::{CredentialKind, SecretBox, hash_credential, mint};
use hookplane_control_plane::notify::MailSettings;
use hookplane_control_plane::webhooks::WebhookSettings;
use hookplane_control_plane::{ControlPlane, ControlPlaneConfig, ServerTls, bootstrap};
use hookplane_model::LimitingPolicy;
use hookplane_sdk::{Client, api};
use sqlx::{Connection as _, Executor as _};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// Where the PostgreSQL suite creates its databases; `.ci/run` exports it.
pub const POSTGRES_URL_VAR: &str = "TEST_POSTGRES_URL";
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The node token test planes accept.
pub const NODE_TOKEN: &str = "hpn_testNodeTokenForTheEndToEndSuite0";

/// Platform webhooks as tests deliver them: to receivers on loopback,
/// retried after 100 ms (then 200 ms), waiting at most 2 s on a
/// `Retry-After`, each attempt given 3 s; expiring credentials looked for
/// every 200 ms.
pub fn test_webhooks() -> WebhookSettings {
    WebhookSettings {
        egress: hookplane_egress::EgressPolicy::public_only().with_loopback(),
        attempts: 3,
        retry_base: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(2),
        attempt_timeout: Duration::from_secs(3),
        expiry_scan_every: Duration::from_millis(200),
        ..WebhookSettings::default()
    }
}

/// What a test plane is started with besides its store and keys.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub limiting: LimitingPolicy,
    pub mail: Option<MailSettings>,
}

/// Which store a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Waits until `check` returns `Some`, polling; panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits, if need be, until a minute has at least 15 seconds left: limits
/// count in fixed minutes of the clock (SPEC §9), and a test counting
/// calls against one must not see it start over halfway.
pub async fn early_in_a_minute() {
    let seconds_into_minute =
        || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs() % 60;
    eventually(Duration::from_secs(20), "a minute with 15 seconds left", || async {
        (seconds_into_minute() < 45).then_some(())
    })
    .await;
}

/// The database a test plane lives on; kept across restarts.
pub struct Database {
    pub url: String,
    /// For SQLite: the directory holding the file.
    dir: tempfile::TempDir,
    postgres_name: Option<String>,
}

impl Database {
    pub async fn create(backend: Backend) -> Database {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => Database {
                url: format!("sqlite://{}?mode=rwc", dir.path().join("hookplane.db").display()),
                dir,
                postgres_name: None,
            },
            Backend::Postgres => {
                let admin_url = std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
                let name = format!("hookplane_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin_url).await.unwrap_or_else(|err| {
                    panic!("the PostgreSQL suite needs a server at {admin_url} (set {POSTGRES_URL_VAR}): {err}")
                });
                conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .expect("create test database");
                let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(base, _)| base);
                Database { url: format!("{base}/{name}"), dir, postgres_name: Some(name) }
            }
        }
    }

    /// Runs one statement on the database behind the control plane's
    /// back, as an attacker or a broken disk would.
    pub async fn execute(&self, sql: &str) {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.url).await.expect("connect to the test database");
        conn.execute(sqlx::AssertSqlSafe(sql.to_owned())).await.expect("statement runs");
    }

    /// Every byte the database keeps, as text, to search for leaked plaintext.
    pub async fn dump(&self) -> String {
        if self.postgres_name.is_none() {
            let mut text = String::new();
            for entry in std::fs::read_dir(self.dir.path()).unwrap() {
                let bytes = std::fs::read(entry.unwrap().path()).unwrap();
                text.push_str(&String::from_utf8_lossy(&bytes));
            }
            return text;
        }
        let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
        // Bytes (event traces) as their text where printable, not hex, so a
        // plaintext in them is found like one in a text column.
        conn.execute("SET bytea_output = 'escape'").await.unwrap();
        let tables: Vec<(String,)> =
            sqlx::query_as("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        let mut text = String::new();
        for (table,) in tables {
            let rows: Vec<(String,)> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT CAST(t AS TEXT) FROM \"{table}\" t")))
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
            for (row,) in rows {
                text.push_str(&row);
                text.push('\n');
            }
        }
        text
    }
}

/// A running control plane with an operator client and a default
/// organization's admin client.
pub struct TestPlane {
    pub database: Database,
    pub control_plane: ControlPlane,
    pub address: SocketAddr,
    pub operator: Client,
    pub admin: Client,
    pub organization_id: String,
    pub admin_key: String,
    secret_key: String,
    operator_key: String,
    options: Options,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl TestPlane {
    pub async fn start(backend: Backend) -> TestPlane {
        let database = Database::create(backend).await;
        let secret_key = SecretBox::generate_key_hex().to_string();
        let operator_key = mint(CredentialKind::OperatorKey).plaintext.to_string();
        TestPlane::boot(database, secret_key, operator_key, None, "127.0.0.1:0", None, Options::default()).await
    }

    /// A plane sending notification mail as `mail` says.
    pub async fn start_mailing(backend: Backend, mail: MailSettings) -> TestPlane {
        let database = Database::create(backend).await;
        let secret_key = SecretBox::generate_key_hex().to_string();
        let operator_key = mint(CredentialKind::OperatorKey).plaintext.to_string();
        let options = Options { mail: Some(mail), ..Options::default() };
        TestPlane::boot(database, secret_key, operator_key, None, "127.0.0.1:0", None, options).await
    }

    /// A plane whose nodes count limits and deliveries as `limiting` says.
    pub async fn start_limiting(backend: Backend, limiting: LimitingPolicy) -> TestPlane {
        let database = Database::create(backend).await;
        let secret_key = SecretBox::generate_key_hex().to_string();
        let operator_key = mint(CredentialKind::OperatorKey).plaintext.to_string();
        let options = Options { limiting, ..Options::default() };
        TestPlane::boot(database, secret_key, operator_key, None, "127.0.0.1:0", None, options).await
    }

    /// A plane serving TLS with `tls`; its own clients trust `client_ca_pem`.
    pub async fn start_tls(backend: Backend, tls: ServerTls, ca_pem: &str) -> TestPlane {
        let database = Database::create(backend).await;
        let secret_key = SecretBox::generate_key_hex().to_string();
        let operator_key = mint(CredentialKind::OperatorKey).plaintext.to_string();
        let client_tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
        let tls = Some((tls, client_tls));
        TestPlane::boot(database, secret_key, operator_key, None, "127.0.0.1:0", tls, Options::default()).await
    }

    async fn boot(
        database: Database,
        secret_key: String,
        operator_key: String,
        admin: Option<(String, String)>,
        bind: &str,
        tls: Option<(ServerTls, ClientTlsConfig)>,
        options: Options,
    ) -> TestPlane {
        let config = ControlPlaneConfig {
            database_url: database.url.clone(),
            secret_key_hex: secret_key.clone().into(),
            operator_key_hash: Some(hash_credential(&operator_key)),
            default_plan: "free".to_owned(),
            plans: Vec::new(),
            node_token_hashes: vec![hash_credential(NODE_TOKEN)],
            tls: tls.as_ref().map(|(server, _)| server.clone()),
            limiting: options.limiting.clone(),
            webhooks: test_webhooks(),
            mail: options.mail.clone(),
            trigger_base_url: String::new(),
        };
        let control_plane = ControlPlane::open(&config).await.expect("control plane opens");
        let (organization_id, admin_key) = match admin {
            Some(existing) => existing,
            None => {
                let created = bootstrap::default_organization(control_plane.store(), "Test org", "free")
                    .await
                    .unwrap()
                    .expect("fresh store");
                (created.organization.id, created.admin_key.to_string())
            }
        };
        let listener = TcpListener::bind(bind).await.unwrap();
        let address = listener.local_addr().unwrap();
        let (shutdown, signal) = oneshot::channel();
        let serving = control_plane.clone();
        let server = tokio::spawn(async move {
            serving
                .serve(listener, async {
                    let _ = signal.await;
                })
                .await
                .expect("control plane serves");
        });
        let operator = match &tls {
            None => Client::connect(format!("http://{address}"), &operator_key).await.expect("connect"),
            Some((_, client_tls)) => {
                let channel = Endpoint::from_shared(format!("https://{address}"))
                    .unwrap()
                    .tls_config(client_tls.clone())
                    .unwrap()
                    .connect()
                    .await
                    .expect("connect over TLS");
                Client::from_channel(channel, &operator_key).unwrap()
            }
        };
        let admin = operator.with_api_key(&admin_key).unwrap();
        TestPlane {
            database,
            control_plane,
            address,
            operator,
            admin,
            organization_id,
            admin_key,
            secret_key,
            operator_key,
            options,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    /// Stops the server and starts a new one on the same database and key.
    pub async fn restart(self) -> TestPlane {
        self.stopped().await.start_again().await
    }

    /// Stops serving; the database stays for [`StoppedPlane::start_again`].
    pub async fn stopped(mut self) -> StoppedPlane {
        self.stop().await;
        self.control_plane.store().close().await;
        let admin = (self.organization_id.clone(), self.admin_key.clone());
        let database = std::mem::replace(&mut self.database, placeholder_database());
        StoppedPlane {
            database,
            secret_key: self.secret_key.clone(),
            operator_key: self.operator_key.clone(),
            options: self.options.clone(),
            admin,
            address: self.address,
        }
    }

    /// The gRPC URL nodes and clients connect to.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Another control plane on this one's database and keys, serving on
    /// a port of its own, as a second replica would.
    pub async fn replica(&self) -> Replica {
        let config = ControlPlaneConfig {
            database_url: self.database.url.clone(),
            secret_key_hex: self.secret_key.clone().into(),
            operator_key_hash: Some(hash_credential(&self.operator_key)),
            default_plan: "free".to_owned(),
            plans: Vec::new(),
            node_token_hashes: vec![hash_credential(NODE_TOKEN)],
            tls: None,
            limiting: self.options.limiting.clone(),
            webhooks: test_webhooks(),
            mail: self.options.mail.clone(),
            trigger_base_url: String::new(),
        };
        let control_plane = ControlPlane::open(&config).await.expect("the replica opens");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (shutdown, signal) = oneshot::channel::<()>();
        let serving = control_plane.clone();
        let server = tokio::spawn(async move {
            serving.serve(listener, async { drop(signal.await) }).await.expect("the replica serves");
        });
        Replica { control_plane, address, shutdown, server }
    }

    async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task");
        }
    }

    /// Stops the server and drops a PostgreSQL test database.
    pub async fn finish(mut self) {
        self.stop().await;
        self.control_plane.store().close().await;
        if let Some(name) = &self.database.postgres_name {
            let admin_url = std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
            let mut conn = sqlx::PgConnection::connect(&admin_url).await.unwrap();
            conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).await.unwrap();
        }
    }

    /// A new organization and a client holding its admin key.
    pub async fn new_organization(&self, name: &str) -> (String, Client) {
        let org = self
            .operator
            .organizations()
            .create_organization(api::CreateOrganizationRequest {
                organization: Some(api::Organization { display_name: name.to_owned(), ..Default::default() }),
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let key = self.key_for(&org.id, api::ApiKeyRole::Admin).await;
        (org.id, key)
    }

    /// A client with a new key of `role` in `organization_id`.
    pub async fn key_for(&self, organization_id: &str, role: api::ApiKeyRole) -> Client {
        let key = self
            .operator
            .api_keys()
            .create_api_key(api::CreateApiKeyRequest {
                organization_id: organization_id.to_owned(),
                api_key: Some(api::ApiKey { role: role as i32, display_name: "test".into(), ..Default::default() }),
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        self.operator.with_api_key(&key.key).unwrap()
    }

    /// Moves the test organization to `plan` (as the operator).
    pub async fn set_plan(&self, plan: &str) {
        self.operator
            .organizations()
            .update_organization(api::UpdateOrganizationRequest {
                organization: Some(api::Organization {
                    id: self.organization_id.clone(),
                    plan: plan.into(),
                    ..Default::default()
                }),
                update_mask: fixtures::mask(&["plan"]),
            })
            .await
            .unwrap();
    }

    pub async fn config_version(&self) -> i64 {
        self.control_plane.store().config_version().await.unwrap()
    }
}

/// A second control plane on a [`TestPlane`]'s database.
pub struct Replica {
    pub control_plane: ControlPlane,
    pub address: SocketAddr,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<()>,
}

impl Replica {
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        self.server.await.expect("replica task");
        self.control_plane.store().close().await;
    }
}

/// A control plane that was stopped; its database and address are kept.
pub struct StoppedPlane {
    database: Database,
    secret_key: String,
    operator_key: String,
    options: Options,
    admin: (String, String),
    address: SocketAddr,
}

impl StoppedPlane {
    /// The default organization's admin key.
    pub fn admin_key(&self) -> &str {
        &self.admin.1
    }

    /// The gRPC URL the plane will serve on again.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Serves again on the same address, database and keys.
    pub async fn start_again(self) -> TestPlane {
        let bind = self.address.to_string();
        let admin = Some(self.admin);
        TestPlane::boot(self.database, self.secret_key, self.operator_key, admin, &bind, None, self.options).await
    }
}

fn placeholder_database() -> Database {
    Database { url: String::new(), dir: tempfile::tempdir().unwrap(), postgres_name: None }
}

/// Generates one `#[tokio::test]` per backend for each listed async test
/// function taking a [`Backend`].
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Postgres).await;
                }
            )*
        }
    };
}
