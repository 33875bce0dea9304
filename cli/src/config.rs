//! Configuration: defaults, then a TOML file, then `HOOKPLANE_*` environment
//! variables, then command-line flags. Unknown keys are errors that name the
//! key and where it came from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use figment::Figment;
use figment::providers::{Env, Format as _, Serialized, Toml};
use hookplane_control_plane::notify::{MailSettings, SmtpTls};
use hookplane_control_plane::webhooks::WebhookSettings;
use hookplane_model::{LimitingPolicy, Plan, RedisPolicy};
use serde::{Deserialize, Serialize};

/// Settings shared by `dev` and `control-plane`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where `dev` keeps its database and key files.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The control plane's gRPC address.
    #[serde(default = "default_grpc_listen")]
    pub grpc_listen: SocketAddr,
    /// The data plane's trigger address.
    #[serde(default = "default_http_listen")]
    pub http_listen: SocketAddr,
    /// `postgres://…` or `sqlite://PATH`; `dev` defaults to SQLite in the
    /// data dir.
    pub database_url: Option<String>,
    /// Where senders reach the data-plane nodes (`https://hooks.example.com`),
    /// written into integration examples; `dev` uses its own node's.
    #[serde(default)]
    pub trigger_base_url: String,
    /// File holding the 64-hex-character key that seals secrets.
    pub secret_key_file: Option<PathBuf>,
    /// Hex SHA-256 of the operator key (`sha256sum` of the key text).
    pub operator_key_hash: Option<String>,
    /// Plan of organizations created without one.
    #[serde(default = "default_plan")]
    pub default_plan: String,
    /// Extra plans beyond `free` and `starter` (TOML `[[plans]]` tables).
    #[serde(default)]
    pub plans: Vec<PlanSettings>,
    /// Hex SHA-256 of each node token the control plane accepts.
    #[serde(default)]
    pub node_token_hashes: Vec<String>,
    /// Data plane: the control plane's gRPC URL.
    pub control_plane_url: Option<String>,
    /// Data plane: the node token (prefer `node_token_file`).
    pub node_token: Option<String>,
    /// Data plane: file holding the node token (mode 0600).
    pub node_token_file: Option<PathBuf>,
    /// Data plane: this node's id; defaults to the host name and port.
    pub node_id: Option<String>,
    /// Data plane: where the last good snapshot, unacknowledged events and
    /// accepted calls are kept.
    pub cache_dir: Option<PathBuf>,
    /// Data plane: file holding the 64-hex-character key that seals the
    /// snapshot in `cache_dir` (mode 0600). Without one the snapshot, which
    /// holds secrets, is kept in memory only.
    pub snapshot_key_file: Option<PathBuf>,
    /// PEM certificate: the control plane's server certificate, or a
    /// node's client certificate for mTLS.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for `tls_cert_file` (mode 0600).
    pub tls_key_file: Option<PathBuf>,
    /// Control plane: CA of node client certificates (enables mTLS).
    pub tls_client_ca_file: Option<PathBuf>,
    /// Data plane: CA that signed the control plane's certificate.
    pub tls_ca_file: Option<PathBuf>,
    /// Data plane: networks outbound calls may reach besides public
    /// addresses (CIDR), e.g. `["10.20.0.0/16"]`. `dev` adds loopback.
    #[serde(default)]
    pub egress_allowed_networks: Vec<String>,
    /// Data plane: proxies (CIDR) whose `X-Forwarded-For` names the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Data plane: largest accepted trigger body, in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Data plane: events held in memory while the control plane lags;
    /// beyond this many they move to `cache_dir`.
    #[serde(default = "default_max_queued_events")]
    pub max_queued_events: usize,
    /// Data plane: calls of asynchronous connectors accepted and not run
    /// yet; beyond this many such calls are shed with 503.
    #[serde(default = "default_max_accepted_calls")]
    pub max_accepted_calls: usize,
    /// Data plane: connections one client address may hold open (trusted
    /// proxies are exempt).
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Data plane: seconds calls in flight get to finish on SIGTERM.
    #[serde(default = "default_drain_timeout_secs")]
    pub drain_timeout_secs: u64,
    /// Data plane: seconds `/readyz` answers 503 on SIGTERM before the
    /// listener closes, so a load balancer stops sending first; 5 by
    /// default, 0 for `dev`.
    pub drain_delay_secs: Option<u64>,
    /// Log filter in `tracing` syntax, e.g. `info,hookplane=debug`.
    #[serde(default = "default_log")]
    pub log: String,
    /// Control plane: address of its Prometheus `/metrics` (an HTTP port
    /// of its own); none by default.
    pub metrics_listen: Option<SocketAddr>,
    /// Data plane: address of the node's Prometheus `/metrics`, a port of
    /// its own (never the trigger port); none by default.
    pub node_metrics_listen: Option<SocketAddr>,
    /// Control plane: where nodes count limits and remember deliveries,
    /// `local` (each node) or `redis` (fleet-wide, exact).
    #[serde(default)]
    pub limiting_policy: LimitingKind,
    /// Control plane, `redis` policy: `redis://[user:password@]host:port[/db]`.
    pub redis_url: Option<String>,
    /// Control plane, `redis` policy: refuse calls (503) while Redis cannot
    /// answer, instead of counting on each node meanwhile.
    #[serde(default)]
    pub redis_fail_closed: bool,
    /// Control plane, `redis` policy: prefix of every key.
    #[serde(default = "default_redis_key_prefix")]
    pub redis_key_prefix: String,
    /// Control plane, `redis` policy: milliseconds a node waits for Redis
    /// before the failure mode applies.
    #[serde(default = "default_redis_timeout_ms")]
    pub redis_timeout_ms: u64,
    /// Control plane: milliseconds before a platform webhook's first
    /// retry (doubling after each, with jitter).
    #[serde(default = "default_webhook_retry_base_ms")]
    pub webhook_retry_base_ms: u64,
    /// Control plane: milliseconds a platform-webhook attempt may take.
    #[serde(default = "default_webhook_timeout_ms")]
    pub webhook_timeout_ms: u64,
    /// Control plane: days settled deliveries (and sent mail) stay in the
    /// delivery log; 0 keeps them forever.
    #[serde(default = "default_delivery_retention_days")]
    pub delivery_retention_days: u32,
    /// Control plane: the SMTP server notification mail goes through; none
    /// logs notifications instead.
    pub smtp_host: Option<String>,
    /// Control plane: its port; 587 for `starttls`, 465 for `tls`, 25 for
    /// `none` by default.
    pub smtp_port: Option<u16>,
    /// Control plane: `starttls` (default), `tls` or `none`.
    #[serde(default)]
    pub smtp_tls: SmtpTlsSetting,
    /// Control plane: SMTP user name, when the server wants one.
    pub smtp_username: Option<String>,
    /// Control plane: file holding the SMTP password (mode 0600).
    pub smtp_password_file: Option<PathBuf>,
    /// Control plane: the sender of notification mail, e.g.
    /// `hookplane <alerts@example.com>`; required with `smtp_host`.
    pub smtp_from: Option<String>,
    /// Control plane: milliseconds before a notification mail's first
    /// retry (doubling after each; 5 sends in all).
    #[serde(default = "default_smtp_retry_base_ms")]
    pub smtp_retry_base_ms: u64,
}

