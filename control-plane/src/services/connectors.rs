//! `ConnectorService`: connector CRUD, activation, and rotation of tokens
//! and signing secrets.

use chrono::Duration;
use hookplane::api::v1::{self as api, connector_service_server::ConnectorService};
use hookplane_convert::{self as convert, Violations};
use hookplane_model as model;
use hookplane_model::{Connector, InboundAuth, IssuedCredential, Revision, Timestamp};
use tonic::{Request, Response, Status};

use super::connector_secrets::{mint_tokens, protect, rotate_signing_secret};
use super::dry_runs::{RunRequest, dry_run, live_run, parse_json};
use super::{SharedCore, check_request_id, expected_revision, required, required_id};
use crate::crypto::{new_id, new_signing_secret};
use crate::error::{ApiError, ApiResult};
use crate::store::{StoreError, TokenChanges};

/// The longest grace period (or overlap) a rotation may give the replaced
/// credentials (or signing secret).
const MAX_GRACE_MS: u64 = 30 * 24 * 3600 * 1000;
/// Bytes of a live run's payload: a trigger body's default limit, and it
/// travels on the node's config stream.
const MAX_LIVE_PAYLOAD: usize = 1 << 20;
/// Attempts of an update without an etag before giving up on contention.
const UPDATE_ATTEMPTS: usize = 5;

/// Serves `hookplane.v1.ConnectorService`.
#[derive(Debug, Clone)]
pub struct ConnectorApi {
    core: SharedCore,
}

impl ConnectorApi {
    pub fn new(core: SharedCore) -> ConnectorApi {
        ConnectorApi { core }
    }

    async fn create(&self, request: Request<api::CreateConnectorRequest>) -> ApiResult<api::Connector> {
        let caller = self.core.caller(&request).await?;
        let org = caller.writable_organization()?;
        let req = request.get_ref();
        check_request_id(&req.request_id)?;
        let mut spec = convert::connector_from_api(required(req.connector.as_ref(), "connector")?, "connector")?;
        let id = new_id("con_");
        protect(&mut spec, &self.core.secret_box, org, &id)?;
        let now = model::now();
        future_token_expiry(&spec.auth, None, now)?;
        let (tokens, issued) = mint_tokens(&spec.auth.token_kinds(), &spec.auth, now);
        let connector = Connector {
            id,
            organization_id: org.to_owned(),
            spec,
            tokens,
            create_time: now,
            update_time: now,
            revision: 1,
        };
        let mut response = convert::connector_to_api(&connector, &issued);
        response.integration_examples = self.examples_of(&connector, &issued, "").1;
        let key = self.core.idempotency_key(org, "CreateConnector", &req.request_id, req, &response);
        let creation = self.core.store.create_connector(&connector, key.as_ref()).await?;
        self.core.settle(creation, key.as_ref(), response)
    }

    async fn get(&self, request: Request<api::GetConnectorRequest>) -> ApiResult<api::Connector> {
        let caller = self.core.caller(&request).await?;
        let id = required_id(&request.get_ref().id, "id")?;
        let org = caller.organization()?;
        let connector = self.core.store.get_connector(org, id).await?;
        let mut listed = vec![convert::connector_to_api(&connector, &[])];
        self.with_rollouts(org, &mut listed).await?;
        Ok(listed.remove(0))
    }

    /// Fills in each connector's rollout: one read of the nodes, one of the
    /// connectors' versions.
    async fn with_rollouts(&self, org: &str, connectors: &mut [api::Connector]) -> ApiResult<()> {
        let applied = self.core.store.connected_node_versions().await?;
        let ids: Vec<&str> = connectors.iter().map(|c| c.id.as_str()).collect();
        let versions = self.core.store.connector_config_versions(org, &ids).await?;
        for connector in connectors {
            if let Some(version) = versions.get(&connector.id) {
                connector.rollout = Some(convert::rollout_to_api(&model::Rollout::among(*version, &applied)));
            }
        }
        Ok(())
    }

    async fn list(&self, request: Request<api::ListConnectorsRequest>) -> ApiResult<api::ListConnectorsResponse> {
        let caller = self.core.caller(&request).await?;
        let org = caller.organization()?;
        let req = request.get_ref();
        let page = self.core.pages.parse("connectors", org, req.page_size, &req.page_token)?;
        let mut rows = self.core.store.list_connectors(org, &page.cursor, page.size + 1).await?;
        let next_page_token = self.core.pages.next_token("connectors", org, &mut rows, page.size, |c| c.id.clone());
        let mut connectors: Vec<_> = rows.iter().map(|c| convert::connector_to_api(c, &[])).collect();
        self.with_rollouts(org, &mut connectors).await?;
        Ok(api::ListConnectorsResponse { connectors, next_page_token })
    }

