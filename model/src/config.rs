//! What data-plane nodes receive (SPEC §5): versioned deltas of the
//! configuration, and the content hash both sides compute over a snapshot.

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};

use super::{Connector, Plan, etag_of};

/// An item and the config version at which it last changed.
#[derive(Clone, Debug, PartialEq)]
pub struct Versioned<T> {
    pub item: T,
    pub version: i64,
}

/// A `$secret` as the store keeps it and reads it into a delta: sealed for
/// its owner. Opening it (`open_delta` on the control plane) makes a
/// [`DeployedSecret`]; the two stages are two types.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub organization_id: String,
    pub name: String,
    pub sealed: String,
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSecret")
            .field("organization_id", &self.organization_id)
            .field("name", &self.name)
            .finish()
    }
}

/// A secret as nodes need it: opened, for `$secret.NAME`.
#[derive(Clone, PartialEq, Eq)]
pub struct DeployedSecret {
    pub organization_id: String,
    pub name: String,
    /// `None` when the control plane could not open the stored value: one
    /// broken secret holds the connectors that read it, not the fleet.
    pub value: Option<String>,
}

impl std::fmt::Debug for DeployedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeployedSecret")
            .field("organization_id", &self.organization_id)
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// An organization as nodes need it: which plan limits it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeployedOrganization {
    pub id: String,
    pub plan: String,
}

/// A snapshot (`full`) or the changes from `base_version` to `version`,
/// its `$secret`s sealed as the store read them (`S` = [`SealedSecret`])
/// or opened for nodes ([`DeployedSecret`], the default).
///
/// Connectors carry their secret material as the stage left it (sealed
/// from the store, opened for nodes) and custom header values hashed,
/// which is what a node needs to serve them.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigDelta<S = DeployedSecret> {
    pub version: i64,
    pub full: bool,
    pub base_version: i64,
    pub connectors: Vec<Versioned<Connector>>,
    pub removed_connector_ids: Vec<String>,
    pub secrets: Vec<Versioned<S>>,
    /// `(organization_id, name)` of deleted secrets.
    pub removed_secrets: Vec<(String, String)>,
    pub plans: Vec<Plan>,
    pub organizations: Vec<Versioned<DeployedOrganization>>,
    /// Hash of the whole snapshot at `version` (see [`ContentIndex`]).
    pub content_hash: String,
    /// Connectors of `connectors` whose own secret material the control
    /// plane could not open, by id, with why: nodes reject them with that
    /// reason (their secret fields are absent).
    pub unopened_connectors: BTreeMap<String, String>,
}

impl<S> Default for ConfigDelta<S> {
    fn default() -> Self {
        ConfigDelta {
            version: 0,
            full: false,
            base_version: 0,
            connectors: Vec::new(),
            removed_connector_ids: Vec::new(),
            secrets: Vec::new(),
            removed_secrets: Vec::new(),
            plans: Vec::new(),
            organizations: Vec::new(),
            content_hash: String::new(),
            unopened_connectors: BTreeMap::new(),
        }
    }
}

impl<S> ConfigDelta<S> {
    /// The same delta with its secrets through `f` (opening them).
    pub fn with_secrets<T>(self, f: impl FnMut(Versioned<S>) -> Versioned<T>) -> ConfigDelta<T> {
        ConfigDelta {
            version: self.version,
            full: self.full,
            base_version: self.base_version,
            connectors: self.connectors,
            removed_connector_ids: self.removed_connector_ids,
            secrets: self.secrets.into_iter().map(f).collect(),
            removed_secrets: self.removed_secrets,
            plans: self.plans,
            organizations: self.organizations,
            content_hash: self.content_hash,
            unopened_connectors: self.unopened_connectors,
        }
    }

    /// Whether the delta changes nothing.
    pub fn is_empty(&self) -> bool {
        !self.full
            && self.connectors.is_empty()
            && self.removed_connector_ids.is_empty()
            && self.secrets.is_empty()
            && self.removed_secrets.is_empty()
            && self.plans.is_empty()
            && self.organizations.is_empty()
    }
}

/// The item versions of a whole snapshot and its content hash, computed the
/// same way on both planes: the XOR of the SHA-256 of every line
/// `kind:key:version\n` (`c` connectors, `s` secrets keyed `org/name`, `o`
/// organizations, `p` plans with their etag), as lowercase hex.
///
/// XOR makes the hash independent of order and updatable in O(1) per item,
/// so neither plane rescans the whole configuration per change. It detects
/// drift (a missed or misapplied delta); it is not a defence against someone
/// who controls the stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContentIndex {
    lines: HashMap<(char, String), String>,
    hash: ContentHash,
}

