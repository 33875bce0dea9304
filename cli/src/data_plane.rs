//! `hookplane data-plane`: one node of the fleet.

use anyhow::Context as _;
use hookplane_data_plane::{ClientTls, NodeConfig};
use hookplane_model::sealing::SecretBox;

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
    let mut config = NodeConfig::new(node_id, control_plane_url, node_token, settings.http_listen);
    config.cache_dir = settings.cache_dir.clone();
    config.snapshot_key = settings
        .snapshot_key_file
        .as_deref()
        .map(|path| {
            let key = read_private_file(path)?;
            SecretBox::from_hex(&key).with_context(|| format!("snapshot_key_file {}", path.display()))
        })
        .transpose()?;
    config.tls = tls;
    apply_node_settings(&mut config, &settings, false)?;
    let listener = hookplane_data_plane::listener::bind(settings.http_listen)
        .with_context(|| format!("binding the HTTP listener on {}", settings.http_listen))?;
    hookplane_data_plane::run(config, listener, shutdown_signal()).await.context("running the data-plane node")
}

/// `/readyz` answers 503 this long before a stopping node's listener
/// closes: two health checks of a load balancer probing every 2 s.
const DRAIN_DELAY_SECS: u64 = 5;

/// Applies the trigger and egress settings; `dev` also opens loopback.
pub fn apply_node_settings(config: &mut NodeConfig, settings: &Settings, dev: bool) -> anyhow::Result<()> {
    config.egress = settings.egress_policy(dev)?;
    config.metrics_listen = settings.node_metrics_listen;
    config.ingress.trusted_proxies = settings
        .trusted_proxies
        .iter()
        .map(|p| {
            p.trim().parse().with_context(|| format!("trusted_proxies: `{p}` is not a network such as 10.0.0.0/8"))
        })
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(
        (1..=hookplane_data_plane::trigger::LARGEST_BODY_LIMIT).contains(&settings.max_body_bytes),
        "max_body_bytes must be between 1 and {} (16 MiB)",
        hookplane_data_plane::trigger::LARGEST_BODY_LIMIT
    );
    config.ingress.max_body_bytes = settings.max_body_bytes;
    config.max_queued_events = settings.max_queued_events;
    config.connections.max_connections_per_ip = settings.max_connections_per_ip;
    config.connections.drain_timeout = std::time::Duration::from_secs(settings.drain_timeout_secs);
    // A fleet sits behind a load balancer that must see /readyz fail
    // before the listener goes; `dev` has none to wait for.
    let drain_delay = settings.drain_delay_secs.unwrap_or(if dev { 0 } else { DRAIN_DELAY_SECS });
    config.connections.drain_delay = std::time::Duration::from_secs(drain_delay);
    config.max_accepted_calls = settings.max_accepted_calls;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FlagOverrides, load};

    /// A node's events carry their calls' payloads to the control plane,
    /// which takes messages up to a bound: a body limit past what fits in
    /// one is refused at start, naming the setting.
    #[test]
    fn a_body_limit_is_between_one_byte_and_the_largest_the_control_plane_takes() {
        figment::Jail::expect_with(|_jail| {
            let mut settings = load(None, &FlagOverrides::default()).map_err(|e| e.to_string())?;
            let mut config = NodeConfig::new("node".into(), String::new(), String::new(), ([127, 0, 0, 1], 0).into());
            for limit in [1, 1 << 20, hookplane_data_plane::trigger::LARGEST_BODY_LIMIT] {
                settings.max_body_bytes = limit;
                apply_node_settings(&mut config, &settings, false).map_err(|e| e.to_string())?;
                assert_eq!(config.ingress.max_body_bytes, limit);
            }
            for limit in [0, hookplane_data_plane::trigger::LARGEST_BODY_LIMIT + 1] {
                settings.max_body_bytes = limit;
                let refused = apply_node_settings(&mut config, &settings, false).unwrap_err();
                assert!(refused.to_string().contains("max_body_bytes"), "{refused}");
            }
            Ok(())
        });
    }
}
