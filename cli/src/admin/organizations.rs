//! `hookplane secrets|orgs|keys|plans|nodes …`: the organization's
//! secrets and keys, and what operators look after.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use hookplane_sdk::api;

use super::Connection;
use super::connectors::sdk;
use super::output::{Column, print_list, print_one};
use super::proto_json::{from_json, read_document};

#[derive(Subcommand, Debug)]
pub enum SecretsCommand {
    /// Lists the secrets' names (values are write-only).
    List,
    /// Sets a secret, creating it if needed; the value comes from
    /// `--value-file` or stdin, never from the command line.
    Set {
        name: String,
        #[arg(long)]
        value_file: Option<PathBuf>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Deletes a secret.
    Delete { name: String },
}

#[derive(Subcommand, Debug)]
pub enum OrgsCommand {
    /// Lists organizations (the operator key sees all).
    List,
    /// Shows one organization.
    Get { id: String },
    /// Creates an organization from a file (operator key).
    Create {
        #[arg(short, long)]
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Lists API keys of an organization (default: the caller's).
    List {
        #[arg(long)]
        organization: Option<String>,
    },
    /// Creates an API key; its plaintext is shown once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_enum, default_value_t = Role::Admin)]
        role: Role,
        #[arg(long)]
        organization: Option<String>,
    },
    /// Deletes an API key.
    Delete {
        id: String,
        #[arg(long)]
        organization: Option<String>,
    },
}

/// What a key may do.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Role {
    Admin,
    Viewer,
}

#[derive(Subcommand, Debug)]
pub enum PlansCommand {
    /// Lists the plans and their limits.
    List,
}

#[derive(Subcommand, Debug)]
pub enum NodesCommand {
    /// Lists the data-plane nodes and how far each has applied the config.
    List,
}

pub async fn secrets(connection: &Connection, command: SecretsCommand) -> anyhow::Result<ExitCode> {
    let client = connection.client().await?;
    let mut secrets = client.secrets();
    match command {
        SecretsCommand::List => print_list(
            connection.output,
            &client.list_all_secrets().await?,
            &[("NAME", "name"), ("DESCRIPTION", "description"), ("UPDATED", "updateTime")],
        ),
        SecretsCommand::Set { name, value_file, description } => {
            let value = match value_file {
                Some(file) => std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?,
                None => {
                    let mut value = String::new();
                    std::io::stdin().read_to_string(&mut value).context("reading the value from stdin")?;
                    value
                }
            };
            let value = value.trim_end_matches(['\n', '\r']).to_owned();
            let secret = api::Secret {
                name: name.clone(),
                value,
                description: description.unwrap_or_default(),
                ..Default::default()
            };
            let exists = secrets.get_secret(api::GetSecretRequest { name: name.clone() }).await.is_ok();
            let stored = if exists {
                let mut paths = vec!["value".to_owned()];
                if !secret.description.is_empty() {
                    paths.push("description".into());
                }
                let mask = Some(prost_types::FieldMask { paths });
                secrets.update_secret(api::UpdateSecretRequest { secret: Some(secret), update_mask: mask }).await
            } else {
                secrets
                    .create_secret(api::CreateSecretRequest { secret: Some(secret), request_id: String::new() })
                    .await
            };
            print_one(&stored.map_err(sdk)?.into_inner());
        }
        SecretsCommand::Delete { name } => {
            secrets
                .delete_secret(api::DeleteSecretRequest { name: name.clone(), etag: String::new() })
                .await
                .map_err(sdk)?;
            eprintln!("deleted {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

const ORG_COLUMNS: &[Column] = &[("ID", "id"), ("NAME", "displayName"), ("PLAN", "plan"), ("CREATED", "createTime")];

pub async fn orgs(connection: &Connection, command: OrgsCommand) -> anyhow::Result<ExitCode> {
    let client = connection.client().await?;
    let mut orgs = client.organizations();
    match command {
        OrgsCommand::List => {
            let mut all = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = api::ListOrganizationsRequest { page_size: 1000, page_token };
                let page = orgs.list_organizations(request).await.map_err(sdk)?.into_inner();
                all.extend(page.organizations);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            print_list(connection.output, &all, ORG_COLUMNS);
        }
        OrgsCommand::Get { id } => {
            print_one(&orgs.get_organization(api::GetOrganizationRequest { id }).await.map_err(sdk)?.into_inner());
        }
        OrgsCommand::Create { file } => {
            let organization = from_json(read_document(&file)?)?;
            let request =
                api::CreateOrganizationRequest { organization: Some(organization), request_id: String::new() };
            print_one(&orgs.create_organization(request).await.map_err(sdk)?.into_inner());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn keys(connection: &Connection, command: KeysCommand) -> anyhow::Result<ExitCode> {
    let client = connection.client().await?;
    let mut keys = client.api_keys();
    match command {
        KeysCommand::List { organization } => {
            let mut all = Vec::new();
            let mut page_token = String::new();
            loop {
                let organization_id = organization.clone().unwrap_or_default();
                let request = api::ListApiKeysRequest { organization_id, page_size: 1000, page_token };
                let page = keys.list_api_keys(request).await.map_err(sdk)?.into_inner();
                all.extend(page.api_keys);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            let columns = [
                ("ID", "id"),
                ("NAME", "displayName"),
                ("ROLE", "role"),
                ("HINT", "keyHint"),
                ("EXPIRES", "expireTime"),
            ];
            print_list(connection.output, &all, &columns);
        }
        KeysCommand::Create { name, role, organization } => {
            let role = match role {
                Role::Admin => api::ApiKeyRole::Admin,
                Role::Viewer => api::ApiKeyRole::Viewer,
            };
            let request = api::CreateApiKeyRequest {
                organization_id: organization.unwrap_or_default(),
                api_key: Some(api::ApiKey { display_name: name, role: role as i32, ..Default::default() }),
                request_id: String::new(),
            };
            let created = keys.create_api_key(request).await.map_err(sdk)?.into_inner();
            print_one(&created);
            eprintln!("store the key now: it is not shown again");
        }
        KeysCommand::Delete { id, organization } => {
            let request =
                api::DeleteApiKeyRequest { organization_id: organization.unwrap_or_default(), id: id.clone() };
            keys.delete_api_key(request).await.map_err(sdk)?;
            eprintln!("deleted {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn plans(connection: &Connection, command: PlansCommand) -> anyhow::Result<ExitCode> {
    let client = connection.client().await?;
    let PlansCommand::List = command;
    let plans = client.plans().list_plans(api::ListPlansRequest {}).await.map_err(sdk)?.into_inner().plans;
    let columns = [
        ("NAME", "name"),
        ("PER IP/MIN", "perIpPerMinute"),
        ("PER CONNECTOR/MIN", "perConnectorPerMinute"),
        ("ORG/MIN", "orgPerMinute"),
        ("ORG/HOUR", "orgPerHour"),
        ("ORG/DAY", "orgPerDay"),
        ("RETENTION DAYS", "eventRetentionDays"),
    ];
    print_list(connection.output, &plans, &columns);
    Ok(ExitCode::SUCCESS)
}

pub async fn nodes(connection: &Connection, command: NodesCommand) -> anyhow::Result<ExitCode> {
    let client = connection.client().await?;
    let NodesCommand::List = command;
    let mut nodes = client.nodes();
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page =
            nodes.list_nodes(api::ListNodesRequest { page_size: 1000, page_token }).await.map_err(sdk)?.into_inner();
        all.extend(page.nodes);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let columns = [
        ("ID", "id"),
        ("ADDRESS", "address"),
        ("CONNECTED", "connected"),
        ("APPLIED", "appliedConfigVersion"),
        ("LAG", "lag"),
        ("LAST SEEN", "lastSeenTime"),
        ("LAST ERROR", "lastError"),
    ];
    print_list(connection.output, &all, &columns);
    Ok(ExitCode::SUCCESS)
}