    async fn update(&self, request: Request<api::UpdateConnectorRequest>) -> ApiResult<api::Connector> {
        let caller = self.core.caller(&request).await?;
        let org = caller.writable_organization()?;
        let req = request.get_ref();
        let patch = required(req.connector.as_ref(), "connector")?;
        let etag = expected_revision(&patch.etag, "connector.etag")?;
        self.modify(org, &patch.id, etag, |stored| {
            let mut spec = convert::merge_connector_update(&stored.spec, patch, req.update_mask.as_ref())?;
            protect(&mut spec, &self.core.secret_box, org, &stored.id)?;
            let now = model::now();
            let (old_kinds, new_kinds) = (stored.spec.auth.token_kinds(), spec.auth.token_kinds());
            let added: Vec<_> = new_kinds.iter().copied().filter(|k| !old_kinds.contains(k)).collect();
            future_token_expiry(&spec.auth, Some(&stored.spec.auth), now)?;
            if !added.is_empty() && spec.auth.token_expire_time.is_some_and(|end| end <= now) {
                return Err(ApiError::FailedPrecondition(
                    "auth.token_expire_time has passed: the new method's credential would be expired at once; move it first",
                ));
            }
            let (insert, issued) = mint_tokens(&added, &spec.auth, now);
            let remove_kinds = old_kinds.into_iter().filter(|k| !new_kinds.contains(k)).collect();
            let changes = TokenChanges { insert, remove_kinds, supersede_at: None };
            Ok(Some((Connector { spec, update_time: now, ..stored.clone() }, changes, issued)))
        })
        .await
    }

    async fn set_enabled(&self, caller_org: &str, id: &str, enabled: bool) -> ApiResult<api::Connector> {
        self.modify(caller_org, id, None, |stored| {
            if stored.spec.enabled == enabled {
                return Ok(None);
            }
            let mut spec = stored.spec.clone();
            spec.enabled = enabled;
            Ok(Some((
                Connector { spec, update_time: model::now(), ..stored.clone() },
                TokenChanges::default(),
                Vec::new(),
            )))
        })
        .await
    }

    async fn rotate(&self, request: Request<api::RotateConnectorTokensRequest>) -> ApiResult<api::Connector> {
        let caller = self.core.caller(&request).await?;
        let org = caller.writable_organization()?;
        let req = request.get_ref();
        let grace_ms = grace_ms(req.grace_period.as_ref(), "grace_period")?;
        self.modify(org, &req.id, None, |stored| {
            let kinds = stored.spec.auth.token_kinds();
            if kinds.is_empty() {
                return Err(ApiError::FailedPrecondition(
                    "the connector has no minted credentials to rotate; enable bearer_token, secret_token, api_key or basic auth first",
                ));
            }
            let now = model::now();
            if stored.spec.auth.token_expire_time.is_some_and(|end| end <= now) {
                return Err(ApiError::FailedPrecondition(
                    "auth.token_expire_time has passed: new credentials would be expired at once; move it first",
                ));
            }
            let (insert, issued) = mint_tokens(&kinds, &stored.spec.auth, now);
            let supersede_at = Some(now + Duration::milliseconds(grace_ms as i64));
            let changes = TokenChanges { insert, remove_kinds: Vec::new(), supersede_at };
            Ok(Some((Connector { update_time: now, ..stored.clone() }, changes, issued)))
        })
        .await
    }

    async fn rotate_signing(
        &self,
        request: Request<api::RotateSigningSecretRequest>,
    ) -> ApiResult<api::RotateSigningSecretResponse> {
        let caller = self.core.caller(&request).await?;
        let org = caller.writable_organization()?;
        let req = request.get_ref();
        let overlap_ms = grace_ms(req.overlap.as_ref(), "overlap")?;
        let generated = req.secret.is_empty().then(new_signing_secret);
        let secret = generated.as_deref().map_or(req.secret.as_str(), String::as_str);
        let connector = self
            .modify(org, &req.id, None, |stored| {
                let preset = stored.spec.signature.as_ref().map(|s| s.preset);
                if generated.is_some() && preset.is_some_and(|p| !p.receiver_chooses_secret()) {
                    return Err(ApiError::FailedPrecondition(
                        "this sender issues its own signing secret (Stripe, Shopify, Slack): pass the new one it shows as `secret`",
                    ));
                }
                let now = model::now();
                let overlap_end = (overlap_ms > 0).then(|| now + Duration::milliseconds(overlap_ms as i64));
                let mut spec = rotate_signing_secret(stored, secret, overlap_end, &self.core.secret_box)?;
                protect(&mut spec, &self.core.secret_box, org, &stored.id)?;
                Ok(Some((Connector { spec, update_time: now, ..stored.clone() }, TokenChanges::default(), Vec::new())))
            })
            .await?;
        Ok(api::RotateSigningSecretResponse {
            connector: Some(connector),
            generated_secret: generated.map(|s| s.to_string()).unwrap_or_default(),
        })
    }

