//! Who is calling: admin API keys, the operator key, and what each may do
//! (SPEC §2).
//!
//! Invariants:
//! - Keys are looked up by SHA-256 only; plaintext never leaves this module.
//! - Org-scoped calls use the caller's own organization, never one named in
//!   the request, so a key of organization A cannot even name B's resources:
//!   lookups by id simply miss (NOT_FOUND, the same as a missing id).

use hookplane_model as model;
use hookplane_model::Role;
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;

use crate::crypto::hash_credential;
use crate::error::ApiError;
use crate::store::Store;

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Holder of the operator key: manages organizations and plans.
    Operator,
    /// Holder of an organization's admin API key.
    Member { organization_id: String, role: Role, key_id: String },
}

impl Caller {
    /// The organization whose resources this caller works on.
    pub fn organization(&self) -> Result<&str, ApiError> {
        match self {
            Caller::Member { organization_id, .. } => Ok(organization_id),
            Caller::Operator => Err(ApiError::PermissionDenied(
                "the operator key manages organizations, plans and their first API keys; \
                 use an organization's API key for its resources",
            )),
        }
    }

    /// The organization, if the caller may change its resources.
    pub fn writable_organization(&self) -> Result<&str, ApiError> {
        match self {
            Caller::Member { role: Role::Viewer, .. } => {
                Err(ApiError::PermissionDenied("this API key has the viewer role, which is read-only"))
            }
            other => other.organization(),
        }
    }

    /// Succeeds for the operator only.
    pub fn require_operator(&self, what: &'static str) -> Result<(), ApiError> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Member { .. } => Err(ApiError::PermissionDenied(what)),
        }
    }

    /// Whether the caller may read organization `id`.
    pub fn can_see_organization(&self, id: &str) -> bool {
        match self {
            Caller::Operator => true,
            Caller::Member { organization_id, .. } => organization_id == id,
        }
    }
}

/// Resolves callers from call metadata.
#[derive(Clone, Debug)]
pub struct Authenticator {
    store: Store,
    /// SHA-256 of the operator key; `None` disables operator access.
    operator_key_hash: Option<[u8; 32]>,
}

impl Authenticator {
    /// `operator_key_hash` is the lowercase hex SHA-256 of the operator key.
    pub fn new(store: Store, operator_key_hash: Option<&str>) -> Authenticator {
        let operator_key_hash = operator_key_hash
            .and_then(|h| hex::decode(h.trim()).ok())
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok());
        Authenticator { store, operator_key_hash }
    }

    /// The caller of a request with `metadata`.
    pub async fn authenticate(&self, metadata: &MetadataMap) -> Result<Caller, ApiError> {
        const MISSING: &str = "send an API key as `authorization: Bearer <key>` metadata";
        let value = metadata.get("authorization").ok_or(ApiError::Unauthenticated(MISSING))?;
        let value = value.to_str().map_err(|_| ApiError::Unauthenticated(MISSING))?;
        let key = bearer_token(value).ok_or(ApiError::Unauthenticated(MISSING))?;
        let hash = hash_credential(key);
        if let Some(operator) = &self.operator_key_hash {
            let given = hex::decode(&hash).unwrap_or_default();
            if bool::from(given.as_slice().ct_eq(operator)) {
                return Ok(Caller::Operator);
            }
        }
        const REJECTED: &str = "the API key is unknown, deleted or expired";
        let found = self.store.find_api_key_by_hash(&hash).await?;
        let key = found.ok_or(ApiError::Unauthenticated(REJECTED))?;
        if key.expire_time.is_some_and(|t| t <= model::now()) {
            return Err(ApiError::Unauthenticated(REJECTED));
        }
        Ok(Caller::Member { organization_id: key.organization_id, role: key.role, key_id: key.id })
    }
}

/// The token of an `authorization: Bearer <token>` value (scheme case-blind).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values_are_parsed_strictly() {
        assert_eq!(bearer_token("Bearer hpk_x"), Some("hpk_x"));
        assert_eq!(bearer_token("bearer  hpk_x "), Some("hpk_x"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("hpk_x"), None);
    }

    #[test]
    fn viewers_cannot_write_and_operators_have_no_organization() {
        let viewer = Caller::Member { organization_id: "org_a".into(), role: Role::Viewer, key_id: "k".into() };
        assert_eq!(viewer.organization().unwrap(), "org_a");
        assert!(matches!(viewer.writable_organization(), Err(ApiError::PermissionDenied(_))));
        assert!(Caller::Operator.organization().is_err());
        assert!(viewer.can_see_organization("org_a") && !viewer.can_see_organization("org_b"));
    }
}
