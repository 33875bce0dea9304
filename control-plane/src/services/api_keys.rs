//! `ApiKeyService`: admin API keys. The operator mints an organization's
//! first key; admins manage their own organization's keys.

use hookplane::api::v1::{self as api, api_key_service_server::ApiKeyService};
use hookplane_convert as convert;
use hookplane_model as model;
use hookplane_model::ApiKey;
use tonic::{Request, Response, Status};

use super::{SharedCore, check_request_id, required};
use crate::auth::Caller;
use crate::crypto::{CredentialKind, mint, new_id};
use crate::error::{ApiError, ApiResult};
use crate::store::StoreError;

/// Serves `hookplane.v1.ApiKeyService`.
#[derive(Debug, Clone)]
pub struct ApiKeyApi {
    core: SharedCore,
}

impl ApiKeyApi {
    pub fn new(core: SharedCore) -> ApiKeyApi {
        ApiKeyApi { core }
    }

    /// The organization a key call works on: the member's own (a request
    /// naming another is answered as if it did not exist), or the one the
    /// operator names.
    async fn target_organization(&self, caller: &Caller, requested: &str, write: bool) -> ApiResult<String> {
        match caller {
            Caller::Operator => {
                if requested.is_empty() {
                    return Err(ApiError::invalid("organization_id", "is required with the operator key"));
                }
                self.core.store.get_organization(requested).await?;
                Ok(requested.to_owned())
            }
            Caller::Member { organization_id, .. } => {
                if !requested.is_empty() && requested != organization_id {
                    return Err(StoreError::NotFound("organization").into());
                }
                if write {
                    caller.writable_organization()?;
                }
                Ok(organization_id.clone())
            }
        }
    }

    async fn create(&self, request: Request<api::CreateApiKeyRequest>) -> ApiResult<api::ApiKey> {
        let caller = self.core.caller(&request).await?;
        let req = request.get_ref();
        let org = self.target_organization(&caller, &req.organization_id, true).await?;
        check_request_id(&req.request_id)?;
        let spec = convert::api_key_spec_from_api(required(req.api_key.as_ref(), "api_key")?, "api_key")?;
        let minted = mint(CredentialKind::ApiKey);
        let key = ApiKey {
            id: new_id("key_"),
            organization_id: org.clone(),
            display_name: spec.display_name,
            role: spec.role,
            key_hint: minted.hint,
            expire_time: spec.expire_time,
            create_time: model::now(),
        };
        let response = convert::api_key_to_api(&key, Some(&minted.plaintext));
        let idem = self.core.idempotency_key(&org, "CreateApiKey", &req.request_id, req, &response);
        let creation = self.core.store.create_api_key(&key, &minted.hash, idem.as_ref()).await?;
        self.core.settle(creation, idem.as_ref(), response)
    }

    async fn list(&self, request: Request<api::ListApiKeysRequest>) -> ApiResult<api::ListApiKeysResponse> {
        let caller = self.core.caller(&request).await?;
        let req = request.get_ref();
        let org = self.target_organization(&caller, &req.organization_id, false).await?;
        let page = self.core.pages.parse("api_keys", &org, req.page_size, &req.page_token)?;
        let mut rows = self.core.store.list_api_keys(&org, &page.cursor, page.size + 1).await?;
        let next_page_token = self.core.pages.next_token("api_keys", &org, &mut rows, page.size, |k| k.id.clone());
        Ok(api::ListApiKeysResponse {
            api_keys: rows.iter().map(|k| convert::api_key_to_api(k, None)).collect(),
            next_page_token,
        })
    }

    async fn delete(&self, request: Request<api::DeleteApiKeyRequest>) -> ApiResult<()> {
        let caller = self.core.caller(&request).await?;
        let req = request.get_ref();
        let org = self.target_organization(&caller, &req.organization_id, true).await?;
        Ok(self.core.store.delete_api_key(&org, &req.id).await?)
    }
}

#[tonic::async_trait]
impl ApiKeyService for ApiKeyApi {
    async fn create_api_key(&self, r: Request<api::CreateApiKeyRequest>) -> Result<Response<api::ApiKey>, Status> {
        Ok(Response::new(self.create(r).await?))
    }

    async fn list_api_keys(
        &self,
        r: Request<api::ListApiKeysRequest>,
    ) -> Result<Response<api::ListApiKeysResponse>, Status> {
        Ok(Response::new(self.list(r).await?))
    }

    async fn delete_api_key(&self, r: Request<api::DeleteApiKeyRequest>) -> Result<Response<()>, Status> {
        Ok(Response::new(self.delete(r).await?))
    }
}
