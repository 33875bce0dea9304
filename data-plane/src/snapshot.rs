//! The immutable configuration a node serves from.
//!
//! A `Snapshot` is built off the request path from the previous one and a
//! delta, then swapped in whole (see `node.rs`); it is never mutated after
//! that. Entries are `Arc`s, so building the next snapshot copies pointers,
//! not connectors, and connectors that did not change are shared.

use std::sync::Arc;

use hookplane_convert::Rejection;

use hookplane_egress::destination::Destination;
use hookplane_expr::ProgramSet;
use hookplane_model::{
    CompiledSpec, ConfigDelta, Connector, ConnectorToken, ContentHash, Deployed, DeployedOrganization, DeployedSecret,
    Plan, SecretField, SecretSlot, SigningSecretError, Timestamp, TokenKind, Versioned, compile_connector,
};
use hookplane_pipeline::render::{PreparedPerform, parse_constant_url};

/// A connector ready to serve: its configuration compiled and its secrets
/// opened, once, when the snapshot is built (`hookplane_model`'s
/// `compile_connector`, as the control plane checked it on save).
#[derive(Debug)]
pub struct DeployedConnector {
    /// The configuration: every expression a program of `programs`, every
    /// secret opened. Its `tokens` are moved into `credentials`.
    pub connector: Connector<Deployed>,
    pub programs: ProgramSet,
    /// Accepted inbound credentials by digest, ready for comparison.
    pub credentials: Box<[Credential]>,
    /// What of the perform renders the same on every call.
    pub perform: PreparedPerform,
    /// The lookup's URL, parsed once where its template is literal text.
    pub lookup_url: Option<Destination>,
    /// Config version at which it last changed.
    pub version: i64,
}

/// Why a node cannot serve a connector; the text is the NACK's reason.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// What the control plane would have said of it on save, all at once.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<hookplane_model::Diagnostic>),
    #[error("credential {id} has a malformed hash")]
    MalformedCredential { id: String },
    #[error("{field}: {reason}")]
    SigningSecret { field: &'static str, reason: SigningSecretError },
}

/// An accepted inbound credential as the fast path needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub kind: TokenKind,
    /// SHA-256 of the plaintext.
    pub sha256: [u8; 32],
    pub expire_time: Option<Timestamp>,
}

impl DeployedConnector {
    /// Prepares a connector; the error says why the node cannot serve it,
    /// every problem of it at once.
    pub fn prepare(mut connector: Connector, version: i64) -> Result<DeployedConnector, PrepareError> {
        // What only people read stays on the control plane: a fleet holds
        // every connector in memory, so each byte here counts per node.
        connector.spec.description = String::new();
        connector.spec.sample_payload = None;
        connector.spec.labels.clear();
        let CompiledSpec { programs, spec } =
            compile_connector(&connector.spec).and_then(CompiledSpec::open).map_err(PrepareError::Invalid)?;
        if let Some(signature) = &spec.signature {
            // Keys are decoded per call, without allocating; whether they
            // decode at all is settled here, once.
            let mut secrets = vec![(SecretSlot::Signature, &signature.secret)];
            secrets.extend(signature.previous.as_ref().map(|p| (SecretSlot::PreviousSignature, &p.secret)));
            for (slot, secret) in secrets {
                signature
                    .preset
                    .signing_key(secret.expose())
                    .map_err(|reason| PrepareError::SigningSecret { field: slot.path(), reason })?;
            }
        }
        let credentials = std::mem::take(&mut connector.tokens)
            .into_iter()
            .map(|t| {
                let mut sha256 = [0u8; 32];
                hex::decode_to_slice(&t.hash, &mut sha256)
                    .map_err(|_| PrepareError::MalformedCredential { id: t.id.clone() })?;
                Ok(Credential { kind: t.kind, sha256, expire_time: t.expire_time })
            })
            .collect::<Result<_, PrepareError>>()?;
        let perform = PreparedPerform::new(&spec.perform, &programs);
        let lookup_url = spec.lookup.as_ref().and_then(|lookup| parse_constant_url(&programs, lookup.url));
        let connector = Connector {
            id: connector.id,
            organization_id: connector.organization_id,
            spec,
            tokens: Vec::new(),
            create_time: connector.create_time,
            update_time: connector.update_time,
            revision: connector.revision,
        };
        Ok(DeployedConnector { connector, programs, credentials, perform, lookup_url, version })
    }

