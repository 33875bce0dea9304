//! Connectors, payloads and plans shared by the trigger suites.

use std::time::Duration;

use hookplane_sdk::api;

use super::fixtures::create_connector;
use super::{TestPlane, eventually};

/// A connector posting a mapped JSON body to `url` with bearer auth.
pub fn mapped_connector(url: &str) -> api::Connector {
    api::Connector {
        display_name: "orders".into(),
        auth: Some(api::InboundAuth { bearer_token: true, ..Default::default() }),
        condition: "$payload.total > 0".into(),
        mappings: vec![
            api::FieldMapping { name: "email".into(), expression: "lower(trim($payload.customer.email))".into() },
            api::FieldMapping { name: "cents".into(), expression: "$payload.total * 100".into() },
        ],
        perform: Some(api::Perform {
            method: "PUT".into(),
            url: format!("{url}/orders/$payload.id"),
            query: vec![api::NamedTemplate { name: "source".into(), value: "hookplane".into() }],
            body_type: api::BodyType::Json as i32,
            body: vec![
                api::BodyField { key: "customer.email".into(), value: "$processed.email".into(), ..Default::default() },
                api::BodyField { key: "amount.cents".into(), value: "$processed.cents".into(), ..Default::default() },
                api::BodyField { key: "note".into(), value: "order $payload.id".into(), ..Default::default() },
            ],
            retry: Some(api::RetryPolicy {
                max_attempts: 3,
                initial_backoff: Some(prost_types::Duration { seconds: 0, nanos: 20_000_000 }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates `connector`; returns its id and its first issued credential.
pub async fn create(plane: &TestPlane, connector: api::Connector) -> (String, String) {
    let created = plane.admin.connectors().create_connector(create_connector(connector)).await.unwrap().into_inner();
    let token = created.issued_credentials.first().map(|c| c.token.clone()).unwrap_or_default();
    (created.id, token)
}

/// Waits until event `id` can be read through the API.
pub async fn event(plane: &TestPlane, id: i64) -> api::Event {
    eventually(Duration::from_secs(5), "the event reaches the API", || async {
        plane.admin.events().get_event(api::GetEventRequest { id }).await.ok().map(|r| r.into_inner())
    })
    .await
}

/// A payload `mapped_connector` maps.
pub const ORDER: &str = r#"{"id":"A-17","total":12.5,"customer":{"email":"  Ada@Example.COM "}}"#;

/// Creates `plan` and moves the test organization onto it.
pub async fn use_plan(plane: &TestPlane, plan: api::Plan) {
    let name = plan.name.clone();
    plane.operator.plans().create_plan(api::CreatePlanRequest { plan: Some(plan) }).await.unwrap();
    plane.set_plan(&name).await;
}
