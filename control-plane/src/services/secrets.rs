//! `SecretService`: write-only organization secrets (`$secret.NAME`).

use hookplane::api::v1::{self as api, secret_service_server::SecretService};
use hookplane_convert as convert;
use hookplane_model as model;
use hookplane_model::{Secret, SecretField};
use tonic::{Request, Response, Status};

use super::{SharedCore, check_request_id, expected_revision, required, required_id};
use crate::crypto::{SecretBox, secret_owner};
use crate::error::ApiResult;
use crate::store::StoreError;

/// Serves `hookplane.v1.SecretService`.
#[derive(Debug, Clone)]
pub struct SecretApi {
    core: SharedCore,
}

/// Seals a fresh value for its owner; sealed or absent values stay as they are.
fn seal_value(value: SecretField, secret_box: &SecretBox, org: &str, name: &str) -> SecretField {
    match value {
        SecretField::Plain(text) => SecretField::Sealed(secret_box.seal(&secret_owner(org, name), text.as_bytes())),
        other => other,
    }
}

impl SecretApi {
    pub fn new(core: SharedCore) -> SecretApi {
        SecretApi { core }
    }

    async fn create(&self, request: Request<api::CreateSecretRequest>) -> ApiResult<api::Secret> {
        let caller = self.core.caller(&request).await?;
        let org = caller.writable_organization()?;
        let req = request.get_ref();
        check_request_id(&req.request_id)?;
        let spec = convert::secret_spec_from_api(required(req.secret.as_ref(), "secret")?, "secret")?;
        let now = model::now();
        let secret = Secret {
            organization_id: org.to_owned(),
            value: seal_value(spec.value, &self.core.secret_box, org, &spec.name),
            name: spec.name,
            description: spec.description,
            create_time: now,
            update_time: now,
            revision: 1,
        };
        let response = convert::secret_to_api(&secret);
        let key = self.core.idempotency_key(org, "CreateSecret", &req.request_id, req, &response);
        let creation = self.core.store.create_secret(&secret, key.as_ref()).await?;
        self.core.settle(creation, key.as_ref(), response)
    }

    async fn get(&self, request: Request<api::GetSecretRequest>) -> ApiResult<api::Secret> {
        let caller = self.core.caller(&request).await?;
        let name = required_id(&request.get_ref().name, "name")?;
        let secret = self.core.store.get_secret(caller.organization()?, name).await?;
        Ok(convert::secret_to_api(&secret))
    }

    async fn list(&self, request: Request<api::ListSecretsRequest>) -> ApiResult<api::ListSecretsResponse> {
        let caller = self.core.caller(&request).await?;
        let org = caller.organization()?;
        let req = request.get_ref();
        let page = self.core.pages.parse("secrets", org, req.page_size, &req.page_token)?;
        let mut rows = self.core.store.list_secrets(org, &page.cursor, page.size + 1).await?;
        let next_page_token = self.core.pages.next_token("secrets", org, &mut rows, page.size, |s| s.name.clone());
        Ok(api::ListSecretsResponse { secrets: rows.iter().map(convert::secret_to_api).collect(), next_page_token })
    }

    async fn update(&self, request: Request<api::UpdateSecretRequest>) -> ApiResult<api::Secret> {
        let caller = self.core.caller(&request).await?;
        let org = caller.writable_organization()?;
        let req = request.get_ref();
        let patch = required(req.secret.as_ref(), "secret")?;
        let etag = expected_revision(&patch.etag, "secret.etag")?;
        let stored = self.core.store.get_secret(org, required_id(&patch.name, "secret.name")?).await?;
        if etag.is_some_and(|e| e != stored.revision) {
            return Err(StoreError::Conflict("secret").into());
        }
        let spec = convert::merge_secret_update(&stored, patch, req.update_mask.as_ref())?;
        let value = match spec.value {
            SecretField::Absent => stored.value.clone(),
            fresh => seal_value(fresh, &self.core.secret_box, org, &stored.name),
        };
        let next = Secret { value, description: spec.description, update_time: model::now(), ..stored.clone() };
        let updated = self.core.store.update_secret(&next, stored.revision).await?;
        Ok(convert::secret_to_api(&updated))
    }

    async fn delete(&self, request: Request<api::DeleteSecretRequest>) -> ApiResult<()> {
        let caller = self.core.caller(&request).await?;
        let org = caller.writable_organization()?;
        let req = request.get_ref();
        let name = required_id(&req.name, "name")?;
        let expected = expected_revision(&req.etag, "etag")?;
        Ok(self.core.store.delete_secret(org, name, expected).await?)
    }
}

#[tonic::async_trait]
impl SecretService for SecretApi {
    async fn create_secret(&self, r: Request<api::CreateSecretRequest>) -> Result<Response<api::Secret>, Status> {
        Ok(Response::new(self.create(r).await?))
    }

    async fn get_secret(&self, r: Request<api::GetSecretRequest>) -> Result<Response<api::Secret>, Status> {
        Ok(Response::new(self.get(r).await?))
    }

    async fn list_secrets(
        &self,
        r: Request<api::ListSecretsRequest>,
    ) -> Result<Response<api::ListSecretsResponse>, Status> {
        Ok(Response::new(self.list(r).await?))
    }

    async fn update_secret(&self, r: Request<api::UpdateSecretRequest>) -> Result<Response<api::Secret>, Status> {
        Ok(Response::new(self.update(r).await?))
    }

    async fn delete_secret(&self, r: Request<api::DeleteSecretRequest>) -> Result<Response<()>, Status> {
        Ok(Response::new(self.delete(r).await?))
    }
}