/// `smtp_tls`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTlsSetting {
    #[default]
    Starttls,
    Tls,
    None,
}

fn default_smtp_retry_base_ms() -> u64 {
    30_000
}

fn default_webhook_retry_base_ms() -> u64 {
    WebhookSettings::default().retry_base.as_millis() as u64
}

fn default_delivery_retention_days() -> u32 {
    30
}

fn default_webhook_timeout_ms() -> u64 {
    WebhookSettings::default().attempt_timeout.as_millis() as u64
}

fn default_redis_timeout_ms() -> u64 {
    RedisPolicy::DEFAULT_TIMEOUT.as_millis() as u64
}

/// `limiting_policy` (SPEC §9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitingKind {
    #[default]
    Local,
    Redis,
}

fn default_redis_key_prefix() -> String {
    "hookplane".to_owned()
}

impl Settings {
    /// Which addresses outbound calls may reach: public ones and
    /// `egress_allowed_networks`; `dev` also opens loopback.
    pub fn egress_policy(&self, dev: bool) -> anyhow::Result<hookplane_egress::EgressPolicy> {
        let egress = hookplane_egress::EgressPolicy::allowing(&self.egress_allowed_networks)
            .context("egress_allowed_networks")?;
        Ok(if dev { egress.with_loopback() } else { egress })
    }

