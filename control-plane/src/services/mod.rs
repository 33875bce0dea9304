//! gRPC service implementations over the shared [`Core`].
//!
//! Each handler authenticates, converts the request through
//! `hookplane_convert` (the only code that touches generated types besides
//! the final `*_to_api`), applies the change through the [`Store`] and
//! returns. Errors leave through [`ApiError`] → `Status` only.

mod api_keys;
mod connector_secrets;
mod connectors;
mod dry_runs;
mod events;
mod nodes;
mod organizations;
mod plans;
mod secrets;
mod subscriptions;

use std::sync::Arc;

use prost::Message;
use tonic::Request;

use crate::auth::{Authenticator, Caller};
use crate::crypto::{SecretBox, hash_credential};
use crate::error::{ApiError, ApiResult};
use crate::events::EventHub;
use crate::page_token::PageTokens;
use crate::store::{Creation, IdempotencyKey, Store};
use crate::webhooks::WebhookSettings;

pub use api_keys::ApiKeyApi;
pub use connectors::ConnectorApi;
pub use events::EventApi;
pub use nodes::NodeApi;
pub use organizations::OrganizationApi;
pub use plans::PlanApi;
pub use secrets::SecretApi;
pub use subscriptions::SubscriptionApi;

/// What every service shares.
#[derive(Debug)]
pub struct Core {
    pub store: Store,
    pub secret_box: SecretBox,
    pub pages: PageTokens,
    pub auth: Authenticator,
    pub events: EventHub,
    /// Plan of organizations created without one.
    pub default_plan: String,
    /// How platform webhooks are delivered (the egress policy checks
    /// subscription URLs on the way in).
    pub webhooks: Arc<WebhookSettings>,
    /// Wakes the webhook dispatcher (a resend is due now).
    pub wake_webhooks: Arc<tokio::sync::Notify>,
    /// Where senders reach the nodes, for integration examples; empty
    /// when not configured.
    pub trigger_base_url: String,
    /// The nodes of this replica live test runs go to.
    pub live_runs: crate::sync::LiveRuns,
}

impl Core {
    /// The authenticated caller of `request`.
    pub async fn caller<T>(&self, request: &Request<T>) -> ApiResult<Caller> {
        self.auth.authenticate(request.metadata()).await
    }

    /// Prepares `request_id` idempotency for a create whose fresh response
    /// is `response`: the key carries the response sealed, so a retry can
    /// replay it (freshly minted credentials included) without storing them
    /// in the clear.
    pub fn idempotency_key(
        &self,
        scope: &str,
        method: &'static str,
        request_id: &str,
        request: &impl Message,
        response: &impl Message,
    ) -> Option<IdempotencyKey> {
        if request_id.is_empty() {
            return None;
        }
        let owner = idempotency_owner(scope, method, request_id);
        Some(IdempotencyKey {
            organization_id: scope.to_owned(),
            method,
            request_id: request_id.to_owned(),
            request_hash: hash_credential(&hex::encode(request.encode_to_vec())),
            sealed_response: self.secret_box.seal(&owner, &response.encode_to_vec()),
        })
    }

    /// The response of a create: `fresh` when it created, or the first
    /// call's response when the key was used before with the same request.
    pub fn settle<T, R: Message + Default>(
        &self,
        creation: Creation<T>,
        key: Option<&IdempotencyKey>,
        fresh: R,
    ) -> ApiResult<R> {
        match (creation, key) {
            (Creation::Created(_), _) => Ok(fresh),
            (Creation::Replayed { request_hash, sealed_response }, Some(key)) => {
                if request_hash != key.request_hash {
                    return Err(ApiError::RequestIdReused);
                }
                let owner = idempotency_owner(&key.organization_id, key.method, &key.request_id);
                let bytes = self.secret_box.open(&owner, &sealed_response)?;
                R::decode(bytes.as_slice()).map_err(|_| ApiError::Crypto(crate::crypto::CryptoError::Malformed))
            }
            (Creation::Replayed { .. }, None) => unreachable!("the store only replays claimed keys"),
        }
    }
}

fn idempotency_owner(scope: &str, method: &str, request_id: &str) -> String {
    format!("idempotency:{scope}:{method}:{request_id}")
}

/// The shared core behind every service.
pub type SharedCore = Arc<Core>;

/// Parses an etag field: empty means "no precondition".
pub(crate) fn expected_revision(etag: &str, field: &str) -> ApiResult<Option<i64>> {
    if etag.is_empty() {
        return Ok(None);
    }
    hookplane_model::revision_of(etag)
        .map(Some)
        .ok_or_else(|| ApiError::invalid(field, "is not an etag returned by this API"))
}

/// Validates an optional `request_id`.
pub(crate) fn check_request_id(request_id: &str) -> ApiResult<()> {
    let mut v = hookplane_convert::Violations::default();
    hookplane_convert::check_request_id(request_id, "request_id", &mut v);
    Ok(v.finish(())?)
}

/// A required message field, or INVALID_ARGUMENT naming it.
pub(crate) fn required<'a, T>(value: Option<&'a T>, field: &str) -> ApiResult<&'a T> {
    value.ok_or_else(|| ApiError::invalid(field, "is required"))
}

/// A required identifier field, or INVALID_ARGUMENT naming it.
pub(crate) fn required_id<'a>(value: &'a str, field: &str) -> ApiResult<&'a str> {
    if value.trim().is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    Ok(value)
}
