//! Assembling and serving the control plane: store, secret box,
//! authenticator, services, gRPC health and reflection.

use std::future::Future;
use std::sync::Arc;

use hookplane::api::FILE_DESCRIPTOR_SET;
use hookplane::api::v1::{
    api_key_service_server::ApiKeyServiceServer, connector_service_server::ConnectorServiceServer,
    event_service_server::EventServiceServer, node_service_server::NodeServiceServer,
    organization_service_server::OrganizationServiceServer, plan_service_server::PlanServiceServer,
    secret_service_server::SecretServiceServer, subscription_service_server::SubscriptionServiceServer,
};
use hookplane_model::{LimitingPolicy, Plan};
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use zeroize::Zeroizing;

use crate::auth::Authenticator;
use crate::crypto::{CryptoError, SecretBox};
use crate::events::EventHub;
use crate::metrics::Metrics;
use crate::notify::MailSettings;
use crate::page_token::PageTokens;
use crate::services::{
    ApiKeyApi, ConnectorApi, Core, EventApi, NodeApi, OrganizationApi, PlanApi, SecretApi, SharedCore, SubscriptionApi,
};
use crate::store::{Store, StoreError};
use crate::sync::{LiveRuns, NodeSyncApi, NodeSyncServer};
use crate::webhooks::WebhookSettings;

/// Everything the control plane needs to start.
#[derive(Clone, Debug)]
pub struct ControlPlaneConfig {
    /// `sqlite://PATH?mode=rwc` or `postgres://…`.
    pub database_url: String,
    /// 64 hex characters: the key that seals secrets at rest.
    pub secret_key_hex: Zeroizing<String>,
    /// Lowercase hex SHA-256 of the operator key; `None` disables it.
    pub operator_key_hash: Option<String>,
    /// Plan of organizations created without one.
    pub default_plan: String,
    /// Plans created on start when missing (`free` and `starter` always are).
    pub plans: Vec<Plan>,
    /// Hex SHA-256 of each node token data-plane nodes may sync with.
    pub node_token_hashes: Vec<String>,
    /// Serve TLS (and accept node client certificates) when set.
    pub tls: Option<ServerTls>,
    /// How nodes count limits and remember deliveries; sent to each node
    /// when its sync stream opens.
    pub limiting: LimitingPolicy,
    /// How platform webhooks are delivered.
    pub webhooks: WebhookSettings,
    /// Where notification mail goes; `None` logs notifications instead.
    pub mail: Option<MailSettings>,
    /// Where senders reach the data-plane nodes (`https://hooks.example.com`),
    /// for integration examples; empty: examples read `$HOOKPLANE_URL`.
    pub trigger_base_url: String,
}

/// TLS for the gRPC listener, as PEM.
#[derive(Clone)]
pub struct ServerTls {
    pub cert_pem: String,
    pub key_pem: Zeroizing<String>,
    /// CA of data-plane node client certificates. Nodes that present one
    /// signed by it need no node token (mTLS); other callers still connect
    /// without a certificate.
    pub client_ca_pem: Option<String>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").field("client_ca", &self.client_ca_pem.is_some()).finish_non_exhaustive()
    }
}

