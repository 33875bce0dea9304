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
//! Evaluating any program of the set on the projected tree gives what it
//! gives on the full tree: every path a program reads resolves to the same
//! value in both. Skipped array elements before a kept one are `null`
//! placeholders, which no path of the set reads. A bare `$payload`, a
//! negative index (counted from the end, so the length matters) or more
//! than [`MAX_PATHS`] paths keep the whole (sub)tree.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::code::{Code, Op, Root, Step};

/// Paths tracked at once (one bit each); beyond, the whole payload is parsed.
const MAX_PATHS: usize = 64;

/// Parses `json`, keeping what the programs of `code` can read. The input
/// is text: skipped strings are not checked for UTF-8 by the parser, so the
/// caller's `str` is what guarantees the whole body is.
pub(crate) fn parse(code: &Code, json: &str) -> serde_json::Result<Value> {
    let mut paths: [&[Step]; MAX_PATHS] = [&[]; MAX_PATHS];
    let mut count = 0;
    for op in code.ops() {
        if let Op::Ref(Root::Payload, steps) = *op {
            let steps = code.steps(steps);
            if steps.is_empty() || count == MAX_PATHS {
                return serde_json::from_str(json);
            }
            paths[count] = steps;
            count += 1;
        }
    }
    let live = if count == MAX_PATHS { u64::MAX } else { (1u64 << count) - 1 };
    let paths = Paths { code, paths: &paths[..count] };
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let value = Part { paths: &paths, depth: 0, live }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
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
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.whole() {
            return de::Deserialize::deserialize(deserializer);
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Part<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let code = self.paths.code;
        let mut map = Map::new();
        while let Some(key) = access.next_key_seed(Key)? {
            match self.child(|step| matches!(step, Step::Key(k) if code.str(*k) == key)) {
                Some(child) => {
                    let value = access.next_value_seed(child)?;
                    map.insert(key.into_owned(), value);
                }
                None => {
                    access.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(map))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        for position in 0i64.. {
            match self.child(|step| *step == Step::Index(position)) {
                Some(child) => match access.next_element_seed(child)? {
                    Some(value) => {
                        items.resize(position as usize, Value::Null);
                        items.push(value);
                    }
                    None => break,
                },
                None => {
                    if access.next_element::<IgnoredAny>()?.is_none() {
                        break;
                    }
                }
            }
        }
        Ok(Value::Array(items))
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
    use serde_json::json;

    use crate::{Context, Limits, NoSecrets, ProgramId, ProgramSet, ProgramSetBuilder, Scope, SourceKind};

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
        let empty = serde_json::Map::new();
        let eval = |payload: &serde_json::Value, id: ProgramId| {
            let scope = Scope { payload, lookup: None, processed: &empty, secrets: &NoSecrets };
            format!("{:?}", set.eval(id, &scope, &Limits::default()))
        };
        ids.iter().map(|&id| (eval(&projected, id), eval(&full, id))).collect()
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

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            (-5i64..5).prop_map(serde_json::Value::from),
            "[a-c]{0,2}".prop_map(serde_json::Value::from),
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

    proptest! {
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
