//! Rendering a connector's compiled templates into an outgoing request
//! (SPEC §7 item 4): URL, query, headers and every body type.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use hookplane_expr::{self as expr, Budget, EvalError, ProgramId, ProgramSet, Scope};
use hookplane_model::{BodyField, BodyType, Deployed, FilePart, NamedTemplate, Perform};
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{HeaderMap, Method};
use serde::Serialize;
use serde_json::Value;

use hookplane_egress::client::OutboundRequest;

/// The header that counts hops between hookplane connectors (SPEC §4).
pub static DEPTH_HEADER: HeaderName = HeaderName::from_static("x-hookplane-depth");

/// Why a request could not be rendered; each names the field, by its path
/// in the connector (`perform.headers[2].value`).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{field}: {error}")]
    Eval { field: String, error: EvalError },
    #[error("{field}: `{text}` is not a valid URL ({error})")]
    Url { field: String, text: String, error: url::ParseError },
    #[error("{field}: `{name}` is not a header name")]
    HeaderName { field: String, name: String },
    #[error("{field}: the rendered value is not a valid header value")]
    HeaderValue { field: String },
    #[error("perform.method: `{0}` is not an HTTP method")]
    Method(String),
    #[error("perform.raw_body: missing")]
    MissingRawBody,
    #[error("perform.body: {0}")]
    Json(serde_json::Error),
    #[error("{field}: a file must be base64 text")]
    FileNotBase64 { field: String },
    #[error("perform.raw_content_type: not a valid header")]
    ContentType,
    #[error("{field}: the key nests more than {} levels", hookplane_model::MAX_BODY_KEY_DEPTH)]
    KeyTooDeep { field: String },
}

impl RenderError {
    /// The connector field the failure points at.
    pub fn field(&self) -> Option<String> {
        Some(match self {
            RenderError::Eval { field, .. }
            | RenderError::Url { field, .. }
            | RenderError::HeaderName { field, .. }
            | RenderError::HeaderValue { field }
            | RenderError::FileNotBase64 { field }
            | RenderError::KeyTooDeep { field } => field.clone(),
            RenderError::Method(_) => "perform.method".to_owned(),
            RenderError::MissingRawBody => "perform.raw_body".to_owned(),
            RenderError::Json(_) => "perform.body".to_owned(),
            RenderError::ContentType => "perform.raw_content_type".to_owned(),
        })
    }
}

/// Evaluates one program of `programs`, borrowing its result from the
/// scope where it is a plain reference. The field is named only on error,
/// so the success path formats nothing.
fn eval<'s>(
    programs: &ProgramSet,
    program: ProgramId,
    scope: &Scope<'s>,
    budget: &mut Budget,
    field: impl FnOnce() -> String,
) -> Result<Cow<'s, Value>, RenderError> {
    programs.eval_cow_in(program, scope, budget).map_err(|error| RenderError::Eval { field: field(), error })
}

/// Evaluates one program to text, rendering a borrowed result in place
/// (no copy of the payload part it reads).
fn text(
    programs: &ProgramSet,
    program: ProgramId,
    scope: &Scope<'_>,
    budget: &mut Budget,
    field: impl FnOnce() -> String,
) -> Result<String, RenderError> {
    let value = eval(programs, program, scope, budget, field)?;
    Ok(expr::render(&value))
}

/// URL, query and headers shared by lookup and perform.
pub struct Target<'a> {
    /// The connector's programs, which the fields index.
    pub programs: &'a ProgramSet,
    pub url: ProgramId,
    /// `url` parsed once, when it is literal text (see [`parse_constant_url`]).
    pub parsed_url: Option<&'a url::Url>,
    pub headers: &'a [NamedTemplate<Deployed>],
    pub query: &'a [NamedTemplate<Deployed>],
    pub field: &'static str,
}

