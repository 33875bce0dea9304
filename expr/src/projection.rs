//! Parsing a payload into only the parts a set of programs can read.
//!
//! Programs reach the payload through references with fixed paths
//! (`$payload.customer.email`, `$payload.items[0]`), so before a trigger's
//! body becomes a tree the paths of every `$payload` reference in the set
//! are known. The parse keeps the subtree at the end of each path and the
//! objects and arrays on the way to it; everything else is skipped by the
//! parser without building anything (no strings, maps or vectors). A
//! condition on one field of a 50 KiB webhook then costs a scan of the
//! body, not a tree of it.
//!
//! It runs in two halves, so that a trigger scans its body once: [`capture`]
//! validates the whole text and notes, without building a tree, the text of
//! each value a path ends at and the objects and arrays on the way
//! ([`Captured`]); a trigger does this at its JSON check, before the caller
//! is authenticated. [`Captured::into_value`] then builds the tree from
//! those texts alone, once every check passed, or
//! [`Captured::into_projected`] the values at the ends of the paths only
//! (`payload.rs`), which is how a trigger reads them. What a capture holds is
//! bounded by the programs' paths, not by the input: slices of the text,
//! one node per kept object member or array element (a key given twice
//! replaces its first value, as in a map), and the text of a scalar met
//! where a path expected an object or an array.
//!
//! Evaluating any program of the set on the projected tree gives what it
//! gives on the full tree: every path a program reads resolves to the same
//! value in both. Skipped array elements before a kept one are `null`
//! placeholders, which no path of the set reads. A bare `$payload`, a
//! negative index (counted from the end, so the length matters) or more
//! than [`MAX_PATHS`] paths keep the whole (sub)tree.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use super::code::{Code, Op, Root, Step};
use super::payload::{Kept, Projected, SetId};

/// Paths tracked at once (one bit each); beyond, the whole payload is parsed.
const MAX_PATHS: usize = 64;

/// Parses `json`, keeping what the programs of `code` can read.
pub(crate) fn parse(code: &Code, json: &str) -> serde_json::Result<Value> {
    capture(code, json)?.into_value()
}

/// Validates `json` and notes what the programs of `code` can read of it.
/// The input is text: skipped strings are not checked for UTF-8 by the
/// parser, so the caller's `str` is what guarantees the whole body is.
pub(crate) fn capture<'a>(code: &Code, json: &'a str) -> serde_json::Result<Captured<'a>> {
    let mut paths: [&[Step]; MAX_PATHS] = [&[]; MAX_PATHS];
    let mut count = 0;
    for op in code.ops() {
        if let Op::Ref(Root::Payload, steps) = *op {
            let steps = code.steps(steps);
            if steps.is_empty() || count == MAX_PATHS {
                return Ok(Captured(Node::Text(serde_json::from_str(json)?), SetId::of(code)));
            }
            paths[count] = steps;
            count += 1;
        }
    }
    let live = if count == MAX_PATHS { u64::MAX } else { (1u64 << count) - 1 };
    let paths = Paths { code, paths: &paths[..count] };
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let node = Part { paths: &paths, depth: 0, live }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(Captured(node, SetId::of(code)))
}

/// A validated payload's parts that programs can read, as text (see the
/// module's documentation); [`Captured::into_value`] makes them a tree.
#[derive(Debug)]
pub struct Captured<'a>(Node<'a>, SetId);

impl<'a> Captured<'a> {
    /// The projected tree. Fails only where a kept text cannot become a
    /// value: a lone surrogate escape in a string (JSON's grammar allows
    /// one), a number past `f64`'s range, or nesting past the parser's
    /// depth limit.
    pub fn into_value(self) -> serde_json::Result<Value> {
        self.0.into_value()
    }

    /// The projected payload, for the programs the capture was made for:
    /// values where paths end, the objects and arrays on the way kept as
    /// captured (`payload.rs`). Fails where [`Captured::into_value`]
    /// fails.
    pub fn into_projected(self) -> serde_json::Result<Projected<'a>> {
        Ok(Projected(self.0.into_kept()?, self.1))
    }
}

