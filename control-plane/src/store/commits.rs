//! How a replica learns of config commits made by another: PostgreSQL's
//! `LISTEN`/`NOTIFY` on [`CHANNEL`], the payload being the committed
//! version, sent inside the committing transaction so it is delivered
//! exactly when the commit is visible. A notification sent while the
//! listening connection is down is lost; the sync sessions' poll is the
//! fallback that catches it. SQLite has one writer process: nothing to
//! learn.

use std::sync::Weak;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The notification channel of config commits.
pub(super) const CHANNEL: &str = "hookplane_config";

/// How long a failed listener waits before connecting again.
const RECONNECT: Duration = Duration::from_secs(1);

/// Listens on `url` until `closed`, raising `committed` to every version
/// another replica commits. Holds the sender weakly: a dropped store ends
/// it too.
pub(super) fn listen(
    url: String,
    committed: Weak<watch::Sender<i64>>,
    mut closed: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let listening = async {
                let mut listener = PgListener::connect(&url).await?;
                listener.listen(CHANNEL).await?;
                loop {
                    let notification = listener.recv().await?;
                    let Some(committed) = committed.upgrade() else { return Ok(()) };
                    match notification.payload().parse::<i64>() {
                        Ok(version) => committed.send_modify(|latest| *latest = (*latest).max(version)),
                        Err(_) => {
                            tracing::warn!(payload = notification.payload(), "ignoring a malformed config notification")
                        }
                    }
                }
            };
            tokio::select! {
                result = listening => match result {
                    Ok(()) => return,
                    Err(err) => {
                        let err: sqlx::Error = err;
                        tracing::warn!(error = %err, "config notifications stopped; polling until they resume");
                    }
                },
                _ = closed.wait_for(|closed| *closed) => return,
            }
            tokio::select! {
                () = tokio::time::sleep(RECONNECT) => {}
                _ = closed.wait_for(|closed| *closed) => return,
            }
        }
    })
}