/// Renders the URL with its query and the headers.
pub fn render_target(
    target: &Target<'_>,
    scope: &Scope<'_>,
    budget: &mut Budget,
    depth: u32,
) -> Result<(url::Url, HeaderMap), RenderError> {
    let field = target.field;
    let programs = target.programs;
    let mut url = match target.parsed_url {
        Some(url) => url.clone(),
        None => {
            let raw = text(programs, target.url, scope, budget, || format!("{field}.url"))?;
            url::Url::parse(raw.trim()).map_err(|error| RenderError::Url {
                field: format!("{field}.url"),
                text: raw.clone(),
                error,
            })?
        }
    };
    if !target.query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (i, named) in target.query.iter().enumerate() {
            let value = text(programs, named.value, scope, budget, || format!("{field}.query[{i}].value"))?;
            pairs.append_pair(programs.name(named.name), &value);
        }
    }
    // Room for the headers added after the template's: the depth here, the
    // perform's content type, then the client's `Host` and `Content-Length`.
    // A map that fills up on the way grows, reallocating both its tables.
    let mut headers = HeaderMap::with_capacity(target.headers.len() + 4);
    for (i, named) in target.headers.iter().enumerate() {
        let name = programs.name(named.name);
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| RenderError::HeaderName {
            field: format!("{field}.headers[{i}].name"),
            name: name.to_owned(),
        })?;
        let value = text(programs, named.value, scope, budget, || format!("{field}.headers[{i}].value"))?;
        let value = HeaderValue::from_str(&value)
            .map_err(|_| RenderError::HeaderValue { field: format!("{field}.headers[{i}].value") })?;
        headers.append(name, value);
    }
    headers.insert(DEPTH_HEADER.clone(), depth_value(depth + 1));
    Ok((url, headers))
}

/// A depth as a header value; the usual ones without formatting, which
/// allocates twice.
fn depth_value(depth: u32) -> HeaderValue {
    const DEPTHS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match DEPTHS.get(depth as usize) {
        Some(text) => HeaderValue::from_static(text),
        None => HeaderValue::from(depth),
    }
}

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

/// A URL template's URL, parsed once, if the template is literal text that
/// parses: rendering it per call is the same text every time, and parsing
/// it cost the trigger-load bench's end-to-end call 1.7 µs (a tenth of the
/// handler's CPU there).
pub fn parse_constant_url(programs: &ProgramSet, url: ProgramId) -> Option<url::Url> {
    url::Url::parse(programs.constant_text(url)?.trim()).ok()
}

