//! Templates: text with `$root.path` references and `${ expression }`.
//!
//! `$$` writes a literal `$`; a `$` not followed by a name or `{` is literal
//! too (`$5.00`). A reference's path continues through `.name`, `[0]`,
//! `[-1]` and `["key"]`; a `.` not followed by a name ends it (so
//! `Hello $payload.name.` ends with a full stop).

use super::ast::{Expr, Node, Part, Segment};
use super::error::{CompileError, line_column};
use super::lexer::{is_ident_continue, is_ident_start};
use super::parser::{MAX_DEPTH, parse_expression};

/// Parses all of `source` as a template.
pub fn parse_template(source: &str) -> (Node, Vec<CompileError>) {
    let mut parts = Vec::new();
    let mut errors = Vec::new();
    let mut text = String::new();
    let bytes = source.as_bytes();
    let mut i = 0;
    while i < source.len() {
        let c = source[i..].chars().next().expect("in bounds");
        if c != '$' {
            text.push(c);
            i += c.len_utf8();
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'$') => {
                text.push('$');
                i += 2;
            }
            Some(b'{') => {
                flush(&mut text, &mut parts);
                let inner_start = i + 2;
                match closing_brace(source, inner_start) {
                    Some(close) => {
                        let inner = &source[inner_start..close];
                        if inner.trim().is_empty() {
                            errors.push(CompileError::at(source, i..close + 1, "expected an expression inside `${ }`"));
                        } else {
                            let parsed = parse_expression(source, inner, inner_start);
                            errors.extend(parsed.errors);
                            parts.push(Part::Expr(parsed.node));
                        }
                        i = close + 1;
                    }
                    None => {
                        let (line, column) = line_column(source, i);
                        errors.push(CompileError::at(
                            source,
                            i..source.len(),
                            format!("expected '}}' to close '${{' opened at {line}:{column}"),
                        ));
                        i = source.len();
                    }
                }
            }
            Some(&next) if is_ident_start(next as char) => {
                flush(&mut text, &mut parts);
                let (node, end) = reference(source, i);
                parts.push(Part::Expr(node));
                i = end;
            }
            _ => {
                text.push('$');
                i += 1;
            }
        }
    }
    flush(&mut text, &mut parts);
    let node = Node::new(Expr::Template(parts), 0..source.len());
    if node.height() as usize > MAX_DEPTH {
        errors.push(CompileError::at(
            source,
            0..source.len(),
            format!("expression nests deeper than {MAX_DEPTH} levels (the template is one more)"),
        ));
    }
    (node, errors)
}

fn flush(text: &mut String, parts: &mut Vec<Part>) {
    if !text.is_empty() {
        parts.push(Part::Text(std::mem::take(text)));
    }
}

/// The `}` closing a `${` whose content starts at `from`, skipping string
/// literals (which may contain `}`).
fn closing_brace(source: &str, from: usize) -> Option<usize> {
    let mut in_string = false;
    let mut escaped = false;
    for (offset, c) in source[from..].char_indices() {
        match (in_string, c) {
            (true, _) if escaped => escaped = false,
            (true, '\\') => escaped = true,
            (true, '"') => in_string = false,
            (false, '"') => in_string = true,
            (false, '}') => return Some(from + offset),
            _ => {}
        }
    }
    None
}

/// A `$root.path` reference starting at `start`; returns it and its end.
fn reference(source: &str, start: usize) -> (Node, usize) {
    let name_len = source[start + 1..].chars().take_while(|&c| is_ident_continue(c)).count();
    let root = source[start + 1..start + 1 + name_len].to_owned();
    let mut i = start + 1 + name_len;
    let mut path = Vec::new();
    loop {
        let rest = &source[i..];
        if let Some(after_dot) = rest.strip_prefix('.') {
            let key_len = after_dot.chars().take_while(|&c| is_ident_continue(c)).count();
            let starts_name = after_dot.chars().next().is_some_and(is_ident_start);
            let all_digits = key_len > 0 && after_dot[..key_len].bytes().all(|b| b.is_ascii_digit());
            if starts_name {
                path.push(Segment::Key(after_dot[..key_len].to_owned()));
            } else if all_digits {
                path.push(Segment::Index(after_dot[..key_len].parse().unwrap_or(i64::MAX)));
            } else {
                break;
            }
            i += 1 + key_len;
        } else if let Some(inner) = rest.strip_prefix('[') {
            let Some(close) = inner.find(']') else { break };
            let content = inner[..close].trim();
            let segment = if let Ok(index) = content.parse::<i64>() {
                Segment::Index(index)
            } else if let Ok(serde_json::Value::String(key)) = serde_json::from_str(content) {
                Segment::Key(key)
            } else {
                break;
            };
            path.push(segment);
            i += 1 + close + 1;
        } else {
            break;
        }
    }
    (Node::new(Expr::Ref { root, path }, start..i), i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str) -> String {
        let (node, errors) = parse_template(source);
        assert!(errors.is_empty(), "{errors:?}");
        node.to_string()
    }

    #[test]
    fn references_end_where_the_path_ends() {
        assert_eq!(
            render("https://api.example.com/users/$payload.user_id"),
            "https://api.example.com/users/${ $payload.user_id }"
        );
        assert_eq!(render("Hello $payload.name."), "Hello ${ $payload.name }.");
        assert_eq!(render("Bearer $secret.TOKEN"), "Bearer ${ $secret.TOKEN }");
        assert_eq!(render(r#"$payload.items[0]["sku id"]-x"#), r#"${ $payload.items[0]["sku id"] }-x"#);
    }

    #[test]
    fn dollars_that_are_not_references_stay_text() {
        assert_eq!(render("costs $5.00 or $$USD"), "costs $$5.00 or $$USD");
        assert_eq!(render("${ upper(\"}\") }!"), "${ upper(\"}\") }!");
    }

    #[test]
    fn unclosed_and_empty_blocks_are_errors() {
        let (_, errors) = parse_template("id: ${ $payload.id");
        assert_eq!(errors[0].to_string(), "1:5: expected '}' to close '${' opened at 1:5");
        let (_, errors) = parse_template("x ${ }");
        assert!(errors[0].message.contains("expected an expression"));
        let (_, errors) = parse_template("a ${ concat(1, }");
        assert!(errors[0].message.contains("expected an expression"), "{errors:?}");
        assert_eq!(errors[0].column, 16, "positions point into the whole text");
    }
}
