//! A JSON perform body (SPEC §7 item 4), written from the body fields'
//! dotted keys: `customer.name` writes `{"customer":{"name":…}}`.
//!
//! Two ways to the same bytes. Where no key nests into another's value (no
//! key is a prefix of another at a dot, none repeats), the body's shape is
//! the same on every call: [`BodyShape`] works it out once, when a node
//! deploys the connector, and a call writes its values straight into it.
//! Otherwise the body is built per call as a tree of borrowed members
//! ([`Members`]), where a later key adds to an object an earlier field
//! wrote. Both write keys in order at every level, as a
//! `serde_json::Map` does, and a property test holds them to the same
//! bytes. Building the tree per call was a third of rendering the
//! trigger-load bench's perform (its nodes inserted, split at dots and
//! dropped: 2.4k of 8.7k instructions, and five allocations).

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::Bytes;
use hookplane_expr::ProgramSet;
use hookplane_model::{BodyType, Deployed, MAX_BODY_KEY_DEPTH, Perform, body_key_depth};
use serde::Serialize;
use serde::ser::SerializeMap as _;
use serde_json::Value;

use super::{FieldValue, RenderError};

/// Bodies up to this size are written on the stack first: the node's
/// answers, and most perform bodies.
const STACK_BODY: usize = 1024;

/// `value` as JSON, in one allocation of its size. `serde_json::to_vec`
/// leaves its `Vec` capacity to spare, and `Bytes` takes such a `Vec` with
/// a second allocation; a body that fits is written on the stack first and
/// copied once.
pub fn json_bytes(value: &(impl Serialize + ?Sized)) -> Result<Bytes, serde_json::Error> {
    let mut small = std::io::Cursor::new([0u8; STACK_BODY]);
    match serde_json::to_writer(&mut small, value) {
        Ok(()) => Ok(Bytes::copy_from_slice(&small.get_ref()[..small.position() as usize])),
        // Out of room on the stack: grown as usual.
        Err(error) if error.is_io() => serde_json::to_vec(value).map(Bytes::from),
        Err(error) => Err(error),
    }
}

/// The body of a JSON perform whose fields evaluated to `values` (in field
/// order, those left out missing), in `shape` where the connector has one.
pub(crate) fn write(
    perform: &Perform<Deployed>,
    programs: &ProgramSet,
    shape: Option<&BodyShape>,
    values: Vec<FieldValue<'_, '_>>,
) -> Result<Bytes, RenderError> {
    if let Some(shape) = shape {
        let level = shape.level((0, shape.root));
        let shaped = Shaped { shape, level, perform, programs, values: &values };
        return json_bytes(&shaped).map_err(RenderError::Json);
    }
    let mut root = Members::new();
    for (i, field, value) in values {
        // Refused on save; a connector stored before that is refused here,
        // not left to overflow the stack.
        let key = programs.name(field.key);
        if body_key_depth(key) > MAX_BODY_KEY_DEPTH {
            return Err(RenderError::KeyTooDeep { field: format!("perform.body[{i}].key") });
        }
        insert_dotted(&mut root, key, value);
    }
    json_bytes(&root).map_err(RenderError::Json)
}

/// Where each body field's value goes in a JSON body, worked out once: the
/// keys at each level, in order, each holding a field's value or an object
/// of further keys. A node holds every connector of its fleet, so a shape
/// is one array of 10-byte entries (the root's first, each object's
/// entries together), and a key is kept as where it is in a field's dotted
/// key, not copied: as a tree of boxed entries, the config-sync bench's
/// connector took 160 bytes more heap for its five keys (2 082 B against
/// 1 922 B without a shape, past the 2 KiB a deployed connector may
/// take), and takes 58 so (1 980 B).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyShape {
    entries: Box<[Entry]>,
    /// The root's entries are the first this many.
    root: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// The body field whose key names this entry (and whose value it
    /// holds, for a value), with the entry's name's place in that key.
    field: u16,
    name: (u16, u16),
    /// An object's entries, by their place and count in the shape; none
    /// for a field's value (an object has at least one).
    object: (u16, u16),
}

/// A level of a shape being worked out, by name.
#[derive(Default)]
struct Draft<'k>(BTreeMap<&'k str, DraftEntry<'k>>);

