//! Organization secrets used as `$secret.NAME` (SPEC §3).

use super::{Revision, SecretField, Timestamp};

/// A named secret; its value is sealed at rest and never returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secret {
    pub organization_id: String,
    pub name: String,
    pub value: SecretField,
    pub description: String,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
    pub revision: Revision,
}

/// The writable part of a secret.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SecretSpec {
    pub name: String,
    pub value: SecretField,
    pub description: String,
}
