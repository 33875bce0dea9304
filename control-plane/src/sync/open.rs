//! Opening a delta's sealed secret material for the node that will use it.

use hookplane::model::{ConfigDelta, OutboundAuth, SecretField};

use crate::crypto::{CryptoError, SecretBox, connector_field_owner, secret_owner};

/// Replaces every sealed value in `delta` by its plaintext.
pub fn open_delta(delta: &mut ConfigDelta, secret_box: &SecretBox) -> Result<(), CryptoError> {
    for connector in &mut delta.connectors {
        let (org, id) = (connector.item.organization_id.clone(), connector.item.id.clone());
        let spec = &mut connector.item.spec;
        if let Some(signature) = &mut spec.signature {
            open_field(&mut signature.secret, secret_box, &connector_field_owner(&org, &id, "signature.secret"))?;
        }
        if let OutboundAuth::OAuth2(oauth) = &mut spec.perform.auth {
            let client = connector_field_owner(&org, &id, "perform.auth.oauth2.client_secret");
            open_field(&mut oauth.client_secret, secret_box, &client)?;
            let refresh = connector_field_owner(&org, &id, "perform.auth.oauth2.refresh_token");
            open_field(&mut oauth.refresh_token, secret_box, &refresh)?;
        }
    }
    for secret in &mut delta.secrets {
        let owner = secret_owner(&secret.item.organization_id, &secret.item.name);
        secret.item.value = secret_box.open_text(&owner, &secret.item.value)?.to_string();
    }
    Ok(())
}

fn open_field(field: &mut SecretField, secret_box: &SecretBox, owner: &str) -> Result<(), CryptoError> {
    if let SecretField::Sealed(sealed) = field {
        *field = SecretField::Plain(secret_box.open_text(owner, sealed)?.to_string());
    }
    Ok(())
}