/// The field that names an entry, the name's place in its key, and the
/// entry's own level if it is an object.
struct DraftEntry<'k> {
    field: u16,
    name: (u16, u16),
    object: Option<Draft<'k>>,
}

impl BodyShape {
    /// The shape of `perform`'s JSON body, if it is the same on every call:
    /// `None` for another body type, or where a key repeats or nests into
    /// another's value (`customer`, then `customer.vip`: what it adds to
    /// depends on the value), or nests deeper than a body may (refused per
    /// call, with the field named), or is too large for a shape's entries
    /// (more fields or longer keys than any connector has).
    pub fn of(perform: &Perform<Deployed>, programs: &ProgramSet) -> Option<BodyShape> {
        if perform.body_type != BodyType::Json {
            return None;
        }
        let mut root = Draft::default();
        for (i, field) in perform.body.iter().enumerate() {
            let key = programs.name(field.key);
            if body_key_depth(key) > MAX_BODY_KEY_DEPTH {
                return None;
            }
            let (Ok(field), Ok(_)) = (u16::try_from(i), u16::try_from(key.len())) else { return None };
            let mut level = &mut root;
            let mut start = 0;
            let mut segments = key.split('.').peekable();
            while let Some(segment) = segments.next() {
                // Within the key, whose length fits.
                let name = (start as u16, (start + segment.len()) as u16);
                start += segment.len() + 1;
                if segments.peek().is_none() {
                    if level.0.insert(segment, DraftEntry { field, name, object: None }).is_some() {
                        return None;
                    }
                    break;
                }
                let entry = level.0.entry(segment);
                match &mut entry.or_insert_with(|| DraftEntry { field, name, object: Some(Draft::default()) }).object {
                    Some(next) => level = next,
                    None => return None,
                }
            }
        }
        let mut entries = Vec::new();
        let (_, root) = place(root, &mut entries)?;
        Some(BodyShape { entries: entries.into_boxed_slice(), root })
    }

    fn level(&self, (start, count): (u16, u16)) -> &[Entry] {
        &self.entries[usize::from(start)..usize::from(start) + usize::from(count)]
    }
}

/// Appends `level`'s entries together, then each object's own, and says
/// where they are; `None` past what an entry can point at.
fn place(level: Draft<'_>, entries: &mut Vec<Entry>) -> Option<(u16, u16)> {
    let start = entries.len();
    let drafts: Vec<DraftEntry<'_>> = level.0.into_values().collect();
    let placed = (u16::try_from(start).ok()?, u16::try_from(drafts.len()).ok()?);
    entries.extend(drafts.iter().map(|d| Entry { field: d.field, name: d.name, object: (0, 0) }));
    for (i, draft) in drafts.into_iter().enumerate() {
        if let Some(object) = draft.object {
            entries[start + i].object = place(object, entries)?;
        }
    }
    Some(placed)
}

/// A level of a shape with the call's values: a key whose field was left
/// out is not written, nor an object none of whose keys is.
struct Shaped<'a, 'p, 's> {
    shape: &'a BodyShape,
    level: &'a [Entry],
    perform: &'a Perform<Deployed>,
    programs: &'a ProgramSet,
    values: &'a [FieldValue<'p, 's>],
}

impl Shaped<'_, '_, '_> {
    fn name(&self, entry: &Entry) -> &str {
        let key = self.programs.name(self.perform.body[usize::from(entry.field)].key);
        &key[usize::from(entry.name.0)..usize::from(entry.name.1)]
    }

    fn value(&self, field: u16) -> Option<&Value> {
        // Values come in field order.
        let at = self.values.binary_search_by_key(&usize::from(field), |(i, _, _)| *i).ok()?;
        Some(&self.values[at].2)
    }

    fn any_written(&self, level: &[Entry]) -> bool {
        level.iter().any(|entry| match entry.object {
            (_, 0) => self.value(entry.field).is_some(),
            object => self.any_written(self.shape.level(object)),
        })
    }
}

