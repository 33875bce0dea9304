//! The `hookplane` binary.
#![forbid(unsafe_code)]

mod config;
mod control_plane;
mod dev;
mod files;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use config::FlagOverrides;

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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
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
    };
    let settings = config::load(cli.config.as_deref(), &flags)?;
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_new(&settings.log)?).init();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        match cli.command {
            Command::Dev(_) => dev::run(settings).await,
            Command::ControlPlane(_) => control_plane::run(settings).await,
        }
    })
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
