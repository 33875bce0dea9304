//! `hookplane control-plane`: the gRPC API on a configured database.

use anyhow::Context as _;
use hookplane_control_plane::{ControlPlane, ControlPlaneConfig, ServerTls};

use crate::config::Settings;
use crate::files::read_private_file;
use crate::shutdown_signal;

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let database_url = settings
        .database_url
        .clone()
        .context("database_url is required (flag --database-url or HOOKPLANE_DATABASE_URL)")?;
    let key_file = settings
        .secret_key_file
        .clone()
        .context("secret_key_file is required (flag --secret-key-file or HOOKPLANE_SECRET_KEY_FILE)")?;
    let config = ControlPlaneConfig {
        database_url,
        secret_key_hex: read_private_file(&key_file)?.into(),
        operator_key_hash: settings.operator_key_hash.clone(),
        default_plan: settings.default_plan.clone(),
        plans: settings.plans.iter().map(|p| p.to_plan()).collect(),
        node_token_hashes: settings.node_token_hashes.clone(),
        tls: server_tls(&settings)?,
        limiting: settings.limiting()?,
        webhooks: settings.webhooks(false)?,
        mail: settings.mail()?,
        trigger_base_url: settings.trigger_base_url.clone(),
    };
    if config.tls.is_none() && !settings.grpc_listen.ip().is_loopback() {
        tracing::warn!(
            "serving gRPC without TLS on a non-loopback address: API keys and the secrets sent to nodes travel \
             in the clear; set tls_cert_file and tls_key_file"
        );
    }
    if config.node_token_hashes.is_empty() {
        tracing::warn!("no node_token_hashes configured: no data-plane node can sync");
    }
    if config.operator_key_hash.is_none() {
        tracing::warn!("no operator_key_hash configured: organizations can only be managed with their own API keys");
    }
    let control_plane = ControlPlane::open(&config).await.context("starting the control plane")?;
    let listener = hookplane_data_plane::listener::bind(settings.grpc_listen)
        .with_context(|| format!("binding the gRPC listener on {}", settings.grpc_listen))?;
    tracing::info!(address = %listener.local_addr()?, "control plane serving gRPC");
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics = match settings.metrics_listen {
        None => None,
        Some(address) => {
            let metrics_listener = hookplane_data_plane::listener::bind(address)
                .with_context(|| format!("binding the metrics listener on {address}"))?;
            tracing::info!(address = %metrics_listener.local_addr()?, "control plane serving /metrics");
            let serving = control_plane.clone();
            Some(tokio::spawn(async move {
                serving.serve_metrics(metrics_listener, async { drop(metrics_stopped.await) }).await;
            }))
        }
    };
    let store = control_plane.store().clone();
    control_plane.serve(listener, shutdown_signal()).await?;
    let _ = stop_metrics.send(());
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    // The last connection to close checkpoints SQLite's log into the
    // database and removes it; PostgreSQL's sessions end cleanly.
    store.close().await;
    Ok(())
}

/// The TLS settings, when a certificate is configured.
fn server_tls(settings: &Settings) -> anyhow::Result<Option<ServerTls>> {
    let (Some(cert), Some(key)) = (&settings.tls_cert_file, &settings.tls_key_file) else {
        anyhow::ensure!(
            settings.tls_cert_file.is_none() && settings.tls_key_file.is_none(),
            "tls_cert_file and tls_key_file go together"
        );
        return Ok(None);
    };
    let read =
        |path: &std::path::Path| std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()));
    Ok(Some(ServerTls {
        cert_pem: read(cert)?,
        key_pem: read_private_file(key)?.into(),
        client_ca_pem: settings.tls_client_ca_file.as_deref().map(read).transpose()?,
    }))
}
