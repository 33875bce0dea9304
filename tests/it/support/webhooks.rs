//! Platform-webhook subscriptions and receivers for the suites that
//! check them (`platform_webhooks`, `platform_events`).

use hookplane_sdk::{Client, api};

use super::fixtures::mask;
use super::python::Received as Delivered;
use super::targets::Received;
use super::triggers::{create, mapped_connector};
use super::{TestPlane, eventually};
use std::time::Duration;

pub const ALL_CHANGES: [&str; 4] =
    ["connector.created", "connector.updated", "connector.tokens_rotated", "connector.deleted"];

pub fn subscription(url: String, scheme: api::SignatureScheme, types: &[&str]) -> api::CreateSubscriptionRequest {
    api::CreateSubscriptionRequest {
        subscription: Some(api::Subscription {
            url,
            description: "test receiver".into(),
            event_types: types.iter().map(|t| (*t).to_owned()).collect(),
            signature_scheme: scheme as i32,
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

/// Subscribes `url`; its id and signing secret.
pub async fn subscribe(client: &Client, url: String, scheme: api::SignatureScheme, types: &[&str]) -> (String, String) {
    let created = client.subscriptions().create_subscription(subscription(url, scheme, types)).await.unwrap();
    let created = created.into_inner();
    (created.subscription.unwrap().id, created.secret)
}

/// Creates, renames, rotates the tokens of, and deletes a connector: one
/// event of each connector type.
pub async fn change_a_connector(plane: &TestPlane) -> String {
    let (id, _) = create(plane, mapped_connector("https://erp.example.com")).await;
    let mut connectors = plane.admin.connectors();
    let patch = api::Connector { id: id.clone(), display_name: "renamed".into(), ..Default::default() };
    let update = api::UpdateConnectorRequest { connector: Some(patch), update_mask: mask(&["display_name"]) };
    connectors.update_connector(update).await.unwrap();
    let rotate = api::RotateConnectorTokensRequest { id: id.clone(), grace_period: None };
    connectors.rotate_connector_tokens(rotate).await.unwrap();
    connectors.delete_connector(api::DeleteConnectorRequest { id: id.clone(), etag: String::new() }).await.unwrap();
    id
}

pub async fn deliveries(client: &Client, subscription: &str) -> Vec<api::Delivery> {
    let request = api::ListDeliveriesRequest { subscription_id: subscription.to_owned(), ..Default::default() };
    client.subscriptions().list_deliveries(request).await.unwrap().into_inner().deliveries
}

/// Waits until `subscription` has `n` deliveries that are no longer pending.
pub async fn settled(client: &Client, subscription: &str, n: usize) -> Vec<api::Delivery> {
    eventually(Duration::from_secs(20), "the deliveries settle", || async {
        let all = deliveries(client, subscription).await;
        (all.len() == n && all.iter().all(|d| d.status != api::DeliveryStatus::Pending as i32)).then_some(all)
    })
    .await
}

pub fn verified<'a>(scheme: &'a str, secret: &'a str, received: &'a Received) -> Delivered<'a> {
    Delivered {
        scheme,
        secret,
        body: std::str::from_utf8(&received.body).expect("a JSON body"),
        headers: &received.headers,
    }
}
