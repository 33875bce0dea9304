//! The platform-event outbox (SPEC §8).
//!
//! A change that causes a platform event writes the event here in its own
//! transaction ([`record`]), so the event exists exactly when the change
//! does. The dispatcher then fans each event out ([`Store::fan_out`]):
//! one delivery per enabled subscription of the organization that wants
//! its type, a mail to its admins for the types they are mailed about
//! (`mails.rs`), and the event deleted, in one transaction, so an event is
//! fanned out once however many replicas try (PostgreSQL: rows are claimed
//! with `FOR UPDATE SKIP LOCKED`; SQLite has one writer).

use std::collections::HashMap;

use hookplane_convert::EncodedTrace;
use hookplane_model::{CircuitTransition, Connector, Event, PlatformEvent, PlatformEventType};
use sqlx::Row;

use super::subscriptions::subscription_from_row;
use super::{Backend, Store, StoreError, from_micros, micros};

/// Deliveries per multi-row `INSERT` (2 values each, beside 5 shared).
const DELIVERIES_PER_INSERT: usize = 500;

/// Writes `event` in the transaction of the change that caused it.
pub(super) async fn record(tx: &mut sqlx::AnyConnection, event: &PlatformEvent) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO platform_outbox (id, organization_id, event_type, data, create_time) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&event.id)
    .bind(&event.organization_id)
    .bind(event.event_type.name())
    .bind(&event.data)
    .bind(micros(event.create_time))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The platform event of a connector change: what subscribers learn of a
/// connector is its id, name and revision, never its spec (which names
/// secrets and targets).
pub(super) fn connector_event(event_type: PlatformEventType, connector: &Connector) -> PlatformEvent {
    let data = serde_json::json!({
        "connector": {
            "id": connector.id,
            "display_name": connector.spec.display_name,
            "etag": hookplane_model::etag_of(connector.revision),
        }
    });
    platform_event(event_type, &connector.organization_id, data)
}

/// Whether anyone would hear of an organization's events of a type, read
/// once per organization and transaction: an enabled subscription that
/// wants the type, or admin addresses for the types admins are mailed
/// about. Without either, a failing connector's traffic would only fill
/// the outbox.
#[derive(Default)]
struct Listeners<'a>(HashMap<&'a str, (Vec<hookplane_model::SubscriptionSpec>, bool)>);

impl<'a> Listeners<'a> {
    async fn any(
        &mut self,
        tx: &mut sqlx::AnyConnection,
        organization: &'a str,
        event_type: PlatformEventType,
    ) -> Result<bool, StoreError> {
        if !self.0.contains_key(organization) {
            let specs = sqlx::query_scalar::<_, String>(
                "SELECT spec FROM subscriptions WHERE organization_id = $1 AND enabled = 1",
            )
            .bind(organization)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            // A spec this version cannot read (a newer one's, mid-upgrade)
            // counts as wanting everything: an event too many is dropped at
            // fan-out; one too few would be lost.
            .map(|spec| super::decode_json("subscription", spec).unwrap_or_default())
            .collect::<Vec<hookplane_model::SubscriptionSpec>>();
            let mailed = sqlx::query("SELECT 1 FROM organizations WHERE id = $1 AND admin_emails <> '[]'")
                .bind(organization)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            self.0.insert(organization, (specs, mailed));
        }
        let (specs, mailed) = &self.0[organization];
        Ok(specs.iter().any(|spec| spec.wants(event_type)) || (*mailed && super::mails::MAILED.contains(&event_type)))
    }
}

/// Records `event.failed` for each of `failed` someone would hear of.
pub(super) async fn record_failed_events<'a>(
    tx: &mut sqlx::AnyConnection,
    failed: impl Iterator<Item = &'a Event<EncodedTrace>>,
) -> Result<(), StoreError> {
    let mut listeners = Listeners::default();
    for event in failed {
        if !listeners.any(tx, &event.organization_id, PlatformEventType::EventFailed).await? {
            continue;
        }
        // Event ids pass 2^53: a string, so JavaScript reads them whole.
        let data = serde_json::json!({
            "event": {
                "id": event.id.to_string(),
                "connector_id": event.connector_id,
                "status": event.status.as_str(),
                "response_code": event.response_code,
                "error": event.error,
                "create_time": event.create_time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            }
        });
        record(tx, &platform_event(PlatformEventType::EventFailed, &event.organization_id, data)).await?;
    }
    Ok(())
}

