//! `hookplane connectors apply -f FILE`: make the organization's
//! connectors match a file, for GitOps.
//!
//! The file maps stable names to connectors:
//!
//! ```yaml
//! connectors:
//!   orders-to-erp:
//!     displayName: New orders to the ERP
//!     auth: {bearerToken: true}
//!     perform: {method: POST, url: "https://erp.example.com/orders"}
//! ```
//!
//! A connector carries its name in the label `hookplane/name` and, in
//! `hookplane/applied`, a digest of the entry it was last applied from. An
//! entry whose digest matches is unchanged, so applying a file twice
//! changes nothing (the server fills defaults, so comparing fields alone
//! would see differences that are not there). A change made to a
//! connector outside apply is therefore not noticed until its entry
//! changes. Write-only values (secrets) are set when a connector is
//! created and do not count toward the digest (viewers can read labels):
//! change them with `rotate-signing-secret` or `update`. Connectors named
//! by no entry are reported and left alone.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, bail};
use hookplane_convert::CONNECTOR_MASK_PATHS;
use hookplane_sdk::{Client, api};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::connectors::sdk;
use super::output::{Format, print_json};
use super::proto_json::{from_json, read_document, to_json};

const NAME_LABEL: &str = "hookplane/name";
const APPLIED_LABEL: &str = "hookplane/applied";

/// What applying one entry does.
enum Action {
    Create,
    Update { id: String, changes: Vec<hookplane_model::RequestChange> },
    Unchanged { id: String },
}

struct Entry {
    name: String,
    connector: api::Connector,
    /// The file's top-level fields, as mask paths.
    fields: Vec<String>,
    action: Action,
}

pub async fn apply(client: &Client, format: Format, file: &Path, dry_run: bool) -> anyhow::Result<()> {
    let document = read_document(file)?;
    let Some(entries) = document.get("connectors").and_then(Value::as_object) else {
        bail!("{}: expected a `connectors:` map from names to connectors", file.display());
    };
    let existing: BTreeMap<String, api::Connector> = client
        .list_all_connectors()
        .await?
        .into_iter()
        .filter_map(|c| c.labels.get(NAME_LABEL).cloned().map(|name| (name, c)))
        .collect();
    let mut plan = Vec::new();
    for (name, value) in entries {
        let mut connector: api::Connector =
            from_json(value.clone()).with_context(|| format!("{}: connectors.{name}", file.display()))?;
        // Labels are readable by viewers: the digest leaves write-only values
        // (secrets) out, so it tells nothing about them. A changed secret
        // is therefore not a change here; rotate it instead.
        let mut digested = to_json(&connector);
        hide_write_only(&mut digested);
        let digest = hex::encode(&Sha256::digest(digested.to_string().as_bytes())[..12]);
        // Every field, so one the entry no longer sets goes back to its
        // default; but `enabled` only when the entry says, so a file never
        // turns a connector off by leaving it out. Stored secrets stay when
        // the entry leaves them empty (the server keeps them).
        let mut fields: Vec<String> =
            CONNECTOR_MASK_PATHS.iter().filter(|f| **f != "enabled").map(|f| (*f).to_owned()).collect();
        if value.get("enabled").is_some() {
            fields.push("enabled".into());
        }
        let action = match existing.get(name) {
            None => Action::Create,
            Some(current) => {
                // The owner's other labels stay, unless the entry sets labels.
                if value.get("labels").is_none() {
                    connector.labels = current.labels.clone();
                }
                if current.labels.get(APPLIED_LABEL) == Some(&digest) {
                    Action::Unchanged { id: current.id.clone() }
                } else {
                    Action::Update { id: current.id.clone(), changes: changes(current, &connector, &fields) }
                }
            }
        };
        connector.labels.insert(NAME_LABEL.into(), name.clone());
        connector.labels.insert(APPLIED_LABEL.into(), digest);
        plan.push(Entry { name: name.clone(), connector, fields, action });
    }
    let strays: Vec<(&String, &api::Connector)> =
        existing.iter().filter(|(name, _)| !entries.contains_key(name.as_str())).collect();

    let mut report = Vec::new();
    let mut connectors = client.connectors();
    for entry in plan {
        let (action, id, changes, issued) = match entry.action {
            Action::Unchanged { id } => ("unchanged", id, Vec::new(), Vec::new()),
            Action::Create if dry_run => ("create", String::new(), Vec::new(), Vec::new()),
            Action::Create => {
                let request =
                    api::CreateConnectorRequest { connector: Some(entry.connector), request_id: String::new() };
                let created = connectors.create_connector(request).await.map_err(sdk)?.into_inner();
                ("create", created.id, Vec::new(), created.issued_credentials)
            }
            Action::Update { id, changes } if dry_run => ("update", id, changes, Vec::new()),
            Action::Update { id, changes } => {
                let mut connector = entry.connector;
                connector.id = id.clone();
                let mask = Some(prost_types::FieldMask { paths: entry.fields });
                let request = api::UpdateConnectorRequest { connector: Some(connector), update_mask: mask };
                connectors.update_connector(request).await.map_err(sdk)?;
                ("update", id, changes, Vec::new())
            }
        };
        report.push((entry.name, action, id, changes, issued));
    }

    match format {
        Format::Json => {
            let mut items: Vec<Value> = report
                .iter()
                .map(|(name, action, id, changes, issued)| {
                    json!({
                        "name": name,
                        "action": action,
                        "id": id,
                        "changes": changes.iter().map(|c| json!({"field": c.field, "before": c.before, "after": c.after})).collect::<Vec<_>>(),
                        "issuedCredentials": issued.iter().map(to_json).collect::<Vec<_>>(),
                    })
                })
                .collect();
            items.extend(strays.iter().map(|(name, c)| json!({"name": name, "action": "not_in_file", "id": c.id})));
            print_json(&json!({"dryRun": dry_run, "connectors": items}));
        }
        Format::Table => {
            for (name, action, id, changes, issued) in &report {
                match *action {
                    "create" if id.is_empty() => println!("+ {name} would be created"),
                    "create" => println!("+ {name} created ({id})"),
                    "unchanged" => println!("= {name} unchanged ({id})"),
                    _ => {
                        println!("~ {name} {} ({id})", if dry_run { "would be updated" } else { "updated" });
                        // A field the entry leaves out goes back to the server's
                        // default, which the file cannot show: named, not valued.
                        let (set, unset): (Vec<_>, Vec<_>) = changes.iter().partition(|c| c.after.is_some());
                        for change in set {
                            let before = change.before.as_deref().unwrap_or("(unset)");
                            println!(
                                "    {}: {before} -> {}",
                                change.field,
                                change.after.as_deref().unwrap_or_default()
                            );
                        }
                        if !unset.is_empty() {
                            let fields: Vec<&str> = unset.iter().map(|c| c.field.as_str()).collect();
                            println!("    not in the file, so left to the server's defaults: {}", fields.join(", "));
                        }
                    }
                }
                for credential in issued {
                    let kind = api::TokenKind::try_from(credential.kind).map_or("credential", |k| k.as_str_name());
                    println!(
                        "    {}: {} (shown once)",
                        kind.trim_start_matches("TOKEN_KIND_").to_ascii_lowercase(),
                        credential.token
                    );
                }
            }
            for (name, connector) in &strays {
                println!("! {name} ({}) is not in the file; left as it is", connector.id);
            }
            let count = |what: &str| report.iter().filter(|r| r.1 == what).count();
            println!(
                "{} to create, {} to update, {} unchanged{}",
                count("create"),
                count("update"),
                count("unchanged"),
                if dry_run { " (dry run: nothing changed)" } else { "" }
            );
        }
    }
    Ok(())
}

