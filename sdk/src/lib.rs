//! Typed Rust client for the hookplane gRPC API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hookplane_sdk::Error> {
//! use hookplane_sdk::{Client, api};
//! let client = Client::connect("http://127.0.0.1:50051", "hpk_…").await?;
//! let all: Vec<api::Connector> = client.list_all_connectors().await?;
//! # Ok(()) }
//! ```
//!
//! Every call carries the API key as `authorization: Bearer` metadata; list
//! helpers walk every page; errors keep the server's field violations.
//! Calls the server could not take (UNAVAILABLE) are retried with backoff
//! by the helpers and by [`Client::retrying`]:
//!
//! ```no_run
//! # async fn demo() -> Result<(), hookplane_sdk::Error> {
//! use hookplane_sdk::{Client, api};
//! // Lazy: the first call connects, so a server still starting is retried.
//! let client = Client::connect_lazy("http://127.0.0.1:50051", "hpk_…")?;
//! let connector = client
//!     .retrying(|| {
//!         let mut connectors = client.connectors();
//!         async move { connectors.get_connector(api::GetConnectorRequest { id: "con_…".into() }).await }
//!     })
//!     .await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod error;
mod pages;
mod retry;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

pub use error::{Error, FieldViolation};
pub use hookplane::api::v1 as api;
pub use pages::paginate;
pub use retry::RetryPolicy;

use api::{
    api_key_service_client::ApiKeyServiceClient, connector_service_client::ConnectorServiceClient,
    event_service_client::EventServiceClient, node_service_client::NodeServiceClient,
    organization_service_client::OrganizationServiceClient, plan_service_client::PlanServiceClient,
    secret_service_client::SecretServiceClient, subscription_service_client::SubscriptionServiceClient,
};

/// Adds the API key to every call.
#[derive(Clone)]
pub struct ApiKeyInterceptor {
    value: MetadataValue<Ascii>,
}

impl std::fmt::Debug for ApiKeyInterceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKeyInterceptor(<redacted>)")
    }
}

impl tonic::service::Interceptor for ApiKeyInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert("authorization", self.value.clone());
        Ok(request)
    }
}

/// A channel with the API key interceptor, as each service client uses it.
pub type AuthedChannel = InterceptedService<Channel, ApiKeyInterceptor>;

/// A connection to a control plane with one API key.
#[derive(Clone, Debug)]
pub struct Client {
    channel: Channel,
    interceptor: ApiKeyInterceptor,
    retry: RetryPolicy,
}

impl Client {
    /// Connects to `endpoint` (e.g. `http://127.0.0.1:50051`).
    pub async fn connect(endpoint: impl Into<String>, api_key: &str) -> Result<Client, Error> {
        let channel = Endpoint::from_shared(endpoint.into())?
            .connect_timeout(std::time::Duration::from_secs(10))
            .http2_keep_alive_interval(std::time::Duration::from_secs(30))
            .connect()
            .await?;
        Client::from_channel(channel, api_key)
    }

    /// A client whose channel connects on its first call (and again after
    /// losing the server), so calls made while the server is starting or
    /// restarting answer UNAVAILABLE, which the helpers retry.
    pub fn connect_lazy(endpoint: impl Into<String>, api_key: &str) -> Result<Client, Error> {
        let channel = Endpoint::from_shared(endpoint.into())?
            .connect_timeout(std::time::Duration::from_secs(10))
            .http2_keep_alive_interval(std::time::Duration::from_secs(30))
            .connect_lazy();
        Client::from_channel(channel, api_key)
    }

