//! Platform webhooks (SPEC §8): subscriptions, the events they receive,
//! and the deliveries made to them.

use serde::{Deserialize, Serialize};

use crate::{Revision, SecretField, Timestamp};

/// What happened on the platform, as subscriptions name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PlatformEventType {
    #[serde(rename = "connector.created")]
    ConnectorCreated,
    #[serde(rename = "connector.updated")]
    ConnectorUpdated,
    #[serde(rename = "connector.deleted")]
    ConnectorDeleted,
    #[serde(rename = "connector.tokens_rotated")]
    ConnectorTokensRotated,
    #[serde(rename = "connector.token_expiring")]
    ConnectorTokenExpiring,
    #[serde(rename = "event.failed")]
    EventFailed,
    #[serde(rename = "circuit.opened")]
    CircuitOpened,
    #[serde(rename = "circuit.closed")]
    CircuitClosed,
    /// Sent to one subscription on request (`SendTestEvent`); not a type
    /// subscriptions choose.
    #[serde(rename = "webhook.test")]
    WebhookTest,
}

impl PlatformEventType {
    /// The types subscriptions choose from.
    pub const ALL: [PlatformEventType; 8] = [
        PlatformEventType::ConnectorCreated,
        PlatformEventType::ConnectorUpdated,
        PlatformEventType::ConnectorDeleted,
        PlatformEventType::ConnectorTokensRotated,
        PlatformEventType::ConnectorTokenExpiring,
        PlatformEventType::EventFailed,
        PlatformEventType::CircuitOpened,
        PlatformEventType::CircuitClosed,
    ];

    /// The name on the wire, e.g. `connector.updated`.
    pub fn name(self) -> &'static str {
        match self {
            PlatformEventType::ConnectorCreated => "connector.created",
            PlatformEventType::ConnectorUpdated => "connector.updated",
            PlatformEventType::ConnectorDeleted => "connector.deleted",
            PlatformEventType::ConnectorTokensRotated => "connector.tokens_rotated",
            PlatformEventType::ConnectorTokenExpiring => "connector.token_expiring",
            PlatformEventType::EventFailed => "event.failed",
            PlatformEventType::CircuitOpened => "circuit.opened",
            PlatformEventType::CircuitClosed => "circuit.closed",
            PlatformEventType::WebhookTest => "webhook.test",
        }
    }

    /// The type named `name`, if there is one.
    pub fn from_name(name: &str) -> Option<PlatformEventType> {
        PlatformEventType::ALL.into_iter().chain([PlatformEventType::WebhookTest]).find(|t| t.name() == name)
    }
}

/// How deliveries are signed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureScheme {
    /// `X-Webhook-Signature`: hex HMAC-SHA256 of the raw body.
    #[default]
    Hookplane,
    /// Standard Webhooks: `webhook-signature: v1,<base64>` over
    /// `id.timestamp.body`.
    StandardWebhooks,
}

/// What a subscription's owner sets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionSpec {
    pub url: String,
    pub description: String,
    /// Empty: every type.
    pub event_types: Vec<PlatformEventType>,
    pub scheme: SignatureScheme,
}

impl SubscriptionSpec {
    /// Whether events of `event_type` are delivered to it.
    pub fn wants(&self, event_type: PlatformEventType) -> bool {
        self.event_types.is_empty() || self.event_types.contains(&event_type)
    }
}

/// A secret that still signs until it expires (a rotation's overlap).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiringSecret {
    pub secret: SecretField,
    pub expire_time: Timestamp,
}

/// An endpoint receiving an organization's platform events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub id: String,
    pub organization_id: String,
    pub spec: SubscriptionSpec,
    /// `whsec_…`, sealed at rest.
    pub secret: SecretField,
    pub previous_secret: Option<ExpiringSecret>,
    pub enabled: bool,
    pub disabled_reason: String,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
    pub revision: Revision,
}

impl Subscription {
    /// The previous secret while its overlap lasts at `now`.
    pub fn previous_at(&self, now: Timestamp) -> Option<&ExpiringSecret> {
        self.previous_secret.as_ref().filter(|p| p.expire_time > now)
    }
}

/// Something that happened on the platform, in the outbox until it is
/// fanned out to the subscriptions that want it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformEvent {
    /// `pev_…`: the webhook id receivers deduplicate on.
    pub id: String,
    pub organization_id: String,
    pub event_type: PlatformEventType,
    /// The event's `data` object, as JSON text.
    pub data: String,
    pub create_time: Timestamp,
}

/// A circuit breaker that opened or closed on a node, for the platform
/// event it becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CircuitTransition {
    pub organization_id: String,
    pub connector_id: String,
    /// The perform URL without query or credentials.
    pub target: String,
    pub opened: bool,
    pub time: Timestamp,
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Failed,
}

impl DeliveryStatus {
    pub fn name(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn from_name(name: &str) -> Option<DeliveryStatus> {
        [DeliveryStatus::Pending, DeliveryStatus::Succeeded, DeliveryStatus::Failed]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// One try at a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub time: Timestamp,
    /// `None` when no answer came.
    pub status_code: Option<u16>,
    pub duration_ms: u64,
    pub response_excerpt: String,
    pub error: String,
}

/// A platform event on its way to one subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// `dlv_…`.
    pub id: String,
    pub organization_id: String,
    pub subscription_id: String,
    /// The platform event's id.
    pub webhook_id: String,
    pub event_type: PlatformEventType,
    pub status: DeliveryStatus,
    /// The body, byte for byte as every attempt sends it.
    pub payload: String,
    /// Attempts made in the current series (a resend starts a new one).
    pub series_attempts: u32,
    pub next_attempt_time: Timestamp,
    pub create_time: Timestamp,
    pub attempts: Vec<DeliveryAttempt>,
}
