//! `OrganizationService`: the operator creates organizations and sets their
//! plans; members read and edit their own.

use hookplane::api::v1::{self as api, organization_service_server::OrganizationService};
use hookplane_convert as convert;
use hookplane_model as model;
use hookplane_model::{Organization, OrganizationSpec};
use tonic::{Request, Response, Status};

use super::{SharedCore, check_request_id, expected_revision, required};
use crate::auth::Caller;
use crate::crypto::new_id;
use crate::error::{ApiError, ApiResult};
use crate::store::StoreError;

/// Idempotency scope of operator calls, which have no organization.
const OPERATOR_SCOPE: &str = "_operator";

/// Serves `hookplane.v1.OrganizationService`.
#[derive(Debug, Clone)]
pub struct OrganizationApi {
    core: SharedCore,
}

impl OrganizationApi {
    pub fn new(core: SharedCore) -> OrganizationApi {
        OrganizationApi { core }
    }

    /// Checks that `spec.plan` names a stored plan, defaulting it when empty.
    async fn resolve_plan(&self, spec: &mut OrganizationSpec) -> ApiResult<()> {
        if spec.plan.is_empty() {
            spec.plan = self.core.default_plan.clone();
        }
        match self.core.store.get_plan(&spec.plan).await {
            Ok(_) => Ok(()),
            Err(StoreError::NotFound(_)) => Err(ApiError::invalid(
                "organization.plan",
                format!("no plan named `{}`; list plans with PlanService.ListPlans", spec.plan),
            )),
            Err(err) => Err(err.into()),
        }
    }

    async fn create(&self, request: Request<api::CreateOrganizationRequest>) -> ApiResult<api::Organization> {
        let caller = self.core.caller(&request).await?;
        caller.require_operator("only the operator key can create organizations")?;
        let req = request.get_ref();
        check_request_id(&req.request_id)?;
        let mut spec =
            convert::organization_spec_from_api(required(req.organization.as_ref(), "organization")?, "organization")?;
        self.resolve_plan(&mut spec).await?;
        let now = model::now();
        let org = Organization {
            id: new_id("org_"),
            display_name: spec.display_name,
            plan: spec.plan,
            admin_emails: spec.admin_emails,
            create_time: now,
            update_time: now,
            revision: 1,
        };
        let response = convert::organization_to_api(&org);
        let key = self.core.idempotency_key(OPERATOR_SCOPE, "CreateOrganization", &req.request_id, req, &response);
        let creation = self.core.store.create_organization(&org, key.as_ref()).await?;
        self.core.settle(creation, key.as_ref(), response)
    }

    async fn get(&self, request: Request<api::GetOrganizationRequest>) -> ApiResult<api::Organization> {
        let caller = self.core.caller(&request).await?;
        let id = &request.get_ref().id;
        if !caller.can_see_organization(id) {
            return Err(StoreError::NotFound("organization").into());
        }
        Ok(convert::organization_to_api(&self.core.store.get_organization(id).await?))
    }

    async fn list(&self, request: Request<api::ListOrganizationsRequest>) -> ApiResult<api::ListOrganizationsResponse> {
        let caller = self.core.caller(&request).await?;
        caller.require_operator(
            "only the operator key can list organizations; an API key reads its own with GetOrganization",
        )?;
        let req = request.get_ref();
        let page = self.core.pages.parse("organizations", "", req.page_size, &req.page_token)?;
        let mut rows = self.core.store.list_organizations(&page.cursor, page.size + 1).await?;
        let next_page_token = self.core.pages.next_token("organizations", "", &mut rows, page.size, |o| o.id.clone());
        Ok(api::ListOrganizationsResponse {
            organizations: rows.iter().map(convert::organization_to_api).collect(),
            next_page_token,
        })
    }

    async fn update(&self, request: Request<api::UpdateOrganizationRequest>) -> ApiResult<api::Organization> {
        let caller = self.core.caller(&request).await?;
        let req = request.get_ref();
        let patch = required(req.organization.as_ref(), "organization")?;
        if !caller.can_see_organization(&patch.id) {
            return Err(StoreError::NotFound("organization").into());
        }
        if matches!(caller, Caller::Member { .. }) {
            caller.writable_organization()?;
        }
        let etag = expected_revision(&patch.etag, "organization.etag")?;
        let stored = self.core.store.get_organization(&patch.id).await?;
        if etag.is_some_and(|e| e != stored.revision) {
            return Err(StoreError::Conflict("organization").into());
        }
        let mut spec = convert::merge_organization_update(&stored, patch, req.update_mask.as_ref())?;
        if spec.plan != stored.plan {
            caller.require_operator("only the operator key can change an organization's plan")?;
            self.resolve_plan(&mut spec).await?;
        }
        let next = Organization {
            display_name: spec.display_name,
            plan: spec.plan,
            admin_emails: spec.admin_emails,
            update_time: model::now(),
            ..stored.clone()
        };
        Ok(convert::organization_to_api(&self.core.store.update_organization(&next, stored.revision).await?))
    }
}

#[tonic::async_trait]
impl OrganizationService for OrganizationApi {
    async fn create_organization(
        &self,
        r: Request<api::CreateOrganizationRequest>,
    ) -> Result<Response<api::Organization>, Status> {
        Ok(Response::new(self.create(r).await?))
    }

    async fn get_organization(
        &self,
        r: Request<api::GetOrganizationRequest>,
    ) -> Result<Response<api::Organization>, Status> {
        Ok(Response::new(self.get(r).await?))
    }

    async fn list_organizations(
        &self,
        r: Request<api::ListOrganizationsRequest>,
    ) -> Result<Response<api::ListOrganizationsResponse>, Status> {
        Ok(Response::new(self.list(r).await?))
    }

    async fn update_organization(
        &self,
        r: Request<api::UpdateOrganizationRequest>,
    ) -> Result<Response<api::Organization>, Status> {
        Ok(Response::new(self.update(r).await?))
    }
}