impl Serialize for Shaped<'_, '_, '_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for entry in self.level {
            match entry.object {
                (_, 0) => {
                    if let Some(value) = self.value(entry.field) {
                        map.serialize_entry(self.name(entry), value)?;
                    }
                }
                object => {
                    let level = self.shape.level(object);
                    if self.any_written(level) {
                        map.serialize_entry(self.name(entry), &Shaped { level, ..*self })?;
                    }
                }
            }
        }
        map.end()
    }
}

/// A JSON body being built from dotted keys, its keys borrowed from the
/// connector's programs and its values from the call's scope: serialised
/// as it stands, with no copy of either. A body built as a
/// `serde_json::Map` took a `String` per key and a copy of every value a
/// field reads (seven allocations of the trigger-load bench's three-field
/// body). Members serialise in key order, as that `Map` orders them.
#[derive(Debug)]
enum Member<'a> {
    Value(Cow<'a, Value>),
    Object(Members<'a>),
}

type Members<'a> = BTreeMap<Cow<'a, str>, Member<'a>>;

impl<'a> Member<'a> {
    /// The members a later key nests into: an object value's own (so
    /// `customer` = `$payload.customer`, then `customer.vip`, adds to the
    /// payload's customer), or none in place of any other value.
    fn into_members(self) -> Members<'a> {
        match self {
            Member::Object(members) => members,
            Member::Value(Cow::Borrowed(Value::Object(map))) => map
                .iter()
                .map(|(key, value)| (Cow::Borrowed(key.as_str()), Member::Value(Cow::Borrowed(value))))
                .collect(),
            Member::Value(Cow::Owned(Value::Object(map))) => {
                map.into_iter().map(|(key, value)| (Cow::Owned(key), Member::Value(Cow::Owned(value)))).collect()
            }
            Member::Value(_) => Members::new(),
        }
    }
}

impl Serialize for Member<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Member::Value(value) => value.serialize(serializer),
            Member::Object(members) => members.serialize(serializer),
        }
    }
}

/// Inserts `value` at a dotted key: `customer.name` builds
/// `{"customer":{"name":…}}`. A later key adds to an object in its way and
/// replaces any other value there.
fn insert_dotted<'a>(root: &mut Members<'a>, key: &'a str, value: Cow<'a, Value>) {
    let mut segments = key.split('.').peekable();
    let mut current = root;
    while let Some(segment) = segments.next() {
        if segments.peek().is_none() {
            current.insert(Cow::Borrowed(segment), Member::Value(value));
            return;
        }
        let slot = current.entry(Cow::Borrowed(segment)).or_insert_with(|| Member::Object(Members::new()));
        if let Member::Value(_) = slot {
            let taken = std::mem::replace(slot, Member::Object(Members::new()));
            *slot = Member::Object(taken.into_members());
        }
        let Member::Object(next) = slot else { unreachable!("just made an object") };
        current = next;
    }
}

#[cfg(test)]
mod tests {
    use hookplane_expr::{Budget, EvalError, Scope};
    use hookplane_model::BodyField;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::render::{PreparedPerform, render_perform};

    #[test]
    fn a_json_body_is_the_same_whether_it_fits_the_stack_or_not() {
        for length in [0, 1, STACK_BODY - 100, STACK_BODY, 10 * STACK_BODY] {
            let text = "é\"x".repeat(length / 3);
            let value = json!({ "error": text, "event_id": 8 });
            let body = json_bytes(&value).unwrap();
            assert_eq!(&body[..], &serde_json::to_vec(&value).unwrap()[..], "a text of {} bytes", text.len());
        }
    }

    #[test]
    fn dotted_keys_nest_and_later_keys_win() {
        let mut root = Members::new();
        let value = |v: Value| Cow::Owned(v);
        insert_dotted(&mut root, "customer.name", value(json!("Ada")));
        insert_dotted(&mut root, "customer.address.city", value(json!("Paris")));
        insert_dotted(&mut root, "total", value(json!(3)));
        insert_dotted(&mut root, "total.cents", value(json!(300)));
        insert_dotted(&mut root, "note.text", value(json!("x")));
        insert_dotted(&mut root, "note", value(json!(null)));
        insert_dotted(&mut root, "meta", value(json!({"source": "hook", "tags": {"a": 1}})));
        insert_dotted(&mut root, "meta.tags.b", value(json!(2)));
        let body = json_bytes(&root).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            json!({
                "customer": {"name": "Ada", "address": {"city": "Paris"}},
                "total": {"cents": 300},
                "note": null,
                "meta": {"source": "hook", "tags": {"a": 1, "b": 2}},
            })
        );
        // Keys in order at every level, as a `serde_json::Map` writes them.
        assert!(
            std::str::from_utf8(&body)
                .unwrap()
                .starts_with(r#"{"customer":{"address":{"city":"Paris"},"name":"Ada"},"meta""#),
            "{body:?}"
        );
    }

