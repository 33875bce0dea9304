//! The `hookplane` binary.
#![forbid(unsafe_code)]

mod admin;
mod config;
mod control_plane;
mod data_plane;
mod dev;
mod expr_cmd;
mod files;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use config::FlagOverrides;

/// mimalloc instead of the system allocator: the trigger path allocates and
/// frees many small buffers across threads, and glibc's malloc took ~15 %
/// of all CPU in the trigger load profile (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// hookplane: self-hosted webhook connectors.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// TOML config file; `HOOKPLANE_*` variables and flags override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Control plane on SQLite in a data directory, for a laptop.
    Dev(DevArgs),
    /// The control plane on a configured database.
    ControlPlane(ControlPlaneArgs),
    /// A data-plane node following a control plane.
    DataPlane(DataPlaneArgs),
    /// Try expressions locally (SPEC §6).
    #[command(subcommand)]
    Expr(ExprCommand),
    /// Connectors: list, create, update, apply a file, examples, test runs.
    Connectors(admin::Admin<admin::ConnectorsCommand>),
    /// Events: list, show, follow live, replay (dry or live).
    Events(admin::Admin<admin::EventsCommand>),
    /// The organization's secrets (`$secret.NAME`).
    Secrets(admin::Admin<admin::SecretsCommand>),
    /// Organizations (operator key).
    Orgs(admin::Admin<admin::OrgsCommand>),
    /// API keys.
    Keys(admin::Admin<admin::KeysCommand>),
    /// Plans and their limits.
    Plans(admin::Admin<admin::PlansCommand>),
    /// Data-plane nodes and their config rollout.
    Nodes(admin::Admin<admin::NodesCommand>),
    /// Platform-webhook subscriptions and their deliveries.
    Subscriptions(admin::Admin<admin::SubscriptionsCommand>),
    /// Prints a shell completion script: `hookplane completions bash`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum ExprCommand {
    /// Evaluates an expression or template and prints the result as JSON.
    Eval(expr_cmd::ExprArgs),
    /// Compiles an expression or template and reports every error.
    Check(expr_cmd::ExprArgs),
}

#[derive(Args)]
struct DataPlaneArgs {
    /// The control plane's gRPC URL, e.g. `http://10.0.0.5:50051`, or
    /// several replicas' separated by commas.
    #[arg(long = "control-plane")]
    control_plane_url: Option<String>,
    /// The node token. Visible in the process list: prefer
    /// `--node-token-file` or `HOOKPLANE_NODE_TOKEN`.
    #[arg(long)]
    node_token: Option<String>,
    /// File holding the node token (mode 0600).
    #[arg(long)]
    node_token_file: Option<PathBuf>,
    /// Trigger (HTTP) address; default 127.0.0.1:8080.
    #[arg(long)]
    http_listen: Option<std::net::SocketAddr>,
    /// Directory for the last good snapshot, unacknowledged events and
    /// accepted calls.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// File with the 64-hex-character key sealing the cached snapshot
    /// (mode 0600); without it the snapshot is kept in memory only.
    #[arg(long)]
    snapshot_key_file: Option<PathBuf>,
    /// This node's id in the fleet; default host name and port.
    #[arg(long)]
    node_id: Option<String>,
}

#[derive(Args)]
struct DevArgs {
    /// Data directory (database, key files); default `./.hookplane`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// gRPC address; default 127.0.0.1:50051.
    #[arg(long)]
    grpc_listen: Option<std::net::SocketAddr>,
    /// Trigger (HTTP) address; default 127.0.0.1:8080.
    #[arg(long)]
    http_listen: Option<std::net::SocketAddr>,
}

#[derive(Args)]
struct ControlPlaneArgs {
    /// `postgres://…` or `sqlite://PATH?mode=rwc`.
    #[arg(long)]
    database_url: Option<String>,
    /// File with the 64-hex-character secret key (mode 0600).
    #[arg(long)]
    secret_key_file: Option<PathBuf>,
    /// gRPC address; default 127.0.0.1:50051.
    #[arg(long)]
    grpc_listen: Option<std::net::SocketAddr>,
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // The admin commands are clients: no server config, their own exit codes.
    let admin = match cli.command {
        Command::Connectors(a) => Some(admin::AdminCommand::Connectors(a)),
        Command::Events(a) => Some(admin::AdminCommand::Events(a)),
        Command::Secrets(a) => Some(admin::AdminCommand::Secrets(a)),
        Command::Orgs(a) => Some(admin::AdminCommand::Orgs(a)),
        Command::Keys(a) => Some(admin::AdminCommand::Keys(a)),
        Command::Plans(a) => Some(admin::AdminCommand::Plans(a)),
        Command::Nodes(a) => Some(admin::AdminCommand::Nodes(a)),
        Command::Subscriptions(a) => Some(admin::AdminCommand::Subscriptions(a)),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "hookplane",
                &mut std::io::stdout(),
            );
            return Ok(ExitCode::SUCCESS);
        }
        other => {
            return serve(Cli { config: cli.config, command: other });
        }
    };
    Ok(admin.map_or(ExitCode::SUCCESS, admin::run))
}

fn serve(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Expr(command) = &cli.command {
        // Local and offline: no config, no runtime.
        let ok = match command {
            ExprCommand::Eval(args) => expr_cmd::eval(args)?,
            ExprCommand::Check(args) => expr_cmd::check(args)?,
        };
        std::process::exit(if ok { 0 } else { 1 });
    }
    let flags = match &cli.command {
        Command::Dev(a) => FlagOverrides {
            data_dir: a.data_dir.clone(),
            grpc_listen: a.grpc_listen,
            http_listen: a.http_listen,
            ..Default::default()
        },
        Command::ControlPlane(a) => FlagOverrides {
            database_url: a.database_url.clone(),
            secret_key_file: a.secret_key_file.clone(),
            grpc_listen: a.grpc_listen,
            ..Default::default()
        },
        Command::DataPlane(a) => FlagOverrides {
            control_plane_url: a.control_plane_url.clone(),
            node_token: a.node_token.clone(),
            node_token_file: a.node_token_file.clone(),
            http_listen: a.http_listen,
            cache_dir: a.cache_dir.clone(),
            snapshot_key_file: a.snapshot_key_file.clone(),
            node_id: a.node_id.clone(),
            ..Default::default()
        },
        _ => unreachable!("handled above"),
    };
    let settings = config::load(cli.config.as_deref(), &flags)?;
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_new(&settings.log)?).init();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        match cli.command {
            Command::Dev(_) => dev::run(settings).await,
            Command::ControlPlane(_) => control_plane::run(settings).await,
            Command::DataPlane(_) => data_plane::run(settings).await,
            _ => unreachable!("handled above"),
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on Ctrl-C or SIGTERM, starting a graceful shutdown.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down; draining in-flight calls");
}
