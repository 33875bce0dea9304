//! `hookplane subscriptions …`: platform webhooks (SPEC §8) and their
//! delivery log.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use hookplane_sdk::api;

use super::Connection;
use super::connectors::sdk;
use super::output::{Format, print_list, print_one};
use super::proto_json::{from_json, read_document};

#[derive(Subcommand, Debug)]
pub enum SubscriptionsCommand {
    /// Lists the organization's subscriptions.
    List,
    /// Shows one subscription.
    Get { id: String },
    /// Subscribes an endpoint from a file; prints its signing secret once.
    Create {
        #[arg(short, long)]
        file: PathBuf,
    },
    /// Deletes a subscription.
    Delete { id: String },
    /// The delivery log of a subscription, newest first.
    Deliveries { id: String },
    /// Sends a `webhook.test` event to a subscription now.
    SendTest { id: String },
    /// Delivers a delivery again.
    Resend { delivery_id: String },
}

pub async fn run(connection: &Connection, command: SubscriptionsCommand) -> anyhow::Result<ExitCode> {
    let client = connection.client().await?;
    let mut subscriptions = client.subscriptions();
    let format = connection.output;
    match command {
        SubscriptionsCommand::List => {
            let mut all = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = api::ListSubscriptionsRequest { page_size: 1000, page_token };
                let page = subscriptions.list_subscriptions(request).await.map_err(sdk)?.into_inner();
                all.extend(page.subscriptions);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            let columns = [("ID", "id"), ("URL", "url"), ("ENABLED", "enabled"), ("EVENT TYPES", "eventTypes")];
            print_list(format, &all, &columns);
        }
        SubscriptionsCommand::Get { id } => {
            let request = api::GetSubscriptionRequest { id };
            print_one(&subscriptions.get_subscription(request).await.map_err(sdk)?.into_inner());
        }
        SubscriptionsCommand::Create { file } => {
            let subscription = from_json(read_document(&file)?)?;
            let request =
                api::CreateSubscriptionRequest { subscription: Some(subscription), request_id: String::new() };
            let created = subscriptions.create_subscription(request).await.map_err(sdk)?.into_inner();
            match (format, &created.subscription) {
                (Format::Table, Some(subscription)) => {
                    println!("created {} for {}", subscription.id, subscription.url);
                    println!("signing secret: {}", created.secret);
                    println!("store the secret now: it is not shown again");
                }
                _ => print_one(&created),
            }
        }
        SubscriptionsCommand::Delete { id } => {
            subscriptions
                .delete_subscription(api::DeleteSubscriptionRequest { id: id.clone(), ..Default::default() })
                .await
                .map_err(sdk)?;
            eprintln!("deleted {id}");
        }
        SubscriptionsCommand::Deliveries { id } => {
            let request = api::ListDeliveriesRequest { subscription_id: id, page_size: 100, ..Default::default() };
            let deliveries = subscriptions.list_deliveries(request).await.map_err(sdk)?.into_inner().deliveries;
            let columns = [("ID", "id"), ("TYPE", "eventType"), ("STATUS", "status"), ("CREATED", "createTime")];
            print_list(format, &deliveries, &columns);
        }
        SubscriptionsCommand::SendTest { id } => {
            let request = api::SendTestEventRequest { id };
            print_one(&subscriptions.send_test_event(request).await.map_err(sdk)?.into_inner());
        }
        SubscriptionsCommand::Resend { delivery_id } => {
            let request = api::ResendDeliveryRequest { id: delivery_id };
            print_one(&subscriptions.resend_delivery(request).await.map_err(sdk)?.into_inner());
        }
    }
    Ok(ExitCode::SUCCESS)
}
