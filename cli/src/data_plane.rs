//! `hookplane data-plane`: one node of the fleet.

use anyhow::Context as _;
use hookplane_data_plane::{ClientTls, DataPlane, NodeConfig};

use crate::config::Settings;
use crate::files::read_private_file;
use crate::shutdown_signal;

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let control_plane_url = settings
        .control_plane_url
        .clone()
        .context("control_plane_url is required (flag --control-plane or HOOKPLANE_CONTROL_PLANE_URL)")?;
    let node_token = match (&settings.node_token, &settings.node_token_file) {
        (Some(token), _) => token.clone(),
        (None, Some(file)) => read_private_file(file)?,
        // A client certificate (mTLS) can stand in for the token.
        (None, None) if settings.tls_cert_file.is_some() => String::new(),
        (None, None) => anyhow::bail!(
            "a node token is required (--node-token-file, --node-token or HOOKPLANE_NODE_TOKEN), or a client certificate"
        ),
    };
    let read =
        |path: &std::path::Path| std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()));
    let tls = match &settings.tls_ca_file {
        Some(ca) => Some(ClientTls {
            ca_pem: read(ca)?,
            identity: match (&settings.tls_cert_file, &settings.tls_key_file) {
                (Some(cert), Some(key)) => Some((read(cert)?, read_private_file(key)?)),
                (None, None) => None,
                _ => anyhow::bail!("tls_cert_file and tls_key_file go together"),
            },
        }),
        None => None,
    };
    let node_id = settings.node_id.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "node".to_owned());
        format!("{host}-{}", settings.http_listen.port())
    });
    let node = DataPlane::start(NodeConfig {
        node_id,
        control_plane_url,
        node_token,
        http_listen: settings.http_listen,
        advertise_address: String::new(),
        cache_dir: settings.cache_dir.clone(),
        tls,
    })
    .await
    .context("starting the data-plane node")?;
    tracing::info!(address = %node.http_address(), "data plane serving");
    shutdown_signal().await;
    node.shutdown().await;
    Ok(())
}
