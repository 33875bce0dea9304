//! A node's traces, encoded with their inbound part borrowed.
//!
//! The inbound request's part of a trace (its headers and payload) is most
//! of a trace's text and would otherwise be copied out of the request into
//! owned strings, two per header, while the request is being answered. A
//! node borrows the request's own buffers instead and this module writes
//! them straight into the trace's encoding.
//!
//! `EventTrace` fields 1 (`request`) and 2 (`payload`) are written here,
//! field by field; prost writes the rest after them. Fields in ascending
//! order is the encoding prost itself gives the whole message, and the
//! tests decode the result with prost against the owned form.

use std::borrow::Cow;
use std::net::IpAddr;

use prost::Message as _;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use super::event::trace_into_api;
use crate::trace_fields::{map_len, put_map, put_string, string_len};
use crate::{EncodedAttempts, EncodedTrace};
use hookplane_model::EventTrace;

/// `EventTrace.request`, `EventTrace.payload`.
const TRACE_REQUEST: u32 = 1;
const TRACE_PAYLOAD: u32 = 2;
/// `InboundRequestTrace` fields.
const REQUEST_CLIENT_IP: u32 = 1;
const REQUEST_HEADERS: u32 = 2;
const REQUEST_AUTH_METHOD: u32 = 3;
const REQUEST_BODY_BYTES: u32 = 4;

/// The inbound request's part of a trace, borrowed from the request.
#[derive(Clone, Debug, Default)]
pub struct InboundTrace<'a> {
    pub client_ip: Option<IpAddr>,
    /// Names and values as they go into the trace, credentials already
    /// replaced. A name given twice keeps its last value, as in a map.
    pub headers: &'a [(&'a str, Cow<'a, str>)],
    pub auth_method: &'a str,
    pub body_bytes: u64,
    /// The payload as received (JSON text).
    pub payload: &'a str,
}

/// Encodes a trace whose inbound part is `inbound` and whose perform
/// attempts are `attempts` (after any of `rest`'s own); `rest`'s own
/// `request` and `payload` are not used (a node leaves them empty).
pub fn encode_trace_with_inbound(
    inbound: &InboundTrace<'_>,
    rest: EventTrace,
    attempts: &EncodedAttempts,
) -> EncodedTrace {
    let mut rest = trace_into_api(rest);
    rest.request = None;
    rest.payload = String::new();
    let client_ip = inbound.client_ip.map_or(IpText::EMPTY, IpText::new);
    let client_ip = client_ip.as_str();
    let request_len = request_len(inbound, client_ip);
    let len = key_len(TRACE_REQUEST)
        + encoded_len_varint(request_len as u64)
        + request_len
        + string_len(TRACE_PAYLOAD, inbound.payload)
        + rest.encoded_len()
        + attempts.as_bytes().len();
    let mut buf = Vec::with_capacity(len);
    encode_key(TRACE_REQUEST, WireType::LengthDelimited, &mut buf);
    encode_varint(request_len as u64, &mut buf);
    put_string(REQUEST_CLIENT_IP, client_ip, &mut buf);
    put_map(REQUEST_HEADERS, inbound.headers, &mut buf);
    put_string(REQUEST_AUTH_METHOD, inbound.auth_method, &mut buf);
    if inbound.body_bytes != 0 {
        encode_key(REQUEST_BODY_BYTES, WireType::Varint, &mut buf);
        encode_varint(inbound.body_bytes, &mut buf);
    }
    put_string(TRACE_PAYLOAD, inbound.payload, &mut buf);
    // Writing to a Vec cannot run out of room.
    let _ = rest.encode(&mut buf);
    // Field 6, the last: in prost's order after the rest.
    buf.extend_from_slice(attempts.as_bytes());
    debug_assert_eq!(buf.len(), len);
    EncodedTrace::new_unchecked(buf.into())
}

/// An IP address as text, on the stack. IPv4, the common case, is written
/// digit by digit: through `Display` it cost as much as the rest of the
/// inbound part.
struct IpText {
    bytes: [u8; IpText::CAPACITY],
    len: usize,
}

impl IpText {
    /// The longest IPv6 text: `ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`.
    const CAPACITY: usize = 45;

    const EMPTY: IpText = IpText { bytes: [0; IpText::CAPACITY], len: 0 };

    fn new(ip: IpAddr) -> IpText {
        let mut text = IpText::EMPTY;
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    if octet >= 100 {
                        text.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        text.push(b'0' + octet / 10 % 10);
                    }
                    text.push(b'0' + octet % 10);
                }
            }
            IpAddr::V6(v6) => {
                use std::io::Write as _;
                let mut rest = &mut text.bytes[..];
                // The capacity fits every IPv6 text.
                let _ = write!(rest, "{v6}");
                text.len = IpText::CAPACITY - rest.len();
            }
        }
        text
    }

    fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).expect("IP address text is ASCII")
    }
}