    /// The same client retrying as `retry` says (the default: 5 attempts
    /// over about 3 seconds; [`RetryPolicy::NEVER`] turns retries off).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Client {
        self.retry = retry;
        self
    }

    /// Makes the call `call` builds, again while it answers UNAVAILABLE,
    /// by the client's retry policy. For calls safe to repeat: reads, and
    /// writes that carry a `request_id` or an `etag`.
    pub async fn retrying<T, F, Fut>(&self, call: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.retry.call(call).await
    }

    /// A client over an existing channel.
    pub fn from_channel(channel: Channel, api_key: &str) -> Result<Client, Error> {
        let mut value: MetadataValue<Ascii> = format!("Bearer {api_key}").parse().map_err(|_| Error::InvalidApiKey)?;
        value.set_sensitive(true);
        Ok(Client { channel, interceptor: ApiKeyInterceptor { value }, retry: RetryPolicy::default() })
    }

    /// The same connection with another API key.
    pub fn with_api_key(&self, api_key: &str) -> Result<Client, Error> {
        Ok(Client::from_channel(self.channel.clone(), api_key)?.with_retry_policy(self.retry))
    }

    fn authed(&self) -> AuthedChannel {
        InterceptedService::new(self.channel.clone(), self.interceptor.clone())
    }

    pub fn connectors(&self) -> ConnectorServiceClient<AuthedChannel> {
        ConnectorServiceClient::new(self.authed())
    }

    pub fn secrets(&self) -> SecretServiceClient<AuthedChannel> {
        SecretServiceClient::new(self.authed())
    }

    pub fn events(&self) -> EventServiceClient<AuthedChannel> {
        EventServiceClient::new(self.authed())
    }

    pub fn organizations(&self) -> OrganizationServiceClient<AuthedChannel> {
        OrganizationServiceClient::new(self.authed())
    }

    pub fn plans(&self) -> PlanServiceClient<AuthedChannel> {
        PlanServiceClient::new(self.authed())
    }

    pub fn api_keys(&self) -> ApiKeyServiceClient<AuthedChannel> {
        ApiKeyServiceClient::new(self.authed())
    }

    pub fn nodes(&self) -> NodeServiceClient<AuthedChannel> {
        NodeServiceClient::new(self.authed())
    }

    /// Platform-webhook subscriptions and their delivery log.
    pub fn subscriptions(&self) -> SubscriptionServiceClient<AuthedChannel> {
        SubscriptionServiceClient::new(self.authed())
    }

    /// Every connector of the key's organization, page by page.
    pub async fn list_all_connectors(&self) -> Result<Vec<api::Connector>, Error> {
        let client = self.connectors();
        paginate(|page_token| {
            let (client, retry) = (client.clone(), self.retry);
            async move {
                let request = api::ListConnectorsRequest { page_size: 1000, page_token };
                let page = retry
                    .call(|| {
                        let (mut client, request) = (client.clone(), request.clone());
                        async move { client.list_connectors(request).await }
                    })
                    .await?;
                Ok((page.connectors, page.next_page_token))
            }
        })
        .await
    }

    /// Every event matching `filter`, newest first.
    pub async fn list_all_events(&self, filter: Option<api::EventFilter>) -> Result<Vec<api::Event>, Error> {
        let client = self.events();
        paginate(|page_token| {
            let (client, filter, retry) = (client.clone(), filter.clone(), self.retry);
            async move {
                let request = api::ListEventsRequest { filter, page_size: 1000, page_token };
                let page = retry
                    .call(|| {
                        let (mut client, request) = (client.clone(), request.clone());
                        async move { client.list_events(request).await }
                    })
                    .await?;
                Ok((page.events, page.next_page_token))
            }
        })
        .await
    }

    /// Every secret's metadata (values are write-only).
    pub async fn list_all_secrets(&self) -> Result<Vec<api::Secret>, Error> {
        let client = self.secrets();
        paginate(|page_token| {
            let (client, retry) = (client.clone(), self.retry);
            async move {
                let request = api::ListSecretsRequest { page_size: 1000, page_token };
                let page = retry
                    .call(|| {
                        let (mut client, request) = (client.clone(), request.clone());
                        async move { client.list_secrets(request).await }
                    })
                    .await?;
                Ok((page.secrets, page.next_page_token))
            }
        })
        .await
    }
}