    /// How the control plane delivers platform webhooks; `dev` may also
    /// deliver to loopback receivers.
    pub fn webhooks(&self, dev: bool) -> anyhow::Result<WebhookSettings> {
        anyhow::ensure!(self.webhook_retry_base_ms > 0, "webhook_retry_base_ms must be at least 1");
        anyhow::ensure!(
            (100..=60_000).contains(&self.webhook_timeout_ms),
            "webhook_timeout_ms must be between 100 and 60000"
        );
        anyhow::ensure!(
            self.webhook_retry_base_ms <= 86_400_000,
            "webhook_retry_base_ms must be at most 86400000 (a day)"
        );
        Ok(WebhookSettings {
            egress: self.egress_policy(dev)?,
            retry_base: std::time::Duration::from_millis(self.webhook_retry_base_ms),
            attempt_timeout: std::time::Duration::from_millis(self.webhook_timeout_ms),
            delivery_retention: match self.delivery_retention_days {
                0 => std::time::Duration::MAX,
                days => std::time::Duration::from_secs(u64::from(days) * 86_400),
            },
            ..WebhookSettings::default()
        })
    }

    /// Where notification mail goes; `None` without `smtp_host`.
    pub fn mail(&self) -> anyhow::Result<Option<MailSettings>> {
        let Some(host) = self.smtp_host.clone() else { return Ok(None) };
        let from = self.smtp_from.clone().context("smtp_from is required with smtp_host")?;
        let tls = match self.smtp_tls {
            SmtpTlsSetting::Starttls => SmtpTls::StartTls,
            SmtpTlsSetting::Tls => SmtpTls::Tls,
            SmtpTlsSetting::None => SmtpTls::None,
        };
        let port = self.smtp_port.unwrap_or(match tls {
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        });
        let password = match &self.smtp_password_file {
            Some(path) => Some(crate::files::read_private_file(path)?.trim().to_owned().into()),
            None => None,
        };
        anyhow::ensure!(
            (1..=86_400_000).contains(&self.smtp_retry_base_ms),
            "smtp_retry_base_ms must be between 1 and 86400000"
        );
        anyhow::ensure!(
            tls != SmtpTls::None || self.smtp_username.is_none(),
            "smtp_tls = \"none\" would send smtp_username's password in the clear; use starttls or tls"
        );
        Ok(Some(MailSettings {
            host,
            port,
            tls,
            username: self.smtp_username.clone(),
            password,
            from,
            retry_base: std::time::Duration::from_millis(self.smtp_retry_base_ms),
        }))
    }

    /// The limiting policy the control plane sends its nodes.
    pub fn limiting(&self) -> anyhow::Result<LimitingPolicy> {
        match self.limiting_policy {
            LimitingKind::Local => Ok(LimitingPolicy::Local),
            LimitingKind::Redis => {
                let url = self.redis_url.clone().context("redis_url is required with limiting_policy = \"redis\"")?;
                hookplane_data_plane::fleet::check_url(&url).context("redis_url")?;
                anyhow::ensure!((1..=60_000).contains(&self.redis_timeout_ms), "redis_timeout_ms must be 1 to 60000");
                Ok(LimitingPolicy::Redis(RedisPolicy {
                    url,
                    fail_closed: self.redis_fail_closed,
                    key_prefix: self.redis_key_prefix.clone(),
                    timeout: std::time::Duration::from_millis(self.redis_timeout_ms),
                }))
            }
        }
    }
}

fn default_max_body_bytes() -> usize {
    1 << 20
}

fn default_max_connections_per_ip() -> usize {
    hookplane_data_plane::ConnectionSettings::default().max_connections_per_ip
}

fn default_drain_timeout_secs() -> u64 {
    hookplane_data_plane::ConnectionSettings::default().drain_timeout.as_secs()
}

fn default_max_queued_events() -> usize {
    hookplane_data_plane::events::MAX_QUEUED_EVENTS
}

fn default_max_accepted_calls() -> usize {
    hookplane_data_plane::inbox::MAX_ACCEPTED_CALLS
}

/// A configured plan (SPEC §9); limits of 0 mean unlimited.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSettings {
    pub name: String,
    #[serde(default)]
    pub display_name: String,
    pub per_ip_per_minute: u32,
    pub per_connector_per_minute: u32,
    pub org_per_minute: u32,
    pub org_per_hour: u32,
    pub org_per_day: u32,
    #[serde(default)]
    pub retries_enabled: bool,
    /// Days events are kept; 0 keeps them forever.
    #[serde(default = "default_event_retention_days")]
    pub event_retention_days: u32,
}

fn default_event_retention_days() -> u32 {
    30
}

