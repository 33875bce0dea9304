//! Background work one replica does at a time: pruning events past their
//! plan's retention and the delivery log past its own, and finding
//! credentials about to expire. Each runs
//! on its period on the replica holding its lease (`store/leases.rs`),
//! held for two periods and renewed every period, so a replica that died
//! hands the work over within two; a replica stopping releases its leases.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::store::{Store, StoreError};
use crate::webhooks::WebhookSettings;

/// How often events past their plan's retention are deleted. The first
/// run waits one period too: a control plane restarting in a loop must
/// not spend its starts pruning.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// How far ahead credentials are told of before they expire (SPEC §8).
const EXPIRY_HORIZON: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// Credentials told of per transaction.
const EXPIRY_BATCH: u32 = 500;

/// Starts every piece of background work, until `closing`; the set ends
/// once each has released its lease.
pub fn start(store: &Store, webhooks: &WebhookSettings, closing: &watch::Receiver<bool>) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let holder = format!("replica-{:016x}", rand::random::<u64>());
    let pruning = store.clone();
    let keep_deliveries = chrono::TimeDelta::from_std(webhooks.delivery_retention).unwrap_or(chrono::TimeDelta::MAX);
    tasks.spawn(run_leased(
        store.clone(),
        holder.clone(),
        Work {
            lease: "prune_events",
            every: PRUNE_EVERY,
            first_after: PRUNE_EVERY,
            what: "pruning events and deliveries",
        },
        closing.clone(),
        move || {
            let store = pruning.clone();
            async move {
                let now = hookplane_model::now();
                let events = store.prune_events(now).await?;
                let deliveries = match now.checked_sub_signed(keep_deliveries) {
                    Some(cutoff) => store.prune_deliveries(cutoff).await?,
                    None => 0,
                };
                Ok(events + deliveries)
            }
        },
    ));
    let scanning = store.clone();
    tasks.spawn(run_leased(
        store.clone(),
        holder,
        Work {
            lease: "token_expiry_scan",
            every: webhooks.expiry_scan_every,
            first_after: Duration::ZERO,
            what: "finding expiring credentials",
        },
        closing.clone(),
        move || {
            let store = scanning.clone();
            async move {
                let mut told = 0;
                loop {
                    let batch =
                        store.emit_expiring_tokens(hookplane_model::now(), EXPIRY_HORIZON, EXPIRY_BATCH).await?;
                    told += batch as u64;
                    if batch < EXPIRY_BATCH as usize {
                        return Ok(told);
                    }
                }
            }
        },
    ));
    tasks
}

/// A periodic piece of work and its lease.
struct Work {
    lease: &'static str,
    every: Duration,
    first_after: Duration,
    /// For the log.
    what: &'static str,
}

/// Runs `work` every period while `holder` holds the lease, until `closing`.
async fn run_leased<F, Fut>(store: Store, holder: String, work: Work, mut closing: watch::Receiver<bool>, mut run: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, StoreError>>,
{
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + work.first_after, work.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = closing.wait_for(|closing| *closing) => break,
        }
        match store.claim_lease(work.lease, &holder, 2 * work.every).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(err) => {
                tracing::warn!(lease = work.lease, error = %err, "claiming a lease failed; trying again later");
                continue;
            }
        }
        // Stopping wins over the work: what was done is committed batch by
        // batch, and the lease is released below either way.
        let done = tokio::select! {
            done = run() => done,
            _ = closing.wait_for(|closing| *closing) => break,
        };
        match done {
            Ok(0) => {}
            Ok(done) => tracing::info!(done, "{}", work.what),
            Err(err) => tracing::warn!(error = %err, "{} failed; trying again later", work.what),
        }
    }
    if let Err(err) = store.release_lease(work.lease, &holder).await {
        tracing::debug!(lease = work.lease, error = %err, "releasing a lease failed; it expires by itself");
    }
}
