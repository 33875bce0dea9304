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
#![forbid(unsafe_code)]

mod error;
mod pages;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

pub use error::{Error, FieldViolation};
pub use hookplane::api::v1 as api;
pub use pages::paginate;

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

    /// A client over an existing channel.
    pub fn from_channel(channel: Channel, api_key: &str) -> Result<Client, Error> {
        let mut value: MetadataValue<Ascii> = format!("Bearer {api_key}").parse().map_err(|_| Error::InvalidApiKey)?;
        value.set_sensitive(true);
        Ok(Client { channel, interceptor: ApiKeyInterceptor { value } })
    }

    /// The same connection with another API key.
    pub fn with_api_key(&self, api_key: &str) -> Result<Client, Error> {
        Client::from_channel(self.channel.clone(), api_key)
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
            let mut client = client.clone();
            async move {
                let page = client
                    .list_connectors(api::ListConnectorsRequest { page_size: 1000, page_token })
                    .await?
                    .into_inner();
                Ok((page.connectors, page.next_page_token))
            }
        })
        .await
    }

    /// Every event matching `filter`, newest first.
    pub async fn list_all_events(&self, filter: Option<api::EventFilter>) -> Result<Vec<api::Event>, Error> {
        let client = self.events();
        paginate(|page_token| {
            let (mut client, filter) = (client.clone(), filter.clone());
            async move {
                let page = client
                    .list_events(api::ListEventsRequest { filter, page_size: 1000, page_token })
                    .await?
                    .into_inner();
                Ok((page.events, page.next_page_token))
            }
        })
        .await
    }

    /// Every secret's metadata (values are write-only).
    pub async fn list_all_secrets(&self) -> Result<Vec<api::Secret>, Error> {
        let client = self.secrets();
        paginate(|page_token| {
            let mut client = client.clone();
            async move {
                let page =
                    client.list_secrets(api::ListSecretsRequest { page_size: 1000, page_token }).await?.into_inner();
                Ok((page.secrets, page.next_page_token))
            }
        })
        .await
    }
}
