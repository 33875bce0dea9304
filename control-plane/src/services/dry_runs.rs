//! Dry runs (SPEC §10), for `TestConnector` and `ReplayEvent`: a
//! connector's spec compiled with `compile_connector`, as on save and on
//! every node, and run by `hookplane_pipeline::dry_run`, the steps nodes
//! run. Nothing is sent but, when asked for, the lookup.
//!
//! Secrets: the connector's own (signing secret, OAuth client secret)
//! are never opened here, a placeholder stands in. The organization's
//! `$secret` values the connector reads are opened for callers who may
//! write (mappings may transform them) and redacted from everything the
//! run shows; for viewers, `<secret NAME>` stands in for each, never
//! opened: a redactor cannot recognise a value a mapping transformed.

use std::collections::HashMap;

use hookplane_egress::client::Outbound;
use hookplane_expr::Limits;
use hookplane_model::{CompiledSpec, ConnectorSpec, SecretField, TestFailure, TestRun, TestStep, compile_connector};
use hookplane_pipeline::dry_run::DryRun;
use hookplane_pipeline::redact::Redactor;
use serde_json::Value;

use hookplane::api::v1 as api;
use hookplane_convert as convert;

use super::Core;
use crate::auth::Caller;
use crate::crypto::{new_id, secret_owner};
use crate::error::{ApiError, ApiResult};
use crate::store::StoreError;

/// Bytes of a lookup answer a dry run reads, as on nodes.
const MAX_LOOKUP_BODY: usize = 1 << 20;
/// Secrets of one organization a dry run reads at most (one page).
const MAX_SECRETS: u32 = 1000;

/// Where `$lookup` comes from.
pub enum LookupInput {
    /// This value, or none.
    Given(Option<Value>),
    /// The lookup's answer: send it.
    Send,
}

/// Executes stored connector `connector_id` of `organization_id` for real
/// on a node of this replica (SPEC §10); its event is marked `test`.
pub async fn live_run(
    core: &Core,
    organization_id: &str,
    connector_id: &str,
    payload: String,
) -> ApiResult<api::LiveRunOutcome> {
    let versions = core.store.connector_config_versions(organization_id, &[connector_id]).await?;
    let config_version = *versions.get(connector_id).ok_or(StoreError::NotFound("connector"))?;
    let run = api::LiveRun { run_id: new_id("run_"), connector_id: connector_id.to_owned(), payload, config_version };
    let (node, result) = core.live_runs.run(run).await?;
    convert::live_run_outcome(node, result).map_err(ApiError::LiveRunRefused)
}

/// What a dry or live run asks for, whichever RPC carries it
/// (`TestConnector`, `ReplayEvent`).
pub struct RunRequest<'a> {
    pub draft: Option<&'a api::Connector>,
    pub lookup_result: &'a str,
    pub send_lookup: bool,
    pub live: bool,
}

impl RunRequest<'_> {
    /// The caller's organization, if it may make this run: viewers dry-run
    /// stored connectors; a draft (its own expressions over the
    /// organization's secrets), a lookup sent from the control plane and a
    /// live run, which sends the perform, need write access.
    pub fn organization<'c>(&self, caller: &'c Caller) -> ApiResult<&'c str> {
        if self.draft.is_some() || self.send_lookup || self.live {
            caller.writable_organization()
        } else {
            caller.organization()
        }
    }

    /// The draft, checked as a create checks one; a live run takes none.
    pub fn draft(&self) -> ApiResult<Option<ConnectorSpec>> {
        match self.draft {
            Some(_) if self.live => {
                Err(ApiError::invalid("draft", "a live run executes the stored connector; dry-run a draft"))
            }
            Some(draft) => Ok(Some(convert::draft_connector_from_api(draft, "draft")?)),
            None => Ok(None),
        }
    }

    /// Where `$lookup` comes from: sent, given, or else `recorded`.
    pub fn lookup(&self, recorded: Option<Value>) -> ApiResult<LookupInput> {
        Ok(match (self.send_lookup, self.lookup_result) {
            (true, _) => LookupInput::Send,
            (false, "") => LookupInput::Given(recorded),
            (false, text) => LookupInput::Given(Some(parse_json(text, "lookup_result")?)),
        })
    }
}

