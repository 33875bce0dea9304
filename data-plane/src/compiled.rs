//! A connector's expressions, compiled once when a snapshot is built, so the
//! request path never parses (SPEC §6).
//!
//! A node holds its fleet's every connector, so this is laid out for
//! memory: all programs of a connector, and the names they go with
//! (mapping names, header and query names, body keys), share one arena (a
//! [`ProgramSet`]). Compiling *takes* the expressions out of the spec — the
//! node keeps no source text — and [`CompiledConnector::restore`] prints
//! them back when the snapshot is written to the node's cache.

use hookplane_expr::{CompileErrors, Context, Mappings, Name, ProgramId, ProgramSet, ProgramSetBuilder, SourceKind};
use hookplane_model::{
    BodyField, BodyType, ConnectorSpec, FieldMapping, FilePart, Lookup, NamedTemplate, OutboundAuth, Perform,
};

/// A header or query parameter: its name and its value's program.
#[derive(Debug)]
pub struct NamedProgram {
    pub name: Name,
    pub value: ProgramId,
}

/// A field of a structured perform body.
#[derive(Debug)]
pub struct BodyProgram {
    pub key: Name,
    pub value: ProgramId,
    pub file: Option<Box<FilePart>>,
}

/// The compiled templates of one outgoing request.
#[derive(Debug)]
pub struct CompiledRequest {
    pub url: ProgramId,
    pub headers: Box<[NamedProgram]>,
    pub query: Box<[NamedProgram]>,
}

/// Every expression of a connector, compiled into one [`ProgramSet`].
#[derive(Debug)]
pub struct CompiledConnector {
    pub programs: ProgramSet,
    pub condition: Option<ProgramId>,
    /// Boxed, as most connectors have no lookup.
    pub lookup: Option<Box<CompiledRequest>>,
    pub mappings: Mappings,
    pub perform: CompiledRequest,
    /// The perform body's fields, in the spec's order.
    pub body: Box<[BodyProgram]>,
    /// For `BODY_TYPE_RAW`.
    pub raw_body: Option<ProgramId>,
    /// Bearer token, or Basic username and password, of the outbound auth.
    pub outbound_auth: Box<[ProgramId]>,
}

impl CompiledConnector {
    /// Compiles every expression of `spec` and takes them out of it: the
    /// spec keeps no condition, mappings, URLs, headers, query, body or
    /// outbound-auth templates. The error names the first failing field
    /// and leaves `spec` as it was.
    pub fn take_from(spec: &mut ConnectorSpec) -> Result<CompiledConnector, String> {
        let compiled = CompiledConnector::compile(spec)?;
        spec.condition = None;
        spec.mappings = Vec::new();
        if let Some(lookup) = &mut spec.lookup {
            take_request(&mut lookup.url, &mut lookup.headers, &mut lookup.query);
        }
        let perform = &mut spec.perform;
        take_request(&mut perform.url, &mut perform.headers, &mut perform.query);
        perform.body = Vec::new();
        perform.raw_body = String::new();
        match &mut perform.auth {
            OutboundAuth::Bearer { token } => *token = String::new(),
            OutboundAuth::Basic { username, password } => {
                *username = String::new();
                *password = String::new();
            }
            OutboundAuth::None | OutboundAuth::OAuth2(_) => {}
        }
        Ok(compiled)
    }

