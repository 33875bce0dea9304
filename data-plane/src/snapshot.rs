//! The immutable configuration a node serves from.
//!
//! A `Snapshot` is built off the request path from the previous one and a
//! delta, then swapped in whole (see `node.rs`); it is never mutated after
//! that. Entries are `Arc`s, so building the next snapshot copies pointers,
//! not connectors, and connectors that did not change are shared.

use std::collections::HashMap;
use std::sync::Arc;

use hookplane::convert::Rejection;
use hookplane::model::{
    ConfigDelta, Connector, ContentIndex, DeployedOrganization, DeployedSecret, Plan, TokenKind, Versioned,
};

/// A connector ready to serve: its configuration plus what the fast path
/// looks up per request, prepared once.
#[derive(Debug)]
pub struct DeployedConnector {
    pub connector: Connector,
    /// Config version at which it last changed.
    pub version: i64,
    /// Credential hash → kind and end of validity, for constant-time-per-
    /// lookup authentication.
    pub credentials: HashMap<String, (TokenKind, Option<hookplane::model::Timestamp>)>,
}

impl DeployedConnector {
    /// Prepares a connector; the error says why the node cannot serve it.
    pub fn prepare(connector: Connector, version: i64) -> Result<DeployedConnector, String> {
        let credentials = connector.tokens.iter().map(|t| (t.hash.clone(), (t.kind, t.expire_time))).collect();
        Ok(DeployedConnector { connector, version, credentials })
    }
}

/// One whole configuration at one version.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub version: i64,
    pub content_hash: String,
    index: ContentIndex,
    pub connectors: HashMap<String, Arc<DeployedConnector>>,
    /// `(organization_id, name)` → value and the item's version.
    pub secrets: HashMap<(String, String), (Arc<str>, i64)>,
    /// Organization id → plan name, with the item's version.
    pub organizations: HashMap<String, (String, i64)>,
    pub plans: HashMap<String, Arc<Plan>>,
}

impl Snapshot {
    /// The snapshot after `delta`, and the connectors it could not take
    /// (they are left out; everything else applies).
    pub fn apply(&self, delta: &ConfigDelta, conversion_rejections: Vec<Rejection>) -> (Snapshot, Vec<Rejection>) {
        let mut next = if delta.full {
            Snapshot::default()
        } else {
            Snapshot {
                version: self.version,
                content_hash: String::new(),
                index: self.index.clone(),
                connectors: self.connectors.clone(),
                secrets: self.secrets.clone(),
                organizations: self.organizations.clone(),
                plans: self.plans.clone(),
            }
        };
        let mut rejected = conversion_rejections;
        for id in &delta.removed_connector_ids {
            next.connectors.remove(id);
            next.index.remove_connector(id);
        }
        // The index records what was received, rejected connectors included,
        // so the content hash stays comparable with the control plane's; a
        // rejected connector is not served in any older form either.
        for rejection in &rejected {
            next.connectors.remove(&rejection.connector_id);
            next.index.set_connector(&rejection.connector_id, rejection.version);
        }
        for Versioned { item, version } in &delta.connectors {
            let id = item.id.clone();
            match DeployedConnector::prepare(item.clone(), *version) {
                Ok(deployed) => {
                    next.index.set_connector(&id, *version);
                    next.connectors.insert(id, Arc::new(deployed));
                }
                Err(reason) => {
                    next.connectors.remove(&id);
                    next.index.set_connector(&id, *version);
                    rejected.push(Rejection { connector_id: id, version: *version, reason });
                }
            }
        }
        for (org, name) in &delta.removed_secrets {
            next.secrets.remove(&(org.clone(), name.clone()));
            next.index.remove_secret(org, name);
        }
        for Versioned { item: DeployedSecret { organization_id, name, value }, version } in &delta.secrets {
            next.index.set_secret(organization_id, name, *version);
            next.secrets.insert((organization_id.clone(), name.clone()), (Arc::from(value.as_str()), *version));
        }
        for Versioned { item: DeployedOrganization { id, plan }, version } in &delta.organizations {
            next.index.set_organization(id, *version);
            next.organizations.insert(id.clone(), (plan.clone(), *version));
        }
        for plan in &delta.plans {
            next.index.set_plan(plan);
            next.plans.insert(plan.name.clone(), Arc::new(plan.clone()));
        }
        next.version = delta.version;
        next.content_hash = next.index.hash();
        (next, rejected)
    }