/// Parses a payload given as JSON text; `field` names it in the error.
pub fn parse_json(text: &str, field: &str) -> ApiResult<Value> {
    serde_json::from_str(text).map_err(|err| ApiError::invalid(field, format!("is not JSON: {err}")))
}

/// Runs `spec` of `organization_id` on `payload`.
pub async fn dry_run(
    core: &Core,
    organization_id: &str,
    spec: &ConnectorSpec,
    payload: &Value,
    lookup: LookupInput,
    open_secrets: bool,
) -> ApiResult<TestRun> {
    let mut spec = spec.clone();
    spec.update_secrets(|_, secret| match secret {
        SecretField::Absent => SecretField::Absent,
        _ => SecretField::Plain("[redacted]".into()),
    });
    // A stored spec compiled when it was saved, and a draft was converted
    // (and so compiled) before it came here: a failure is a defect.
    let CompiledSpec { programs, spec } = compile_connector(&spec)
        .and_then(CompiledSpec::open)
        .map_err(|diagnostics| ApiError::invalid("connector", format!("does not compile: {}", diagnostics[0])))?;
    let secrets = if open_secrets {
        organization_secrets(core, organization_id, &programs.all_secrets()).await?
    } else {
        programs.all_secrets().into_iter().map(|name| (name.to_owned(), format!("<secret {name}>"))).collect()
    };
    let mut redactor = Redactor::default();
    if open_secrets {
        secrets.values().for_each(|value| redactor.add(value));
    }
    let run = DryRun { spec: &spec, programs: &programs, secrets: &secrets, limits: Limits::default() };
    let lookup = match lookup {
        LookupInput::Given(value) => value,
        LookupInput::Send => match send_lookup(core, &run, payload).await {
            Ok(value) => value,
            Err(failure) => {
                let mut failed = run.run(payload, None, redactor);
                failed.perform_request = None;
                failed.processed = None;
                failed.failure = Some(failure);
                return Ok(failed);
            }
        },
    };
    Ok(run.run(payload, lookup.as_ref(), redactor))
}

/// The lookup's JSON answer; a failure as the dry run shows it.
async fn send_lookup(core: &Core, run: &DryRun<'_>, payload: &Value) -> Result<Option<Value>, TestFailure> {
    let failure = |field: Option<String>, message: String| TestFailure { step: TestStep::Lookup, field, message };
    let request = match run.lookup_request(payload) {
        Ok(Some(request)) => request,
        Ok(None) => return Ok(None),
        Err(err) => return Err(failure(err.field(), err.to_string())),
    };
    let outbound = Outbound::new(core.webhooks.egress.clone());
    let response = outbound
        .send(request, MAX_LOOKUP_BODY)
        .await
        .map_err(|err| failure(Some("lookup.url".into()), format!("the lookup was not answered: {err}")))?;
    if !response.status.is_success() {
        return Err(failure(None, format!("the lookup URL answered {}", response.status.as_u16())));
    }
    serde_json::from_slice(&response.body)
        .map(Some)
        .map_err(|err| failure(None, format!("the lookup's answer is not JSON ({err})")))
}

/// The organization's secrets among `names`, opened.
async fn organization_secrets(
    core: &Core,
    organization_id: &str,
    names: &[&str],
) -> ApiResult<HashMap<String, String>> {
    let mut opened = HashMap::new();
    if names.is_empty() {
        return Ok(opened);
    }
    for secret in core.store.list_secrets(organization_id, "", MAX_SECRETS).await? {
        if !names.contains(&secret.name.as_str()) {
            continue;
        }
        if let SecretField::Sealed(sealed) = &secret.value {
            let value = core.secret_box.open_text(&secret_owner(organization_id, &secret.name), sealed)?;
            opened.insert(secret.name, value.to_string());
        }
    }
    Ok(opened)
}