#[derive(Debug)]
enum Node<'a> {
    /// A value a path ends at (or whose length one needs), as its text.
    Text(&'a RawValue),
    /// A string met where a path expected an object or an array; borrowed
    /// unless it had escapes.
    String(Cow<'a, str>),
    /// Any other scalar met there.
    Scalar(Value),
    /// The members kept, each key once.
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
    /// The elements kept, by position, in order.
    Array(Vec<(usize, Node<'a>)>),
}

impl Node<'_> {
    /// Recurses as deep as the capture did, which the parser's depth limit
    /// bounds.
    fn into_value(self) -> serde_json::Result<Value> {
        Ok(match self {
            Node::Text(text) => text_value(text.get())?,
            Node::String(text) => Value::String(text.into_owned()),
            Node::Scalar(value) => value,
            Node::Object(members) => {
                let mut map = Map::new();
                for (key, node) in members {
                    map.insert(key.into_owned(), node.into_value()?);
                }
                Value::Object(map)
            }
            Node::Array(elements) => {
                let mut items = Vec::new();
                for (position, node) in elements {
                    items.resize(position, Value::Null);
                    items.push(node.into_value()?);
                }
                Value::Array(items)
            }
        })
    }
}

impl<'a> Node<'a> {
    /// Recurses as deep as the capture did, which the parser's depth limit
    /// bounds.
    fn into_kept(self) -> serde_json::Result<Kept<'a>> {
        Ok(match self {
            Node::Object(members) => Kept::Object(
                members
                    .into_iter()
                    .map(|(key, node)| Ok((key, node.into_kept()?)))
                    .collect::<serde_json::Result<_>>()?,
            ),
            Node::Array(elements) => Kept::Array(
                elements
                    .into_iter()
                    .map(|(position, node)| Ok((position, node.into_kept()?)))
                    .collect::<serde_json::Result<_>>()?,
            ),
            leaf => Kept::Value(leaf.into_value()?),
        })
    }
}

/// A kept text (checked JSON, as the capture found it) as a value. A
/// string without escapes, the usual kind, is its text between the quotes
/// (a checked one has no quote or control character there), and literals
/// are named: a deserializer per leaf cost the trigger-load bench's
/// payload 1.4k instructions for its four.
fn text_value(text: &str) -> serde_json::Result<Value> {
    Ok(match text {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "null" => Value::Null,
        _ => match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            Some(inner) if !inner.contains('\\') => Value::String(inner.to_owned()),
            _ => return serde_json::from_str(text),
        },
    })
}

struct Paths<'a> {
    code: &'a Code,
    paths: &'a [&'a [Step]],
}

/// The value at `depth` steps down, read by the paths in `live` (a bit per
/// path whose first `depth` steps led here).
#[derive(Clone, Copy)]
struct Part<'p> {
    paths: &'p Paths<'p>,
    depth: usize,
    live: u64,
}

impl Part<'_> {
    fn live(&self) -> impl Iterator<Item = (usize, &[Step])> {
        let live = self.live;
        self.paths.paths.iter().copied().enumerate().filter(move |(i, _)| live & (1 << i) != 0)
    }

    /// Whether some path ends here or needs this array's length.
    fn whole(&self) -> bool {
        self.live().any(|(_, steps)| match steps.get(self.depth) {
            None => true,
            Some(Step::Index(index)) => *index < 0,
            Some(Step::Key(_)) => false,
        })
    }

    /// The part one step further, through the step `matches` accepts.
    fn child(&self, matches: impl Fn(&Step) -> bool) -> Option<Part<'_>> {
        let live = self
            .live()
            .filter(|(_, steps)| steps.get(self.depth).is_some_and(&matches))
            .fold(0u64, |bits, (i, _)| bits | (1 << i));
        (live != 0).then_some(Part { paths: self.paths, depth: self.depth + 1, live })
    }
}