impl PlanSettings {
    pub fn to_plan(&self) -> Plan {
        Plan {
            name: self.name.clone(),
            display_name: if self.display_name.is_empty() { self.name.clone() } else { self.display_name.clone() },
            per_ip_per_minute: self.per_ip_per_minute,
            per_connector_per_minute: self.per_connector_per_minute,
            org_per_minute: self.org_per_minute,
            org_per_hour: self.org_per_hour,
            org_per_day: self.org_per_day,
            retries_enabled: self.retries_enabled,
            event_retention_days: self.event_retention_days,
            revision: 1,
        }
    }
}

/// Flags that override the other sources; unset flags leave them alone.
#[derive(Debug, Default, Serialize)]
pub struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_plane_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_token_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_key_file: Option<PathBuf>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from(".hookplane")
}

fn default_grpc_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 50051))
}

fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_plan() -> String {
    "free".to_owned()
}

fn default_log() -> String {
    "info".to_owned()
}

/// `HOOKPLANE_*` variables that belong to clients, not to the server: the
/// credentials integration examples read (`HOOKPLANE_HEADER_1`, … too),
/// the CLI's and the SDK suites'. Unknown variables are refused, to catch
/// typos; these are left alone, so a shell that exported them for a
/// client can still start `hookplane dev`.
const CLIENT_VARIABLES: [&str; 12] = [
    "token",
    "secret_token",
    "api_key",
    "trigger_api_key",
    "basic_password",
    "signing_secret",
    "url",
    "grpc",
    "http",
    "admin_key_file",
    "bin",
    "server",
];

/// Loads the settings from `file` (if given), the environment and `flags`.
pub fn load(file: Option<&Path>, flags: &FlagOverrides) -> anyhow::Result<Settings> {
    let mut figment = Figment::new();
    if let Some(file) = file {
        anyhow::ensure!(file.exists(), "config file {} does not exist", file.display());
        figment = figment.merge(Toml::file_exact(file));
    }
    figment
        .merge(
            Env::prefixed("HOOKPLANE_")
                .ignore(&CLIENT_VARIABLES)
                .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("header_")),
        )
        .merge(Serialized::globals(flags))
        .extract()
        .map_err(|err| anyhow::anyhow!(describe(err)))
        .context("invalid configuration")
}

/// One line per problem, naming the key and its source.
fn describe(err: figment::Error) -> String {
    err.into_iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_env_and_flags_layer_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("hookplane.toml", "grpc_listen = \"127.0.0.1:1\"\nlog = \"debug\"\n")?;
            jail.set_env("HOOKPLANE_GRPC_LISTEN", "127.0.0.1:2");
            let flags = FlagOverrides { data_dir: Some("/tmp/x".into()), ..Default::default() };
            let settings = load(Some(Path::new("hookplane.toml")), &flags).map_err(|e| e.to_string())?;
            assert_eq!(settings.grpc_listen, SocketAddr::from(([127, 0, 0, 1], 2)));
            assert_eq!(settings.log, "debug");
            assert_eq!(settings.data_dir, PathBuf::from("/tmp/x"));
            assert_eq!(settings.default_plan, "free");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_named() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("hookplane.toml", "grpc_listn = \"127.0.0.1:1\"\n")?;
            let err = load(Some(Path::new("hookplane.toml")), &FlagOverrides::default()).unwrap_err();
            assert!(format!("{err:#}").contains("grpc_listn"), "{err:#}");
            jail.create_file("empty.toml", "")?;
            jail.set_env("HOOKPLANE_DATABSE_URL", "x");
            let err = load(Some(Path::new("empty.toml")), &FlagOverrides::default()).unwrap_err();
            assert!(format!("{err:#}").contains("databse_url"), "{err:#}");
            // A client's variables are not the server's typos.
            jail.clear_env();
            for name in ["HOOKPLANE_TOKEN", "HOOKPLANE_API_KEY", "HOOKPLANE_SIGNING_SECRET", "HOOKPLANE_HEADER_2"] {
                jail.set_env(name, "client-side");
            }
            load(Some(Path::new("empty.toml")), &FlagOverrides::default()).map_err(|e| e.to_string())?;
            Ok(())
        });
    }

    #[test]
    fn plans_come_from_toml_tables() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "p.toml",
                "[[plans]]\nname = \"pro\"\nper_ip_per_minute = 600\nper_connector_per_minute = 300\n\
                 org_per_minute = 2000\norg_per_hour = 10000\norg_per_day = 50000\nretries_enabled = true\n",
            )?;
            let settings = load(Some(Path::new("p.toml")), &FlagOverrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(settings.plans[0].to_plan().display_name, "pro");
            Ok(())
        });
    }
}
