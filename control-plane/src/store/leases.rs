//! Leases: how control-plane replicas on one database agree which of them
//! runs a piece of background work. A lease is a row naming its holder and
//! when it expires; claiming it succeeds for its holder (a renewal) or for
//! anyone once it expired, in one statement, so two replicas claiming at
//! once cannot both win. A replica that dies loses its work to another
//! within one lease. Clocks of replicas are compared through the row, so
//! a lease outlasts its work's period by enough to absorb their skew.

use std::time::Duration;

use super::{Store, StoreError, micros};

impl Store {
    /// Claims the lease `name` for `holder` for `ttl` from now: true when
    /// `holder` holds it now.
    pub async fn claim_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = hookplane_model::now();
        let expires = now + chrono::TimeDelta::from_std(ttl).unwrap_or(chrono::TimeDelta::days(1));
        let claimed = sqlx::query(
            "INSERT INTO leases (name, holder, expire_time) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expire_time = excluded.expire_time \
             WHERE leases.holder = excluded.holder OR leases.expire_time < $4",
        )
        .bind(name)
        .bind(holder)
        .bind(micros(expires))
        .bind(micros(now))
        .execute(&mut *self.writer.connection().await?)
        .await?
        .rows_affected();
        Ok(claimed == 1)
    }

    /// Gives the lease `name` up if `holder` holds it, so another replica
    /// may take it at once (a replica shutting down).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&mut *self.writer.connection().await?)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_until_it_expires_or_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("leases.db").display());
        let store = Store::connect(&url).await.unwrap();
        let long = Duration::from_secs(60);
        assert!(store.claim_lease("prune", "a", long).await.unwrap());
        assert!(!store.claim_lease("prune", "b", long).await.unwrap(), "held by a");
        assert!(store.claim_lease("prune", "a", long).await.unwrap(), "a renews");
        assert!(store.claim_lease("other", "b", long).await.unwrap(), "leases are by name");

        assert!(store.claim_lease("short", "a", Duration::from_millis(1)).await.unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(store.claim_lease("short", "b", long).await.unwrap(), "an expired lease goes to whoever claims it");
        assert!(!store.claim_lease("short", "a", long).await.unwrap());

        store.release_lease("prune", "b").await.unwrap();
        assert!(!store.claim_lease("prune", "b", long).await.unwrap(), "only the holder releases");
        store.release_lease("prune", "a").await.unwrap();
        assert!(store.claim_lease("prune", "b", long).await.unwrap());
    }
}