/// The content hash alone: XOR of per-item line hashes. Toggling an item's
/// line adds it if absent and removes it if present, so a holder that knows
/// each item's current version (as a node does) keeps the hash without
/// keeping the lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    pub fn toggle_connector(&mut self, id: &str, version: i64) {
        self.toggle('c', id, &version.to_string());
    }

    pub fn toggle_secret(&mut self, organization_id: &str, name: &str, version: i64) {
        self.toggle('s', &format!("{organization_id}/{name}"), &version.to_string());
    }

    pub fn toggle_organization(&mut self, id: &str, version: i64) {
        self.toggle('o', id, &version.to_string());
    }

    pub fn toggle_plan(&mut self, plan: &Plan) {
        self.toggle('p', &plan.name, &etag_of(plan.revision));
    }

    fn toggle(&mut self, kind: char, key: &str, version: &str) {
        xor(&mut self.0, &line_hash(kind, key, version));
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl ContentIndex {
    pub fn set_connector(&mut self, id: &str, version: i64) {
        self.set('c', id.to_owned(), version.to_string());
    }

    pub fn set_secret(&mut self, organization_id: &str, name: &str, version: i64) {
        self.set('s', format!("{organization_id}/{name}"), version.to_string());
    }

    pub fn set_organization(&mut self, id: &str, version: i64) {
        self.set('o', id.to_owned(), version.to_string());
    }

    pub fn set_plan(&mut self, plan: &Plan) {
        self.set('p', plan.name.clone(), etag_of(plan.revision));
    }

    pub fn remove_connector(&mut self, id: &str) {
        self.remove('c', id.to_owned());
    }

    pub fn remove_secret(&mut self, organization_id: &str, name: &str) {
        self.remove('s', format!("{organization_id}/{name}"));
    }

    fn set(&mut self, kind: char, key: String, version: String) {
        self.hash.toggle(kind, &key, &version);
        if let Some(old) = self.lines.insert((kind, key.clone()), version) {
            self.hash.toggle(kind, &key, &old);
        }
    }

    fn remove(&mut self, kind: char, key: String) {
        if let Some(old) = self.lines.remove(&(kind, key.clone())) {
            self.hash.toggle(kind, &key, &old);
        }
    }

    /// Applies a delta's item versions (replacing everything for a full one).
    pub fn apply(&mut self, delta: &ConfigDelta) {
        if delta.full {
            *self = ContentIndex::default();
        }
        for c in &delta.connectors {
            self.set_connector(&c.item.id, c.version);
        }
        for id in &delta.removed_connector_ids {
            self.remove_connector(id);
        }
        for s in &delta.secrets {
            self.set_secret(&s.item.organization_id, &s.item.name, s.version);
        }
        for (org, name) in &delta.removed_secrets {
            self.remove_secret(org, name);
        }
        for o in &delta.organizations {
            self.set_organization(&o.item.id, o.version);
        }
        for p in &delta.plans {
            self.set_plan(p);
        }
    }

    /// The content hash, lowercase hex.
    pub fn hash(&self) -> String {
        self.hash.to_hex()
    }
}

fn line_hash(kind: char, key: &str, version: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(kind.to_string().as_bytes());
    hasher.update(b":");
    hasher.update(key.as_bytes());
    hasher.update(b":");
    hasher.update(version.as_bytes());
    hasher.update(b"\n");
    hasher.finalize().into()
}

fn xor(acc: &mut [u8; 32], other: &[u8; 32]) {
    for (a, b) in acc.iter_mut().zip(other) {
        *a ^= b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_content_not_on_insertion_order() {
        let mut a = ContentIndex::default();
        a.set_connector("con_b", 3);
        a.set_connector("con_a", 2);
        a.set_secret("org", "X", 4);
        let mut b = ContentIndex::default();
        b.set_secret("org", "X", 4);
        b.set_connector("con_a", 2);
        b.set_connector("con_b", 3);
        assert_eq!(a.hash(), b.hash());
        b.set_connector("con_a", 5);
        assert_ne!(a.hash(), b.hash());
        b.remove_connector("con_a");
        a.remove_connector("con_a");
        assert_eq!(a.hash(), b.hash(), "con_a was at different versions, but both are gone now");
    }

    #[test]
    fn deployed_secrets_never_print_their_value() {
        let s = DeployedSecret { organization_id: "o".into(), name: "N".into(), value: Some("hunter2".into()) };
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
