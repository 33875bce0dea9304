//! E-mail notifications (SPEC §8): queued in the transaction that fans
//! their platform event out, claimed and marked by the mailer like
//! deliveries are by the dispatcher.

use hookplane_model::{PlatformEvent, PlatformEventType, Timestamp};
use sqlx::Row;

use super::{Backend, Store, StoreError, decode_json, encode_json, from_micros, micros};

/// The platform events admins are mailed about.
pub const MAILED: [PlatformEventType; 2] =
    [PlatformEventType::ConnectorTokenExpiring, PlatformEventType::CircuitOpened];

/// A mail to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    pub id: String,
    pub organization_id: String,
    pub event_type: PlatformEventType,
    pub recipients: Vec<String>,
    /// The platform event's `data`, JSON.
    pub data: String,
    pub attempts: u32,
    pub create_time: Timestamp,
}

/// What sending a mail led to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailOutcome {
    Sent,
    RetryAt(Timestamp, String),
    Failed(String),
}

/// Queues the mail `event` calls for, if any, to the organization's admins.
pub(super) async fn queue(tx: &mut sqlx::AnyConnection, event: &PlatformEvent) -> Result<(), StoreError> {
    if !MAILED.contains(&event.event_type) {
        return Ok(());
    }
    let Some(row) = sqlx::query("SELECT admin_emails FROM organizations WHERE id = $1")
        .bind(&event.organization_id)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(());
    };
    let recipients: Vec<String> = decode_json("organization admin_emails", &row.try_get::<String, _>(0)?)?;
    if recipients.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO mails (id, organization_id, event_type, recipients, data, status, attempts, last_error, \
         next_attempt_time, claimed_until, create_time) VALUES ($1, $2, $3, $4, $5, 'pending', 0, '', $6, 0, $6)",
    )
    .bind(crate::crypto::new_id("mail_"))
    .bind(&event.organization_id)
    .bind(event.event_type.name())
    .bind(encode_json("mail recipients", &recipients)?)
    .bind(&event.data)
    .bind(micros(event.create_time))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

impl Store {
    /// Claims up to `limit` mails due at `now` until `until`.
    pub async fn claim_due_mails(&self, now: Timestamp, until: Timestamp, limit: u32) -> Result<Vec<Mail>, StoreError> {
        let mut tx = self.write_tx().await?;
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, organization_id, event_type, recipients, data, attempts, create_time FROM mails \
             WHERE status = 'pending' AND next_attempt_time <= $1 AND claimed_until <= $1 \
             ORDER BY next_attempt_time LIMIT $2{lock}"
        )))
        .bind(micros(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut mails = Vec::with_capacity(rows.len());
        for row in &rows {
            let type_name: String = row.try_get("event_type")?;
            let mail = Mail {
                id: row.try_get("id")?,
                organization_id: row.try_get("organization_id")?,
                event_type: PlatformEventType::from_name(&type_name)
                    .ok_or_else(|| StoreError::Corrupt { what: "mail", source: type_name.clone().into() })?,
                recipients: decode_json("mail recipients", &row.try_get::<String, _>("recipients")?)?,
                data: row.try_get("data")?,
                attempts: row.try_get::<i64, _>("attempts")?.clamp(0, i64::from(u32::MAX)) as u32,
                create_time: from_micros(row.try_get("create_time")?),
            };
            sqlx::query("UPDATE mails SET claimed_until = $1 WHERE id = $2")
                .bind(micros(until))
                .bind(&mail.id)
                .execute(&mut *tx)
                .await?;
            mails.push(mail);
        }
        tx.commit().await?;
        Ok(mails)
    }

    /// Records what sending `mail` led to, releasing its claim.
    pub async fn record_mail(&self, mail: &Mail, outcome: &MailOutcome, now: Timestamp) -> Result<(), StoreError> {
        let (status, next, error) = match outcome {
            MailOutcome::Sent => ("sent", now, ""),
            MailOutcome::RetryAt(at, error) => ("pending", *at, error.as_str()),
            MailOutcome::Failed(error) => ("failed", now, error.as_str()),
        };
        sqlx::query(
            "UPDATE mails SET status = $1, attempts = attempts + 1, next_attempt_time = $2, claimed_until = 0, \
             last_error = $3 WHERE id = $4",
        )
        .bind(status)
        .bind(micros(next))
        .bind(error)
        .bind(&mail.id)
        .execute(&mut *self.writer.connection().await?)
        .await?;
        Ok(())
    }

    /// When the next pending mail is due (or its claim lapses).
    pub async fn next_mail_due(&self) -> Result<Option<Timestamp>, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(CASE WHEN claimed_until > next_attempt_time THEN claimed_until ELSE next_attempt_time END) \
             FROM mails WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?.map(from_micros))
    }
}