/// Renders the perform request without its outbound auth; `parsed_url` is
/// its URL parsed once, if it is constant.
pub fn render_perform(
    perform: &Perform<Deployed>,
    programs: &ProgramSet,
    parsed_url: Option<&url::Url>,
    scope: &Scope<'_>,
    budget: &mut Budget,
    depth: u32,
) -> Result<OutboundRequest, RenderError> {
    let method =
        Method::from_bytes(perform.method.as_bytes()).map_err(|_| RenderError::Method(perform.method.clone()))?;
    let target = Target {
        programs,
        url: perform.url,
        parsed_url,
        headers: &perform.headers,
        query: &perform.query,
        field: "perform",
    };
    let (url, mut headers) = render_target(&target, scope, budget, depth)?;
    // The body's content type, checked only if no header sets one.
    let (content_type, body) = match perform.body_type {
        BodyType::None => (None, Bytes::new()),
        BodyType::Raw => {
            let program = perform.raw_body.ok_or(RenderError::MissingRawBody)?;
            let body = text(programs, program, scope, budget, || "perform.raw_body".to_owned())?;
            let content_type = match perform.raw_content_type.as_str() {
                "" => Ok(HeaderValue::from_static("text/plain")),
                given => HeaderValue::from_str(given).map_err(|_| RenderError::ContentType),
            };
            (Some(content_type), Bytes::from(body))
        }
        BodyType::Json => {
            let mut root = Members::new();
            for (i, field, value) in field_values(perform, programs, scope, budget)? {
                // Refused on save; a connector stored before that is
                // refused here, not left to overflow the stack.
                let key = programs.name(field.key);
                if hookplane_model::body_key_depth(key) > hookplane_model::MAX_BODY_KEY_DEPTH {
                    return Err(RenderError::KeyTooDeep { field: format!("perform.body[{i}].key") });
                }
                insert_dotted(&mut root, key, value);
            }
            let body = json_bytes(&root).map_err(RenderError::Json)?;
            (Some(Ok(HeaderValue::from_static("application/json"))), body)
        }
        BodyType::FormUrlencoded => {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            for (_, field, value) in field_values(perform, programs, scope, budget)? {
                form.append_pair(programs.name(field.key), &expr::render(&value));
            }
            let content_type = HeaderValue::from_static("application/x-www-form-urlencoded");
            (Some(Ok(content_type)), Bytes::from(form.finish()))
        }
        BodyType::Multipart => {
            let boundary = format!("hookplane-{:032x}", rand::random::<u128>());
            let mut body = Vec::new();
            for (i, field, value) in field_values(perform, programs, scope, budget)? {
                write_part(&mut body, &boundary, programs.name(field.key), field.file.as_deref(), i, &value)?;
            }
            body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
            let content_type = HeaderValue::try_from(format!("multipart/form-data; boundary={boundary}"));
            (Some(content_type.map_err(|_| RenderError::ContentType)), Bytes::from(body))
        }
    };
    if let Some(content_type) = content_type
        && !headers.contains_key(CONTENT_TYPE)
    {
        headers.insert(CONTENT_TYPE, content_type?);
    }
    let timeout = Duration::from_millis(if perform.timeout_ms == 0 { 30_000 } else { perform.timeout_ms });
    Ok(OutboundRequest { method, url, headers, body, timeout })
}

/// A body field's position, the field, and its value, borrowed from the
/// call's scope where the program is a plain reference.
type FieldValue<'p, 's> = (usize, &'p BodyField<Deployed>, Cow<'s, Value>);

/// Each body field with its index and value, nulls left out when asked.
fn field_values<'p, 's>(
    perform: &'p Perform<Deployed>,
    programs: &ProgramSet,
    scope: &Scope<'s>,
    budget: &mut Budget,
) -> Result<Vec<FieldValue<'p, 's>>, RenderError> {
    let mut values = Vec::with_capacity(perform.body.len());
    for (i, field) in perform.body.iter().enumerate() {
        let field_name = || format!("perform.body[{i}].value");
        let value = eval(programs, field.value, scope, budget, field_name)?;
        // A value borrowed from the scope is written out as a copy would
        // be, and is paid for as one (a computed one was, as it was built).
        if let Cow::Borrowed(kept) = value {
            budget.claim_copy(kept).map_err(|error| RenderError::Eval { field: field_name(), error })?;
        }
        if !(perform.skip_null_values && value.is_null()) {
            values.push((i, field, value));
        }
    }
    Ok(values)
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

/// One multipart part per value; a file field takes base64 text, or an
/// array of it for several files under the same name (`name[]`).
fn write_part(
    body: &mut Vec<u8>,
    boundary: &str,
    key: &str,
    file: Option<&FilePart>,
    i: usize,
    value: &Value,
) -> Result<(), RenderError> {
    let name = key.replace('"', "%22");
    let Some(file) = file else {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(expr::render(value).as_bytes());
        body.extend_from_slice(b"\r\n");
        return Ok(());
    };
    let files: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    for (n, item) in files.into_iter().enumerate() {
        let not_base64 = || RenderError::FileNotBase64 { field: format!("perform.body[{i}].value") };
        let encoded = item.as_str().ok_or_else(not_base64)?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| not_base64())?;
        let filename = numbered(&file.filename, n);
        let content_type = if file.content_type.is_empty() { "application/octet-stream" } else { &file.content_type };
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{}\"\r\nContent-Type: {content_type}\r\n\r\n",
                filename.replace('"', "%22")
            )
            .as_bytes(),
        );
        body.extend_from_slice(&bytes);
        body.extend_from_slice(b"\r\n");
    }
    Ok(())
}