    /// The trigger URL and the examples calling it, with `issued` inline.
    fn examples_of(
        &self,
        connector: &Connector,
        issued: &[IssuedCredential],
        base_url: &str,
    ) -> (String, Vec<api::IntegrationExample>) {
        let base = match (base_url.trim_end_matches('/'), self.core.trigger_base_url.as_str()) {
            ("", "") => "https://hooks.example.com",
            ("", configured) => configured,
            (given, _) => given,
        };
        let url = format!("{base}{}", connector.trigger_path());
        let examples = crate::examples::integration_examples(&connector.spec, &url, issued);
        (url, examples.iter().map(convert::integration_example_to_api).collect())
    }

    async fn examples(
        &self,
        request: Request<api::GetIntegrationExamplesRequest>,
    ) -> ApiResult<api::IntegrationExamples> {
        let caller = self.core.caller(&request).await?;
        let org = caller.organization()?;
        let req = request.get_ref();
        let base_url = req.base_url.trim();
        if !base_url.is_empty() && url::Url::parse(base_url).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
            return Err(ApiError::invalid("base_url", "must be an http or https URL"));
        }
        let connector = self.core.store.get_connector(org, required_id(&req.id, "id")?).await?;
        let (trigger_url, examples) = self.examples_of(&connector, &[], base_url);
        Ok(api::IntegrationExamples { trigger_url, examples })
    }

    /// A dry run of a stored connector or a draft (SPEC §10).
    async fn test(&self, request: Request<api::TestConnectorRequest>) -> ApiResult<api::TestRun> {
        let caller = self.core.caller(&request).await?;
        let req = request.get_ref();
        let run = RunRequest {
            draft: req.draft.as_ref(),
            lookup_result: &req.lookup_result,
            send_lookup: req.send_lookup,
            live: req.live,
        };
        let org = run.organization(&caller)?;
        let spec = match run.draft()? {
            Some(draft) => draft,
            None => self.core.store.get_connector(org, required_id(&req.id, "id")?).await?.spec,
        };
        let payload = match (req.payload.as_str(), &spec.sample_payload) {
            ("", Some(sample)) => parse_json(sample, "connector.sample_payload")?,
            ("", None) => return Err(ApiError::invalid("payload", "is required: the connector has no sample_payload")),
            (text, _) => parse_json(text, "payload")?,
        };
        if req.live {
            // The text as given (or the sample), not re-serialised: that is
            // what a sender would send, and it is bounded here.
            let text = if req.payload.is_empty() {
                spec.sample_payload.clone().unwrap_or_default()
            } else {
                req.payload.clone()
            };
            if text.len() > MAX_LIVE_PAYLOAD {
                return Err(ApiError::invalid("payload", format!("at most {MAX_LIVE_PAYLOAD} bytes for a live run")));
            }
            let live = live_run(&self.core, org, &req.id, text).await?;
            return Ok(api::TestRun { live: Some(live), ..Default::default() });
        }
        let lookup = run.lookup(None)?;
        let writer = caller.writable_organization().is_ok();
        let ran = dry_run(&self.core, org, &spec, &payload, lookup, writer).await?;
        Ok(convert::test_run_to_api(&ran))
    }

    async fn delete(&self, request: Request<api::DeleteConnectorRequest>) -> ApiResult<()> {
        let caller = self.core.caller(&request).await?;
        let org = caller.writable_organization()?;
        let req = request.get_ref();
        let id = required_id(&req.id, "id")?;
        let expected = expected_revision(&req.etag, "etag")?;
        Ok(self.core.store.delete_connector(org, id, expected).await?)
    }

    /// Read-modify-write of one connector. With an etag the write happens
    /// only at that revision; without one a concurrent change makes it read
    /// again and re-apply `change`, so masked updates of different fields
    /// never overwrite each other. `change` returning `None` means nothing to
    /// do.
    async fn modify(
        &self,
        org: &str,
        id: &str,
        etag: Option<Revision>,
        change: impl Fn(&Connector) -> ApiResult<Option<(Connector, TokenChanges, Vec<IssuedCredential>)>>,
    ) -> ApiResult<api::Connector> {
        required_id(id, "id")?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let stored = self.core.store.get_connector(org, id).await?;
            if etag.is_some_and(|e| e != stored.revision) {
                return Err(StoreError::Conflict("connector").into());
            }
            let Some((next, changes, issued)) = change(&stored)? else {
                return Ok(convert::connector_to_api(&stored, &[]));
            };
            match self.core.store.update_connector(&next, stored.revision, &changes).await {
                Ok(updated) => {
                    let mut response = convert::connector_to_api(&updated, &issued);
                    if !issued.is_empty() {
                        response.integration_examples = self.examples_of(&updated, &issued, "").1;
                    }
                    return Ok(response);
                }
                Err(StoreError::Conflict(_)) if etag.is_none() && attempt < UPDATE_ATTEMPTS => continue,
                Err(err) => return Err(err.into()),
            }
        }
    }
}

