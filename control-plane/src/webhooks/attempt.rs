//! One attempt at a delivery, and what it leads to (SPEC §8).
//!
//! 2xx succeeds. Connection errors, timeouts, 429, 500, 502, 503 and 504
//! are tried again, 3 attempts in all, after the backoff or the endpoint's
//! `Retry-After` (capped). 410 Gone fails the delivery and disables the
//! subscription. Anything else fails at once. Redirects are answers like
//! any other: not followed.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hookplane_egress::client::{Outbound, OutboundError, OutboundRequest};
use hookplane_egress::retry::{backoff, retry_after};
use hookplane_model::{DeliveryAttempt, Timestamp};
use hyper::{Method, StatusCode, header::RETRY_AFTER};

use super::WebhookSettings;
use super::sign;
use crate::crypto::SecretBox;
use crate::store::{DueDelivery, NextStep};

/// Bytes of an answer kept in the delivery log.
const MAX_EXCERPT: usize = 1024;

/// Makes the attempt `due` is claimed for.
pub async fn attempt(
    outbound: &Outbound,
    settings: &WebhookSettings,
    secret_box: &SecretBox,
    due: &DueDelivery,
) -> (DeliveryAttempt, NextStep) {
    let time = hookplane_model::now();
    let started = Instant::now();
    let (status_code, excerpt, wait, error) = match send(outbound, settings, secret_box, due, time).await {
        Ok((status, body, wait)) => (Some(status), body, wait, None),
        Err(Failure::Exchange(error, transient)) => (None, String::new(), None, Some((error, transient))),
        Err(Failure::Secret(error)) => (None, String::new(), None, Some((error, false))),
    };
    let attempt = DeliveryAttempt {
        time,
        status_code: status_code.map(|s| s.as_u16()),
        duration_ms: started.elapsed().as_millis() as u64,
        response_excerpt: excerpt,
        error: match (&error, status_code) {
            (Some((error, _)), _) => error.clone(),
            (None, Some(status)) if !status.is_success() => format!("the endpoint answered {status}"),
            _ => String::new(),
        },
    };
    let retryable = match (status_code, &error) {
        (Some(status), _) => matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504),
        (None, Some((_, transient))) => *transient,
        (None, None) => false,
    };
    let next = match status_code {
        Some(status) if status.is_success() => NextStep::Succeeded,
        Some(StatusCode::GONE) => NextStep::FailedAndDisable("the endpoint answered 410 Gone".to_owned()),
        _ if retryable && due.delivery.series_attempts + 1 < settings.attempts => {
            let delay = match wait {
                Some(wait) => wait.min(settings.max_retry_after),
                None => backoff(settings.retry_base, due.delivery.series_attempts + 1),
            };
            NextStep::RetryAt(later(time, delay))
        }
        _ => NextStep::Failed,
    };
    (attempt, next)
}

enum Failure {
    /// No answer; whether it was transient.
    Exchange(String, bool),
    Secret(String),
}

async fn send(
    outbound: &Outbound,
    settings: &WebhookSettings,
    secret_box: &SecretBox,
    due: &DueDelivery,
    time: Timestamp,
) -> Result<(StatusCode, String, Option<Duration>), Failure> {
    let (delivery, subscription) = (&due.delivery, &due.subscription);
    let secrets = super::open_secrets(secret_box, subscription, time).map_err(|e| Failure::Secret(e.to_string()))?;
    let secrets: Vec<&str> = secrets.iter().map(|s| s.as_str()).collect();
    let headers = sign::headers(
        subscription.spec.scheme,
        &delivery.webhook_id,
        delivery.event_type.name(),
        &delivery.payload,
        time,
        &secrets,
    )
    .map_err(|e| Failure::Secret(e.to_string()))?;
    let url = url::Url::parse(&subscription.spec.url)
        .map_err(|e| Failure::Exchange(format!("the subscription's URL does not parse: {e}"), false))?;
    let request = OutboundRequest {
        method: Method::POST,
        destination: url.into(),
        headers,
        body: Bytes::from(delivery.payload.clone()),
        timeout: settings.attempt_timeout,
    };
    let response = outbound.send(request, MAX_EXCERPT).await.map_err(|e| match e {
        // The log a tenant reads says no more than that: which private
        // address a name resolved to is the operator's to know.
        OutboundError::Egress(detail) => {
            tracing::info!(subscription = %subscription.id, refused = %detail, "a delivery's address was refused");
            Failure::Exchange("refused: the endpoint's address is not one hookplane may call".to_owned(), false)
        }
        other => Failure::Exchange(other.to_string(), other.is_transient()),
    })?;
    let wait = response.headers.get(RETRY_AFTER).and_then(retry_after);
    Ok((response.status, String::from_utf8_lossy(&response.body).into_owned(), wait))
}

fn later(time: Timestamp, delay: Duration) -> Timestamp {
    chrono::TimeDelta::from_std(delay)
        .ok()
        .and_then(|delay| time.checked_add_signed(delay))
        .unwrap_or(time + chrono::TimeDelta::hours(1))
}
