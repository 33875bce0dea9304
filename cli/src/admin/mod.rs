//! The admin CLI (SPEC §10): the gRPC API from a terminal, on the Rust SDK.
//! After `hookplane dev` it needs no flags: the server defaults to dev's
//! address and the key to the admin key dev wrote. Tables for people,
//! `-o json` (canonical proto3 JSON) for scripts, field violations one per
//! line, exit codes scripts can test (`output::exit_code`).

mod apply;
mod connectors;
mod events;
mod organizations;
mod output;
mod proto_json;
mod subscriptions;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use hookplane_sdk::Client;

pub use connectors::ConnectorsCommand;
pub use events::EventsCommand;
pub use organizations::{KeysCommand, NodesCommand, OrgsCommand, PlansCommand, SecretsCommand};
pub use output::Format;
pub use subscriptions::SubscriptionsCommand;

/// Where the control plane is and who is calling.
#[derive(Args, Clone, Debug)]
pub struct Connection {
    /// The control plane's gRPC URL.
    #[arg(long, global = true, env = "HOOKPLANE_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// File holding the API key. Without it: `HOOKPLANE_API_KEY`, else the
    /// admin key `hookplane dev` wrote in its data directory.
    #[arg(long, global = true)]
    pub api_key_file: Option<PathBuf>,
    /// `hookplane dev`'s data directory, where its admin key is.
    #[arg(long, global = true, default_value = ".hookplane")]
    pub data_dir: PathBuf,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t)]
    pub output: Format,
}

impl Connection {
    /// The API key, from the first source that has one.
    fn api_key(&self) -> anyhow::Result<String> {
        if let Some(file) = &self.api_key_file {
            return read_key(file);
        }
        if let Ok(key) = std::env::var("HOOKPLANE_API_KEY")
            && !key.trim().is_empty()
        {
            return Ok(key.trim().to_owned());
        }
        let dev_key = self.data_dir.join("admin-key");
        read_key(&dev_key).context(
            "no API key: pass --api-key-file, set HOOKPLANE_API_KEY, or run where `hookplane dev` keeps its data \
             (--data-dir)",
        )
    }

    async fn client(&self) -> anyhow::Result<Client> {
        let key = self.api_key()?;
        Ok(Client::connect(self.server.clone(), &key).await?)
    }
}

fn read_key(path: &std::path::Path) -> anyhow::Result<String> {
    let key = std::fs::read_to_string(path).with_context(|| format!("reading the API key in {}", path.display()))?;
    Ok(key.trim().to_owned())
}

/// A group of admin commands with its connection.
#[derive(Args, Debug)]
pub struct Admin<C: Subcommand> {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: C,
}

/// Every admin command group.
pub enum AdminCommand {
    Connectors(Admin<ConnectorsCommand>),
    Events(Admin<EventsCommand>),
    Secrets(Admin<SecretsCommand>),
    Orgs(Admin<OrgsCommand>),
    Keys(Admin<KeysCommand>),
    Plans(Admin<PlansCommand>),
    Nodes(Admin<NodesCommand>),
    Subscriptions(Admin<SubscriptionsCommand>),
}

/// Runs an admin command; errors are reported and become the exit code.
pub fn run(command: AdminCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            output::report(&err.into());
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            AdminCommand::Connectors(a) => connectors::run(&a.connection, a.command).await,
            AdminCommand::Events(a) => events::run(&a.connection, a.command).await,
            AdminCommand::Secrets(a) => organizations::secrets(&a.connection, a.command).await,
            AdminCommand::Orgs(a) => organizations::orgs(&a.connection, a.command).await,
            AdminCommand::Keys(a) => organizations::keys(&a.connection, a.command).await,
            AdminCommand::Plans(a) => organizations::plans(&a.connection, a.command).await,
            AdminCommand::Nodes(a) => organizations::nodes(&a.connection, a.command).await,
            AdminCommand::Subscriptions(a) => subscriptions::run(&a.connection, a.command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            output::report(&error);
            output::exit_code(&error)
        }
    }
}

/// A duration as people write it: `90s`, `10m`, `1h 30m`, `7d`.
pub fn duration(text: &str) -> Result<prost_types::Duration, String> {
    let parsed = humantime::parse_duration(text).map_err(|err| err.to_string())?;
    prost_types::Duration::try_from(parsed).map_err(|err| err.to_string())
}

/// A JSON payload given inline or as `@FILE`.
pub fn payload(text: &str) -> anyhow::Result<String> {
    let text = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => text.to_owned(),
    };
    serde_json::from_str::<serde_json::Value>(&text).context("the payload is not JSON")?;
    Ok(text)
}
