//! Opening a delta's sealed secret material for the node that will use it.
//!
//! A value that does not open (tampered with in the database, or sealed
//! with another key) must not stop the fleet's configuration: it is left
//! out, marked, and logged, and only what depends on it is held back —
//! a connector whose own secret fails goes out marked unavailable, for
//! nodes to reject with the reason; a `$secret` that fails goes out
//! marked, and nodes hold the connectors that read it (SPEC §5: one
//! invalid connector never blocks the others).

use hookplane_model::{ConfigDelta, DeployedSecret, SealedSecret, SecretField, Versioned};

use crate::crypto::{SecretBox, secret_owner};

/// Why a connector is sent unavailable. Says what to do, and nothing of
/// the value.
const UNOPENED: &str = "the control plane could not open its stored secret material (tampered with, or sealed with \
     another key); set the field again on the connector";

/// What could not be opened, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unopened {
    /// `(connector id, field)`.
    pub connector_fields: Vec<(String, &'static str)>,
    /// `(organization id, secret name)`.
    pub secrets: Vec<(String, String)>,
}

/// Opens every sealed value of `delta` for a node; what does not open is
/// marked in the delta and returned.
pub fn open_delta(delta: ConfigDelta<SealedSecret>, secret_box: &SecretBox) -> (ConfigDelta, Unopened) {
    let mut unopened = Unopened::default();
    let mut delta = delta.with_secrets(|Versioned { item, version }| {
        let owner = secret_owner(&item.organization_id, &item.name);
        let value = match secret_box.open_text(&owner, &item.sealed) {
            Ok(plain) => Some(plain.to_string()),
            Err(_) => {
                unopened.secrets.push((item.organization_id.clone(), item.name.clone()));
                None
            }
        };
        Versioned { item: DeployedSecret { organization_id: item.organization_id, name: item.name, value }, version }
    });
    let now = hookplane_model::now();
    for connector in &mut delta.connectors {
        // A previous signing secret past its overlap verifies nothing: it
        // is neither opened nor sent.
        if let Some(signature) = connector.item.spec.signature.as_mut()
            && signature.previous_at(now).is_none()
        {
            signature.previous = None;
        }
        let (org, id) = (&connector.item.organization_id, &connector.item.id);
        let mut failed = Vec::new();
        connector.item.spec.update_secrets(|slot, secret| match secret {
            SecretField::Sealed(sealed) => match secret_box.open_text(&slot.owner(org, id), sealed) {
                Ok(plain) => SecretField::Plain(plain.to_string()),
                // Never left sealed, never sent: absent, and the connector
                // marked.
                Err(_) => {
                    failed.push(slot.path());
                    SecretField::Absent
                }
            },
            other => other.clone(),
        });
        if !failed.is_empty() {
            unopened.connector_fields.extend(failed.into_iter().map(|path| (id.clone(), path)));
            delta.unopened_connectors.insert(id.clone(), UNOPENED.to_owned());
        }
    }
    (delta, unopened)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(org: &str, name: &str, sealed: &str) -> Versioned<SealedSecret> {
        Versioned {
            item: SealedSecret { organization_id: org.into(), name: name.into(), sealed: sealed.into() },
            version: 1,
        }
    }

    #[test]
    fn a_secret_that_does_not_open_is_marked_and_the_rest_open() {
        let key = SecretBox::new(&[1; 32]);
        let good = key.seal(&secret_owner("org_a", "GOOD"), b"plain");
        let tampered = {
            let mut sealed = key.seal(&secret_owner("org_b", "BAD"), b"plain").into_bytes();
            let last = sealed.len() - 2;
            sealed[last] = if sealed[last] == b'A' { b'B' } else { b'A' };
            String::from_utf8(sealed).unwrap()
        };
        let delta = ConfigDelta {
            secrets: vec![secret("org_a", "GOOD", &good), secret("org_b", "BAD", &tampered)],
            ..Default::default()
        };
        let (delta, unopened) = open_delta(delta, &key);
        assert_eq!(unopened.secrets, [("org_b".to_owned(), "BAD".to_owned())]);
        assert_eq!(delta.secrets[0].item.value.as_deref(), Some("plain"));
        assert_eq!(delta.secrets[1].item.value, None, "marked, never sent sealed");
    }
}