/// What failed while starting the control plane.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("opening the store: {0}")]
    Store(#[from] StoreError),
    #[error("loading the secret key: {0}")]
    SecretKey(#[from] CryptoError),
    #[error("default plan `{0}` is not among the configured plans")]
    UnknownDefaultPlan(String),
    #[error("building gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("serving gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A running control plane's shared state.
#[derive(Clone, Debug)]
pub struct ControlPlane {
    core: SharedCore,
    node_token_hashes: Vec<String>,
    tls: Option<ServerTls>,
    limiting: LimitingPolicy,
    mail: Option<MailSettings>,
    /// Node sync streams open, counted by the sync service.
    sync_streams: Gauge,
    metrics: Arc<Metrics>,
}

impl ControlPlane {
    /// Opens the store (migrating it), ensures the plans and builds the
    /// services.
    pub async fn open(config: &ControlPlaneConfig) -> Result<ControlPlane, StartError> {
        let secret_box = SecretBox::from_hex(&config.secret_key_hex)?;
        let store = Store::connect(&config.database_url).await?;
        let mut plans = vec![Plan::free(), Plan::starter()];
        plans.extend(config.plans.iter().cloned());
        if !plans.iter().any(|p| p.name == config.default_plan) {
            return Err(StartError::UnknownDefaultPlan(config.default_plan.clone()));
        }
        store.ensure_plans(&plans).await?;
        let events = EventHub::new(store.clone());
        let sync_streams = Gauge::default();
        let metrics = Arc::new(Metrics::new(events.ingested(), sync_streams.clone(), &store));
        let core = Core {
            auth: Authenticator::new(store.clone(), config.operator_key_hash.as_deref()),
            events,
            pages: PageTokens::new(secret_box.clone()),
            secret_box,
            default_plan: config.default_plan.clone(),
            webhooks: Arc::new(config.webhooks.clone()),
            wake_webhooks: Arc::default(),
            trigger_base_url: config.trigger_base_url.trim_end_matches('/').to_owned(),
            live_runs: LiveRuns::default(),
            store,
        };
        Ok(ControlPlane {
            core: Arc::new(core),
            node_token_hashes: config.node_token_hashes.clone(),
            tls: config.tls.clone(),
            limiting: config.limiting.clone(),
            mail: config.mail.clone(),
            sync_streams,
            metrics,
        })
    }

    /// The store, for bootstrap and for the config-sync and event-ingest
    /// paths that live beside the public API.
    pub fn store(&self) -> &Store {
        &self.core.store
    }

    /// Where events enter and are fanned out to live streams.
    pub fn events(&self) -> &EventHub {
        &self.core.events
    }

    /// Node sync streams open on this control plane now.
    pub fn sync_streams(&self) -> i64 {
        self.sync_streams.get()
    }

    /// Serves `GET /metrics` on `listener` until `shutdown` completes.
    pub async fn serve_metrics(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        crate::metrics::serve(listener, self.metrics.clone(), self.core.store.clone(), shutdown).await;
    }

    /// The box that seals and opens secrets.
    pub fn secret_box(&self) -> &SecretBox {
        &self.core.secret_box
    }

    /// Serves the API on `listener` until `shutdown` completes, then drains
    /// in-flight calls.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), StartError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .build_v1()?;
        // Older grpcurl and Postman builds still ask the v1alpha service.
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;
        health.set_serving::<ConnectorServiceServer<ConnectorApi>>().await;
        health.set_serving::<SecretServiceServer<SecretApi>>().await;
        health.set_serving::<EventServiceServer<EventApi>>().await;
        health.set_serving::<OrganizationServiceServer<OrganizationApi>>().await;
        health.set_serving::<PlanServiceServer<PlanApi>>().await;
        health.set_serving::<ApiKeyServiceServer<ApiKeyApi>>().await;
        health.set_serving::<NodeServiceServer<NodeApi>>().await;
        health.set_serving::<SubscriptionServiceServer<SubscriptionApi>>().await;
        let core = &self.core;
        let hub = core.events.clone();
        let (closing, closing_watch) = tokio::sync::watch::channel(false);
        // Long-lived streams end when shutdown starts, or the graceful drain
        // would wait on them forever.
        let shutdown = async move {
            shutdown.await;
            hub.close();
            closing.send_replace(true);
        };
        // Waited for after the server stops: attempts in flight are
        // recorded and leases released, not cut off.
        let mut background = crate::background::start(&core.store, &core.webhooks, &closing_watch);
        background.spawn(crate::webhooks::dispatch(
            core.store.clone(),
            core.secret_box.clone(),
            core.webhooks.clone(),
            core.wake_webhooks.clone(),
            self.metrics.webhook_attempts.clone(),
            closing_watch.clone(),
        ));
        background.spawn(crate::notify::run(core.store.clone(), self.mail.clone(), closing_watch.clone()));
        let background_deadline = core.webhooks.attempt_timeout + std::time::Duration::from_secs(2);
        let node_sync = NodeSyncApi::new(
            core.store.clone(),
            core.secret_box.clone(),
            &self.node_token_hashes,
            self.limiting.clone(),
            self.sync_streams.clone(),
            core.events.clone(),
            closing_watch,
        )
        .with_live_runs(core.live_runs.clone());
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = &self.tls {
            let mut config = ServerTlsConfig::new().identity(Identity::from_pem(&tls.cert_pem, tls.key_pem.as_bytes()));
            if let Some(ca) = &tls.client_ca_pem {
                config = config.client_ca_root(Certificate::from_pem(ca)).client_auth_optional(true);
            }
            server = server.tls_config(config)?;
        }
        server
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            .layer(tower::util::MapResponseLayer::new(crate::error::oversized_message_status))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(ConnectorServiceServer::new(ConnectorApi::new(core.clone())))
            .add_service(SecretServiceServer::new(SecretApi::new(core.clone())))
            .add_service(EventServiceServer::new(EventApi::new(core.clone())))
            .add_service(OrganizationServiceServer::new(OrganizationApi::new(core.clone())))
            .add_service(PlanServiceServer::new(PlanApi::new(core.clone())))
            .add_service(ApiKeyServiceServer::new(ApiKeyApi::new(core.clone())))
            .add_service(NodeServiceServer::new(NodeApi::new(core.clone())))
            .add_service(SubscriptionServiceServer::new(SubscriptionApi::new(core.clone())))
            .add_service(NodeSyncServer::new(node_sync))
            // Without TCP_NODELAY small frames wait on delayed ACKs (~40 ms).
            .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown)
            .await?;
        // An attempt takes at most its timeout; beyond, the rest is cut off
        // (their claims lapse and they are made again).
        let ended = async {
            while let Some(ended) = background.join_next().await {
                if let Err(err) = ended {
                    tracing::error!(error = %err, "a background task had failed");
                }
            }
        };
        if tokio::time::timeout(background_deadline, ended).await.is_err() {
            tracing::warn!("background work did not end in time; it was cut off");
        }
        Ok(())
    }
}
