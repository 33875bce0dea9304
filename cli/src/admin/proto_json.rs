//! Messages as canonical proto3 JSON, in and out, through the API's own
//! descriptors (`prost-reflect`): what `-o json` prints and what `-f`
//! files hold, the same mapping every other language's SDK uses
//! (camelCase names, 64-bit integers as strings, enums by name).

use std::sync::LazyLock;

use anyhow::Context as _;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde_json::Value;

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(hookplane::api::FILE_DESCRIPTOR_SET).expect("the API's own descriptors decode")
});

/// A generated message and its full proto name.
pub trait Proto: Message + Default {
    const NAME: &'static str;
}

macro_rules! protos {
    ($($ty:ident),* $(,)?) => {
        $(impl Proto for hookplane::api::v1::$ty {
            const NAME: &'static str = concat!("hookplane.v1.", stringify!($ty));
        })*
    };
}

protos!(
    ApiKey,
    Connector,
    CreateSubscriptionResponse,
    Delivery,
    Event,
    IntegrationExamples,
    IssuedCredential,
    ListConnectorsResponse,
    ListEventsResponse,
    Node,
    Organization,
    Plan,
    ReplayEventResponse,
    RequestChange,
    Secret,
    Subscription,
    TestRun,
);

fn descriptor(name: &str) -> MessageDescriptor {
    POOL.get_message_by_name(name).unwrap_or_else(|| panic!("{name} is in the API's descriptors"))
}

/// `message` as proto3 JSON, fields at their defaults left out.
pub fn to_json<M: Proto>(message: &M) -> Value {
    let dynamic = DynamicMessage::decode(descriptor(M::NAME), message.encode_to_vec().as_slice())
        .expect("a message decodes with its own descriptor");
    let options = SerializeOptions::new().skip_default_fields(true);
    dynamic.serialize_with_options(serde_json::value::Serializer, &options).expect("proto3 JSON serializes")
}

/// How a table shows the value at `path` (JSON names, dotted) of message
/// `M`: an enum value without its type's prefix, in lower case
/// (`EVENT_STATUS_FAILED` is `failed`); anything else as it is.
pub fn short_enum_value<M: Proto>(path: &str, value: &str) -> Option<String> {
    let mut message = descriptor(M::NAME);
    let mut field = None;
    for name in path.split('.') {
        let found = message.fields().find(|f| f.json_name() == name)?;
        if let prost_reflect::Kind::Message(inner) = found.kind() {
            message = inner;
        }
        field = Some(found);
    }
    let prost_reflect::Kind::Enum(enumeration) = field?.kind() else { return None };
    let mut prefix = String::new();
    for (i, ch) in enumeration.name().chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            prefix.push('_');
        }
        prefix.push(ch.to_ascii_uppercase());
    }
    prefix.push('_');
    Some(value.strip_prefix(&prefix)?.to_ascii_lowercase())
}

/// A message from proto3 JSON (camelCase or the proto's field names).
pub fn from_json<M: Proto>(value: Value) -> anyhow::Result<M> {
    let dynamic = DynamicMessage::deserialize(descriptor(M::NAME), value)
        .with_context(|| format!("not a valid {}", M::NAME.trim_start_matches("hookplane.v1.")))?;
    Ok(dynamic.transcode_to::<M>()?)
}

/// A YAML or JSON file's document (JSON is YAML).
pub fn read_document(path: &std::path::Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml_ng::from_str(&text).with_context(|| format!("{} is neither YAML nor JSON", path.display()))
}

#[cfg(test)]
mod tests {
    use hookplane::api::v1 as api;
    use serde_json::json;

    use super::*;

    #[test]
    fn messages_round_trip_as_canonical_json() {
        let connector = api::Connector {
            id: "con_1".into(),
            display_name: "orders".into(),
            auth: Some(api::InboundAuth { bearer_token: true, ..Default::default() }),
            ..Default::default()
        };
        let value = to_json(&connector);
        assert_eq!(value, json!({"id": "con_1", "displayName": "orders", "auth": {"bearerToken": true}}));
        assert_eq!(from_json::<api::Connector>(value).unwrap(), connector);
        let snake = json!({"display_name": "orders", "auth": {"bearer_token": true}});
        assert_eq!(from_json::<api::Connector>(snake).unwrap().display_name, "orders");
        assert_eq!(short_enum_value::<api::Event>("status", "EVENT_STATUS_FAILED").as_deref(), Some("failed"));
        assert_eq!(short_enum_value::<api::ApiKey>("role", "API_KEY_ROLE_ADMIN").as_deref(), Some("admin"));
        assert_eq!(short_enum_value::<api::Event>("connectorId", "con_1"), None);
        let event = api::Event { id: 1 << 52, ..Default::default() };
        assert_eq!(to_json(&event)["id"], json!("4503599627370496"), "int64 is a string");
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let err = from_json::<api::Connector>(json!({"displayNmae": "x"})).unwrap_err();
        assert!(format!("{err:#}").contains("displayNmae"), "{err:#}");
    }
}
