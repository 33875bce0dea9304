//! `hookplane connectors …`: CRUD, activation, rotation, integration
//! examples and dry runs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use hookplane_sdk::api;
use serde_json::Value;

use super::output::{Column, Format, print_list, print_one};
use super::proto_json::{from_json, read_document};
use super::{Connection, duration, payload};

const COLUMNS: &[Column] =
    &[("ID", "id"), ("NAME", "displayName"), ("ENABLED", "enabled"), ("ASYNC", "asyncMode"), ("UPDATED", "updateTime")];

#[derive(Subcommand, Debug)]
pub enum ConnectorsCommand {
    /// Lists the organization's connectors.
    List,
    /// Shows one connector.
    Get { id: String },
    /// Creates a connector from a YAML or JSON file (proto3 JSON fields);
    /// prints its credentials once.
    Create {
        #[arg(short, long)]
        file: PathBuf,
        /// Makes a retried create return the first one's answer.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Updates the fields the file sets (or those `--mask` names).
    Update {
        id: String,
        #[arg(short, long)]
        file: PathBuf,
        /// Field paths to update, e.g. `perform.url,mappings`; default the
        /// file's top-level fields.
        #[arg(long, value_delimiter = ',')]
        mask: Vec<String>,
        /// Fail instead of overwriting a change made since this etag.
        #[arg(long)]
        etag: Option<String>,
    },
    /// Deletes a connector; its trigger URL answers 404 from then on.
    Delete { id: String },
    /// Turns the trigger URL on.
    Enable { id: String },
    /// Turns the trigger URL off.
    Disable { id: String },
    /// Mints new credentials; the old ones work for the grace period.
    RotateTokens {
        id: String,
        /// How long the replaced credentials keep working, e.g. `1h`.
        #[arg(long, value_parser = duration)]
        grace_period: Option<prost_types::Duration>,
    },
    /// Code calling the trigger URL: cURL, JavaScript and Python.
    Examples {
        id: String,
        /// Only this language: `curl`, `javascript` or `python`.
        #[arg(long)]
        language: Option<String>,
        /// Where senders reach the nodes; default the server's setting.
        #[arg(long)]
        base_url: Option<String>,
    },
    /// Runs a connector (or a draft file) on a payload: a dry run, nothing
    /// sent; with `--live`, for real on a data-plane node. Exits 1 when
    /// the run fails.
    Test {
        /// A stored connector; or `--draft`.
        id: Option<String>,
        /// A connector file to run instead, not saved.
        #[arg(long, conflicts_with = "id")]
        draft: Option<PathBuf>,
        /// The payload, JSON or `@FILE`; default the sample payload.
        #[arg(long)]
        payload: Option<String>,
        /// JSON standing in for the lookup's answer, or `@FILE`.
        #[arg(long)]
        lookup_result: Option<String>,
        /// Send the lookup (a GET) and use its answer.
        #[arg(long)]
        send_lookup: bool,
        /// Execute it for real on a data-plane node (the perform is sent),
        /// recorded as an event marked `test`.
        #[arg(long, conflicts_with = "draft")]
        live: bool,
    },
    /// Creates or updates connectors to match a file of named connectors,
    /// printing what changed; running it again changes nothing.
    Apply {
        #[arg(short, long)]
        file: PathBuf,
        /// Print the changes without making them.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(connection: &Connection, command: ConnectorsCommand) -> anyhow::Result<ExitCode> {
    let client = connection.client().await?;
    let mut connectors = client.connectors();
    let format = connection.output;
    match command {
        ConnectorsCommand::List => print_list(format, &client.list_all_connectors().await?, COLUMNS),
        ConnectorsCommand::Get { id } => {
            print_one(&connectors.get_connector(api::GetConnectorRequest { id }).await.map_err(sdk)?.into_inner());
        }
        ConnectorsCommand::Create { file, request_id } => {
            let connector = from_json(read_document(&file)?)?;
            let request =
                api::CreateConnectorRequest { connector: Some(connector), request_id: request_id.unwrap_or_default() };
            show_minted(format, &connectors.create_connector(request).await.map_err(sdk)?.into_inner(), "created");
        }
        ConnectorsCommand::Update { id, file, mask, etag } => {
            let document = read_document(&file)?;
            let paths = if mask.is_empty() { top_level_fields(&document) } else { mask };
            let mut connector: api::Connector = from_json(document)?;
            connector.id = id;
            connector.etag = etag.unwrap_or_default();
            let request = api::UpdateConnectorRequest {
                connector: Some(connector),
                update_mask: Some(prost_types::FieldMask { paths }),
            };
            print_one(&connectors.update_connector(request).await.map_err(sdk)?.into_inner());
        }
        ConnectorsCommand::Delete { id } => {
            connectors
                .delete_connector(api::DeleteConnectorRequest { id: id.clone(), ..Default::default() })
                .await
                .map_err(sdk)?;
            eprintln!("deleted {id}");
        }
        ConnectorsCommand::Enable { id } => {
            print_one(
                &connectors.enable_connector(api::EnableConnectorRequest { id }).await.map_err(sdk)?.into_inner(),
            );
        }
        ConnectorsCommand::Disable { id } => {
            print_one(
                &connectors.disable_connector(api::DisableConnectorRequest { id }).await.map_err(sdk)?.into_inner(),
            );
        }
        ConnectorsCommand::RotateTokens { id, grace_period } => {
            let request = api::RotateConnectorTokensRequest { id, grace_period };
            show_minted(
                format,
                &connectors.rotate_connector_tokens(request).await.map_err(sdk)?.into_inner(),
                "rotated",
            );
        }
        ConnectorsCommand::Examples { id, language, base_url } => {
            let request = api::GetIntegrationExamplesRequest { id, base_url: base_url.unwrap_or_default() };
            let mut examples = connectors.get_integration_examples(request).await.map_err(sdk)?.into_inner();
            if let Some(language) = language {
                examples.examples.retain(|e| e.language == language);
            }
            match format {
                Format::Json => print_one(&examples),
                Format::Table => {
                    for example in &examples.examples {
                        println!("# {} with {}", example.language, example.auth_method);
                        if !example.environment.is_empty() {
                            println!("# reads {}", example.environment.join(", "));
                        }
                        println!("{}", example.code);
                    }
                }
            }
        }
        ConnectorsCommand::Test { id, draft, payload: given, lookup_result, send_lookup, live } => {
            let request = api::TestConnectorRequest {
                id: id.unwrap_or_default(),
                draft: draft.map(|file| read_document(&file).and_then(from_json)).transpose()?,
                payload: given.as_deref().map(payload).transpose()?.unwrap_or_default(),
                lookup_result: lookup_result.as_deref().map(payload).transpose()?.unwrap_or_default(),
                send_lookup,
                live,
            };
            let run = connectors.test_connector(request).await.map_err(sdk)?.into_inner();
            match format {
                Format::Json => print_one(&run),
                Format::Table => print_run(&run),
            }
            let failed = run.failure.is_some()
                || run.live.as_ref().is_some_and(|live| live.status == api::LiveRunStatus::Failed as i32);
            return Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS });
        }
        ConnectorsCommand::Apply { file, dry_run } => super::apply::apply(&client, format, &file, dry_run).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The SDK's error for a failed call, keeping the violations.
pub fn sdk(status: tonic::Status) -> hookplane_sdk::Error {
    hookplane_sdk::Error::from(status)
}

/// A connector whose credentials were just minted: they are shown once.
fn show_minted(format: Format, connector: &api::Connector, what: &str) {
    if format == Format::Json {
        return print_one(connector);
    }
    println!("{what} {} ({})", connector.id, connector.display_name);
    println!("trigger path: {}", connector.trigger_path);
    for credential in &connector.issued_credentials {
        let kind = api::TokenKind::try_from(credential.kind).map_or("credential", |k| k.as_str_name());
        println!("{}: {}", kind.trim_start_matches("TOKEN_KIND_").to_ascii_lowercase(), credential.token);
    }
    if !connector.issued_credentials.is_empty() {
        println!("store the credentials now: they are not shown again");
    }
}

/// The top-level fields a document sets, as mask paths (snake_case).
fn top_level_fields(document: &Value) -> Vec<String> {
    let Some(object) = document.as_object() else { return Vec::new() };
    object
        .keys()
        .filter(|key| !matches!(key.as_str(), "id" | "etag"))
        .map(|key| super::apply::snake_case(key))
        .collect()
}

/// A live run's outcome.
pub fn print_live(live: &api::LiveRunOutcome) {
    let status = api::LiveRunStatus::try_from(live.status).map_or("", |s| s.as_str_name());
    println!("ran live on {}: {}", live.node_id, status.trim_start_matches("LIVE_RUN_STATUS_").to_ascii_lowercase());
    if let Some(code) = live.response_code {
        println!("target answered: {code}");
    }
    if !live.error.is_empty() {
        println!("error: {}", live.error);
    }
    println!("event: {} (hookplane events get {})", live.event_id, live.event_id);
}

/// A dry run, step by step.
pub fn print_run(run: &api::TestRun) {
    if let Some(live) = &run.live {
        return print_live(live);
    }
    if let Some(passed) = run.condition_result {
        println!("condition: {passed}");
    }
    if let Some(lookup) = &run.lookup_request {
        println!("lookup:    {} {}", lookup.method, lookup.url);
        if !run.lookup_result.is_empty() {
            println!("  $lookup: {}", run.lookup_result);
        }
    }
    if !run.processed.is_empty() {
        println!("processed: {}", run.processed);
    }
    if let Some(request) = &run.perform_request {
        println!("perform:   {} {}", request.method, request.url);
        for header in &request.headers {
            println!("  {}: {}", header.name, header.value);
        }
        if !request.body.is_empty() {
            println!("  body: {}", request.body);
        }
    }
    if let Some(failure) = &run.failure {
        let step = api::TestStep::try_from(failure.step).map_or("", |s| s.as_str_name());
        let step = step.trim_start_matches("TEST_STEP_").to_ascii_lowercase();
        match failure.field.as_str() {
            "" => println!("failed in {step}: {}", failure.message),
            field => println!("failed in {step} at {field}: {}", failure.message),
        }
    } else if run.condition_result == Some(false) {
        println!("skipped: the condition is false, nothing would be sent");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_files_top_level_fields_make_the_mask() {
        let document = json!({"id": "con_1", "displayName": "x", "perform": {"url": "u"}, "async_mode": true});
        let mut mask = top_level_fields(&document);
        mask.sort();
        assert_eq!(mask, ["async_mode", "display_name", "perform"]);
    }
}
