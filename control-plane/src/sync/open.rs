//! Opening a delta's sealed secret material for the node that will use it.
//!
//! A value that does not open (tampered with in the database, or sealed
//! with another key) must not stop the fleet's configuration: it is left
//! out, marked, and logged, and only what depends on it is held back —
//! a connector whose own secret fails goes out marked unavailable, for
//! nodes to reject with the reason; a `$secret` that fails goes out
//! marked, and nodes hold the connectors that read it (SPEC §5: one
//! invalid connector never blocks the others).

use hookplane_model::{ConfigDelta, SecretField};

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

/// Replaces every sealed value in `delta` by its plaintext; what does not
/// open is marked in the delta and returned.
pub fn open_delta(delta: &mut ConfigDelta, secret_box: &SecretBox) -> Unopened {
    let mut unopened = Unopened::default();
    for connector in &mut delta.connectors {
        let (org, id) = (&connector.item.organization_id, &connector.item.id);
        let mut failed = Vec::new();
        let opened = connector.item.spec.with_secrets(|slot, secret| match secret {
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
        connector.item.spec = opened;
        if !failed.is_empty() {
            unopened.connector_fields.extend(failed.into_iter().map(|path| (id.clone(), path)));
            delta.unopened_connectors.insert(id.clone(), UNOPENED.to_owned());
        }
    }
    for secret in &mut delta.secrets {
        let owner = secret_owner(&secret.item.organization_id, &secret.item.name);
        let opened = secret.item.value.as_deref().map(|sealed| secret_box.open_text(&owner, sealed));
        secret.item.value = match opened {
            Some(Ok(plain)) => Some(plain.to_string()),
            Some(Err(_)) | None => {
                unopened.secrets.push((secret.item.organization_id.clone(), secret.item.name.clone()));
                None
            }
        };
    }
    unopened
}

#[cfg(test)]
mod tests {
    use hookplane_model::{DeployedSecret, Versioned};

    use super::*;

    fn secret(org: &str, name: &str, value: &str) -> Versioned<DeployedSecret> {
        Versioned {
            item: DeployedSecret { organization_id: org.into(), name: name.into(), value: Some(value.into()) },
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
        let mut delta = ConfigDelta {
            secrets: vec![secret("org_a", "GOOD", &good), secret("org_b", "BAD", &tampered)],
            ..Default::default()
        };
        let unopened = open_delta(&mut delta, &key);
        assert_eq!(unopened.secrets, [("org_b".to_owned(), "BAD".to_owned())]);
        assert_eq!(delta.secrets[0].item.value.as_deref(), Some("plain"));
        assert_eq!(delta.secrets[1].item.value, None, "marked, never sent sealed");
    }
}
