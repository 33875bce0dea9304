//! E-mail notifications to organization admins (SPEC §8): credentials
//! about to expire, circuit breakers opening.
//!
//! The mailer is a loop of its own: it claims due mails from the store
//! (queued when their platform event was fanned out), sends each over SMTP
//! with lettre, and records the outcome; a failure is tried again later,
//! [`ATTEMPTS`] times in all. Without SMTP configured, each notification
//! is logged as a structured line instead (target
//! `hookplane::notification`). Nothing waits on mail: a mail server's
//! outage delays mail and nothing else.

mod render;

use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::store::{Mail, MailOutcome, Store};

/// Sends per mail before it is given up.
const ATTEMPTS: u32 = 5;
/// Mails sent at once.
const BATCH: u32 = 16;
/// The longest sleep: how soon mail another replica queued is seen.
const POLL: Duration = Duration::from_secs(1);

/// How the SMTP server is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text (a relay on the same host or network).
    None,
    /// Plain text upgraded with STARTTLS, required.
    StartTls,
    /// TLS from the first byte (port 465, usually).
    Tls,
}

/// Where notification mail goes out.
#[derive(Clone)]
pub struct MailSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Zeroizing<String>>,
    /// `hookplane <alerts@example.com>` or a bare address.
    pub from: String,
    /// Delay before a mail's first retry; doubles after each.
    pub retry_base: Duration,
}

impl std::fmt::Debug for MailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// Why the SMTP settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MailSetupError {
    #[error("smtp_from `{0}` is not an e-mail address")]
    From(String),
    #[error("the SMTP transport for {host}: {source}")]
    Transport { host: String, source: lettre::transport::smtp::Error },
}

type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// An SMTP sender, or the log when none is configured.
enum Sender {
    Smtp { transport: Transport, from: lettre::message::Mailbox },
    Log,
}

impl Sender {
    fn new(settings: Option<&MailSettings>) -> Result<Sender, MailSetupError> {
        let Some(settings) = settings else { return Ok(Sender::Log) };
        let from = settings.from.parse().map_err(|_| MailSetupError::From(settings.from.clone()))?;
        let transport_error = |source| MailSetupError::Transport { host: settings.host.clone(), source };
        let builder = match settings.tls {
            SmtpTls::None => Transport::builder_dangerous(&settings.host),
            SmtpTls::StartTls => Transport::starttls_relay(&settings.host).map_err(transport_error)?,
            SmtpTls::Tls => Transport::relay(&settings.host).map_err(transport_error)?,
        };
        let mut builder = builder.port(settings.port).timeout(Some(Duration::from_secs(10)));
        if let Some(username) = &settings.username {
            let password = settings.password.as_ref().map(|p| p.to_string()).unwrap_or_default();
            builder = builder.credentials(Credentials::new(username.clone(), password));
        }
        Ok(Sender::Smtp { transport: builder.build(), from })
    }

    /// Sends one mail; `Err((error, worth retrying))`.
    async fn send(&self, mail: &Mail, subject: &str, body: &str) -> Result<(), (String, bool)> {
        match self {
            Sender::Log => {
                tracing::info!(
                    target: "hookplane::notification",
                    organization = %mail.organization_id,
                    event = mail.event_type.name(),
                    to = ?mail.recipients,
                    subject,
                    "notification (no SMTP server configured)"
                );
                Ok(())
            }
            Sender::Smtp { transport, from } => {
                let mut message =
                    Message::builder().from(from.clone()).subject(subject).header(ContentType::TEXT_PLAIN);
                for recipient in &mail.recipients {
                    let to =
                        recipient.parse().map_err(|_| (format!("`{recipient}` is not an e-mail address"), false))?;
                    message = message.to(to);
                }
                let message = message.body(body.to_owned()).map_err(|e| (e.to_string(), false))?;
                transport.send(message).await.map(drop).map_err(|e| {
                    // A permanent refusal (5xx) will not change; the rest may.
                    (e.to_string(), !e.is_permanent())
                })
            }
        }
    }
}

/// Runs the mailer until `closing`.
pub async fn run(store: Store, settings: Option<MailSettings>, mut closing: watch::Receiver<bool>) {
    let sender = match Sender::new(settings.as_ref()) {
        Ok(sender) => Arc::new(sender),
        Err(err) => {
            tracing::error!(error = %err, "notification mail cannot be sent; it is logged instead");
            Arc::new(Sender::Log)
        }
    };
    let retry_base = settings.as_ref().map_or(Duration::from_secs(30), |s| s.retry_base);
    loop {
        let closed = *closing.borrow();
        if closed {
            return;
        }
        let sleep = match round(&store, &sender, retry_base).await {
            Ok(Some(sleep)) => sleep,
            Ok(None) => continue,
            Err(err) => {
                tracing::warn!(error = %err, "notification mail: the store failed; trying again");
                POLL
            }
        };
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            _ = closing.wait_for(|closing| *closing) => return,
        }
    }
}

/// Sends what is due; `None` when there may be more at once, otherwise
/// how long to sleep.
async fn round(
    store: &Store,
    sender: &Sender,
    retry_base: Duration,
) -> Result<Option<Duration>, crate::store::StoreError> {
    let now = hookplane_model::now();
    let until = now + chrono::TimeDelta::seconds(30);
    let due = store.claim_due_mails(now, until, BATCH).await?;
    if !due.is_empty() {
        let sends = due.iter().map(|mail| async move {
            let outcome = match render::render(mail.event_type, &mail.data) {
                None => MailOutcome::Failed("no mail is written for this event".to_owned()),
                Some((subject, body)) => match sender.send(mail, &subject, &body).await {
                    Ok(()) => MailOutcome::Sent,
                    Err((error, true)) if mail.attempts + 1 < ATTEMPTS => {
                        let delay = hookplane_egress::retry::backoff(retry_base, mail.attempts + 1);
                        let at = hookplane_model::now() + chrono::TimeDelta::from_std(delay).unwrap_or_default();
                        MailOutcome::RetryAt(at, error)
                    }
                    Err((error, _)) => MailOutcome::Failed(error),
                },
            };
            if let MailOutcome::RetryAt(_, error) | MailOutcome::Failed(error) = &outcome {
                tracing::warn!(mail = %mail.id, attempt = mail.attempts + 1, error = %error, "a notification mail was not sent");
            }
            if let Err(err) = store.record_mail(mail, &outcome, hookplane_model::now()).await {
                tracing::warn!(mail = %mail.id, error = %err, "recording a notification mail failed");
            }
        });
        futures::future::join_all(sends).await;
        return Ok(None);
    }
    let now = hookplane_model::now();
    Ok(Some(match store.next_mail_due().await? {
        Some(at) if at <= now => Duration::from_millis(10),
        Some(at) => (at - now).to_std().unwrap_or(POLL).min(POLL),
        None => POLL,
    }))
}
