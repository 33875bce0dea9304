//! `hookplane events …`: reading, following and replaying events.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use futures::StreamExt as _;
use hookplane_sdk::api;

use super::connectors::{print_live, print_run, sdk};
use super::output::{Column, Format, cell, print_list, print_one, print_table, shorten_enums};
use super::proto_json::{from_json, read_document, to_json};
use super::{Connection, payload};

const COLUMNS: &[Column] = &[
    ("ID", "id"),
    ("CONNECTOR", "connectorId"),
    ("STATUS", "status"),
    ("CODE", "responseCode"),
    ("RECEIVED", "createTime"),
    ("ERROR", "error"),
];

#[derive(Subcommand, Debug)]
pub enum EventsCommand {
    /// The newest events, newest first.
    List {
        #[command(flatten)]
        filter: Filter,
        /// How many, at most.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One event with its whole trace.
    Get { id: i64 },
    /// Prints events as they are stored, until interrupted.
    Tail {
        #[command(flatten)]
        filter: Filter,
    },
    /// Runs an event's payload again through its connector's current spec
    /// (or a draft file) as a dry run, showing how the request differs from
    /// the one it sent; with `--live`, for real on a data-plane node.
    Replay {
        id: i64,
        /// A draft of the connector to replay through, not saved.
        #[arg(long)]
        draft: Option<PathBuf>,
        /// JSON standing in for the lookup's answer, or `@FILE`.
        #[arg(long)]
        lookup_result: Option<String>,
        /// Send the lookup again and use its answer.
        #[arg(long)]
        send_lookup: bool,
        /// Execute the payload for real on a node through the current spec
        /// (the perform is sent), as a new event marked `test`.
        #[arg(long, conflicts_with = "draft")]
        live: bool,
    },
}

/// Which events.
#[derive(clap::Args, Debug)]
pub struct Filter {
    /// Only this connector's.
    #[arg(long)]
    connector: Option<String>,
    /// Only events with this status: completed, skipped, failed, accepted.
    #[arg(long, value_parser = status)]
    status: Option<api::EventStatus>,
}

fn status(text: &str) -> Result<api::EventStatus, String> {
    api::EventStatus::from_str_name(&format!("EVENT_STATUS_{}", text.to_ascii_uppercase()))
        .filter(|s| *s != api::EventStatus::Unspecified)
        .ok_or_else(|| "one of completed, skipped, failed, accepted".to_owned())
}

impl Filter {
    fn to_api(&self) -> Option<api::EventFilter> {
        Some(api::EventFilter {
            connector_id: self.connector.clone().unwrap_or_default(),
            status: self.status.map_or(0, |s| s as i32),
            ..Default::default()
        })
    }
}

pub async fn run(connection: &Connection, command: EventsCommand) -> anyhow::Result<ExitCode> {
    let client = connection.client().await?;
    let mut events = client.events();
    let format = connection.output;
    match command {
        EventsCommand::List { filter, limit } => {
            let page_size = i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000);
            let mut listed = Vec::new();
            let mut page_token = String::new();
            while listed.len() < limit {
                let request = api::ListEventsRequest { filter: filter.to_api(), page_size, page_token };
                let page = events.list_events(request).await.map_err(sdk)?.into_inner();
                listed.extend(page.events);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            listed.truncate(limit);
            print_list(format, &listed, COLUMNS);
        }
        EventsCommand::Get { id } => {
            print_one(&events.get_event(api::GetEventRequest { id }).await.map_err(sdk)?.into_inner())
        }
        EventsCommand::Tail { filter } => {
            let request = api::StreamEventsRequest { filter: filter.to_api() };
            let mut stream = events.stream_events(request).await.map_err(sdk)?.into_inner();
            if format == Format::Table {
                print_table(&[], COLUMNS);
            }
            while let Some(event) = stream.next().await {
                let event = event.map_err(sdk)?;
                match format {
                    // One document per line, so a script reads them as they come.
                    Format::Json => println!("{}", to_json(&event)),
                    Format::Table => print_rows(&event),
                }
            }
        }
        EventsCommand::Replay { id, draft, lookup_result, send_lookup, live } => {
            let request = api::ReplayEventRequest {
                id,
                draft: draft.map(|file| read_document(&file).and_then(from_json)).transpose()?,
                lookup_result: lookup_result.as_deref().map(payload).transpose()?.unwrap_or_default(),
                send_lookup,
                live,
            };
            let replay = events.replay_event(request).await.map_err(sdk)?.into_inner();
            if format == Format::Json {
                print_one(&replay);
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(live) = &replay.live {
                print_live(live);
                let failed = live.status == api::LiveRunStatus::Failed as i32;
                return Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS });
            }
            if let Some(run) = &replay.run {
                print_run(run);
            }
            if replay.original_request.is_none() {
                println!("the event sent no request to compare with");
            } else if replay.changes.is_empty() {
                println!("no changes: the replay renders the request the event sent");
            } else {
                let rows: Vec<serde_json::Value> = replay.changes.iter().map(to_json).collect();
                print_table(&rows, &[("FIELD", "field"), ("BEFORE", "before"), ("AFTER", "after")]);
            }
            if replay.run.is_some_and(|run| run.failure.is_some()) {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A streamed event as one table row, without the heading again.
fn print_rows(event: &api::Event) {
    let mut value = to_json(event);
    shorten_enums::<api::Event>(&mut value, COLUMNS);
    let cells: Vec<String> = COLUMNS.iter().map(|(_, path)| cell(&value, path)).collect();
    println!("{}", cells.join("  "));
}