/// A credential expiry date being set must lie ahead; one stored that has
/// passed may stay as it is while other fields change.
fn future_token_expiry(auth: &InboundAuth, stored: Option<&InboundAuth>, now: Timestamp) -> ApiResult<()> {
    let set = auth.token_expire_time.filter(|end| stored.is_none_or(|s| s.token_expire_time != Some(*end)));
    if set.is_some_and(|end| end <= now) {
        return Err(ApiError::invalid("connector.auth.token_expire_time", "must be in the future"));
    }
    Ok(())
}

/// A rotation's grace period or overlap in milliseconds; unset or zero: none.
fn grace_ms(period: Option<&prost_types::Duration>, field: &str) -> ApiResult<u64> {
    match period {
        Some(d) if d.seconds != 0 || d.nanos != 0 => {
            let mut v = Violations::default();
            let ms = convert::duration_from_api(d, field, MAX_GRACE_MS, &mut v);
            Ok(v.finish(ms.unwrap_or(0))?)
        }
        _ => Ok(0),
    }
}

#[tonic::async_trait]
impl ConnectorService for ConnectorApi {
    async fn create_connector(
        &self,
        r: Request<api::CreateConnectorRequest>,
    ) -> Result<Response<api::Connector>, Status> {
        Ok(Response::new(self.create(r).await?))
    }

    async fn get_connector(&self, r: Request<api::GetConnectorRequest>) -> Result<Response<api::Connector>, Status> {
        Ok(Response::new(self.get(r).await?))
    }

    async fn list_connectors(
        &self,
        r: Request<api::ListConnectorsRequest>,
    ) -> Result<Response<api::ListConnectorsResponse>, Status> {
        Ok(Response::new(self.list(r).await?))
    }

    async fn update_connector(
        &self,
        r: Request<api::UpdateConnectorRequest>,
    ) -> Result<Response<api::Connector>, Status> {
        Ok(Response::new(self.update(r).await?))
    }

    async fn delete_connector(&self, r: Request<api::DeleteConnectorRequest>) -> Result<Response<()>, Status> {
        Ok(Response::new(self.delete(r).await?))
    }

    async fn enable_connector(
        &self,
        r: Request<api::EnableConnectorRequest>,
    ) -> Result<Response<api::Connector>, Status> {
        let caller = self.core.caller(&r).await.map_err(Status::from)?;
        let org = caller.writable_organization()?;
        Ok(Response::new(self.set_enabled(org, &r.get_ref().id, true).await?))
    }

    async fn disable_connector(
        &self,
        r: Request<api::DisableConnectorRequest>,
    ) -> Result<Response<api::Connector>, Status> {
        let caller = self.core.caller(&r).await.map_err(Status::from)?;
        let org = caller.writable_organization()?;
        Ok(Response::new(self.set_enabled(org, &r.get_ref().id, false).await?))
    }

    async fn rotate_connector_tokens(
        &self,
        r: Request<api::RotateConnectorTokensRequest>,
    ) -> Result<Response<api::Connector>, Status> {
        Ok(Response::new(self.rotate(r).await?))
    }

    async fn rotate_signing_secret(
        &self,
        r: Request<api::RotateSigningSecretRequest>,
    ) -> Result<Response<api::RotateSigningSecretResponse>, Status> {
        Ok(Response::new(self.rotate_signing(r).await?))
    }

    async fn test_connector(&self, r: Request<api::TestConnectorRequest>) -> Result<Response<api::TestRun>, Status> {
        Ok(Response::new(self.test(r).await?))
    }

    async fn get_integration_examples(
        &self,
        r: Request<api::GetIntegrationExamplesRequest>,
    ) -> Result<Response<api::IntegrationExamples>, Status> {
        Ok(Response::new(self.examples(r).await?))
    }
}
