//! Sealing and hashing a connector's secret material before it is stored,
//! and minting its inbound credentials.

use chrono::Duration;
use hookplane_convert::{ValidationError, Violations};
use hookplane_model::{
    Connector, ConnectorSpec, ConnectorToken, HashedField, InboundAuth, IssuedCredential, OAuth2Grant, OutboundAuth,
    PreviousSecret, SecretField, SecretSlot, Timestamp, TokenKind,
};

use crate::crypto::{CredentialKind, SecretBox, hash_credential, mint, new_id};
use crate::error::{ApiError, ApiResult};

/// Seals plaintext secrets and hashes compared values of `spec` in place,
/// and checks that every secret the spec needs is present.
pub fn protect(
    spec: &mut ConnectorSpec,
    secret_box: &SecretBox,
    organization_id: &str,
    connector_id: &str,
) -> Result<(), ValidationError> {
    let mut v = Violations::default();
    spec.update_secrets(|slot, secret| match secret {
        SecretField::Plain(text) => {
            SecretField::Sealed(secret_box.seal(&slot.owner(organization_id, connector_id), text.as_bytes()))
        }
        other => other.clone(),
    });
    let refresh_grant =
        matches!(&spec.perform.auth, OutboundAuth::OAuth2(oauth) if oauth.grant == OAuth2Grant::RefreshToken);
    for (slot, secret) in spec.secrets() {
        let required = match slot {
            SecretSlot::Signature => "is required when signature verification is configured",
            SecretSlot::PreviousSignature => "is required during the overlap of a rotation",
            SecretSlot::OAuth2ClientSecret => "is required",
            SecretSlot::OAuth2RefreshToken if refresh_grant => "is required for the refresh_token grant",
            SecretSlot::OAuth2RefreshToken => continue,
        };
        if !secret.is_set() {
            v.add(format!("connector.{}", slot.path()), required);
        }
    }
    for (i, header) in spec.auth.custom_headers.iter_mut().enumerate() {
        match &header.value {
            HashedField::Plain(text) => header.value = HashedField::Sha256(hash_credential(text)),
            HashedField::Sha256(_) => {}
            HashedField::Absent => v.add(format!("connector.auth.custom_headers[{i}].value"), "is required"),
        }
    }
    v.finish(())
}

/// `stored`'s spec with `secret` as its signing secret (in plaintext, for
/// [`protect`] to seal). With an `overlap_end`, the replaced secret is
/// opened and kept, to be sealed again as the previous secret: a sealed
/// value is bound to its field and would not open in another. There is
/// one previous slot: rotating again during an overlap ends the older one.
pub fn rotate_signing_secret(
    stored: &Connector,
    secret: &str,
    overlap_end: Option<Timestamp>,
    secret_box: &SecretBox,
) -> ApiResult<ConnectorSpec> {
    let mut spec = stored.spec.clone();
    let Some(signature) = spec.signature.as_mut() else {
        return Err(ApiError::FailedPrecondition(
            "the connector does not verify signatures; set connector.signature with UpdateConnector first",
        ));
    };
    if !(8..=512).contains(&secret.len()) {
        return Err(ApiError::invalid("secret", "must be 8 to 512 bytes"));
    }
    if let Err(reason) = signature.preset.signing_key(secret) {
        return Err(ApiError::invalid("secret", format!("{reason} (the connector's preset)")));
    }
    signature.previous = match (overlap_end, &signature.secret) {
        (None, _) | (_, SecretField::Absent) => None,
        (Some(expire_time), SecretField::Sealed(sealed)) => {
            let owner = SecretSlot::Signature.owner(&stored.organization_id, &stored.id);
            let opened = secret_box.open_text(&owner, sealed).map_err(|_| {
                ApiError::FailedPrecondition(
                    "the current signing secret cannot be opened, so it cannot overlap; rotate without an overlap",
                )
            })?;
            // Sealed again by `protect`, for the previous secret's field.
            Some(PreviousSecret { secret: SecretField::Plain(opened.to_string()), expire_time })
        }
        (Some(expire_time), SecretField::Plain(plain)) => {
            Some(PreviousSecret { secret: SecretField::Plain(plain.clone()), expire_time })
        }
    };
    signature.secret = SecretField::Plain(secret.to_owned());
    Ok(spec)
}

