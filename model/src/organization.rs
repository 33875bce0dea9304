//! Organizations, plans and admin API keys (SPEC §2, §9).

use serde::{Deserialize, Serialize};

use super::{Revision, Timestamp};

/// A tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Organization {
    pub id: String,
    pub display_name: String,
    pub plan: String,
    pub admin_emails: Vec<String>,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
    pub revision: Revision,
}

/// The writable part of an organization.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct OrganizationSpec {
    pub display_name: String,
    /// Empty: the control plane's default plan.
    pub plan: String,
    pub admin_emails: Vec<String>,
}

/// Named limits and features (SPEC §9). A limit of 0 means unlimited.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub name: String,
    pub display_name: String,
    pub per_ip_per_minute: u32,
    pub per_connector_per_minute: u32,
    pub org_per_minute: u32,
    pub org_per_hour: u32,
    pub org_per_day: u32,
    pub retries_enabled: bool,
    /// Days an organization's events are kept; 0 keeps them forever.
    /// Plans stored before retention existed read as 0.
    #[serde(default)]
    pub event_retention_days: u32,
    #[serde(default)]
    pub revision: Revision,
}

impl Plan {
    /// The `free` plan of SPEC §9: default limits, no retries.
    pub fn free() -> Plan {
        Plan {
            name: "free".into(),
            display_name: "Free".into(),
            per_ip_per_minute: 60,
            per_connector_per_minute: 30,
            org_per_minute: 200,
            org_per_hour: 1_000,
            org_per_day: 5_000,
            retries_enabled: false,
            event_retention_days: 7,
            revision: 1,
        }
    }

    /// The `starter` plan of SPEC §9: default limits, with retries.
    pub fn starter() -> Plan {
        Plan {
            name: "starter".into(),
            display_name: "Starter".into(),
            retries_enabled: true,
            event_retention_days: 30,
            ..Plan::free()
        }
    }
}

/// What an admin API key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read and write.
    Admin,
    /// Read only.
    Viewer,
}

impl Role {
    /// Stable text for storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    /// Parses the stored text.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// An admin API key's metadata; the key itself is stored only as a hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub organization_id: String,
    pub display_name: String,
    pub role: Role,
    /// The first characters of the plaintext.
    pub key_hint: String,
    pub expire_time: Option<Timestamp>,
    pub create_time: Timestamp,
}

/// The writable part of an API key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeySpec {
    pub display_name: String,
    pub role: Role,
    pub expire_time: Option<Timestamp>,
}
