//! The dispatcher's loop: a pipeline of attempts, not rounds. Attempts
//! start as slots free up and are recorded as they finish, a batch per
//! transaction, so a slow endpoint holds its own slots and no one else's.
//!
//! Measured with 100 subscriptions on one receiver
//! (`benches/platform_webhooks.rs`, SQLite): rounds of 64 attempts, each
//! recorded in a transaction of its own, made 2 300 deliveries a second;
//! this pipeline, with attempts recorded together and claims made for many
//! slots at once, about 6 000, where the store's per-row work (claiming,
//! recording, fanning out: 50 to 100 µs a delivery through sqlx) is what
//! remains.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hookplane_egress::client::Outbound;
use hookplane_model::DeliveryAttempt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::WebhookSettings;
use super::attempt::attempt;
use crate::crypto::SecretBox;
use crate::metrics::DeliveryOutcome;
use crate::store::{DueDelivery, NextStep, Store, StoreError};

/// Attempts in flight at once.
const MAX_IN_FLIGHT: usize = 256;
/// Free slots a claim waits for while attempts are in flight.
const CLAIM_AT_LEAST: usize = 64;
/// Attempts in flight at once to one subscription.
const PER_SUBSCRIPTION: usize = 8;
/// How long a finished attempt may wait to be recorded with others.
const RECORD_WITHIN: Duration = Duration::from_millis(5);
/// Attempts recorded per transaction, at most.
const RECORD_BATCH: usize = 128;
/// Outbox events fanned out per transaction.
const FAN_OUT_BATCH: u32 = 100;
/// The longest sleep: how soon work another replica scheduled is seen.
const POLL: Duration = Duration::from_secs(1);
/// After a commit wakes the loop, how long it waits for more to fan out
/// together: a burst of changes costs one fan-out, not one each.
const COALESCE: Duration = Duration::from_millis(5);

/// An attempt made, to record.
type Attempted = (DueDelivery, DeliveryAttempt, NextStep);

/// An attempt's task, ended.
type Finished = Result<(tokio::task::Id, Attempted), tokio::task::JoinError>;

/// What woke the loop.
enum Woke {
    Finished(Finished),
    /// A change committed: the outbox may have grown.
    Committed,
    /// Something may be due.
    Due,
}

/// What the loop keeps between iterations.
struct Dispatcher {
    store: Store,
    secret_box: SecretBox,
    settings: Arc<WebhookSettings>,
    outbound: Arc<Outbound>,
    outcomes: Family<DeliveryOutcome, Counter>,
    in_flight: JoinSet<Attempted>,
    /// Each attempt's subscription, by task: a slot comes back even from
    /// an attempt that panicked.
    tasks: HashMap<tokio::task::Id, String>,
    per_subscription: HashMap<String, usize>,
}

/// Runs the dispatcher until `closing`; `wake` makes it look at once;
/// `outcomes` counts attempts for `/metrics`. On `closing` it stops
/// starting attempts and records those in flight as they end.
pub async fn dispatch(
    store: Store,
    secret_box: SecretBox,
    settings: Arc<WebhookSettings>,
    wake: Arc<Notify>,
    outcomes: Family<DeliveryOutcome, Counter>,
    mut closing: watch::Receiver<bool>,
) {
    let outbound = Arc::new(Outbound::new(settings.egress.clone()));
    let mut commits = store.config_commits();
    let mut dispatcher = Dispatcher {
        store,
        secret_box,
        settings,
        outbound,
        outcomes,
        in_flight: JoinSet::new(),
        tasks: HashMap::new(),
        per_subscription: HashMap::new(),
    };
    loop {
        let closed = *closing.borrow();
        if closed {
            break;
        }
        let wait = match dispatcher.step().await {
            Ok(wait) => wait,
            Err(err) => {
                tracing::warn!(error = %err, "platform webhooks: the store failed; trying again");
                POLL
            }
        };
        let woke = tokio::select! {
            Some(done) = dispatcher.in_flight.join_next_with_id(), if !dispatcher.in_flight.is_empty() => {
                Woke::Finished(done)
            }
            () = tokio::time::sleep(wait) => Woke::Due,
            _ = commits.changed() => Woke::Committed,
            () = wake.notified() => Woke::Due,
            () = async { drop(closing.wait_for(|closing| *closing).await) } => Woke::Due,
        };
        match woke {
            Woke::Finished(done) => dispatcher.finished(done).await,
            Woke::Committed => tokio::time::sleep(COALESCE).await,
            Woke::Due => {}
        }
    }
    while let Some(done) = dispatcher.in_flight.join_next_with_id().await {
        dispatcher.finished(done).await;
    }
}