/// The `n`th file of a `name[]` field: `scan.pdf`, `scan-1.pdf`, … so the
/// receiver sees distinct names with their extensions intact.
fn numbered(filename: &str, n: usize) -> String {
    if n == 0 {
        return filename.to_owned();
    }
    match filename.rfind('.') {
        Some(dot) if dot > 0 => format!("{}-{n}{}", &filename[..dot], &filename[dot..]),
        _ => format!("{filename}-{n}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
    fn depths_are_header_values_of_their_digits() {
        for depth in [0, 1, 9, 10, 4_000_000_000] {
            assert_eq!(depth_value(depth), HeaderValue::from(depth));
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
    /// `payload` within `limits`.
    fn json_body(
        fields: &[(&str, &str)],
        payload: &Value,
        limits: hookplane_expr::Limits,
    ) -> Result<Bytes, RenderError> {
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
        let programs = builder.finish();
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
        let processed = serde_json::Map::new();
        let scope = Scope { payload, lookup: None, processed: &processed, secrets: &hookplane_expr::NoSecrets };
        render_perform(&perform, &programs, None, &scope, &mut Budget::new(limits), 0).map(|request| request.body)
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

    /// A URL parsed once renders as the template would, query included;
    /// only literal text is parsed once.
    #[test]
    fn a_constant_url_parsed_once_renders_as_its_template() {
        let mut builder = hookplane_expr::ProgramSetBuilder::new();
        let context = || hookplane_expr::Context { processed: None };
        let mut compile =
            |source: &str| builder.compile(source, hookplane_expr::SourceKind::Template, context()).unwrap();
        let constant = compile(" https://api.example.com/orders?source=hook ");
        let templated = compile("https://api.example.com/orders/$payload.id");
        let not_a_url = compile("api.example.com/orders");
        let query_value = compile("$payload.id");
        let query = [NamedTemplate { name: builder.name("id"), value: query_value }];
        let programs = builder.finish();
        assert!(parse_constant_url(&programs, templated).is_none());
        assert!(parse_constant_url(&programs, not_a_url).is_none(), "left to fail as each call renders it");
        let parsed = parse_constant_url(&programs, constant).expect("literal text");
        let payload = json!({"id": "o/7"});
        let scope = Scope {
            payload: &payload,
            lookup: None,
            processed: &serde_json::Map::new(),
            secrets: &hookplane_expr::NoSecrets,
        };
        let render = |parsed_url| {
            let target = Target {
                programs: &programs,
                url: constant,
                parsed_url,
                headers: &[],
                query: &query,
                field: "perform",
            };
            render_target(&target, &scope, &mut Budget::new(hookplane_expr::Limits::default()), 0).unwrap().0
        };
        assert_eq!(render(Some(&parsed)), render(None));
        assert_eq!(render(Some(&parsed)).as_str(), "https://api.example.com/orders?source=hook&id=o%2F7");
        let target = Target {
            programs: &programs,
            url: not_a_url,
            parsed_url: None,
            headers: &[],
            query: &[],
            field: "perform",
        };
        let error = render_target(&target, &scope, &mut Budget::new(hookplane_expr::Limits::default()), 0).unwrap_err();
        assert!(matches!(&error, RenderError::Url { field, .. } if field == "perform.url"), "{error}");
    }

    #[test]
    fn later_files_of_a_field_are_numbered_before_the_extension() {
        assert_eq!(numbered("scan.pdf", 0), "scan.pdf");
        assert_eq!(numbered("scan.pdf", 2), "scan-2.pdf");
        assert_eq!(numbered("archive.tar.gz", 1), "archive.tar-1.gz");
        assert_eq!(numbered(".env", 1), ".env-1");
        assert_eq!(numbered("notes", 1), "notes-1");
    }
}
