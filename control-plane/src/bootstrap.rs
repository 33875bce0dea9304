//! First-start setup for `hookplane dev`: a default organization and its
//! first admin API key.

use hookplane_model as model;
use hookplane_model::{ApiKey, Organization, Role};
use zeroize::Zeroizing;

use crate::crypto::{CredentialKind, mint, new_id};
use crate::store::{Store, StoreError};

/// What bootstrap created.
pub struct Bootstrapped {
    pub organization: Organization,
    /// The admin key's plaintext; shown once, then only its hash exists.
    pub admin_key: Zeroizing<String>,
}

/// Creates the default organization and an admin key when the store has no
/// organization yet; returns `None` when it already has one.
pub async fn default_organization(
    store: &Store,
    display_name: &str,
    plan: &str,
) -> Result<Option<Bootstrapped>, StoreError> {
    if !store.list_organizations("", 1).await?.is_empty() {
        return Ok(None);
    }
    let now = model::now();
    let organization = Organization {
        id: new_id("org_"),
        display_name: display_name.to_owned(),
        plan: plan.to_owned(),
        admin_emails: Vec::new(),
        create_time: now,
        update_time: now,
        revision: 1,
    };
    store.create_organization(&organization, None).await?;
    let minted = mint(CredentialKind::ApiKey);
    let key = ApiKey {
        id: new_id("key_"),
        organization_id: organization.id.clone(),
        display_name: "dev admin key".to_owned(),
        role: Role::Admin,
        key_hint: minted.hint,
        expire_time: None,
        create_time: now,
    };
    store.create_api_key(&key, &minted.hash, None).await?;
    Ok(Some(Bootstrapped { organization, admin_key: minted.plaintext }))
}
