//! Checks that bytes decode as an API message, without decoding them.
//!
//! A node sends each event's trace already encoded and the control plane
//! stores those bytes as they are. Decoding them only to check them would
//! allocate every header and payload string of every event, which is most
//! of what decoding costs. [`WireSchema`] instead walks the wire format
//! against the message's descriptor, taken from the compiled `proto/` so it
//! cannot fall out of step with the generated types, and accepts exactly
//! the inputs prost's decoder accepts (a property test holds it to that).

use std::collections::HashMap;
use std::sync::LazyLock;

use prost::Message as _;
use prost::bytes::Buf as _;
use prost::encoding::{WireType, decode_key, decode_varint};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

/// prost's nesting limit (`prost::RECURSION_LIMIT`, not exported).
const RECURSION_LIMIT: u32 = 100;

/// Why bytes are not a well-formed message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("malformed protobuf: {0}")]
    Malformed(#[from] prost::DecodeError),
    #[error("field {tag} has the wrong wire type")]
    WrongWireType { tag: u32 },
    #[error("field {tag} is not valid UTF-8")]
    NotUtf8 { tag: u32 },
    #[error("a length runs past the end of its message")]
    Truncated,
    #[error("messages nest too deep")]
    TooDeep,
}

/// The schema reported event traces are checked against, built from the
/// compiled API on first use.
pub fn event_trace() -> &'static WireSchema {
    static SCHEMA: LazyLock<WireSchema> = LazyLock::new(|| {
        WireSchema::new(hookplane::api::FILE_DESCRIPTOR_SET, ".hookplane.v1.EventTrace")
            .expect("the compiled API describes EventTrace")
    });
    &SCHEMA
}

/// What the wire must hold for one known field.
#[derive(Clone, Copy, Debug)]
enum Expect {
    Varint,
    Fixed32,
    Fixed64,
    Bytes,
    Text,
    /// A message, map entries included.
    Message(usize),
}

#[derive(Clone, Copy, Debug)]
struct Field {
    expect: Expect,
    /// A repeated number, which may also come packed.
    packable: bool,
}

/// The fields of every message reachable from one root message.
#[derive(Debug)]
pub struct WireSchema {
    /// Per message, its known fields indexed by number (API messages
    /// number their fields densely from 1); the root is message 0.
    messages: Vec<Vec<Option<Field>>>,
}

impl WireSchema {
    /// The schema of `root` (a full name, `.hookplane.v1.EventTrace`) in an
    /// encoded descriptor set; `None` if a message it needs is missing.
    pub fn new(descriptor_set: &[u8], root: &str) -> Option<WireSchema> {
        let set = FileDescriptorSet::decode(descriptor_set).ok()?;
        let mut all = HashMap::new();
        for file in &set.file {
            let package = file.package.as_deref().unwrap_or_default();
            let prefix = if package.is_empty() { String::new() } else { format!(".{package}") };
            for message in &file.message_type {
                index(&prefix, message, &mut all);
            }
        }
        let mut schema = WireSchema { messages: Vec::new() };
        let mut numbers = HashMap::new();
        schema.add(root, &all, &mut numbers)?;
        Some(schema)
    }