/// A platform event happening now.
pub fn platform_event(event_type: PlatformEventType, organization_id: &str, data: serde_json::Value) -> PlatformEvent {
    PlatformEvent {
        id: crate::crypto::new_id("pev_"),
        organization_id: organization_id.to_owned(),
        event_type,
        data: data.to_string(),
        create_time: hookplane_model::now(),
    }
}

fn event_from_row(row: &sqlx::any::AnyRow) -> Result<PlatformEvent, StoreError> {
    let type_name: String = row.try_get("event_type")?;
    Ok(PlatformEvent {
        id: row.try_get("id")?,
        organization_id: row.try_get("organization_id")?,
        event_type: PlatformEventType::from_name(&type_name).ok_or_else(|| StoreError::Corrupt {
            what: "platform event",
            source: format!("unknown type {type_name}").into(),
        })?,
        data: row.try_get("data")?,
        create_time: from_micros(row.try_get("create_time")?),
    })
}

/// The body every delivery of `event` sends, byte for byte.
pub(super) fn body(event: &PlatformEvent) -> Result<String, StoreError> {
    let data: serde_json::Value = serde_json::from_str(&event.data)
        .map_err(|source| StoreError::Corrupt { what: "platform event", source: source.into() })?;
    Ok(serde_json::json!({
        "id": event.id,
        "type": event.event_type.name(),
        "timestamp": event.create_time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "organization_id": event.organization_id,
        "data": data,
    })
    .to_string())
}