    fn compile(spec: &ConnectorSpec) -> Result<CompiledConnector, String> {
        let mut builder = ProgramSetBuilder::new();
        let sources: Vec<(&str, &str)> =
            spec.mappings.iter().map(|m| (m.name.as_str(), m.expression.as_str())).collect();
        let mappings = builder.compile_mappings(&sources).map_err(|errors| {
            let first = &errors[0];
            format!("mappings[{}].expression: {}", first.index, first.errors)
        })?;
        let condition = spec
            .condition
            .as_deref()
            .map(|c| {
                builder
                    .compile(c, SourceKind::Expression, Context { processed: Some(&[]) })
                    .map_err(|e| format!("condition: {e}"))
            })
            .transpose()?;
        let names: Vec<&str> = spec.mappings.iter().map(|m| m.name.as_str()).collect();
        let mut templates = Templates { builder, names: &names };
        let lookup = spec.lookup.as_deref().map(|l| templates.lookup(l).map(Box::new)).transpose()?;
        let perform = &spec.perform;
        let request = templates.request("perform", &perform.url, &perform.headers, &perform.query)?;
        let body = templates.body(perform)?;
        let raw_body = (perform.body_type == BodyType::Raw)
            .then(|| templates.value("perform.raw_body", &perform.raw_body))
            .transpose()?;
        let outbound_auth: Box<[ProgramId]> = match &perform.auth {
            OutboundAuth::Bearer { token } => Box::new([templates.value("perform.auth.bearer.token", token)?]),
            OutboundAuth::Basic { username, password } => Box::new([
                templates.value("perform.auth.basic.username", username)?,
                templates.value("perform.auth.basic.password", password)?,
            ]),
            OutboundAuth::None | OutboundAuth::OAuth2(_) => Box::new([]),
        };
        let programs = templates.builder.finish();
        Ok(CompiledConnector { programs, condition, lookup, mappings, perform: request, body, raw_body, outbound_auth })
    }

    /// Puts every expression back into `spec` (one [`take_from`] emptied)
    /// as source text that compiles to the same programs.
    ///
    /// [`take_from`]: CompiledConnector::take_from
    pub fn restore(&self, spec: &mut ConnectorSpec) {
        let programs = &self.programs;
        spec.condition = self.condition.map(|c| programs.source(c));
        spec.mappings = self
            .mappings
            .entries(programs)
            .map(|(name, program)| FieldMapping { name: name.to_owned(), expression: programs.source(program) })
            .collect();
        if let (Some(lookup), Some(compiled)) = (&mut spec.lookup, &self.lookup) {
            self.restore_request(compiled, &mut lookup.url, &mut lookup.headers, &mut lookup.query);
        }
        let perform = &mut spec.perform;
        self.restore_request(&self.perform, &mut perform.url, &mut perform.headers, &mut perform.query);
        perform.body = self
            .body
            .iter()
            .map(|field| BodyField {
                key: programs.name(field.key).to_owned(),
                value: programs.source(field.value),
                file: field.file.clone(),
            })
            .collect();
        if let Some(raw_body) = self.raw_body {
            perform.raw_body = programs.source(raw_body);
        }
        match &mut perform.auth {
            OutboundAuth::Bearer { token } => *token = programs.source(self.outbound_auth[0]),
            OutboundAuth::Basic { username, password } => {
                *username = programs.source(self.outbound_auth[0]);
                *password = programs.source(self.outbound_auth[1]);
            }
            OutboundAuth::None | OutboundAuth::OAuth2(_) => {}
        }
    }

    fn restore_request(
        &self,
        compiled: &CompiledRequest,
        url: &mut String,
        headers: &mut Vec<NamedTemplate>,
        query: &mut Vec<NamedTemplate>,
    ) {
        let named = |list: &[NamedProgram]| {
            list.iter()
                .map(|n| NamedTemplate {
                    name: self.programs.name(n.name).to_owned(),
                    value: self.programs.source(n.value),
                })
                .collect()
        };
        *url = self.programs.source(compiled.url);
        *headers = named(&compiled.headers);
        *query = named(&compiled.query);
    }

    /// Every `$secret` name any of the programs reads, for redaction.
    pub fn secret_names(&self) -> Vec<&str> {
        self.programs.all_secrets()
    }

    /// The name of the mapping at `index`, for messages.
    pub fn mapping_name(&self, index: usize) -> &str {
        self.mappings.names(&self.programs).nth(index).unwrap_or_default()
    }
}

fn take_request(url: &mut String, headers: &mut Vec<NamedTemplate>, query: &mut Vec<NamedTemplate>) {
    *url = String::new();
    *headers = Vec::new();
    *query = Vec::new();
}