impl<'de> DeserializeSeed<'de> for Part<'_> {
    type Value = Node<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node<'de>, D::Error> {
        if self.whole() {
            return <&RawValue as de::Deserialize>::deserialize(deserializer).map(Node::Text);
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Part<'_> {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node<'de>, E> {
        Ok(Node::Scalar(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node<'de>, E> {
        Ok(Node::Scalar(Value::Number(v.into())))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node<'de>, E> {
        Ok(Node::Scalar(Value::Number(v.into())))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node<'de>, E> {
        Ok(Node::Scalar(Number::from_f64(v).map_or(Value::Null, Value::Number)))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Scalar(Value::Null))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Node<'de>, A::Error> {
        let code = self.paths.code;
        let mut members: Vec<(Cow<'de, str>, Node<'de>)> = Vec::new();
        while let Some(key) = access.next_key_seed(Key)? {
            match self.child(|step| matches!(step, Step::Key(k) if code.str(*k) == key)) {
                Some(child) => {
                    let node = access.next_value_seed(child)?;
                    // A key given again replaces its value, as in a map, and
                    // the capture stays as small as the paths.
                    match members.iter_mut().find(|(kept, _)| *kept == key) {
                        Some(member) => member.1 = node,
                        None => members.push((key, node)),
                    }
                }
                None => {
                    access.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Node::Object(members))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Node<'de>, A::Error> {
        let mut elements = Vec::new();
        for position in 0usize.. {
            match self.child(|step| *step == Step::Index(position as i64)) {
                Some(child) => match access.next_element_seed(child)? {
                    Some(node) => elements.push((position, node)),
                    None => break,
                },
                None => {
                    if access.next_element::<IgnoredAny>()?.is_none() {
                        break;
                    }
                }
            }
        }
        Ok(Node::Array(elements))
    }
}

/// An object key, borrowed from the input unless it had escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::de::IgnoredAny;
    use serde_json::json;

    use super::{Node, Value, text_value};

    use crate::{Context, Limits, NoSecrets, Payload, ProgramId, ProgramSet, ProgramSetBuilder, Scope, SourceKind};

    fn set(sources: &[&str]) -> (ProgramSet, Vec<ProgramId>) {
        let mut builder = ProgramSetBuilder::new();
        let ids = sources
            .iter()
            .map(|s| builder.compile(s, SourceKind::Template, Context::default()).expect("compiles"))
            .collect();
        (builder.finish(), ids)
    }

    /// Each program's result on the projected tree and on the full one.
    fn results(sources: &[&str], json: &str) -> Vec<(String, String)> {
        let (set, ids) = set(sources);
        let full: serde_json::Value = serde_json::from_str(json).unwrap();
        let projected = set.read_payload(json).unwrap();
        let empty = crate::Processed::default();
        let kept = set.capture_payload(json).unwrap().into_projected().unwrap();
        let eval = |payload: Payload<'_>, id: ProgramId| {
            let scope = Scope { payload, lookup: None, processed: &empty, secrets: &NoSecrets };
            format!("{:?}", set.eval(id, &scope, &Limits::default()))
        };
        ids.iter()
            .map(|&id| {
                let on_full = eval((&full).into(), id);
                assert_eq!(eval((&kept).into(), id), on_full, "the projected payload, on {json}");
                (eval((&projected).into(), id), on_full)
            })
            .collect()
    }

    const ORDER: &str = r#"{"id":"ord_1","status":"paid","total":129.5,"customer":{"email":"A@B.C","name":"Ada","tags":["x","y"]},
        "items":[{"sku":"BK-1","qty":2},{"sku":"PN-7","qty":1},{"sku":"ZZ-9","qty":5}],"notes":"long text, never read"}"#;

    #[test]
    fn keeps_only_what_the_programs_read() {
        let (set, _) = set(&["$payload.status == \"paid\"", "lower($payload.customer.email)", "$payload.items[1].sku"]);
        let projected = set.read_payload(ORDER).unwrap();
        assert_eq!(
            projected,
            json!({"status": "paid", "customer": {"email": "A@B.C"}, "items": [null, {"sku": "PN-7"}]}),
            "unread fields are skipped, unread elements before a kept one are null"
        );
    }

    #[test]
    fn every_program_gives_what_it_gives_on_the_full_tree() {
        let sources = [
            "$payload.status == \"paid\" && $payload.total > 100",
            "$payload.customer",
            "length($payload.items)",
            "$payload.items[-1].sku",
            "$payload.items[0].qty * $payload.items[2].qty",
            "Order {{$payload.id}} for {{$payload.customer.name}}",
            "$payload.customer.tags[1]",
            "$payload.missing.deeper[3]",
            "$payload.status.not_an_object",
            "$payload.items.sku",
        ];
        for (projected, full) in results(&sources, ORDER) {
            assert_eq!(projected, full);
        }
    }

    /// A projected payload belongs to the set it was captured for; a
    /// debug build refuses another set's program reading it.
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "another set's program")]
    fn another_sets_program_may_not_read_a_projected_payload() {
        let (captured_for, _) = set(&["$payload.customer.email"]);
        let (other, ids) = set(&["$payload.customer"]);
        let kept = captured_for.capture_payload(ORDER).unwrap().into_projected().unwrap();
        let empty = crate::Processed::default();
        let scope = Scope { payload: (&kept).into(), lookup: None, processed: &empty, secrets: &NoSecrets };
        let _ = other.eval(ids[0], &scope, &Limits::default());
    }

    #[test]
    fn a_bare_payload_reference_keeps_everything() {
        let (set, _) = set(&["$payload.status", "$payload"]);
        let full: serde_json::Value = serde_json::from_str(ORDER).unwrap();
        assert_eq!(set.read_payload(ORDER).unwrap(), full);
    }

    #[test]
    fn duplicate_and_escaped_keys_resolve_as_in_the_full_tree() {
        let json = r#"{"status":"old","st\u0061tus":"new","a":{"b":1},"a":{"b":2,"c":3}}"#;
        for (projected, full) in results(&["$payload.status", "$payload.a.b", "$payload.a"], json) {
            assert_eq!(projected, full);
        }
    }

    #[test]
    fn programs_that_read_nothing_of_the_payload_get_a_skeleton() {
        let (set, _) = set(&["constant text", "1 + 2"]);
        assert_eq!(set.read_payload(ORDER).unwrap(), json!({}));
        assert_eq!(set.read_payload("[1,2]").unwrap(), json!([]));
    }

    #[test]
    fn invalid_json_is_an_error_whatever_is_read() {
        let (set, _) = set(&["$payload.status"]);
        for bad in ["{\"status\":", "{\"notes\": tru}", "{} trailing", "[1,,2]", "", "{\"status\":\"\\ud800\"}"] {
            assert!(set.read_payload(bad).is_err(), "{bad}");
        }
        // JSON's grammar allows a lone surrogate escape; only a string that
        // becomes a value must be Unicode.
        assert_eq!(set.read_payload(r#"{"notes":"\ud800"}"#).unwrap(), json!({}));
        // The parser's depth limit guards the stack while building; skipping
        // is iterative, so only a deep part that is read is refused.
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(set.read_payload(&format!(r#"{{"status":{deep}}}"#)).is_err());
        assert_eq!(set.read_payload(&format!(r#"{{"notes":{deep}}}"#)).unwrap(), json!({}));
    }

    #[test]
    fn a_capture_holds_as_much_as_the_paths_whatever_the_input() {
        let (set, _) = set(&["$payload.status", "$payload.items[1]"]);
        let repeated = format!("{{{}\"items\":[1,2,3]}}", "\"status\":\"paid\",".repeat(10_000));
        let captured = set.capture_payload(&repeated).unwrap();
        let Node::Object(members) = &captured.0 else { panic!("{captured:?}") };
        assert_eq!(members.len(), 2, "a key given again replaces its value");
        let Some((_, Node::Array(elements))) = members.iter().find(|(key, _)| key == "items") else { panic!() };
        assert_eq!(elements.len(), 1, "only the element read");
        assert_eq!(captured.into_value().unwrap(), json!({"status": "paid", "items": [null, 2]}));
    }

    #[test]
    fn the_capture_refuses_only_what_no_tree_could_be_built_of() {
        let long_path = format!("$payload{}", ".a".repeat(200));
        let (reads, _) = set(&["$payload.status.code", "$payload.note", &long_path]);
        let deep = format!("{}1{}", r#"{"a":"#.repeat(200), "}".repeat(200));
        for text in [r#"{"status":"\ud800"}"#, &deep, r#"{"status":1e400}"#, r#"{"\ud800":0,"status":"paid"}"#] {
            assert!(serde_json::from_str::<IgnoredAny>(text).is_ok(), "a validating scan accepts {text}");
            assert!(serde_json::from_str::<serde_json::Value>(text).is_err(), "no tree of {text}");
            assert!(reads.capture_payload(text).is_err(), "{text}");
        }
        // Deep where a path ends, a lone surrogate there or off the paths:
        // captured as text; only what is read fails to build.
        let (short, _) = set(&["$payload.note"]);
        let deep_at_the_end = format!(r#"{{"note":{deep}}}"#);
        assert!(short.capture_payload(&deep_at_the_end).unwrap().into_value().is_err());
        assert!(reads.capture_payload(r#"{"other":"\ud800"}"#).unwrap().into_value().is_ok());
        assert!(reads.capture_payload(r#"{"note":"\ud800"}"#).unwrap().into_value().is_err());
        assert!(reads.capture_payload(r#"{"note":1e400}"#).unwrap().into_projected().is_err());
        assert!(reads.capture_payload(r#"{"other":1e400}"#).unwrap().into_projected().is_ok());
    }

    /// Text from JSON's alphabet, mostly near-valid.
    fn json_like() -> impl Strategy<Value = String> {
        prop_oneof![
            json_value().prop_map(|v| v.to_string()),
            (json_value(), 0usize..40, "[\\]\\[{}:,\"a-c0-9eE.+\\-\\\\u ]{0,3}").prop_map(|(v, at, noise)| {
                let mut text = v.to_string();
                let at = (0..=at.min(text.len())).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
                text.insert_str(at, &noise);
                text
            }),
        ]
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            (-5i64..5).prop_map(serde_json::Value::from),
            // Escapes, and text that is not ASCII, as well as plain strings.
            "[a-c\"\\\\é\n]{0,2}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::vec(("[a-c]", inner), 0..4)
                    .prop_map(|entries| serde_json::Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    fn path() -> impl Strategy<Value = String> {
        let step = prop_oneof!["[a-c]".prop_map(|k| format!(".{k}")), (-3i64..4).prop_map(|i| format!("[{i}]")),];
        prop::collection::vec(step, 0..4).prop_map(|steps| format!("$payload{}", steps.concat()))
    }

    #[test]
    fn a_kept_text_is_the_value_a_parser_makes_of_it() {
        for text in [
            r#""ord_8f2k1""#,
            r#""""#,
            r#""é ü ✓""#,
            r#""a\"b""#,
            r#""tab\tnew\nline""#,
            r#""\u00e9\ud83d\ude00""#,
            r#""\\""#,
            "true",
            "false",
            "null",
            "0",
            "-12.5e3",
            "129.5",
            "18446744073709551616",
            r#"{"a":[1,"x"]}"#,
            "[]",
        ] {
            assert_eq!(text_value(text).unwrap(), serde_json::from_str::<Value>(text).unwrap(), "{text}");
        }
        assert!(text_value(r#""\ud800""#).is_err(), "a lone surrogate, as the parser refuses it");
    }

    proptest! {
        /// The capture is a trigger's JSON check: it accepts exactly the
        /// texts a validating scan accepts, whatever the programs read.
        /// (Texts these strategies do not make are the exceptions,
        /// refused as building the tree always refused them: nesting along
        /// a read path past the parser's depth limit, 128, a lone
        /// surrogate escape in a key of an object a read path enters or in
        /// a string met where a read path expected an object or an array,
        /// and a number past `f64`'s range met there; see the test below.)
        #[test]
        fn a_capture_accepts_what_validation_accepts(text in json_like(), paths in prop::collection::vec(path(), 0..4)) {
            let sources: Vec<&str> = paths.iter().map(String::as_str).collect();
            let (set, _) = set(&sources);
            let valid = serde_json::from_str::<IgnoredAny>(&text).is_ok();
            prop_assert_eq!(set.capture_payload(&text).is_ok(), valid, "{}", text);
        }

        #[test]
        fn projected_and_full_trees_agree(payload in json_value(), paths in prop::collection::vec(path(), 1..5)) {
            let json = payload.to_string();
            let sources: Vec<&str> = paths.iter().map(String::as_str).collect();
            for (projected, full) in results(&sources, &json) {
                prop_assert_eq!(projected, full);
            }
        }
    }
}