/// What an update changes, field by field, write-only values hidden.
fn changes(
    current: &api::Connector,
    desired: &api::Connector,
    fields: &[String],
) -> Vec<hookplane_model::RequestChange> {
    let (mut before, mut after) = (to_json(current), to_json(desired));
    hide_write_only(&mut before);
    hide_write_only(&mut after);
    let mut changes = Vec::new();
    for field in fields.iter().filter(|f| *f != "labels") {
        let key = camel_case(field);
        hookplane_pipeline::diff::diff_json(field, before.get(&key), after.get(&key), &mut changes);
    }
    changes
}

/// Secrets are write-only: neither side shows them, and a changed secret
/// shows as a change of its digest only (in `hookplane/applied`).
fn hide_write_only(value: &mut Value) {
    let mut remove = |path: &[&str], keys: &[&str]| {
        let mut at = Some(&mut *value);
        for step in path {
            at = at.and_then(|v| v.get_mut(*step));
        }
        let targets: Vec<&mut Value> = match at {
            Some(Value::Array(items)) => items.iter_mut().collect(),
            Some(other) => vec![other],
            None => Vec::new(),
        };
        for target in targets {
            if let Some(map) = target.as_object_mut() {
                keys.iter().for_each(|key| {
                    map.remove(*key);
                });
            }
        }
    };
    remove(&["signature"], &["secret", "secretSet", "previousSecretExpireTime"]);
    remove(&["perform", "auth", "oauth2"], &["clientSecret", "clientSecretSet"]);
    remove(&["auth", "customHeaders"], &["value"]);
}

/// A proto3 JSON name as the proto's field name (mask paths use those).
pub fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for ch in name.chars() {
        if ch.is_ascii_uppercase() {
            out.push('_');
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

fn camel_case(name: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for ch in name.chars() {
        if ch == '_' {
            upper = true;
        } else if upper {
            out.push(ch.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_convert_between_the_two_json_spellings() {
        assert_eq!(snake_case("samplePayload"), "sample_payload");
        assert_eq!(camel_case("sample_payload"), "samplePayload");
        assert_eq!(camel_case(&snake_case("allowedOrigins")), "allowedOrigins");
    }

    #[test]
    fn write_only_values_are_never_shown() {
        let mut value = json!({
            "signature": {"secret": "s3cret", "secretSet": true, "header": "x-sig"},
            "auth": {"customHeaders": [{"name": "x-partner", "value": "hunter2"}]},
            "perform": {"body": [{"key": "k", "value": "$payload.v"}]}
        });
        hide_write_only(&mut value);
        assert_eq!(
            value,
            json!({
                "signature": {"header": "x-sig"},
                "auth": {"customHeaders": [{"name": "x-partner"}]},
                "perform": {"body": [{"key": "k", "value": "$payload.v"}]}
            })
        );
    }
}