    /// Gives `name` a number and fills in its fields (and theirs).
    fn add(
        &mut self,
        name: &str,
        all: &HashMap<String, &DescriptorProto>,
        numbers: &mut HashMap<String, usize>,
    ) -> Option<usize> {
        if let Some(&number) = numbers.get(name) {
            return Some(number);
        }
        let descriptor = all.get(name)?;
        let number = self.messages.len();
        numbers.insert(name.to_owned(), number);
        self.messages.push(Vec::new());
        let mut fields = Vec::new();
        for field in &descriptor.field {
            let repeated = field.label() == Label::Repeated;
            let (expect, numeric) = match field.r#type() {
                Type::String => (Expect::Text, false),
                Type::Bytes => (Expect::Bytes, false),
                // proto3 has no groups; a schema with one is not supported.
                Type::Group => return None,
                Type::Message => {
                    let nested = self.add(field.type_name(), all, numbers)?;
                    (Expect::Message(nested), false)
                }
                Type::Fixed32 | Type::Sfixed32 | Type::Float => (Expect::Fixed32, true),
                Type::Fixed64 | Type::Sfixed64 | Type::Double => (Expect::Fixed64, true),
                Type::Int32 | Type::Int64 | Type::Uint32 | Type::Uint64 | Type::Sint32 | Type::Sint64 | Type::Bool => {
                    (Expect::Varint, true)
                }
                Type::Enum => (Expect::Varint, true),
            };
            // Dense by number; a schema numbering fields far apart is not
            // supported rather than given a huge table.
            let slot = usize::try_from(field.number()).ok().filter(|&n| n <= 4096)?;
            if fields.len() <= slot {
                fields.resize(slot + 1, None);
            }
            fields[slot] = Some(Field { expect, packable: repeated && numeric });
        }
        self.messages[number] = fields;
        Some(number)
    }

    /// Whether `bytes` decode as the root message.
    pub fn check(&self, bytes: &[u8]) -> Result<(), WireError> {
        self.check_message(0, bytes, RECURSION_LIMIT)
    }

    /// `budget` is prost's recursion count at this message's fields.
    fn check_message(&self, message: usize, mut buf: &[u8], budget: u32) -> Result<(), WireError> {
        let fields = &self.messages[message];
        while !buf.is_empty() {
            let (tag, wire_type) = decode_key(&mut buf)?;
            let Some(field) = fields.get(tag as usize).copied().flatten() else {
                skip(wire_type, tag, &mut buf, budget)?;
                continue;
            };
            match (field.expect, wire_type) {
                (Expect::Message(nested), WireType::LengthDelimited) => {
                    let body = delimited(&mut buf)?;
                    self.nested(nested, body, budget)?;
                }
                (Expect::Text, WireType::LengthDelimited) => {
                    std::str::from_utf8(delimited(&mut buf)?).map_err(|_| WireError::NotUtf8 { tag })?;
                }
                (Expect::Bytes, WireType::LengthDelimited) => {
                    delimited(&mut buf)?;
                }
                (number, WireType::LengthDelimited) if field.packable => {
                    let mut packed = delimited(&mut buf)?;
                    while !packed.is_empty() {
                        scalar(number, &mut packed)?;
                    }
                }
                (number @ Expect::Varint, WireType::Varint)
                | (number @ Expect::Fixed32, WireType::ThirtyTwoBit)
                | (number @ Expect::Fixed64, WireType::SixtyFourBit) => scalar(number, &mut buf)?,
                _ => return Err(WireError::WrongWireType { tag }),
            }
        }
        Ok(())
    }

    fn nested(&self, message: usize, body: &[u8], budget: u32) -> Result<(), WireError> {
        if budget == 0 {
            return Err(WireError::TooDeep);
        }
        self.check_message(message, body, budget - 1)
    }
}

/// Registers `message` and its nested types under their full names.
fn index<'d>(prefix: &str, message: &'d DescriptorProto, all: &mut HashMap<String, &'d DescriptorProto>) {
    let name = format!("{prefix}.{}", message.name());
    for nested in &message.nested_type {
        index(&name, nested, all);
    }
    all.insert(name, message);
}

/// A length-delimited value's bytes.
fn delimited<'b>(buf: &mut &'b [u8]) -> Result<&'b [u8], WireError> {
    let length = decode_varint(buf)?;
    let length = usize::try_from(length).ok().filter(|&l| l <= buf.len()).ok_or(WireError::Truncated)?;
    let (value, rest) = buf.split_at(length);
    *buf = rest;
    Ok(value)
}

/// One number of a numeric field.
fn scalar(expect: Expect, buf: &mut &[u8]) -> Result<(), WireError> {
    let width = match expect {
        Expect::Fixed32 => 4,
        Expect::Fixed64 => 8,
        _ => {
            decode_varint(buf)?;
            return Ok(());
        }
    };
    if buf.len() < width {
        return Err(WireError::Truncated);
    }
    buf.advance(width);
    Ok(())
}