impl Store {
    /// Emits `connector.token_expiring` for up to `limit` live credentials
    /// expiring after `now` and within `horizon`, each once ever: the
    /// credential is marked in the transaction that writes its event.
    /// Credentials a rotation superseded are on their way out on purpose
    /// and are not told of. Returns how many were.
    pub async fn emit_expiring_tokens(
        &self,
        now: hookplane_model::Timestamp,
        horizon: chrono::TimeDelta,
        limit: u32,
    ) -> Result<usize, StoreError> {
        let mut tx = self.write_tx().await?;
        let rows = sqlx::query(
            "SELECT t.id, t.kind, t.hint, t.expire_time, c.id AS connector_id, c.organization_id, c.spec \
             FROM connector_tokens t JOIN connectors c ON c.id = t.connector_id \
             WHERE t.expiry_notified = 0 AND t.superseded = 0 AND t.expire_time > $1 AND t.expire_time <= $2 \
             ORDER BY t.expire_time LIMIT $3",
        )
        .bind(micros(now))
        .bind(micros(now + horizon))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            let token_id: String = row.try_get("id")?;
            let spec: hookplane_model::ConnectorSpec =
                super::decode_json("connector", &row.try_get::<String, _>("spec")?)?;
            let expire_time = from_micros(row.try_get("expire_time")?);
            let data = serde_json::json!({
                "connector": { "id": row.try_get::<String, _>("connector_id")?, "display_name": spec.display_name },
                "token": {
                    "id": token_id,
                    "kind": row.try_get::<String, _>("kind")?,
                    "hint": row.try_get::<String, _>("hint")?,
                    "expire_time": expire_time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                },
            });
            let organization: String = row.try_get("organization_id")?;
            // Marked first, and told of only by the transaction that marked
            // it: two scans at once (a lease handed over mid-scan) tell once.
            let marked =
                sqlx::query("UPDATE connector_tokens SET expiry_notified = 1 WHERE id = $1 AND expiry_notified = 0")
                    .bind(&token_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            if marked == 1 {
                record(&mut tx, &platform_event(PlatformEventType::ConnectorTokenExpiring, &organization, data))
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(rows.len())
    }

    /// Fans up to `limit` outbox events out into deliveries; returns how
    /// many events it took.
    pub async fn fan_out(&self, limit: u32) -> Result<usize, StoreError> {
        let mut tx = self.write_tx().await?;
        let claim = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, organization_id, event_type, data, create_time FROM platform_outbox \
             ORDER BY create_time, id LIMIT $1{claim}"
        )))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            let id: String = row.try_get("id")?;
            let decoded = event_from_row(row).and_then(|event| Ok((body(&event)?, event)));
            let (payload, event) = match decoded {
                Ok(decoded) => decoded,
                // An event this version cannot read would stop the queue
                // behind it on every replica: it is dropped, and logged.
                Err(err) => {
                    tracing::error!(event = %id, error = %err, "dropping a platform event this version cannot read");
                    sqlx::query("DELETE FROM platform_outbox WHERE id = $1").bind(&id).execute(&mut *tx).await?;
                    continue;
                }
            };
            let subscriptions =
                sqlx::query("SELECT * FROM subscriptions WHERE organization_id = $1 AND enabled = 1 ORDER BY id")
                    .bind(&event.organization_id)
                    .fetch_all(&mut *tx)
                    .await?;
            let mut wanting = Vec::with_capacity(subscriptions.len());
            for row in &subscriptions {
                let subscription = match subscription_from_row(row) {
                    Ok(subscription) => subscription,
                    Err(err) => {
                        tracing::error!(error = %err, "a subscription this version cannot read gets no delivery");
                        continue;
                    }
                };
                // A subscription hears of what happens from its creation on.
                if subscription.spec.wants(event.event_type) && subscription.create_time <= event.create_time {
                    wanting.push(subscription.id);
                }
            }
            // One statement per chunk: a fan-out to hundreds of
            // subscriptions is a few statements, not hundreds.
            for chunk in wanting.chunks(DELIVERIES_PER_INSERT) {
                let rows = (0..chunk.len())
                    .map(|i| {
                        let at = 6 + i * 2;
                        format!("(${at}, $1, ${}, $2, $3, 'pending', $4, 0, $5, 0, $5)", at + 1)
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut insert = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO deliveries (id, organization_id, subscription_id, webhook_id, event_type, status, \
                     payload, series_attempts, next_attempt_time, claimed_until, create_time) VALUES {rows}"
                )))
                .bind(&event.organization_id)
                .bind(&event.id)
                .bind(event.event_type.name())
                .bind(&payload)
                .bind(micros(event.create_time));
                for subscription in chunk {
                    insert = insert.bind(crate::crypto::new_id("dlv_")).bind(subscription);
                }
                insert.execute(&mut *tx).await?;
            }
            super::mails::queue(&mut tx, &event).await?;
            sqlx::query("DELETE FROM platform_outbox WHERE id = $1").bind(&id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(rows.len())
    }

    /// Records `circuit.opened` / `circuit.closed` for breaker transitions
    /// a node reported that someone would hear of.
    pub async fn record_circuit_transitions(&self, transitions: &[CircuitTransition]) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let mut listeners = Listeners::default();
        for t in transitions {
            // A node says whose connector it was; the store knows.
            let owner: Option<String> = sqlx::query_scalar("SELECT organization_id FROM connectors WHERE id = $1")
                .bind(&t.connector_id)
                .fetch_optional(&mut *tx)
                .await?;
            if owner.as_deref() != Some(t.organization_id.as_str()) {
                continue;
            }
            let (event_type, state) = if t.opened {
                (PlatformEventType::CircuitOpened, "open")
            } else {
                (PlatformEventType::CircuitClosed, "closed")
            };
            if !listeners.any(&mut tx, &t.organization_id, event_type).await? {
                continue;
            }
            let data = serde_json::json!({
                "circuit": {
                    "target": t.target,
                    "state": state,
                    "connector_id": t.connector_id,
                    "time": t.time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                }
            });
            record(&mut tx, &platform_event(event_type, &t.organization_id, data)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Whether any platform event waits to be fanned out (a read; the
    /// dispatcher asks before it takes a write lock).
    pub async fn outbox_has_events(&self) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT 1 FROM platform_outbox LIMIT 1").fetch_optional(&self.pool).await?.is_some())
    }

    /// Platform events not fanned out yet, for `/metrics`.
    pub async fn outbox_depth(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) FROM platform_outbox").fetch_one(&self.pool).await?.try_get(0)?)
    }
}
