//! Rendering a connector's compiled templates into an outgoing request
//! (SPEC §7 item 4): URL, query, headers and every body type.

use std::borrow::Cow;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use hookplane_expr::{self as expr, Budget, EvalError, ProgramId, ProgramSet, Scope};
use hookplane_model::{BodyField, BodyType, Deployed, FilePart, NamedTemplate, Perform};
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{HeaderMap, Method};
use serde_json::Value;

use hookplane_egress::client::OutboundRequest;
use hookplane_egress::destination::Destination;

mod json_body;

pub use json_body::{BodyShape, json_bytes};

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
    pub parsed_url: Option<&'a Destination>,
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
) -> Result<(Destination, HeaderMap), RenderError> {
    let field = target.field;
    let programs = target.programs;
    let destination = match target.parsed_url {
        Some(parsed) if target.query.is_empty() => parsed.clone(),
        parsed => {
            let mut url = match parsed {
                Some(parsed) => parsed.url().clone(),
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
            Destination::new(url)
        }
    };
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
    Ok((destination, headers))
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

/// A URL template's URL, parsed once (for hyper too:
/// [`Destination::prepared`]), if the template is literal text that parses:
/// rendering it per call is the same text every time, and parsing it cost
/// the trigger-load bench's end-to-end call 1.7 µs (a tenth of the
/// handler's CPU there).
pub fn parse_constant_url(programs: &ProgramSet, url: ProgramId) -> Option<Destination> {
    url::Url::parse(programs.constant_text(url)?.trim()).ok().map(Destination::prepared)
}

/// What of a perform renders the same on every call, worked out once when
/// a node deploys the connector (or a dry run renders it).
#[derive(Debug, Default)]
pub struct PreparedPerform {
    /// The URL, if its template is literal text ([`parse_constant_url`]).
    pub url: Option<Destination>,
    /// The JSON body's shape, if it has one ([`BodyShape::of`]).
    pub body: Option<BodyShape>,
}

impl PreparedPerform {
    pub fn new(perform: &Perform<Deployed>, programs: &ProgramSet) -> PreparedPerform {
        PreparedPerform { url: parse_constant_url(programs, perform.url), body: BodyShape::of(perform, programs) }
    }
}

/// Renders the perform request without its outbound auth; `prepared` is
/// what of it was worked out once (`PreparedPerform::default()` for
/// nothing), which renders as its templates would.
pub fn render_perform(
    perform: &Perform<Deployed>,
    programs: &ProgramSet,
    prepared: &PreparedPerform,
    scope: &Scope<'_>,
    budget: &mut Budget,
    depth: u32,
) -> Result<OutboundRequest, RenderError> {
    let method =
        Method::from_bytes(perform.method.as_bytes()).map_err(|_| RenderError::Method(perform.method.clone()))?;
    let target = Target {
        programs,
        url: perform.url,
        parsed_url: prepared.url.as_ref(),
        headers: &perform.headers,
        query: &perform.query,
        field: "perform",
    };
    let (destination, mut headers) = render_target(&target, scope, budget, depth)?;
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
            let values = field_values(perform, programs, scope, budget)?;
            let body = json_body::write(perform, programs, prepared.body.as_ref(), values)?;
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
    Ok(OutboundRequest { method, destination, headers, body, timeout })
}

/// A body field's position, the field, and its value, borrowed from the
/// call's scope where the program is a plain reference.
pub(crate) type FieldValue<'p, 's> = (usize, &'p BodyField<Deployed>, Cow<'s, Value>);

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
    fn depths_are_header_values_of_their_digits() {
        for depth in [0, 1, 9, 10, 4_000_000_000] {
            assert_eq!(depth_value(depth), HeaderValue::from(depth));
        }
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
            payload: (&payload).into(),
            lookup: None,
            processed: &hookplane_expr::Processed::new(),
            secrets: &hookplane_expr::NoSecrets,
        };
        let render = |parsed_url, query| {
            let target =
                Target { programs: &programs, url: constant, parsed_url, headers: &[], query, field: "perform" };
            let budget = &mut Budget::new(hookplane_expr::Limits::default());
            let destination = render_target(&target, &scope, budget, 0).unwrap().0;
            (destination.url().to_string(), destination.is_prepared())
        };
        assert_eq!(render(None, &query).0, render(Some(&parsed), &query).0);
        // A query added per call makes another URL, parsed for hyper anew.
        assert_eq!(
            render(Some(&parsed), &query),
            ("https://api.example.com/orders?source=hook&id=o%2F7".into(), false)
        );
        assert_eq!(render(None, &[]).0, render(Some(&parsed), &[]).0);
        assert_eq!(render(Some(&parsed), &[]), ("https://api.example.com/orders?source=hook".into(), true));
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
