//! `hookplane dev`: everything on a laptop, in one process, with SQLite and
//! key files in a data directory: the control plane and one data-plane node
//! connected to it over the real sync stream.

use std::path::Path;

use anyhow::Context as _;
use hookplane_control_plane::crypto::{CredentialKind, SecretBox, hash_credential, mint};
use hookplane_control_plane::events::EventHub;
use hookplane_control_plane::{ControlPlane, ControlPlaneConfig, bootstrap};
use hookplane_data_plane::events::LocalEvents;
use hookplane_data_plane::{DataPlane, NodeConfig};

use crate::config::Settings;
use crate::files::{ensure_private_dir, read_private_file, write_private_file};
use crate::shutdown_signal;

/// Reads the key file at `path`, creating it with `generate` on first start.
fn key_file(path: &Path, generate: impl FnOnce() -> String) -> anyhow::Result<String> {
    if !path.exists() {
        write_private_file(path, &generate())?;
    }
    read_private_file(path)
}

/// Stores a node's event batches with `events`, in process.
pub fn local_events(events: EventHub) -> LocalEvents {
    LocalEvents::new(move |batch| {
        let events = events.clone();
        async move {
            match events.ingest(batch).await {
                Ok(_) => true,
                Err(err) => {
                    tracing::warn!(error = %err, "storing the node's events failed; it keeps them and retries");
                    false
                }
            }
        }
    })
}

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let dir = &settings.data_dir;
    ensure_private_dir(dir)?;
    let secret_key_path = settings.secret_key_file.clone().unwrap_or_else(|| dir.join("secret-key"));
    let secret_key = key_file(&secret_key_path, || SecretBox::generate_key_hex().to_string())?;
    let operator_key = key_file(&dir.join("operator-key"), || mint(CredentialKind::OperatorKey).plaintext.to_string())?;
    let node_token = key_file(&dir.join("node-token"), || mint(CredentialKind::NodeToken).plaintext.to_string())?;
    let snapshot_key = key_file(&dir.join("node-snapshot-key"), || SecretBox::generate_key_hex().to_string())?;
    let database_url = match &settings.database_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}?mode=rwc", dir.join("hookplane.db").display()),
    };
    // Bound first: its address is the trigger URL examples show.
    let http_listener = hookplane_data_plane::listener::bind(settings.http_listen)
        .with_context(|| format!("binding the trigger listener on {}", settings.http_listen))?;
    let trigger_base_url = match settings.trigger_base_url.as_str() {
        "" => format!("http://{}", http_listener.local_addr()?),
        configured => configured.to_owned(),
    };
    let mut node_token_hashes = settings.node_token_hashes.clone();
    node_token_hashes.push(hash_credential(&node_token));
    let config = ControlPlaneConfig {
        database_url,
        secret_key_hex: secret_key.into(),
        operator_key_hash: Some(settings.operator_key_hash.clone().unwrap_or_else(|| hash_credential(&operator_key))),
        default_plan: settings.default_plan.clone(),
        plans: settings.plans.iter().map(|p| p.to_plan()).collect(),
        node_token_hashes,
        // A laptop setup on loopback; production control planes configure
        // TLS (see `control-plane`).
        tls: None,
        limiting: settings.limiting()?,
        webhooks: settings.webhooks(true)?,
        mail: settings.mail()?,
        trigger_base_url,
    };
    let control_plane = ControlPlane::open(&config).await.context("starting the control plane")?;
    let admin_key_path = dir.join("admin-key");
    if let Some(created) =
        bootstrap::default_organization(control_plane.store(), "Default organization", &config.default_plan).await?
    {
        write_private_file(&admin_key_path, &created.admin_key)?;
        tracing::info!(organization = %created.organization.id, "created the default organization and its admin key");
    }
    let listener = hookplane_data_plane::listener::bind(settings.grpc_listen)
        .with_context(|| format!("binding the gRPC listener on {}", settings.grpc_listen))?;
    let grpc = listener.local_addr()?;
    let (stop_grpc, grpc_stopped) = tokio::sync::oneshot::channel::<()>();
    let events = control_plane.events().clone();
    let store = control_plane.store().clone();
    let server = tokio::spawn(control_plane.serve(listener, async {
        let _ = grpc_stopped.await;
    }));

    let mut config = NodeConfig::new("dev-node".to_owned(), format!("http://{grpc}"), node_token, settings.http_listen);
    config.cache_dir = Some(dir.join("node-cache"));
    // The node hands its events to this process's control plane directly:
    // the same batches, without a gRPC trip over loopback.
    config.local_events = Some(local_events(events));
    config.snapshot_key = Some(SecretBox::from_hex(&snapshot_key).context("node-snapshot-key")?);
    crate::data_plane::apply_node_settings(&mut config, &settings, true)?;
    let node = DataPlane::start_on(config, http_listener).await.context("starting the data-plane node")?;

    println!("hookplane dev is running");
    println!("  gRPC API (reflection on):  {grpc}");
    println!("  triggers (data plane):     http://{}", node.http_address());
    println!("  data directory:            {}", dir.display());
    println!("  admin API key:             {}", admin_key_path.display());
    println!("  operator key:              {}", dir.join("operator-key").display());
    println!("try: grpcurl -plaintext -H \"authorization: Bearer $(cat {})\" {grpc} list", admin_key_path.display());
    shutdown_signal().await;
    node.shutdown().await;
    let _ = stop_grpc.send(());
    server.await??;
    // After the node, whose last events the store took in process: the last
    // connection to close checkpoints the log into the database and
    // removes it, so a stopped `dev` leaves one file.
    store.close().await;
    Ok(())
}