/// Skips an unknown field as `prost::encoding::skip_field` does, groups
/// included, with the same nesting budget.
fn skip(wire_type: WireType, tag: u32, buf: &mut &[u8], budget: u32) -> Result<(), WireError> {
    if budget == 0 {
        return Err(WireError::TooDeep);
    }
    let length = match wire_type {
        WireType::Varint => {
            decode_varint(buf)?;
            0
        }
        WireType::ThirtyTwoBit => 4,
        WireType::SixtyFourBit => 8,
        WireType::LengthDelimited => decode_varint(buf)?,
        WireType::StartGroup => loop {
            let (inner_tag, inner_type) = decode_key(buf)?;
            match inner_type {
                WireType::EndGroup if inner_tag == tag => break 0,
                WireType::EndGroup => return Err(WireError::WrongWireType { tag: inner_tag }),
                _ => skip(inner_type, inner_tag, buf, budget - 1)?,
            }
        },
        WireType::EndGroup => return Err(WireError::WrongWireType { tag }),
    };
    let length = usize::try_from(length).ok().filter(|&l| l <= buf.len()).ok_or(WireError::Truncated)?;
    buf.advance(length);
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::Message as _;

    use super::*;
    use hookplane::api::v1 as api;

    fn sample() -> Vec<u8> {
        api::EventTrace {
            request: Some(api::InboundRequestTrace {
                client_ip: "192.0.2.1".into(),
                headers: [("content-type".to_owned(), "application/json".to_owned())].into(),
                auth_method: "token".into(),
                body_bytes: 42,
            }),
            payload: r#"{"status":"paid","amount":12}"#.into(),
            condition_result: Some(true),
            lookup: None,
            processed: r#"{"id":"o-1"}"#.into(),
            perform_attempts: vec![api::HttpExchangeTrace {
                method: "POST".into(),
                url: "https://api.example.com/orders".into(),
                request_headers: [("authorization".to_owned(), "[redacted]".to_owned())].into(),
                request_body: "{}".into(),
                status: Some(201),
                response_excerpt: "ok".into(),
                error: String::new(),
                duration: Some(prost_types::Duration { seconds: 0, nanos: 3_000_000 }),
            }],
        }
        .encode_to_vec()
    }

    #[test]
    fn a_real_trace_passes_and_its_damaged_forms_do_not() {
        let schema = event_trace();
        let bytes = sample();
        assert_eq!(schema.check(&bytes), Ok(()));
        assert_eq!(schema.check(&[]), Ok(()), "an empty trace is a valid message");
        assert!(schema.check(&bytes[..bytes.len() - 1]).is_err(), "truncated");
        // Field 2 (payload, a string) holding invalid UTF-8.
        assert_eq!(schema.check(&[0x12, 0x02, 0xc3, 0x28]), Err(WireError::NotUtf8 { tag: 2 }));
        // Field 2 as a varint.
        assert_eq!(schema.check(&[0x10, 0x01]), Err(WireError::WrongWireType { tag: 2 }));
        // An unknown field is skipped, as prost does.
        assert_eq!(schema.check(&[0xf8, 0x07, 0x05]), Ok(()));
    }

    /// Inputs around valid traces: the real thing, cut short, with bytes
    /// or wire types overwritten, with bytes inserted, or random.
    fn inputs() -> impl Strategy<Value = Vec<u8>> {
        let base = sample();
        let length = base.len();
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            (0..=length).prop_map({
                let base = base.clone();
                move |end| base[..end].to_vec()
            }),
            proptest::collection::vec((0..length, any::<u8>()), 1..4).prop_map({
                let base = base.clone();
                move |edits| {
                    let mut bytes = base.clone();
                    for (at, byte) in edits {
                        bytes[at] = byte;
                    }
                    bytes
                }
            }),
            // A key's low three bits are its wire type.
            (0..length, 0u8..8).prop_map({
                let base = base.clone();
                move |(at, wire_type)| {
                    let mut bytes = base.clone();
                    bytes[at] = (bytes[at] & !7) | wire_type;
                    bytes
                }
            }),
            (0..=length, proptest::collection::vec(any::<u8>(), 1..6)).prop_map(move |(at, extra)| {
                let mut bytes = base.clone();
                bytes.splice(at..at, extra);
                bytes
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn accepts_exactly_what_prost_decodes(bytes in inputs()) {
            let decoded = api::EventTrace::decode(bytes.as_slice());
            prop_assert_eq!(event_trace().check(&bytes).is_ok(), decoded.is_ok(), "prost: {:?}", decoded.err());
        }
    }

    #[test]
    fn a_map_entry_must_come_length_delimited() {
        // EventTrace.request { headers (field 2) tagged as a varint }.
        let bytes = [0x0a, 0x05, 0x10, 0x03, 0x0a, 0x01, b'a'];
        assert!(api::EventTrace::decode(bytes.as_slice()).is_err());
        assert_eq!(event_trace().check(&bytes), Err(WireError::WrongWireType { tag: 2 }));
    }

    #[test]
    fn deeply_nested_groups_in_unknown_fields_hit_the_same_limit_as_prost() {
        for depth in [90, 99, 100, 101, 120] {
            // Field 15 as nested groups: start-group keys, then end-group keys.
            let mut bytes = vec![0x7b; depth];
            bytes.extend(std::iter::repeat_n(0x7c, depth));
            let prost_ok = api::EventTrace::decode(bytes.as_slice()).is_ok();
            assert_eq!(event_trace().check(&bytes).is_ok(), prost_ok, "depth {depth}");
        }
    }
}