/// Mints one credential per kind, expiring after `ttl_secs` if set.
pub fn mint_tokens(
    kinds: &[TokenKind],
    auth: &InboundAuth,
    now: Timestamp,
) -> (Vec<ConnectorToken>, Vec<IssuedCredential>) {
    let lifetime = auth.token_ttl_secs.map(|secs| now + Duration::seconds(secs.min(i64::MAX as u64 / 1000) as i64));
    // Whichever end comes first.
    let expire_time = match (lifetime, auth.token_expire_time) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    kinds
        .iter()
        .map(|&kind| {
            let minted = mint(CredentialKind::ConnectorToken);
            let token = ConnectorToken {
                id: new_id("tok_"),
                kind,
                hash: minted.hash,
                hint: minted.hint,
                create_time: now,
                expire_time,
                superseded: false,
            };
            let issued = IssuedCredential { kind, token: minted.plaintext.to_string(), expire_time };
            (token, issued)
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use hookplane_model::CustomHeader;

    use super::*;

    fn secret_box() -> SecretBox {
        SecretBox::new(&[7; 32])
    }

    #[test]
    fn custom_header_values_are_hashed_and_required() {
        let mut spec = sample_spec();
        spec.auth.custom_headers = vec![
            CustomHeader { name: "x-a".into(), value: HashedField::Plain("v".into()) },
            CustomHeader { name: "x-b".into(), value: HashedField::Absent },
        ];
        let err = protect(&mut spec, &secret_box(), "org", "con").unwrap_err();
        assert_eq!(err.violations[0].field, "connector.auth.custom_headers[1].value");
        assert_eq!(spec.auth.custom_headers[0].value, HashedField::Sha256(hash_credential("v")));
    }

    #[test]
    fn minted_tokens_expire_at_the_first_of_the_ttl_and_the_date() {
        let now = hookplane_model::now();
        let ttl = InboundAuth { token_ttl_secs: Some(60), ..InboundAuth::default() };
        let (tokens, issued) = mint_tokens(&[TokenKind::Bearer, TokenKind::ApiKey], &ttl, now);
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens[0].expire_time, Some(now + Duration::seconds(60)));
        assert_eq!(tokens[1].hash, hash_credential(&issued[1].token));
        assert!(issued[0].token.starts_with("hpt_"));
        let soon = now + Duration::seconds(30);
        let both = InboundAuth { token_expire_time: Some(soon), ..ttl.clone() };
        assert_eq!(mint_tokens(&[TokenKind::Bearer], &both, now).0[0].expire_time, Some(soon), "the date first");
        let date = InboundAuth { token_expire_time: Some(soon), ..InboundAuth::default() };
        assert_eq!(mint_tokens(&[TokenKind::Bearer], &date, now).1[0].expire_time, Some(soon));
        assert_eq!(mint_tokens(&[TokenKind::Bearer], &InboundAuth::default(), now).0[0].expire_time, None);
    }

    fn sample_spec() -> ConnectorSpec {
        serde_json::from_value(serde_json::json!({
            "display_name": "x", "description": "", "enabled": true, "async_mode": false,
            "auth": {"bearer_token": true, "secret_token": false, "api_key": null, "basic": null,
                     "custom_headers": [], "token_ttl_secs": null},
            "allowed_origins": [], "signature": null, "condition": null, "lookup": null, "mappings": [],
            "perform": {"method": "POST", "url": "https://example.com", "headers": [], "query": [],
                        "body_type": "json", "body": [], "raw_body": "", "raw_content_type": "",
                        "skip_null_values": false, "auth": "none", "timeout_ms": 10000,
                        "retry": {"max_attempts": 3, "initial_backoff_ms": 500}},
            "sample_payload": null
        }))
        .unwrap()
    }
}
