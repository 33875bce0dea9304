//! Requests the tests build over and over.

use hookplane_sdk::api;

/// A valid connector with bearer-token auth posting JSON to a target.
pub fn connector(name: &str) -> api::Connector {
    api::Connector {
        display_name: name.to_owned(),
        description: "created by a test".to_owned(),
        auth: Some(api::InboundAuth { bearer_token: true, ..Default::default() }),
        perform: Some(api::Perform {
            method: "POST".to_owned(),
            url: "https://api.example.com/orders".to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn create_connector(connector: api::Connector) -> api::CreateConnectorRequest {
    api::CreateConnectorRequest { connector: Some(connector), request_id: String::new() }
}

pub fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask { paths: paths.iter().map(|p| (*p).to_owned()).collect() })
}

pub fn secret(name: &str, value: &str) -> api::CreateSecretRequest {
    api::CreateSecretRequest {
        secret: Some(api::Secret { name: name.to_owned(), value: value.to_owned(), ..Default::default() }),
        request_id: String::new(),
    }
}