    /// The credential of `kind` whose SHA-256 is `sha256`. A connector has a
    /// handful of credentials, so a scan beats a map here; every candidate is
    /// compared in constant time.
    pub fn credential(&self, kind: TokenKind, sha256: &[u8; 32]) -> Option<&Credential> {
        use subtle::ConstantTimeEq as _;
        self.credentials.iter().filter(|c| c.kind == kind).find(|c| bool::from(c.sha256.ct_eq(sha256)))
    }

    /// The connector as received, credentials included, for the cache;
    /// expressions come back as printed from their programs.
    fn to_connector(&self) -> Connector {
        let tokens = self
            .credentials
            .iter()
            .enumerate()
            .map(|(i, c)| ConnectorToken {
                id: format!("cred_{i}"),
                kind: c.kind,
                hash: hex::encode(c.sha256),
                hint: String::new(),
                create_time: self.connector.create_time,
                expire_time: c.expire_time,
                superseded: false,
            })
            .collect();
        let spec = hookplane_model::print_spec(&self.programs, &self.connector.spec, |_, opened| {
            if opened.expose().is_empty() {
                SecretField::Absent
            } else {
                SecretField::Plain(opened.expose().to_owned())
            }
        });
        Connector {
            id: self.connector.id.clone(),
            organization_id: self.connector.organization_id.clone(),
            spec,
            tokens,
            create_time: self.connector.create_time,
            update_time: self.connector.update_time,
            revision: self.connector.revision,
        }
    }

    /// Every `$secret` name any of the connector's programs reads, for
    /// redaction.
    pub fn secret_names(&self) -> Vec<&str> {
        self.programs.all_secrets()
    }
}

/// A secret by `(organization_id, name)`.
pub type SecretKey = (String, String);

/// A [`SecretKey`] borrowed, to look a secret up without making the owned
/// pair: two allocations per lookup, and a call looks up every secret its
/// connector reads, for redaction and again as its programs read them.
/// Derived, it hashes as the pair does (each text in turn).
#[derive(Hash)]
struct SecretRef<'a>(&'a str, &'a str);

impl equivalent::Equivalent<SecretKey> for SecretRef<'_> {
    fn equivalent(&self, key: &SecretKey) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

/// One whole configuration at one version.
///
/// The maps are persistent (`imbl`): the next snapshot is an O(1) clone plus
/// O(log n) per changed item, so applying a one-connector delta costs the
/// same at 100 000 connectors as at 10.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub version: i64,
    /// Hex of `hash`, as the control plane sends it.
    pub content_hash: String,
    hash: ContentHash,
    /// A B-tree rather than a HAMT: its nodes stay at least half full, where
    /// a HAMT's sparse leaves cost ~200 B per connector at 100 000 (measured),
    /// and a lookup of ~17 key comparisons is well under a microsecond.
    pub connectors: imbl::OrdMap<String, Arc<DeployedConnector>>,
    /// Connectors received but not served, with their versions (they count
    /// in the content hash, which describes what was received).
    rejected: imbl::HashMap<String, i64>,
    /// `(organization_id, name)` → value and the item's version; no value
    /// when the control plane could not open it.
    pub secrets: imbl::HashMap<SecretKey, (Option<Arc<str>>, i64)>,
    /// The secrets without a value, so the common case (none) costs
    /// nothing to check.
    unavailable_secrets: imbl::OrdSet<SecretKey>,
    /// Connectors that read an unavailable secret: kept (so they run again
    /// once it is set), not run, and reported when they become held.
    pub held: imbl::OrdMap<String, Arc<str>>,
    /// Organization id → plan name, with the item's version.
    pub organizations: IdMap<String, (String, i64)>,
    pub plans: IdMap<String, Arc<Plan>>,
}

/// A persistent map every call looks up, keyed by ids the control plane
/// issued and plan names its operators chose. Hashed with foldhash
/// (seeded per process): SipHash's resistance to chosen collisions buys
/// nothing for keys no caller chooses, and its two lookups per call were
/// 430 instructions of a check-path call (callgrind, `trigger_allocations`).
pub type IdMap<K, V> = imbl::GenericHashMap<K, V, foldhash::fast::RandomState, imbl::shared_ptr::DefaultSharedPtr>;

impl Snapshot {
    /// The value of `organization`'s secret `name`, if it has one.
    pub fn secret(&self, organization: &str, name: &str) -> Option<&str> {
        self.secrets.get(&SecretRef(organization, name)).and_then(|(value, _)| value.as_deref())
    }

