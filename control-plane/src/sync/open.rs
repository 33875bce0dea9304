//! Opening a delta's sealed secret material for the node that will use it.
//!
//! A value that does not open (tampered with in the database, or sealed
//! with another key) must not stop the fleet's configuration: it is left
//! out, marked, and logged, and only what depends on it is held back —
//! a connector whose own secret fails goes out marked unavailable, for
//! nodes to reject with the reason; a `$secret` that fails goes out
//! marked, and nodes hold the connectors that read it (SPEC §5: one
//! invalid connector never blocks the others).

use hookplane_model::{ConfigDelta, OutboundAuth, SecretField};

use crate::crypto::{SecretBox, connector_field_owner, secret_owner};

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
        let (org, id) = (connector.item.organization_id.clone(), connector.item.id.clone());
        let spec = &mut connector.item.spec;
        let mut fields: Vec<(&mut SecretField, &'static str)> = Vec::new();
        if let Some(signature) = &mut spec.signature {
            fields.push((&mut signature.secret, "signature.secret"));
        }
        if let OutboundAuth::OAuth2(oauth) = &mut spec.perform.auth {
            fields.push((&mut oauth.client_secret, "perform.auth.oauth2.client_secret"));
            fields.push((&mut oauth.refresh_token, "perform.auth.oauth2.refresh_token"));
        }
        let mut failed = false;
        for (field, path) in fields {
            if !open_field(field, secret_box, &connector_field_owner(&org, &id, path)) {
                failed = true;
                unopened.connector_fields.push((id.clone(), path));
            }
        }
        if failed {
            delta.unopened_connectors.insert(id, UNOPENED.to_owned());
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

/// Opens a sealed field in place; false if it did not open (it is then
/// absent, never left sealed).
fn open_field(field: &mut SecretField, secret_box: &SecretBox, owner: &str) -> bool {
    let SecretField::Sealed(sealed) = field else { return true };
    match secret_box.open_text(owner, sealed) {
        Ok(plain) => {
            *field = SecretField::Plain(plain.to_string());
            true
        }
        Err(_) => {
            *field = SecretField::Absent;
            false
        }
    }
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
