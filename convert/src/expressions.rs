//! Checking a connector's expressions when it is saved (SPEC §6), with the
//! same compiler nodes use (`hookplane_model::compile_connector`): every
//! diagnostic becomes a field violation naming the field, with the
//! position in the text, e.g. `connector.perform.url: 1:12: unknown
//! reference ...`. Sources enter here, so their length is capped here.

use hookplane_expr as expr;
use hookplane_model::{ConnectorSpec, compile_connector};

use super::Violations;

/// Adds a violation for every problem of `spec`'s expressions.
pub fn check_connector_expressions(spec: &ConnectorSpec, prefix: &str, v: &mut Violations) {
    let mut total = 0;
    for (field, source) in spec.expressions() {
        total += source.len();
        if source.len() > expr::MAX_SOURCE_BYTES {
            v.add(
                format!("{prefix}.{}", field.path()),
                format!(
                    "is {} bytes long; an expression or template may have at most {}",
                    source.len(),
                    expr::MAX_SOURCE_BYTES
                ),
            );
        }
    }
    if total > expr::MAX_SET_SOURCE_BYTES {
        v.add(
            prefix.to_owned(),
            format!(
                "the connector's expressions and templates add up to {total} bytes; at most {} are allowed",
                expr::MAX_SET_SOURCE_BYTES
            ),
        );
    }
    if let Err(diagnostics) = compile_connector(spec) {
        for d in diagnostics {
            let description = if d.line == 0 { d.message } else { format!("{}:{}: {}", d.line, d.column, d.message) };
            v.add(format!("{prefix}.{}", d.field), description);
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
        // In evaluation order: the condition, the mappings, the perform.
        assert_eq!(found[0], ("connector.condition", "1:18: expected an expression, found the end of the expression"));
        assert_eq!(found[1].0, "connector.mappings[0].expression");
        assert!(found[1].1.starts_with("1:1: unknown function `uper`; did you mean `upper`?"));
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