    /// A JSON body of `fields` (dotted key, template) rendered on
    /// `payload` within `limits`: the same, shaped on deploy or not.
    /// A JSON perform of `fields` (dotted key, template) with its programs.
    fn perform(fields: &[(&str, &str)]) -> (Perform<Deployed>, ProgramSet) {
        let mut builder = hookplane_expr::ProgramSetBuilder::new();
        let context = || hookplane_expr::Context { processed: None };
        let url = builder.compile("http://target.test/", hookplane_expr::SourceKind::Template, context()).unwrap();
        let body = fields
            .iter()
            .map(|(key, value)| BodyField {
                key: builder.name(key),
                value: builder.compile(value, hookplane_expr::SourceKind::Template, context()).unwrap(),
                file: None,
            })
            .collect();
        let perform = Perform::<Deployed> {
            method: "POST".into(),
            url,
            headers: Vec::new(),
            query: Vec::new(),
            body_type: BodyType::Json,
            body,
            raw_body: None,
            raw_content_type: String::new(),
            skip_null_values: false,
            auth: Default::default(),
            timeout_ms: 0,
            retry: Default::default(),
        };
        (perform, builder.finish())
    }

    /// The JSON body of `fields` rendered on `payload` within `limits`:
    /// the same, shaped on deploy or not.
    fn json_body(
        fields: &[(&str, &str)],
        payload: &Value,
        limits: hookplane_expr::Limits,
    ) -> Result<Bytes, RenderError> {
        let (perform, programs) = perform(fields);
        let processed = hookplane_expr::Processed::new();
        let scope =
            Scope { payload: payload.into(), lookup: None, processed: &processed, secrets: &hookplane_expr::NoSecrets };
        let render = |prepared: &PreparedPerform| {
            render_perform(&perform, &programs, prepared, &scope, &mut Budget::new(limits), 0).map(|r| r.body)
        };
        let per_call = render(&PreparedPerform::default());
        let prepared = PreparedPerform::new(&perform, &programs);
        if prepared.body.is_some() {
            let shaped = render(&prepared);
            assert_eq!(format!("{shaped:?}"), format!("{per_call:?}"), "{fields:?} on {payload}");
        }
        per_call
    }

    #[test]
    fn a_key_deeper_than_a_body_may_nest_is_refused_not_built() {
        let payload = json!({});
        let limits = hookplane_expr::Limits::default();
        let deepest = vec!["a"; hookplane_model::MAX_BODY_KEY_DEPTH].join(".");
        assert!(json_body(&[(&deepest, "1")], &payload, limits).is_ok());
        let hostile = "a.".repeat(200_000);
        let error = json_body(&[("ok", "1"), (&hostile, "1")], &payload, limits).unwrap_err();
        assert!(matches!(&error, RenderError::KeyTooDeep { field } if field == "perform.body[1].key"), "{error}");
    }