/// Length of the `InboundRequestTrace` message, without its key and length.
fn request_len(inbound: &InboundTrace<'_>, client_ip: &str) -> usize {
    let headers = map_len(REQUEST_HEADERS, inbound.headers);
    let body_bytes = match inbound.body_bytes {
        0 => 0,
        n => key_len(REQUEST_BODY_BYTES) + encoded_len_varint(n),
    };
    string_len(REQUEST_CLIENT_IP, client_ip)
        + headers
        + string_len(REQUEST_AUTH_METHOD, inbound.auth_method)
        + body_bytes
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;
    use crate::{decode_trace, encode_trace};
    use hookplane_model::{HttpExchangeTrace, InboundRequestTrace};

    /// The owned trace the borrowed parts stand for.
    fn owned(inbound: &InboundTrace<'_>, rest: &EventTrace) -> EventTrace {
        let headers: BTreeMap<String, String> =
            inbound.headers.iter().map(|(n, v)| ((*n).to_owned(), v.clone().into_owned())).collect();
        EventTrace {
            request: InboundRequestTrace {
                client_ip: inbound.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                headers,
                auth_method: inbound.auth_method.to_owned(),
                body_bytes: inbound.body_bytes,
            },
            payload: inbound.payload.to_owned(),
            ..rest.clone()
        }
    }

    fn pipeline() -> EventTrace {
        EventTrace {
            condition_result: Some(true),
            processed: r#"{"order_id":"o_1"}"#.into(),
            perform_attempts: vec![HttpExchangeTrace {
                method: "POST".into(),
                url: "https://erp.example.com/orders".into(),
                request_headers: BTreeMap::from([("content-type".into(), "application/json".into())]),
                status: Some(201),
                duration_ms: 12,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn encodes_what_prost_encodes_for_the_owned_trace() {
        // In name order, as prost writes a map.
        let headers = [
            ("authorization", Cow::Borrowed("[redacted]")),
            ("content-type", Cow::Borrowed("application/json")),
            ("x-note", Cow::Owned("café".to_owned())),
        ];
        let inbound = InboundTrace {
            client_ip: Some("2001:db8::7".parse().unwrap()),
            headers: &headers,
            auth_method: "bearer_token",
            body_bytes: 330,
            payload: r#"{"id":"o_1"}"#,
        };
        let encoded = encode_trace_with_inbound(&inbound, pipeline(), &EncodedAttempts::default());
        let expected = owned(&inbound, &pipeline());
        assert_eq!(decode_trace(encoded.as_bytes()).unwrap(), expected);
        assert_eq!(
            encoded.as_bytes(),
            encode_trace(expected.clone()).as_bytes(),
            "the bytes prost writes, in its order"
        );
    }

    #[test]
    fn the_rest_of_the_trace_never_brings_its_own_inbound_part() {
        let mut rest = pipeline();
        rest.payload = "stale".into();
        rest.request.headers.insert("stale".into(), "x".into());
        let encoded = encode_trace_with_inbound(&InboundTrace::default(), rest, &EncodedAttempts::default());
        assert_eq!(decode_trace(encoded.as_bytes()).unwrap(), pipeline());
    }

    #[test]
    fn a_header_given_twice_keeps_its_last_value() {
        let headers =
            [("x-forwarded-for", Cow::Borrowed("203.0.113.9")), ("x-forwarded-for", Cow::Borrowed("10.0.0.2"))];
        let inbound = InboundTrace { headers: &headers, ..Default::default() };
        let decoded = decode_trace(
            encode_trace_with_inbound(&inbound, EventTrace::default(), &EncodedAttempts::default()).as_bytes(),
        )
        .unwrap();
        assert_eq!(decoded.request.headers, BTreeMap::from([("x-forwarded-for".into(), "10.0.0.2".into())]));
    }

    proptest! {
        #[test]
        fn decodes_to_the_owned_trace(
            headers in proptest::collection::vec(("[a-z-]{0,12}", ".{0,40}"), 0..8),
            ip in proptest::option::of(any::<IpAddr>()),
            auth_method in "[a-z_]{0,12}",
            body_bytes in any::<u64>(),
            payload in ".{0,200}",
        ) {
            let headers: Vec<(&str, Cow<'_, str>)> =
                headers.iter().map(|(n, v)| (n.as_str(), Cow::Borrowed(v.as_str()))).collect();
            let inbound = InboundTrace { client_ip: ip, headers: &headers, auth_method: &auth_method, body_bytes, payload: &payload };
            let encoded = encode_trace_with_inbound(&inbound, pipeline(), &EncodedAttempts::default());
            prop_assert_eq!(decode_trace(encoded.as_bytes()).unwrap(), owned(&inbound, &pipeline()));
        }

        #[test]
        fn ip_text_is_what_display_writes(v4 in any::<u32>(), v6 in any::<u128>()) {
            let (v4, v6) = (IpAddr::V4(Ipv4Addr::from(v4)), IpAddr::V6(Ipv6Addr::from(v6)));
            for ip in [v4, v6] {
                let text = IpText::new(ip);
                prop_assert_eq!(text.as_str(), ip.to_string());
            }
        }
    }

    #[test]
    fn ip_text_covers_the_edges() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "::",
            "::ffff:255.255.255.255",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            assert_eq!(IpText::new(ip.parse().unwrap()).as_str(), ip);
        }
    }
}
