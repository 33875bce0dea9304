//! How a replayed request differs from the one a stored event sent, field
//! by field: what a team reads before it changes a live mapping.

use std::borrow::Cow;
use std::collections::BTreeMap;

use hookplane_model::{RenderedRequest, RequestChange};
use serde_json::Value;

/// Bytes of a request body an event's trace keeps: what a replay is
/// compared with.
pub const TRACE_EXCERPT: usize = 4 * 1024;

/// A body as a trace keeps it: its first [`TRACE_EXCERPT`] bytes, with
/// what is not UTF-8 (a character the cut splits, binary) replaced.
/// Checked as UTF-8 first: bodies nearly always are, and `from_utf8` scans
/// ASCII a word at a time where the lossy conversion goes byte by byte
/// (0.8k instructions of the end-to-end bench's call, for its two bodies).
pub fn excerpt(body: &[u8]) -> String {
    excerpt_text(body).into_owned()
}

/// The same, borrowed from `body` where its start is UTF-8.
pub fn excerpt_text(body: &[u8]) -> Cow<'_, str> {
    let start = &body[..body.len().min(TRACE_EXCERPT)];
    match std::str::from_utf8(start) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(start),
    }
}

/// Headers whose values differ by nature between two runs, not by spec.
const VOLATILE_HEADERS: [&str; 1] = ["content-length"];

/// Every difference from `before` to `after`: method, URL, headers by
/// name (lower case; repeated headers joined), and the body, by JSON path
/// when both bodies are JSON, whole otherwise.
pub fn diff_requests(before: &RenderedRequest, after: &RenderedRequest) -> Vec<RequestChange> {
    // A trace keeps the start of a body: compare the replay's the same way.
    let cut;
    let after = if after.body.len() > TRACE_EXCERPT {
        cut = RenderedRequest { body: excerpt(after.body.as_bytes()), ..after.clone() };
        &cut
    } else {
        after
    };
    let mut changes = Vec::new();
    let mut field = |name: String, old: Option<&str>, new: Option<&str>| {
        if old != new {
            changes.push(RequestChange { field: name, before: old.map(str::to_owned), after: new.map(str::to_owned) });
        }
    };
    field("method".into(), Some(&before.method), Some(&after.method));
    field("url".into(), Some(&before.url), Some(&after.url));
    let (old_headers, new_headers) = (headers(before), headers(after));
    let names: std::collections::BTreeSet<&String> = old_headers.keys().chain(new_headers.keys()).collect();
    for name in names {
        if !VOLATILE_HEADERS.contains(&name.as_str()) {
            field(
                format!("headers.{name}"),
                old_headers.get(name).map(String::as_str),
                new_headers.get(name).map(String::as_str),
            );
        }
    }
    match (serde_json::from_str::<Value>(&before.body), serde_json::from_str::<Value>(&after.body)) {
        (Ok(old), Ok(new)) => diff_json("body", Some(&old), Some(&new), &mut changes),
        _ => field("body".into(), Some(&before.body), Some(&after.body)),
    }
    changes
}

fn headers(request: &RenderedRequest) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &request.headers {
        map.entry(name.to_ascii_lowercase())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(value);
            })
            .or_insert_with(|| value.clone());
    }
    map
}

/// Differences between two JSON values under `path`, descending into
/// objects and arrays so a change is reported where it is.
pub fn diff_json(path: &str, old: Option<&Value>, new: Option<&Value>, changes: &mut Vec<RequestChange>) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                diff_json(&format!("{path}.{key}"), a.get(key), b.get(key), changes);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            for i in 0..a.len().max(b.len()) {
                diff_json(&format!("{path}[{i}]"), a.get(i), b.get(i), changes);
            }
        }
        (a, b) if a != b => changes.push(RequestChange {
            field: path.to_owned(),
            before: a.map(Value::to_string),
            after: b.map(Value::to_string),
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(url: &str, headers: &[(&str, &str)], body: &str) -> RenderedRequest {
        RenderedRequest {
            method: "POST".into(),
            url: url.into(),
            headers: headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect(),
            body: body.into(),
        }
    }

    #[test]
    fn an_excerpt_is_the_start_of_a_body_with_what_is_not_utf8_replaced() {
        assert_eq!(excerpt(br#"{"ok":true}"#), r#"{"ok":true}"#);
        assert_eq!(excerpt(b"caf\xc3\xa9 \xff"), "caf\u{e9} \u{fffd}");
        let long = "é".repeat(TRACE_EXCERPT);
        let cut = excerpt(long.as_bytes());
        // The cut falls on a character boundary here: 4 KiB of 2-byte ones.
        assert_eq!(cut, "é".repeat(TRACE_EXCERPT / 2));
        let shifted = format!("x{long}");
        let cut = excerpt(shifted.as_bytes());
        assert_eq!(cut.len(), TRACE_EXCERPT - 1 + '\u{fffd}'.len_utf8());
        assert!(cut.ends_with('\u{fffd}'), "the split character is replaced");
    }

    #[test]
    fn identical_requests_have_no_changes() {
        let a = request("https://x/", &[("content-type", "application/json")], r#"{"a":1}"#);
        assert!(diff_requests(&a, &a.clone()).is_empty());
    }

    #[test]
    fn json_bodies_differ_by_path_and_headers_by_name() {
        let before = request(
            "https://erp/orders",
            &[("Content-Type", "application/json"), ("x-old", "1"), ("content-length", "20")],
            r#"{"id":7,"customer":{"name":"Ann","tier":"gold"},"items":[{"sku":"a"}]}"#,
        );
        let after = request(
            "https://erp/v2/orders",
            &[("content-type", "application/json"), ("x-new", "2"), ("content-length", "31")],
            r#"{"id":7,"customer":{"name":"ANN"},"items":[{"sku":"a"},{"sku":"b"}]}"#,
        );
        let changes = diff_requests(&before, &after);
        let shown: Vec<(&str, Option<&str>, Option<&str>)> =
            changes.iter().map(|c| (c.field.as_str(), c.before.as_deref(), c.after.as_deref())).collect();
        assert_eq!(
            shown,
            [
                ("url", Some("https://erp/orders"), Some("https://erp/v2/orders")),
                ("headers.x-new", None, Some("2")),
                ("headers.x-old", Some("1"), None),
                ("body.customer.name", Some("\"Ann\""), Some("\"ANN\"")),
                ("body.customer.tier", Some("\"gold\""), None),
                ("body.items[1]", None, Some(r#"{"sku":"b"}"#)),
            ]
        );
    }

    #[test]
    fn long_bodies_compare_as_far_as_the_trace_kept_them() {
        let long = format!("a={}", "x".repeat(10_000));
        let before = request("u", &[], &excerpt(long.as_bytes()));
        assert!(diff_requests(&before, &request("u", &[], &long)).is_empty());
        let changed = format!("b={}", "x".repeat(10_000));
        assert_eq!(diff_requests(&before, &request("u", &[], &changed)).len(), 1);
    }

    #[test]
    fn other_bodies_differ_whole() {
        let changes = diff_requests(&request("u", &[], "a=1&b=2"), &request("u", &[], "a=1&b=3"));
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].field, "body");
    }
}