    /// The snapshot after `delta`, and the connectors it could not take
    /// (they are left out; everything else applies).
    pub fn apply(&self, delta: &ConfigDelta, conversion_rejections: Vec<Rejection>) -> (Snapshot, Vec<Rejection>) {
        let mut next = if delta.full { Snapshot::default() } else { self.clone() };
        let mut rejected = conversion_rejections;
        for id in &delta.removed_connector_ids {
            next.forget_connector(id);
        }
        for rejection in &rejected {
            next.forget_connector(&rejection.connector_id);
            next.reject(&rejection.connector_id, rejection.version);
        }
        for Versioned { item, version } in &delta.connectors {
            let id = item.id.clone();
            next.forget_connector(&id);
            match DeployedConnector::prepare(item.clone(), *version) {
                Ok(deployed) => {
                    next.hash.toggle_connector(&id, *version);
                    next.connectors.insert(id, Arc::new(deployed));
                }
                Err(error) => {
                    next.reject(&id, *version);
                    rejected.push(Rejection { connector_id: id, version: *version, reason: error.to_string() });
                }
            }
        }
        for (org, name) in &delta.removed_secrets {
            if let Some((_, old)) = next.secrets.remove(&(org.clone(), name.clone())) {
                next.hash.toggle_secret(org, name, old);
            }
        }
        for (org, name) in &delta.removed_secrets {
            next.unavailable_secrets.remove(&(org.clone(), name.clone()));
        }
        for Versioned { item: DeployedSecret { organization_id, name, value }, version } in &delta.secrets {
            let key = (organization_id.clone(), name.clone());
            match value {
                Some(_) => next.unavailable_secrets.remove(&key),
                None => next.unavailable_secrets.insert(key.clone()),
            };
            if let Some((_, old)) = next.secrets.insert(key, (value.as_deref().map(Arc::from), *version)) {
                next.hash.toggle_secret(organization_id, name, old);
            }
            next.hash.toggle_secret(organization_id, name, *version);
        }
        for Versioned { item: DeployedOrganization { id, plan }, version } in &delta.organizations {
            if let Some((_, old)) = next.organizations.insert(id.clone(), (plan.clone(), *version)) {
                next.hash.toggle_organization(id, old);
            }
            next.hash.toggle_organization(id, *version);
        }
        for plan in &delta.plans {
            if let Some(old) = next.plans.insert(plan.name.clone(), Arc::new(plan.clone())) {
                next.hash.toggle_plan(&old);
            }
            next.hash.toggle_plan(plan);
        }
        next.hold_connectors_reading_unavailable_secrets(self, &mut rejected);
        next.version = delta.version;
        next.content_hash = next.hash.to_hex();
        (next, rejected)
    }

    /// Recomputes [`Snapshot::held`]; connectors held now and not before
    /// join `rejected`, so the node reports them. Scans the connectors
    /// only while some secret is unavailable, which is a broken state an
    /// operator is told about, not the normal one.
    fn hold_connectors_reading_unavailable_secrets(&mut self, previous: &Snapshot, rejected: &mut Vec<Rejection>) {
        if self.unavailable_secrets.is_empty() {
            self.held = imbl::OrdMap::new();
            return;
        }
        let mut held = imbl::OrdMap::new();
        for (id, deployed) in &self.connectors {
            let org = &deployed.connector.organization_id;
            let unavailable = deployed
                .secret_names()
                .into_iter()
                .find(|name| self.unavailable_secrets.contains(&(org.clone(), (*name).to_owned())));
            if let Some(name) = unavailable {
                let reason: Arc<str> = Arc::from(format!(
                    "reads $secret.{name}, which the control plane could not open (its stored value was tampered \
                     with or sealed with another key); set the secret again"
                ));
                if !previous.held.contains_key(id) {
                    rejected.push(Rejection {
                        connector_id: id.clone(),
                        version: deployed.version,
                        reason: reason.to_string(),
                    });
                }
                held.insert(id.clone(), reason);
            }
        }
        self.held = held;
    }

    /// Removes a connector, served or rejected, from the snapshot and hash.
    fn forget_connector(&mut self, id: &str) {
        if let Some(old) = self.connectors.remove(id) {
            self.hash.toggle_connector(id, old.version);
        }
        if let Some(version) = self.rejected.remove(id) {
            self.hash.toggle_connector(id, version);
        }
    }

