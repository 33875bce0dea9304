//! The proto3 fields a node's trace writers put by hand (`inbound_trace`,
//! `exchange_trace`): strings and `map<string, string>`, in the encoding
//! prost gives them.

use std::borrow::Cow;

use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

/// A map entry's key and value.
const ENTRY_KEY: u32 = 1;
const ENTRY_VALUE: u32 = 2;

/// A `map<string, string>` field's length, an entry per pair.
pub(crate) fn map_len(tag: u32, entries: &[(&str, Cow<'_, str>)]) -> usize {
    entries
        .iter()
        .map(|(name, value)| {
            let entry = entry_len(name, value);
            key_len(tag) + encoded_len_varint(entry as u64) + entry
        })
        .sum()
}

/// Writes a `map<string, string>` field, an entry per pair in order: a
/// name given twice keeps its last value when decoded, as in a map.
pub(crate) fn put_map(tag: u32, entries: &[(&str, Cow<'_, str>)], buf: &mut Vec<u8>) {
    for (name, value) in entries {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(entry_len(name, value) as u64, buf);
        put_string(ENTRY_KEY, name, buf);
        put_string(ENTRY_VALUE, value, buf);
    }
}

fn entry_len(name: &str, value: &str) -> usize {
    string_len(ENTRY_KEY, name) + string_len(ENTRY_VALUE, value)
}

/// A proto3 string field's length; an empty one is not written.
pub(crate) fn string_len(tag: u32, value: &str) -> usize {
    match value.len() {
        0 => 0,
        n => key_len(tag) + encoded_len_varint(n as u64) + n,
    }
}

pub(crate) fn put_string(tag: u32, value: &str, buf: &mut Vec<u8>) {
    if !value.is_empty() {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(value.len() as u64, buf);
        buf.extend_from_slice(value.as_bytes());
    }
}