    #[test]
    fn a_json_body_writes_borrowed_values_and_pays_for_them_as_copies() {
        let payload = json!({"id": "o-7", "items": [1, 2], "note": "x".repeat(1000)});
        let fields =
            [("order.id", "$payload.id"), ("order.items", "$payload.items"), ("count", "$payload.items[1] + 1")];
        let body = json_body(&fields, &payload, hookplane_expr::Limits::default()).unwrap();
        assert_eq!(&body[..], br#"{"count":3,"order":{"id":"o-7","items":[1,2]}}"#);
        // A later key adds to an object a field read from the payload.
        let customer = json!({"customer": {"name": "Ada", "tier": "gold"}});
        let fields = [("customer", "$payload.customer"), ("customer.tier", "platinum"), ("customer.vip", "yes")];
        let body = json_body(&fields, &customer, hookplane_expr::Limits::default()).unwrap();
        assert_eq!(&body[..], br#"{"customer":{"name":"Ada","tier":"platinum","vip":"yes"}}"#);
        // Each field that writes out the note pays for its thousand bytes, as
        // a copy of it did: three fit a budget of 3 500, four do not.
        let limits = hookplane_expr::Limits { max_total_bytes: 3_500, ..Default::default() };
        let notes = [("a", "$payload.note"), ("b", "$payload.note"), ("c", "$payload.note")];
        assert!(json_body(&notes, &payload, limits).is_ok());
        let error = json_body(&[notes.as_slice(), &[("d", "$payload.note")]].concat(), &payload, limits).unwrap_err();
        assert!(
            matches!(&error, RenderError::Eval { field, error: EvalError::TotalOutputTooLarge(3_500) } if field == "perform.body[3].value"),
            "{error}"
        );
    }

    #[test]
    fn a_shape_is_worked_out_only_where_no_key_nests_into_another() {
        let shape = |keys: &[&str]| {
            let fields: Vec<(&str, &str)> = keys.iter().map(|key| (*key, "1")).collect();
            let (perform, programs) = perform(&fields);
            BodyShape::of(&perform, &programs)
        };
        assert!(shape(&[]).is_some());
        assert!(shape(&["order.id", "order.total", "customer.email", "id"]).is_some());
        assert!(shape(&["a.b", "a.c.d", "ab", "a.bc"]).is_some(), "prefixes only at a dot count");
        assert_eq!(shape(&["customer", "customer.vip"]), None, "nests into a value");
        assert_eq!(shape(&["customer.vip", "customer"]), None, "replaces an object");
        assert_eq!(shape(&["id", "id"]), None, "repeats");
        let deepest = vec!["a"; MAX_BODY_KEY_DEPTH].join(".");
        assert!(shape(&[&deepest]).is_some());
        assert_eq!(shape(&[&format!("{deepest}.a")]), None, "refused per call, with its field");
        let long = "k".repeat(70_000);
        assert_eq!(shape(&[&long]), None, "past what an entry points at: built per call");
        let body = json_body(&[(&long, "1")], &json!({}), hookplane_expr::Limits::default()).unwrap();
        assert_eq!(body.len(), long.len() + 6, "{{\"k…\":1}}");
    }

    /// Keys of up to three levels over a few names, so that they meet:
    /// share levels, repeat, nest into one another.
    fn key() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c", ""]), 1..=3).prop_map(|s| s.join("."))
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            "[a-z\"é]{0,4}".prop_map(Value::from),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                prop::collection::btree_map(prop::sample::select(vec!["a", "b", "x"]), inner, 0..3)
                    .prop_map(|map| Value::Object(map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
            ]
        })
    }

    proptest! {
        /// Whatever the keys and values, a body written into its shape is
        /// the body built per call, byte for byte; nulls left out alike.
        #[test]
        fn a_shaped_body_is_the_body_built_per_call(
            fields in prop::collection::vec((key(), value()), 0..6),
            skip_null_values in any::<bool>(),
        ) {
            let payload = Value::Object(fields.iter().enumerate().map(|(i, (_, v))| (format!("v{i}"), v.clone())).collect());
            let templates: Vec<String> = (0..fields.len()).map(|i| format!("$payload.v{i}")).collect();
            let fields: Vec<(&str, &str)> =
                fields.iter().zip(&templates).map(|((key, _), template)| (key.as_str(), template.as_str())).collect();
            let (mut perform, programs) = perform(&fields);
            perform.skip_null_values = skip_null_values;
            let Some(shape) = BodyShape::of(&perform, &programs) else { return Ok(()) };
            let render = |prepared: &PreparedPerform| {
                let processed = hookplane_expr::Processed::new();
                let scope = Scope { payload: (&payload).into(), lookup: None, processed: &processed, secrets: &hookplane_expr::NoSecrets };
                let limits = hookplane_expr::Limits::default();
                render_perform(&perform, &programs, prepared, &scope, &mut Budget::new(limits), 0).unwrap().body
            };
            let shaped = render(&PreparedPerform { url: None, body: Some(shape) });
            prop_assert_eq!(shaped, render(&PreparedPerform::default()));
        }
    }
}