    fn reject(&mut self, id: &str, version: i64) {
        self.rejected.insert(id.to_owned(), version);
        self.hash.toggle_connector(id, version);
    }

    /// The whole snapshot as a full delta, to persist it.
    pub fn to_full_delta(&self) -> ConfigDelta {
        let mut connectors: Vec<_> =
            self.connectors.values().map(|d| Versioned { item: d.to_connector(), version: d.version }).collect();
        connectors.sort_by(|a, b| a.item.id.cmp(&b.item.id));
        let mut secrets: Vec<_> = self
            .secrets
            .iter()
            .map(|((org, name), (value, version))| Versioned {
                item: DeployedSecret {
                    organization_id: org.clone(),
                    name: name.clone(),
                    value: value.as_deref().map(str::to_owned),
                },
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
            unopened_connectors: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use hookplane_model::{ContentIndex, DeployedOrganization, Plan};

    use super::*;

    #[test]
    fn a_node_refuses_a_connector_with_what_the_control_plane_says_of_it() {
        use hookplane::api::v1 as api;
        let broken = api::Connector {
            display_name: "broken".into(),
            auth: Some(api::InboundAuth { bearer_token: true, ..Default::default() }),
            condition: "$processed.a".into(),
            mappings: vec![api::FieldMapping { name: "a".into(), expression: "lower(1, 2)".into() }],
            perform: Some(api::Perform { url: "https://example.com/$paylod.id".into(), ..Default::default() }),
            ..Default::default()
        };
        // What the control plane answers on save ...
        let refused = hookplane_convert::connector_from_api(&broken, "connector").unwrap_err();
        let said: Vec<String> = refused
            .violations
            .iter()
            .map(|v| format!("{}: {}", v.field.trim_start_matches("connector."), v.description))
            .collect();
        assert_eq!(said.len(), 3, "every problem at once: {said:#?}");
        // ... is what a node says of the same spec (stored by an older
        // version, say): one compiler, one set of diagnostics.
        let mut source = hookplane_convert::connector_from_api(
            &api::Connector {
                condition: String::new(),
                mappings: Vec::new(),
                perform: Some(api::Perform { url: "https://example.com/".into(), ..Default::default() }),
                ..broken.clone()
            },
            "connector",
        )
        .unwrap();
        source.condition = Some(broken.condition.clone());
        source.mappings = vec![hookplane_model::FieldMapping { name: "a".into(), expression: "lower(1, 2)".into() }];
        source.perform.url = "https://example.com/$paylod.id".into();
        let connector = Connector {
            id: "con_1".into(),
            organization_id: "org".into(),
            spec: source,
            tokens: Vec::new(),
            create_time: hookplane_model::now(),
            update_time: hookplane_model::now(),
            revision: 1,
        };
        let reason = DeployedConnector::prepare(connector, 1).unwrap_err().to_string();
        assert_eq!(reason, said.join("; "));
    }

    fn secret(name: &str, version: i64) -> Versioned<DeployedSecret> {
        Versioned {
            item: DeployedSecret {
                organization_id: "org".into(),
                name: name.into(),
                value: Some(format!("{name}@{version}")),
            },
            version,
        }
    }

    /// A borrowed key finds its entry only if it hashes as the owned pair.
    #[test]
    fn a_borrowed_secret_key_hashes_as_the_owned_pair() {
        use std::hash::BuildHasher as _;
        let hasher = std::hash::RandomState::new();
        for (org, name) in [("org", "TOKEN"), ("", ""), ("or", "gTOKEN"), ("org_1", "ä")] {
            let owned: SecretKey = (org.to_owned(), name.to_owned());
            assert_eq!(hasher.hash_one(SecretRef(org, name)), hasher.hash_one(&owned), "{org}/{name}");
        }
        assert_ne!(hasher.hash_one(SecretRef("or", "gTOKEN")), hasher.hash_one(SecretRef("org", "TOKEN")));
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
        assert_eq!(second.secrets[&("org".into(), "B".into())].0.as_deref(), Some("B@3"));
        assert_eq!(second.secret("org", "B"), Some("B@3"));
        assert_eq!(second.secret("org", "A"), None, "removed");
        assert_eq!(second.secret("other", "B"), None, "another organization's");
        assert_eq!(first.secret("org", "A"), Some("A@1"));
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
