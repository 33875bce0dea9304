//! Platform webhooks (SPEC §8): the dispatcher that turns the outbox into
//! signed deliveries.
//!
//! One loop per control plane (`dispatch.rs`): fan the outbox out into
//! deliveries, keep up to 256 attempts in flight (at most 8 per
//! subscription, so one slow endpoint cannot take every slot), record
//! finished attempts in batches, and sleep until the next delivery is
//! due, a change commits, or a resend wakes it. Everything it knows lives in the store, so a control
//! plane killed at any point resumes where the store says (an attempt in
//! flight is made again once its claim lapses: at least once). Replicas
//! on one PostgreSQL share the work through row claims.

mod attempt;
mod dispatch;
mod sign;

pub use dispatch::dispatch;

use std::time::Duration;

use hookplane_egress::EgressPolicy;
use hookplane_model::{SecretField, Subscription, Timestamp};
use zeroize::Zeroizing;

use crate::crypto::{CryptoError, SecretBox};

/// How deliveries are made.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    /// Which endpoints may be called.
    pub egress: EgressPolicy,
    /// Attempts per delivery (a resend starts a new series).
    pub attempts: u32,
    /// Delay before the first retry; doubles after each.
    pub retry_base: Duration,
    /// The longest `Retry-After` honoured as given; longer waits this long.
    pub max_retry_after: Duration,
    /// How long an attempt may take.
    pub attempt_timeout: Duration,
    /// How often credentials about to expire are looked for.
    pub expiry_scan_every: Duration,
    /// How long settled deliveries (and sent mail) stay in the log.
    pub delivery_retention: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            egress: EgressPolicy::public_only(),
            attempts: 3,
            retry_base: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(600),
            attempt_timeout: Duration::from_secs(10),
            expiry_scan_every: Duration::from_secs(60),
            delivery_retention: Duration::from_secs(30 * 86_400),
        }
    }
}

/// The owner a subscription's current secret is sealed for.
pub fn secret_owner(organization_id: &str, id: &str) -> String {
    format!("subscription:{organization_id}:{id}")
}

/// The owner a subscription's previous secret is sealed for.
pub fn previous_secret_owner(organization_id: &str, id: &str) -> String {
    format!("subscription-previous:{organization_id}:{id}")
}

/// The secrets a delivery is signed with at `now`: the current one, then
/// the previous one while its overlap lasts.
fn open_secrets(
    secret_box: &SecretBox,
    subscription: &Subscription,
    now: Timestamp,
) -> Result<Vec<Zeroizing<String>>, CryptoError> {
    let open = |secret: &SecretField, owner: String| match secret {
        SecretField::Sealed(sealed) => secret_box.open_text(&owner, sealed),
        SecretField::Plain(_) | SecretField::Absent => Err(CryptoError::Malformed),
    };
    let (org, id) = (&subscription.organization_id, &subscription.id);
    let mut secrets = vec![open(&subscription.secret, secret_owner(org, id))?];
    if let Some(previous) = subscription.previous_at(now) {
        secrets.push(open(&previous.secret, previous_secret_owner(org, id))?);
    }
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookplane_model::{ExpiringSecret, SubscriptionSpec};

    #[test]
    fn the_previous_secret_signs_only_during_its_overlap() {
        let key = SecretBox::new(&[3; 32]);
        let now = hookplane_model::now();
        let sealed = |owner: String, text: &str| SecretField::Sealed(key.seal(&owner, text.as_bytes()));
        let subscription = Subscription {
            id: "sub_1".into(),
            organization_id: "org_1".into(),
            spec: SubscriptionSpec::default(),
            secret: sealed(secret_owner("org_1", "sub_1"), "whsec_new"),
            previous_secret: Some(ExpiringSecret {
                secret: sealed(previous_secret_owner("org_1", "sub_1"), "whsec_old"),
                expire_time: now + chrono::TimeDelta::seconds(60),
            }),
            enabled: true,
            disabled_reason: String::new(),
            create_time: now,
            update_time: now,
            revision: 1,
        };
        let during: Vec<String> =
            open_secrets(&key, &subscription, now).unwrap().iter().map(|s| s.to_string()).collect();
        assert_eq!(during, ["whsec_new", "whsec_old"]);
        let after = open_secrets(&key, &subscription, now + chrono::TimeDelta::seconds(61)).unwrap();
        assert_eq!(after.len(), 1);
        let swapped = Subscription { secret: sealed(previous_secret_owner("org_1", "sub_1"), "x"), ..subscription };
        assert!(open_secrets(&key, &swapped, now).is_err(), "a secret sealed for another field does not open");
    }
}
