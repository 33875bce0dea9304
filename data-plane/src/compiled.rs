//! A connector's expressions, compiled once when a snapshot is built, so the
//! request path never parses (SPEC §6). Programs are held in the order of
//! the spec's lists, so names are not stored twice.

use hookplane::expr::{self, CompileErrors, Context, MappingProgram, Program, SourceKind};
use hookplane::model::{BodyType, ConnectorSpec, Lookup, NamedTemplate, OutboundAuth, Perform};

/// The compiled templates of one outgoing request.
#[derive(Debug)]
pub struct CompiledRequest {
    pub url: Program,
    /// In the order of the spec's `headers`.
    pub headers: Box<[Program]>,
    /// In the order of the spec's `query`.
    pub query: Box<[Program]>,
    /// In the order of the spec's `body` (perform only).
    pub body: Box<[Program]>,
    /// For `BODY_TYPE_RAW` (perform only).
    pub raw_body: Option<Program>,
}

/// Every expression of a connector, compiled.
#[derive(Debug)]
pub struct CompiledConnector {
    pub condition: Option<Program>,
    pub lookup: Option<CompiledRequest>,
    pub mappings: MappingProgram,
    pub perform: CompiledRequest,
    /// Bearer token, or Basic username and password, of the outbound auth.
    pub outbound_auth: Box<[Program]>,
}

impl CompiledConnector {
    /// Compiles `spec`; the error names the first failing field.
    pub fn compile(spec: &ConnectorSpec) -> Result<CompiledConnector, String> {
        let names: Vec<&str> = spec.mappings.iter().map(|m| m.name.as_str()).collect();
        let sources: Vec<(&str, &str)> =
            spec.mappings.iter().map(|m| (m.name.as_str(), m.expression.as_str())).collect();
        let mappings = expr::compile_mappings(&sources).map_err(|errors| {
            let first = &errors[0];
            format!("mappings[{}].expression: {}", first.index, first.errors)
        })?;
        let value = |field: &str, source: &str| {
            expr::compile_in(source, SourceKind::Template, Context { processed: Some(&names) })
                .map_err(|e: CompileErrors| format!("{field}: {e}"))
        };
        let condition = spec
            .condition
            .as_deref()
            .map(|c| {
                expr::compile_in(c, SourceKind::Expression, Context { processed: Some(&[]) })
                    .map_err(|e| format!("condition: {e}"))
            })
            .transpose()?;
        let lookup = spec.lookup.as_deref().map(|l| compile_lookup(l, &value)).transpose()?;
        let perform = compile_perform(&spec.perform, &value)?;
        let outbound_auth = match &spec.perform.auth {
            OutboundAuth::Bearer { token } => vec![value("perform.auth.bearer.token", token)?],
            OutboundAuth::Basic { username, password } => {
                vec![value("perform.auth.basic.username", username)?, value("perform.auth.basic.password", password)?]
            }
            OutboundAuth::None | OutboundAuth::OAuth2(_) => Vec::new(),
        };
        Ok(CompiledConnector { condition, lookup, mappings, perform, outbound_auth: outbound_auth.into() })
    }
}

impl CompiledConnector {
    /// Every `$secret` name any of the programs reads, for redaction.
    pub fn secret_names(&self) -> Vec<&str> {
        let requests = self.lookup.iter().chain(std::iter::once(&self.perform));
        let mut names: Vec<&str> = requests
            .flat_map(|r| std::iter::once(&r.url).chain(&r.headers).chain(&r.query).chain(&r.body).chain(&r.raw_body))
            .chain(&self.condition)
            .chain(&self.outbound_auth)
            .flat_map(Program::secrets)
            .chain(self.mappings.secrets())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

type Compile<'a> = dyn Fn(&str, &str) -> Result<Program, String> + 'a;

fn named(list: &[NamedTemplate], prefix: &str, value: &Compile<'_>) -> Result<Box<[Program]>, String> {
    list.iter().enumerate().map(|(i, t)| value(&format!("{prefix}[{i}].value"), &t.value)).collect()
}

fn compile_lookup(lookup: &Lookup, value: &Compile<'_>) -> Result<CompiledRequest, String> {
    Ok(CompiledRequest {
        url: value("lookup.url", &lookup.url)?,
        headers: named(&lookup.headers, "lookup.headers", value)?,
        query: named(&lookup.query, "lookup.query", value)?,
        body: Box::new([]),
        raw_body: None,
    })
}

fn compile_perform(perform: &Perform, value: &Compile<'_>) -> Result<CompiledRequest, String> {
    Ok(CompiledRequest {
        url: value("perform.url", &perform.url)?,
        headers: named(&perform.headers, "perform.headers", value)?,
        query: named(&perform.query, "perform.query", value)?,
        body: perform
            .body
            .iter()
            .enumerate()
            .map(|(i, field)| value(&format!("perform.body[{i}].value"), &field.value))
            .collect::<Result<_, _>>()?,
        raw_body: (perform.body_type == BodyType::Raw)
            .then(|| value("perform.raw_body", &perform.raw_body))
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use hookplane::api::v1 as api;
    use hookplane::convert::connector_from_api;
    use hookplane::expr::{Limits, NoSecrets, Scope};
    use serde_json::json;

    use super::*;

    #[test]
    fn every_template_is_compiled_in_spec_order() {
        let spec = connector_from_api(
            &api::Connector {
                display_name: "x".into(),
                auth: Some(api::InboundAuth { bearer_token: true, ..Default::default() }),
                condition: "$payload.ok".into(),
                mappings: vec![api::FieldMapping { name: "id".into(), expression: "$payload.id".into() }],
                perform: Some(api::Perform {
                    url: "https://example.com/$processed.id".into(),
                    headers: vec![api::NamedTemplate { name: "X-A".into(), value: "a-$payload.id".into() }],
                    body: vec![api::BodyField { key: "n".into(), value: "$payload.id".into(), ..Default::default() }],
                    ..Default::default()
                }),
                ..Default::default()
            },
            "connector",
        )
        .unwrap();
        let compiled = CompiledConnector::compile(&spec).unwrap();
        let payload = json!({"ok": true, "id": 7});
        let processed = compiled.mappings.eval(&payload, None, &NoSecrets, &Limits::default()).unwrap();
        let scope = Scope { payload: &payload, lookup: None, processed: &processed, secrets: &NoSecrets };
        let eval = |p: &Program| p.eval(&scope, &Limits::default()).unwrap();
        assert_eq!(eval(compiled.condition.as_ref().unwrap()), json!(true));
        assert_eq!(eval(&compiled.perform.url), json!("https://example.com/7"));
        assert_eq!(eval(&compiled.perform.headers[0]), json!("a-7"));
        assert_eq!(eval(&compiled.perform.body[0]), json!(7), "a single expression keeps its type");
    }
}
