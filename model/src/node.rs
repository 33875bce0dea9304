//! Data-plane nodes as the control plane tracks them (SPEC §5).

use super::Timestamp;

/// A data-plane node and its sync state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    pub address: String,
    pub build_version: String,
    pub applied_config_version: i64,
    pub connected: bool,
    pub last_seen_time: Timestamp,
    pub sync_errors: u64,
    pub last_error: String,
}

/// Where a fleet counts rate limits and remembers deliveries (SPEC §9).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LimitingPolicy {
    /// Each node counts its own calls.
    #[default]
    Local,
    /// Every node counts in one Redis server.
    Redis(RedisPolicy),
}

/// The `redis` limiting policy's settings.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisPolicy {
    /// `redis://…`; may hold a password, so it is never printed.
    pub url: String,
    /// Refuse calls (503) while Redis cannot answer, instead of counting on
    /// the node meanwhile.
    pub fail_closed: bool,
    /// Prefix of every key.
    pub key_prefix: String,
    /// Longest a call waits for Redis before the failure mode applies.
    pub timeout: std::time::Duration,
}

impl RedisPolicy {
    /// How long a node waits for Redis when the policy does not say: well
    /// above a round trip in one data centre, well below a sender's
    /// patience.
    pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(200);
}

impl std::fmt::Debug for RedisPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPolicy")
            .field("url", &"<redacted>")
            .field("fail_closed", &self.fail_closed)
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// How far a connector's last change has reached the fleet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rollout {
    /// The config version carrying the change.
    pub config_version: i64,
    /// Connected nodes at that version or later.
    pub nodes_applied: u32,
    pub nodes_connected: u32,
}

impl Rollout {
    /// The rollout of a change at `config_version` among connected nodes
    /// that have applied `applied`.
    pub fn among(config_version: i64, applied: &[i64]) -> Rollout {
        Rollout {
            config_version,
            nodes_applied: applied.iter().filter(|v| **v >= config_version).count() as u32,
            nodes_connected: applied.len() as u32,
        }
    }
}
