//! `NodeService`: the data-plane fleet as the control plane sees it. Nodes
//! are shared infrastructure, so any authenticated caller may list them;
//! they hold no organization's data.

use hookplane::api::v1::{self as api, node_service_server::NodeService};
use hookplane_convert as convert;
use tonic::{Request, Response, Status};

use super::SharedCore;
use crate::error::ApiResult;

/// Serves `hookplane.v1.NodeService`.
#[derive(Debug, Clone)]
pub struct NodeApi {
    core: SharedCore,
}

impl NodeApi {
    pub fn new(core: SharedCore) -> NodeApi {
        NodeApi { core }
    }

    async fn list(&self, request: Request<api::ListNodesRequest>) -> ApiResult<api::ListNodesResponse> {
        self.core.caller(&request).await?;
        let req = request.get_ref();
        let page = self.core.pages.parse("nodes", "", req.page_size, &req.page_token)?;
        let current = self.core.store.config_version().await?;
        let mut rows = self.core.store.list_nodes(&page.cursor, page.size + 1).await?;
        let next_page_token = self.core.pages.next_token("nodes", "", &mut rows, page.size, |n| n.id.clone());
        Ok(api::ListNodesResponse {
            nodes: rows.iter().map(|n| convert::node_to_api(n, current)).collect(),
            next_page_token,
            current_config_version: current,
        })
    }
}

#[tonic::async_trait]
impl NodeService for NodeApi {
    async fn list_nodes(&self, r: Request<api::ListNodesRequest>) -> Result<Response<api::ListNodesResponse>, Status> {
        Ok(Response::new(self.list(r).await?))
    }
}