    /// The whole snapshot as a full delta, to persist it.
    pub fn to_full_delta(&self) -> ConfigDelta {
        let mut connectors: Vec<_> =
            self.connectors.values().map(|d| Versioned { item: d.connector.clone(), version: d.version }).collect();
        connectors.sort_by(|a, b| a.item.id.cmp(&b.item.id));
        let mut secrets: Vec<_> = self
            .secrets
            .iter()
            .map(|((org, name), (value, version))| Versioned {
                item: DeployedSecret { organization_id: org.clone(), name: name.clone(), value: value.to_string() },
                version: *version,
            })
            .collect();
        secrets.sort_by(|a, b| (&a.item.organization_id, &a.item.name).cmp(&(&b.item.organization_id, &b.item.name)));
        ConfigDelta {
            version: self.version,
            full: true,
            base_version: 0,
            connectors,
            removed_connector_ids: Vec::new(),
            secrets,
            removed_secrets: Vec::new(),
            plans: self.plans.values().map(|p| (**p).clone()).collect(),
            organizations: self
                .organizations
                .iter()
                .map(|(id, (plan, version))| Versioned {
                    item: DeployedOrganization { id: id.clone(), plan: plan.clone() },
                    version: *version,
                })
                .collect(),
            content_hash: self.content_hash.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use hookplane::model::{DeployedOrganization, Plan};

    use super::*;

    fn secret(name: &str, version: i64) -> Versioned<DeployedSecret> {
        Versioned {
            item: DeployedSecret {
                organization_id: "org".into(),
                name: name.into(),
                value: format!("{name}@{version}"),
            },
            version,
        }
    }

    #[test]
    fn deltas_add_replace_and_remove_on_top_of_the_previous_snapshot() {
        let full = ConfigDelta {
            version: 2,
            full: true,
            secrets: vec![secret("A", 1), secret("B", 2)],
            plans: vec![Plan::free()],
            organizations: vec![Versioned {
                item: DeployedOrganization { id: "org".into(), plan: "free".into() },
                version: 1,
            }],
            ..Default::default()
        };
        let (first, rejected) = Snapshot::default().apply(&full, Vec::new());
        assert!(rejected.is_empty());
        let delta = ConfigDelta {
            version: 4,
            base_version: 2,
            secrets: vec![secret("B", 3)],
            removed_secrets: vec![("org".into(), "A".into())],
            ..Default::default()
        };
        let (second, _) = first.apply(&delta, Vec::new());
        assert_eq!(second.version, 4);
        assert!(!second.secrets.contains_key(&("org".into(), "A".into())));
        assert_eq!(&*second.secrets[&("org".into(), "B".into())].0, "B@3");
        assert_eq!(second.organizations["org"].0, "free");
        assert_eq!(first.version, 2, "the previous snapshot is untouched");
        assert_eq!(first.secrets.len(), 2);

        let mut index = ContentIndex::default();
        index.apply(&full);
        index.apply(&delta);
        assert_eq!(second.content_hash, index.hash(), "both planes compute the same hash");
    }

    #[test]
    fn rejected_connectors_are_not_served_but_stay_in_the_hash() {
        let delta = ConfigDelta { version: 3, full: true, ..Default::default() };
        let rejection = Rejection { connector_id: "con_x".into(), version: 3, reason: "bad".into() };
        let (snapshot, rejected) = Snapshot::default().apply(&delta, vec![rejection]);
        assert_eq!(rejected.len(), 1);
        assert!(snapshot.connectors.is_empty());
        let mut index = ContentIndex::default();
        index.set_connector("con_x", 3);
        assert_eq!(snapshot.content_hash, index.hash());
    }
}