impl Dispatcher {
    /// Fans out what the outbox holds and starts what is due, as slots
    /// allow; how long the loop may sleep.
    async fn step(&mut self) -> Result<Duration, StoreError> {
        // Reads first: an idle dispatcher takes no write lock.
        // One batch a step: finished attempts get recorded between
        // batches of a long outbox, before their claims lapse.
        // A fan-out that fails is logged, not a reason to stop delivering.
        let more_to_fan_out = match self.store.outbox_has_events().await {
            Ok(false) => false,
            Ok(true) => match self.store.fan_out(FAN_OUT_BATCH).await {
                Ok(taken) => taken == FAN_OUT_BATCH as usize,
                Err(err) => {
                    tracing::warn!(error = %err, "fanning platform events out failed; trying again");
                    false
                }
            },
            Err(err) => {
                tracing::warn!(error = %err, "reading the platform-event outbox failed; trying again");
                false
            }
        };
        let free = MAX_IN_FLIGHT - self.in_flight.len();
        if free < CLAIM_AT_LEAST && !self.in_flight.is_empty() {
            // A claim reads every due delivery: it is made for many slots
            // at once. A finishing attempt wakes the loop.
            return Ok(if more_to_fan_out { Duration::ZERO } else { POLL });
        }
        let now = hookplane_model::now();
        let next = self.store.next_delivery_due().await?;
        if next.is_none_or(|at| at > now) {
            return Ok(if more_to_fan_out { Duration::ZERO } else { until(next, now) });
        }
        // A claim outlives the attempt it is for; a replica killed
        // mid-attempt leaves one that lapses, and the attempt is made again.
        let hold = self.settings.attempt_timeout + Duration::from_secs(5);
        let claim_until = now + chrono::TimeDelta::from_std(hold).unwrap_or(chrono::TimeDelta::minutes(1));
        let due = self
            .store
            .claim_due_deliveries(now, claim_until, free as u32, PER_SUBSCRIPTION as u32, &self.per_subscription)
            .await?;
        let started = due.len();
        for due in due {
            *self.per_subscription.entry(due.subscription.id.clone()).or_default() += 1;
            let (outbound, settings, secret_box) =
                (self.outbound.clone(), self.settings.clone(), self.secret_box.clone());
            let subscription = due.subscription.id.clone();
            let task = self.in_flight.spawn(async move {
                let (made, next) = attempt(&outbound, &settings, &secret_box, &due).await;
                (due, made, next)
            });
            self.tasks.insert(task.id(), subscription);
        }
        // Claimed some: there may be more at once. Otherwise what is due
        // waits on slots its subscriptions hold; they end by the timeout.
        Ok(if started > 0 || more_to_fan_out { Duration::ZERO } else { POLL.min(self.settings.attempt_timeout) })
    }

    /// Records `done` and every other attempt finished meanwhile, in one
    /// transaction.
    async fn finished(&mut self, done: Finished) {
        let mut batch = Vec::new();
        let mut next = Some(done);
        // Attempts finishing within a few milliseconds of each other are
        // recorded together: a write transaction per attempt was the
        // dispatcher's bottleneck on SQLite's one writer.
        let deadline = tokio::time::Instant::now() + RECORD_WITHIN;
        while let Some(done) = next {
            let task = match done {
                Ok((task, attempted)) => {
                    batch.push(attempted);
                    task
                }
                // Its claim lapses and the attempt is made again.
                Err(err) => {
                    tracing::error!(error = %err, "a delivery attempt failed to finish");
                    err.id()
                }
            };
            if let Some(subscription) = self.tasks.remove(&task)
                && let Some(count) = self.per_subscription.get_mut(&subscription)
            {
                *count -= 1;
                if *count == 0 {
                    self.per_subscription.remove(&subscription);
                }
            }
            next = match self.in_flight.try_join_next_with_id() {
                Some(done) => Some(done),
                None if batch.len() < RECORD_BATCH && !self.in_flight.is_empty() => {
                    tokio::time::timeout_at(deadline, self.in_flight.join_next_with_id()).await.ok().flatten()
                }
                None => None,
            };
        }
        for (due, made, next) in &batch {
            let outcome = match next {
                NextStep::Succeeded => "succeeded",
                NextStep::RetryAt(_) => "retrying",
                NextStep::Failed | NextStep::FailedAndDisable(_) => "failed",
            };
            self.outcomes.get_or_create(&DeliveryOutcome { outcome }).inc();
            tracing::debug!(delivery = %due.delivery.id, status = ?made.status_code, next = ?next, "delivery attempted");
        }
        let records: Vec<_> = batch.iter().map(|(due, made, next)| (due, made, next)).collect();
        if let Err(err) = self.store.record_attempts(&records).await {
            // The claims lapse and the attempts are made again.
            tracing::warn!(attempts = records.len(), error = %err, "recording delivery attempts failed");
        }
    }
}

/// How long until `next` is due, at most [`POLL`].
fn until(next: Option<hookplane_model::Timestamp>, now: hookplane_model::Timestamp) -> Duration {
    match next {
        Some(at) if at <= now => Duration::ZERO,
        Some(at) => (at - now).to_std().unwrap_or(POLL).min(POLL),
        None => POLL,
    }
}
