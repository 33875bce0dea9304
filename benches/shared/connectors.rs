//! The connector the config benchmarks deploy by the thousand: a condition,
//! three mappings, a perform with a templated URL, two headers (one reading
//! a secret) and a five-field body, as a typical production connector.

use hookplane_control_plane::store::Store;
use hookplane_model::Connector;
use hookplane_sdk::api;

/// Stores `count` realistic connectors of `organization` directly (ids
/// `con_` + 22 digits), as a large deployment would hold.
pub async fn deploy(store: &Store, organization: &str, count: usize) {
    let spec = hookplane_convert::connector_from_api(&realistic_connector(), "connector").expect("a valid connector");
    let now = hookplane_model::now();
    for i in 0..count {
        let connector = Connector {
            id: format!("con_{i:022}"),
            organization_id: organization.to_owned(),
            spec: spec.clone(),
            tokens: Vec::new(),
            create_time: now,
            update_time: now,
            revision: 1,
        };
        store.create_connector(&connector, None).await.expect("stored");
    }
}

pub fn realistic_connector() -> api::Connector {
    let named = |name: &str, value: &str| api::NamedTemplate { name: name.into(), value: value.into() };
    api::Connector {
        display_name: "New orders to the ERP".into(),
        description: "Forwards paid orders".into(),
        auth: Some(api::InboundAuth { bearer_token: true, ..Default::default() }),
        condition: "$payload.status == \"paid\"".into(),
        mappings: vec![
            api::FieldMapping { name: "order_id".into(), expression: "$payload.id".into() },
            api::FieldMapping { name: "email".into(), expression: "lower($payload.customer.email)".into() },
            api::FieldMapping { name: "total".into(), expression: "$payload.amount / 100".into() },
        ],
        perform: Some(api::Perform {
            method: "POST".into(),
            url: "https://erp.example.com/api/orders/$processed.order_id".into(),
            headers: vec![named("Authorization", "Bearer $secret.ERP_TOKEN"), named("X-Source", "hookplane")],
            body: (0..5)
                .map(|i| api::BodyField {
                    key: format!("field_{i}"),
                    value: "$processed.order_id".to_owned(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}
