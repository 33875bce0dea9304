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
