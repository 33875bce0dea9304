//! Nested `update_mask` paths (AIP-134), such as `perform.url`: the field
//! at the end of the path is copied from the patch into the merged
//! message, leaving its siblings as they were. The walk goes by the API's
//! own descriptors, so every nested field can be named without a list to
//! keep in step with the proto. A path may cross singular message fields
//! only: a repeated field or a map is replaced whole, by naming it.

use std::sync::OnceLock;

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor, ReflectMessage as _};

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(hookplane::api::FILE_DESCRIPTOR_SET).expect("the API's own descriptors decode")
    })
}

fn descriptor(full_name: &str) -> MessageDescriptor {
    pool().get_message_by_name(full_name).expect("a message of the API")
}

/// Copies the field `path` names (dot-separated, at least two parts) from
/// `patch` into `merged`, both `full_name` messages; why not, naming the
/// part of the path that does not exist or cannot be crossed.
pub(super) fn copy_nested<M: prost::Message + Default>(
    full_name: &str,
    merged: &mut M,
    patch: &M,
    path: &str,
) -> Result<(), String> {
    let desc = descriptor(full_name);
    let mut into = DynamicMessage::decode(desc.clone(), merged.encode_to_vec().as_slice())
        .map_err(|e| format!("the stored value does not decode: {e}"))?;
    let from = DynamicMessage::decode(desc, patch.encode_to_vec().as_slice())
        .map_err(|e| format!("the patch does not decode: {e}"))?;
    let parts: Vec<&str> = path.split('.').collect();
    check(&into.descriptor(), &parts, path)?;
    copy(&mut into, Some(&from), &parts, path)?;
    *merged =
        M::decode(into.encode_to_vec().as_slice()).map_err(|e| format!("the merged value does not decode: {e}"))?;
    Ok(())
}

/// Whether `parts` name a field reachable through singular messages.
fn check(desc: &MessageDescriptor, parts: &[&str], path: &str) -> Result<(), String> {
    let name = parts[0];
    let field =
        desc.get_field_by_name(name).ok_or_else(|| format!("`{path}`: `{name}` is not a field of {}", desc.name()))?;
    if parts.len() == 1 {
        return Ok(());
    }
    match field.kind() {
        Kind::Message(child) if !field.is_list() && !field.is_map() => check(&child, &parts[1..], path),
        _ => Err(format!("`{path}`: `{name}` cannot be crossed; name it to replace it whole")),
    }
}

fn copy(into: &mut DynamicMessage, from: Option<&DynamicMessage>, parts: &[&str], path: &str) -> Result<(), String> {
    let desc = into.descriptor();
    let name = parts[0];
    let field =
        desc.get_field_by_name(name).ok_or_else(|| format!("`{path}`: `{name}` is not a field of {}", desc.name()))?;
    if parts.len() == 1 {
        match from.filter(|from| from.has_field(&field)) {
            Some(from) => into.set_field(&field, from.get_field(&field).into_owned()),
            None => into.clear_field(&field),
        }
        return Ok(());
    }
    if field.is_list() || field.is_map() || !matches!(field.kind(), Kind::Message(_)) {
        return Err(format!("`{path}`: `{name}` cannot be crossed; name it to replace it whole"));
    }
    let child_from = from.filter(|from| from.has_field(&field)).map(|from| from.get_field(&field).into_owned());
    if child_from.is_none() && !into.has_field(&field) {
        // Neither side has the parent: there is nothing to change (making
        // it would add an empty message the spec may not accept).
        return Ok(());
    }
    let child_from = child_from.as_ref().and_then(|value| value.as_message());
    let child = into.get_field_mut(&field);
    let child = child.as_message_mut().expect("a singular message field holds a message");
    copy(child, child_from, &parts[1..], path)
}

#[cfg(test)]
mod tests {
    use hookplane::api::v1 as api;

    use super::*;

    #[test]
    fn a_nested_path_replaces_that_field_alone() {
        let stored = api::Connector {
            perform: Some(api::Perform {
                url: "https://old.example.com".into(),
                method: "PUT".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let patch = api::Connector {
            perform: Some(api::Perform { url: "https://new.example.com".into(), ..Default::default() }),
            ..Default::default()
        };
        let mut merged = stored.clone();
        copy_nested("hookplane.v1.Connector", &mut merged, &patch, "perform.url").unwrap();
        let perform = merged.perform.unwrap();
        assert_eq!((perform.url.as_str(), perform.method.as_str()), ("https://new.example.com", "PUT"));

        let mut cleared = stored.clone();
        copy_nested("hookplane.v1.Connector", &mut cleared, &api::Connector::default(), "perform.url").unwrap();
        assert_eq!(cleared.perform.unwrap().url, "", "a field the patch leaves unset is cleared");

        let mut created = api::Connector::default();
        copy_nested("hookplane.v1.Connector", &mut created, &patch, "perform.url").unwrap();
        assert_eq!(created.perform.unwrap().url, "https://new.example.com", "a parent the patch has is made");
        let mut untouched = api::Connector::default();
        copy_nested("hookplane.v1.Connector", &mut untouched, &api::Connector::default(), "lookup.url").unwrap();
        assert_eq!(untouched.lookup, None, "a parent neither side has is not made");
    }

    #[test]
    fn paths_that_do_not_exist_or_cross_a_list_are_refused() {
        let mut merged = api::Connector::default();
        let patch = api::Connector::default();
        let unknown = copy_nested("hookplane.v1.Connector", &mut merged, &patch, "perform.urll").unwrap_err();
        assert!(unknown.contains("`urll` is not a field of Perform"), "{unknown}");
        let list = copy_nested("hookplane.v1.Connector", &mut merged, &patch, "mappings.name").unwrap_err();
        assert!(list.contains("cannot be crossed"), "{list}");
        let scalar = copy_nested("hookplane.v1.Connector", &mut merged, &patch, "display_name.x").unwrap_err();
        assert!(scalar.contains("cannot be crossed"), "{scalar}");
    }
}