/// Compiles the templates after the mappings, which may read them all.
struct Templates<'a> {
    builder: ProgramSetBuilder,
    names: &'a [&'a str],
}

impl Templates<'_> {
    fn value(&mut self, field: &str, source: &str) -> Result<ProgramId, String> {
        self.builder
            .compile(source, SourceKind::Template, Context { processed: Some(self.names) })
            .map_err(|e: CompileErrors| format!("{field}: {e}"))
    }

    fn named(&mut self, list: &[NamedTemplate], prefix: &str) -> Result<Box<[NamedProgram]>, String> {
        list.iter()
            .enumerate()
            .map(|(i, t)| {
                let value = self.value(&format!("{prefix}[{i}].value"), &t.value)?;
                Ok(NamedProgram { name: self.builder.name(&t.name), value })
            })
            .collect()
    }

    fn request(
        &mut self,
        field: &str,
        url: &str,
        headers: &[NamedTemplate],
        query: &[NamedTemplate],
    ) -> Result<CompiledRequest, String> {
        Ok(CompiledRequest {
            url: self.value(&format!("{field}.url"), url)?,
            headers: self.named(headers, &format!("{field}.headers"))?,
            query: self.named(query, &format!("{field}.query"))?,
        })
    }

    fn lookup(&mut self, lookup: &Lookup) -> Result<CompiledRequest, String> {
        self.request("lookup", &lookup.url, &lookup.headers, &lookup.query)
    }

    fn body(&mut self, perform: &Perform) -> Result<Box<[BodyProgram]>, String> {
        perform
            .body
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let value = self.value(&format!("perform.body[{i}].value"), &field.value)?;
                Ok(BodyProgram { key: self.builder.name(&field.key), value, file: field.file.clone() })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use hookplane::api::v1 as api;
    use hookplane_convert::connector_from_api;
    use hookplane_expr::{Budget, Limits, NoSecrets, Scope};
    use serde_json::json;

    use super::*;

    fn spec(connector: api::Connector) -> ConnectorSpec {
        connector_from_api(&api::Connector { display_name: "x".into(), ..connector }, "connector").unwrap()
    }

    fn named(name: &str, value: &str) -> api::NamedTemplate {
        api::NamedTemplate { name: name.into(), value: value.into() }
    }

    #[test]
    fn every_template_is_compiled_in_spec_order_and_taken_out_of_the_spec() {
        let mut spec = spec(api::Connector {
            auth: Some(api::InboundAuth { bearer_token: true, ..Default::default() }),
            condition: "$payload.ok".into(),
            mappings: vec![api::FieldMapping { name: "id".into(), expression: "$payload.id".into() }],
            perform: Some(api::Perform {
                url: "https://example.com/$processed.id".into(),
                headers: vec![named("X-A", "a-$payload.id")],
                body: vec![api::BodyField { key: "n".into(), value: "$payload.id".into(), ..Default::default() }],
                ..Default::default()
            }),
            ..Default::default()
        });
        let compiled = CompiledConnector::take_from(&mut spec).unwrap();
        assert_eq!((spec.condition, spec.mappings.len(), spec.perform.url.as_str()), (None, 0, ""));
        assert!(spec.perform.headers.is_empty() && spec.perform.body.is_empty());

        let payload = json!({"ok": true, "id": 7});
        let programs = &compiled.programs;
        let mut budget = Budget::new(Limits::default());
        let processed = compiled.mappings.eval(programs, &payload, None, &NoSecrets, &mut budget).unwrap();
        let scope = Scope { payload: &payload, lookup: None, processed: &processed, secrets: &NoSecrets };
        let eval = |p: ProgramId| programs.eval(p, &scope, &Limits::default()).unwrap();
        assert_eq!(eval(compiled.condition.unwrap()), json!(true));
        assert_eq!(eval(compiled.perform.url), json!("https://example.com/7"));
        assert_eq!(programs.name(compiled.perform.headers[0].name), "X-A");
        assert_eq!(eval(compiled.perform.headers[0].value), json!("a-7"));
        assert_eq!(programs.name(compiled.body[0].key), "n");
        assert_eq!(eval(compiled.body[0].value), json!(7), "a single expression keeps its type");
    }

    #[test]
    fn a_connector_stored_before_the_depth_limit_is_refused_not_run() {
        // Saved by an older control plane: 6 000 terms aborted every node
        // on its first call. Now the node refuses it when it builds the
        // snapshot, and the spec is left as it was.
        let mut spec = spec(api::Connector {
            auth: Some(api::InboundAuth { bearer_token: true, ..Default::default() }),
            perform: Some(api::Perform { url: "https://example.com/".into(), ..Default::default() }),
            ..Default::default()
        });
        let deep = format!("$payload.x{}", " + 1".repeat(6_000));
        spec.mappings.push(FieldMapping { name: "x".into(), expression: deep.clone() });
        let err = CompiledConnector::take_from(&mut spec).unwrap_err();
        assert!(err.starts_with("mappings[0].expression: ") && err.contains("nests deeper"), "{err}");
        assert_eq!(spec.mappings[0].expression, deep);
    }

    #[test]
    fn restore_puts_back_what_take_from_took() {
        // Sources already in printed form come back byte for byte.
        let original = spec(api::Connector {
            auth: Some(api::InboundAuth { bearer_token: true, ..Default::default() }),
            condition: "($payload.status == \"paid\")".into(),
            lookup: Some(api::Lookup {
                url: "https://crm.test/users/${ $payload.user }".into(),
                headers: vec![named("Authorization", "Bearer ${ $secret.CRM }")],
                query: vec![named("fields", "email")],
                ..Default::default()
            }),
            mappings: vec![
                api::FieldMapping { name: "email".into(), expression: "lower($lookup.email)".into() },
                api::FieldMapping { name: "total".into(), expression: "($payload.amount / 100)".into() },
            ],
            perform: Some(api::Perform {
                method: "PUT".into(),
                url: "https://erp.test/orders/${ $payload.id }".into(),
                headers: vec![named("X-Source", "hookplane")],
                query: vec![named("dry", "$payload.dry")],
                body_type: api::BodyType::Multipart.into(),
                body: vec![
                    api::BodyField { key: "email".into(), value: "$processed.email".into(), ..Default::default() },
                    api::BodyField {
                        key: "scan".into(),
                        value: "$payload.file".into(),
                        file: true,
                        filename: "scan.pdf".into(),
                        content_type: "application/pdf".into(),
                    },
                ],
                auth: Some(api::OutboundAuth {
                    method: Some(api::outbound_auth::Method::Basic(api::BasicOutbound {
                        username: "svc".into(),
                        password: "${ $secret.ERP }".into(),
                    })),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut spec = original.clone();
        let compiled = CompiledConnector::take_from(&mut spec).unwrap();
        assert_ne!(spec, original);
        compiled.restore(&mut spec);
        assert_eq!(spec, original);
    }

    #[test]
    fn a_connector_that_fails_to_compile_keeps_its_spec() {
        // As from a newer control plane, whose functions this node lacks.
        let mut original = spec(api::Connector {
            auth: Some(api::InboundAuth { bearer_token: true, ..Default::default() }),
            perform: Some(api::Perform {
                url: "https://x.test/".into(),
                headers: vec![named("X-A", "$payload.a")],
                body: vec![api::BodyField { key: "n".into(), value: "$payload.id".into(), ..Default::default() }],
                ..Default::default()
            }),
            ..Default::default()
        });
        original.perform.body[0].value = "nope($payload.id)".into();
        let mut spec = original.clone();
        let err = CompiledConnector::take_from(&mut spec).unwrap_err();
        assert!(err.starts_with("perform.body[0].value: "), "{err}");
        assert_eq!(spec, original);
    }
}
