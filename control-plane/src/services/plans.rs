//! `PlanService`: rate limits and features per plan (SPEC §9). Everyone can
//! read plans; only the operator changes them.

use hookplane::api::v1::{self as api, plan_service_server::PlanService};
use hookplane_convert as convert;
use tonic::{Request, Response, Status};

use super::{SharedCore, expected_revision, required};
use crate::error::ApiResult;
use crate::store::StoreError;

/// Serves `hookplane.v1.PlanService`.
#[derive(Debug, Clone)]
pub struct PlanApi {
    core: SharedCore,
}

impl PlanApi {
    pub fn new(core: SharedCore) -> PlanApi {
        PlanApi { core }
    }

    async fn create(&self, request: Request<api::CreatePlanRequest>) -> ApiResult<api::Plan> {
        let caller = self.core.caller(&request).await?;
        caller.require_operator("only the operator key can create plans")?;
        let plan = convert::plan_from_api(required(request.get_ref().plan.as_ref(), "plan")?, "plan")?;
        Ok(convert::plan_to_api(&self.core.store.create_plan(&plan).await?))
    }

    async fn get(&self, request: Request<api::GetPlanRequest>) -> ApiResult<api::Plan> {
        self.core.caller(&request).await?;
        Ok(convert::plan_to_api(&self.core.store.get_plan(&request.get_ref().name).await?))
    }

    async fn list(&self, request: Request<api::ListPlansRequest>) -> ApiResult<api::ListPlansResponse> {
        self.core.caller(&request).await?;
        let plans = self.core.store.list_plans().await?;
        Ok(api::ListPlansResponse { plans: plans.iter().map(convert::plan_to_api).collect() })
    }

    async fn update(&self, request: Request<api::UpdatePlanRequest>) -> ApiResult<api::Plan> {
        let caller = self.core.caller(&request).await?;
        caller.require_operator("only the operator key can change plans")?;
        let req = request.get_ref();
        let patch = required(req.plan.as_ref(), "plan")?;
        let etag = expected_revision(&patch.etag, "plan.etag")?;
        let stored = self.core.store.get_plan(&patch.name).await?;
        if etag.is_some_and(|e| e != stored.revision) {
            return Err(StoreError::Conflict("plan").into());
        }
        let next = convert::merge_plan_update(&stored, patch, req.update_mask.as_ref())?;
        Ok(convert::plan_to_api(&self.core.store.update_plan(&next, stored.revision).await?))
    }
}

#[tonic::async_trait]
impl PlanService for PlanApi {
    async fn create_plan(&self, r: Request<api::CreatePlanRequest>) -> Result<Response<api::Plan>, Status> {
        Ok(Response::new(self.create(r).await?))
    }

    async fn get_plan(&self, r: Request<api::GetPlanRequest>) -> Result<Response<api::Plan>, Status> {
        Ok(Response::new(self.get(r).await?))
    }

    async fn list_plans(&self, r: Request<api::ListPlansRequest>) -> Result<Response<api::ListPlansResponse>, Status> {
        Ok(Response::new(self.list(r).await?))
    }

    async fn update_plan(&self, r: Request<api::UpdatePlanRequest>) -> Result<Response<api::Plan>, Status> {
        Ok(Response::new(self.update(r).await?))
    }
}
