//! Compiling a connector's expressions when it is saved (SPEC §6): every
//! error becomes a field violation naming the field, with the position in
//! the text, e.g. `connector.perform.url: 1:12: unknown reference ...`.

use hookplane_expr::{self as expr, Context, SourceKind};
use hookplane_model::{ConnectorSpec, ExpressionKind};

use super::Violations;

/// Adds a violation for every compile error of `spec`'s expressions.
pub fn check_connector_expressions(spec: &ConnectorSpec, prefix: &str, v: &mut Violations) {
    let sources: Vec<(&str, &str)> = spec.mappings.iter().map(|m| (m.name.as_str(), m.expression.as_str())).collect();
    if let Err(errors) = expr::compile_mappings(&sources) {
        for error in errors {
            for e in error.errors.iter() {
                v.add(format!("{prefix}.mappings[{}].expression", error.index), e.to_string());
            }
        }
    }
    // Sources enter here: their length is capped here, and what is in
    // bounds compiles (nodes cap the operations, which printing keeps).
    let fields = spec.expression_sources();
    let named =
        spec.mappings.iter().enumerate().map(|(i, m)| (format!("mappings[{i}].expression"), m.expression.len()));
    let lengths: Vec<(String, usize)> = named.chain(fields.iter().map(|(f, s, _)| (f.clone(), s.len()))).collect();
    for (field, length) in &lengths {
        if *length > expr::MAX_SOURCE_BYTES {
            v.add(
                format!("{prefix}.{field}"),
                format!(
                    "is {length} bytes long; an expression or template may have at most {}",
                    expr::MAX_SOURCE_BYTES
                ),
            );
        }
    }
    let total: usize = lengths.iter().map(|(_, length)| length).sum();
    if total > expr::MAX_SET_SOURCE_BYTES {
        v.add(
            prefix.to_owned(),
            format!(
                "the connector's expressions and templates add up to {total} bytes; at most {} are allowed",
                expr::MAX_SET_SOURCE_BYTES
            ),
        );
    }
    let names: Vec<&str> = spec.mappings.iter().map(|m| m.name.as_str()).collect();
    for (field, source, kind) in fields {
        let kind = match kind {
            ExpressionKind::Expression => SourceKind::Expression,
            ExpressionKind::Template => SourceKind::Template,
        };
        // The condition runs before the mappings, so it cannot read them.
        let processed: &[&str] = if field == "condition" { &[] } else { &names };
        if let Err(errors) = expr::compile_in(source, kind, Context { processed: Some(processed) }) {
            for e in errors.iter() {
                v.add(format!("{prefix}.{field}"), e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::connector_from_api;
    use hookplane::api::v1 as api;

    fn connector() -> api::Connector {
        api::Connector {
            display_name: "x".into(),
            auth: Some(api::InboundAuth { bearer_token: true, ..Default::default() }),
            perform: Some(api::Perform { url: "https://example.com/$payload.id".into(), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn every_expression_error_names_its_field_and_position() {
        let mut c = connector();
        c.condition = "$payload.total > ".into();
        c.mappings = vec![
            api::FieldMapping { name: "a".into(), expression: "uper($payload.x)".into() },
            api::FieldMapping { name: "b".into(), expression: "$processed.a".into() },
        ];
        c.perform.as_mut().unwrap().url = "https://example.com/$paylod.id".into();
        c.perform.as_mut().unwrap().headers =
            vec![api::NamedTemplate { name: "X-A".into(), value: "${ $processed.nope }".into() }];
        let err = connector_from_api(&c, "connector").unwrap_err();
        let found: Vec<_> = err.violations.iter().map(|v| (v.field.as_str(), v.description.as_str())).collect();
        assert_eq!(found[0].0, "connector.mappings[0].expression");
        assert!(found[0].1.starts_with("1:1: unknown function `uper`; did you mean `upper`?"));
        assert_eq!(found[1], ("connector.condition", "1:18: expected an expression, found the end of the expression"));
        assert_eq!(found[2].0, "connector.perform.url");
        assert!(found[2].1.contains("unknown reference `$paylod`"));
        assert_eq!(found[3].0, "connector.perform.headers[0].value");
        assert!(found[3].1.contains("`$processed.nope` refers to no earlier mapping"));
        assert_eq!(found.len(), 4);
    }

    #[test]
    fn sources_are_capped_where_they_enter() {
        let mut c = connector();
        c.perform.as_mut().unwrap().url =
            format!("https://example.com/{}", "x".repeat(hookplane_expr::MAX_SOURCE_BYTES));
        let err = connector_from_api(&c, "connector").unwrap_err();
        assert_eq!(err.violations[0].field, "connector.perform.url");
        assert!(err.violations[0].description.contains("at most 65536"), "{err}");
        let mut c = connector();
        let long = "y".repeat(hookplane_expr::MAX_SOURCE_BYTES - 1);
        c.mappings = (0..5).map(|i| api::FieldMapping { name: format!("m{i}"), expression: long.clone() }).collect();
        let err = connector_from_api(&c, "connector").unwrap_err();
        assert_eq!(err.violations[0].field, "connector");
        assert!(err.violations[0].description.contains("at most 262144"), "{err}");
    }

    #[test]
    fn the_condition_cannot_read_mappings() {
        let mut c = connector();
        c.mappings = vec![api::FieldMapping { name: "a".into(), expression: "1".into() }];
        c.condition = "$processed.a == 1".into();
        let err = connector_from_api(&c, "connector").unwrap_err();
        assert_eq!(err.violations[0].field, "connector.condition");
    }

    #[test]
    fn valid_expressions_pass() {
        let mut c = connector();
        c.condition = r#"$payload.status == "paid""#.into();
        c.mappings = vec![api::FieldMapping { name: "id".into(), expression: "$payload.id".into() }];
        c.perform.as_mut().unwrap().url = "https://example.com/orders/$processed.id?src=${ lower(\"WEB\") }".into();
        assert!(connector_from_api(&c, "connector").is_ok());
    }
}
