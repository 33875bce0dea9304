//! Recursive-descent parser with operator precedence and error recovery:
//! it records an error and keeps going, so `compile` reports every problem.
//!
//! Every pass over an expression (lowering, evaluation, printing, dropping
//! the tree) recurses once per level of the tree, so the parser is what
//! keeps their stack use bounded: it refuses a tree taller than
//! [`MAX_DEPTH`] as it builds it (a chain `a + b + c` is a level per
//! operator, however flat it looks), and it stops recursing into its own
//! input at the same depth (parentheses count there).

use serde_json::Value;

use super::ast::{BinaryOp, Expr, Node, Segment, UnaryOp};
use super::error::{CompileError, line_column};
use super::lexer::{Spanned, Token, lex};

/// Deepest nesting accepted, in levels of the tree and in the parser's
/// own recursion; deeper input is refused, not overflowed. Printing a
/// program puts one pair of parentheses per level, so what compiled once
/// parses again. The stack this costs is measured by
/// `the_deepest_programs_fit_a_small_stack` in the tests.
pub const MAX_DEPTH: usize = 128;

struct Parser<'s> {
    tokens: Vec<Spanned>,
    pos: usize,
    /// The whole source, for positions in messages.
    source: &'s str,
    errors: Vec<CompileError>,
    depth: usize,
    too_deep: bool,
    /// Whether an error other than the depth was found (before it: after
    /// it the rest is skipped and only repeats it).
    other_errors: bool,
}

/// An expression as parsed, with every error found.
pub struct Parsed {
    pub node: Node,
    pub errors: Vec<CompileError>,
    /// The input is an expression, refused only for nesting deeper than
    /// [`MAX_DEPTH`]: not text that merely does not parse (a line of 200
    /// dashes nests as deep, but fails for other reasons too).
    pub too_deep: bool,
}

/// Parses `text` (which sits at byte `base` of `source`) as one expression.
pub fn parse_expression(source: &str, text: &str, base: usize) -> Parsed {
    let mut parser = Parser {
        tokens: lex(text, base),
        pos: 0,
        source,
        errors: Vec::new(),
        depth: 0,
        too_deep: false,
        other_errors: false,
    };
    let node = parser.expression();
    if parser.peek() != &Token::Eof {
        let found = parser.peek().describe();
        parser.error_here(format!("expected an operator or the end of the expression, found {found}"));
    }
    Parsed { node, errors: parser.errors, too_deep: parser.too_deep && !parser.other_errors }
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos].token
    }

    fn span(&self) -> std::ops::Range<usize> {
        self.tokens[self.pos].span.clone()
    }

    fn advance(&mut self) -> Spanned {
        let token = self.tokens[self.pos].clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    fn error_at(&mut self, span: std::ops::Range<usize>, message: String) {
        // After a depth error the rest is skipped: what that leaves unclosed
        // is not a further problem.
        if self.too_deep {
            return;
        }
        self.other_errors = true;
        self.push_error(span, message);
    }

    /// Refuses the input for its depth and skips the rest of it: deeper
    /// parsing would only repeat this.
    fn too_deep_at(&mut self, span: std::ops::Range<usize>, message: String) {
        if !self.too_deep {
            self.push_error(span, message);
        }
        self.too_deep = true;
        self.pos = self.tokens.len() - 1;
    }

    fn push_error(&mut self, span: std::ops::Range<usize>, message: String) {
        // One error per position: recovery must not repeat itself.
        if self.errors.last().is_some_and(|e| e.span.start == span.start) {
            return;
        }
        self.errors.push(CompileError::at(self.source, span, message));
    }

    fn error_here(&mut self, message: String) {
        let span = self.span();
        self.error_at(span, message);
    }

    fn placeholder(&self, span: std::ops::Range<usize>) -> Node {
        Node::new(Expr::Literal(Value::Null), span)
    }

    /// A node over `expr`; one that would make the tree deeper than
    /// [`MAX_DEPTH`] is refused, and the rest of the input skipped, so the
    /// tree never grows past that height.
    fn build(&mut self, expr: Expr, span: std::ops::Range<usize>) -> Node {
        let node = Node::new(expr, span);
        if node.height() as usize > MAX_DEPTH {
            let at = node.span.clone();
            self.too_deep_at(
                at,
                format!(
                    "expression nests deeper than {MAX_DEPTH} levels (each operator of a chain such as a + b + c is a level); \
                     join many values with concat(), or split the work into several mappings"
                ),
            );
            return self.placeholder(node.span);
        }
        node
    }

    fn expression(&mut self) -> Node {
        self.depth += 1;
        let node = if self.depth > MAX_DEPTH {
            let span = self.span();
            self.too_deep_at(span.clone(), format!("expression nests deeper than {MAX_DEPTH} levels"));
            self.placeholder(span)
        } else {
            self.binary()
        };
        self.depth -= 1;
        node
    }

    /// Operators by binding power, lowest first.
    fn binary_op(token: &Token) -> Option<(BinaryOp, u8)> {
        Some(match token {
            Token::OrOr => (BinaryOp::Or, 1),
            Token::AndAnd => (BinaryOp::And, 2),
            Token::EqEq => (BinaryOp::Eq, 3),
            Token::NotEq => (BinaryOp::Ne, 3),
            Token::Lt => (BinaryOp::Lt, 4),
            Token::Le => (BinaryOp::Le, 4),
            Token::Gt => (BinaryOp::Gt, 4),
            Token::Ge => (BinaryOp::Ge, 4),
            Token::Plus => (BinaryOp::Add, 5),
            Token::Minus => (BinaryOp::Sub, 5),
            Token::Star => (BinaryOp::Mul, 6),
            Token::Slash => (BinaryOp::Div, 6),
            _ => return None,
        })
    }

    /// Operands joined by binary operators, by precedence, all operators
    /// left-associative. An explicit stack of pending operators instead of
    /// a recursion per precedence level: inside each pair of parentheses
    /// the parser's stack holds one frame here, not six.
    fn binary(&mut self) -> Node {
        let mut operands = vec![self.unary()];
        let mut pending: Vec<(BinaryOp, u8)> = Vec::new();
        while let Some((op, power)) = Self::binary_op(self.peek()) {
            // What binds at least as tightly on the left is complete.
            while pending.last().is_some_and(|&(_, left)| left >= power) {
                self.reduce(&mut operands, &mut pending);
            }
            self.advance();
            pending.push((op, power));
            operands.push(self.unary());
        }
        while !pending.is_empty() {
            self.reduce(&mut operands, &mut pending);
        }
        operands.pop().unwrap_or_else(|| self.placeholder(self.span()))
    }

    /// Joins the last two operands with the last pending operator.
    fn reduce(&mut self, operands: &mut Vec<Node>, pending: &mut Vec<(BinaryOp, u8)>) {
        let (Some((op, _)), Some(rhs), Some(lhs)) = (pending.pop(), operands.pop(), operands.pop()) else {
            return;
        };
        let span = lhs.span.start..rhs.span.end;
        let joined = self.build(Expr::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs) }, span);
        operands.push(joined);
    }

    fn unary(&mut self) -> Node {
        let op = match self.peek() {
            Token::Bang => UnaryOp::Not,
            Token::Minus => UnaryOp::Neg,
            _ => return self.primary(),
        };
        let start = self.advance().span.start;
        self.depth += 1;
        let operand = if self.depth <= MAX_DEPTH {
            self.unary()
        } else if self.operand_after_unary_run() {
            self.expression()
        } else {
            // A run of `-` or `!` with nothing to apply them to (a divider
            // line in a template) is text that does not parse, not an
            // expression too deep.
            let found = self.peek().describe();
            self.error_here(format!("expected an expression, found {found}"));
            self.placeholder(self.span())
        };
        self.depth -= 1;
        let span = start..operand.span.end;
        if let (UnaryOp::Neg, Expr::Literal(Value::Number(n))) = (op, &operand.expr)
            && let Some(negated) = negate(n)
        {
            return Node::new(Expr::Literal(Value::Number(negated)), span);
        }
        self.build(Expr::Unary { op, operand: Box::new(operand) }, span)
    }

    /// Whether an operand follows the run of unary operators from here.
    fn operand_after_unary_run(&self) -> bool {
        let next = self.tokens[self.pos..].iter().find(|t| !matches!(t.token, Token::Bang | Token::Minus));
        next.is_some_and(|t| {
            matches!(t.token, Token::Number(_) | Token::Str(_) | Token::Ident(_) | Token::Root(_) | Token::LParen)
        })
    }

    fn primary(&mut self) -> Node {
        let Spanned { token, span } = self.advance();
        match token {
            Token::Number(n) => Node::new(Expr::Literal(Value::Number(n)), span),
            Token::Str(s) => Node::new(Expr::Literal(Value::String(s)), span),
            Token::BadStr(_) => self.bad_string(span),
            Token::Ident(name) => match name.as_str() {
                "true" => Node::new(Expr::Literal(Value::Bool(true)), span),
                "false" => Node::new(Expr::Literal(Value::Bool(false)), span),
                "null" => Node::new(Expr::Literal(Value::Null), span),
                _ if self.peek() == &Token::LParen => self.call(name, span),
                _ => self.unexpected_name(&name, span),
            },
            Token::Root(root) => self.reference(root, span),
            Token::LParen => self.parenthesized(span),
            other => self.unexpected(&other, span),
        }
    }

    // `primary` recurses through parentheses, so what it does besides is
    // kept out of its frame: the parser's stack is a frame of each of
    // `expression`, `binary`, `unary` and `primary` per level.

    fn parenthesized(&mut self, open: std::ops::Range<usize>) -> Node {
        let mut inner = self.expression();
        if self.peek() == &Token::RParen {
            inner.span = open.start..self.advance().span.end;
        } else {
            let (line, column) = line_column(self.source, open.start);
            let found = self.peek().describe();
            self.error_here(format!("expected ')' to close '(' opened at {line}:{column}, found {found}"));
        }
        inner
    }

    fn bad_string(&mut self, span: std::ops::Range<usize>) -> Node {
        self.error_at(
            span.clone(),
            "string is not closed with `\"` or has an unknown escape (use \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)"
                .to_owned(),
        );
        self.placeholder(span)
    }

    fn unexpected_name(&mut self, name: &str, span: std::ops::Range<usize>) -> Node {
        self.error_at(
            span.clone(),
            format!("unexpected name `{name}`: quote text as \"{name}\", start references with `$`, or call a function as {name}(...)"),
        );
        self.placeholder(span)
    }

    fn unexpected(&mut self, token: &Token, span: std::ops::Range<usize>) -> Node {
        self.error_at(span.clone(), format!("expected an expression, found {}", token.describe()));
        self.placeholder(span)
    }

    fn call(&mut self, name: String, name_span: std::ops::Range<usize>) -> Node {
        let open = self.advance().span;
        let mut args = Vec::new();
        let (line, column) = line_column(self.source, name_span.start);
        if self.peek() == &Token::RParen {
            let end = self.advance().span.end;
            return Node::new(Expr::Call { name, args }, name_span.start..end);
        }
        loop {
            // `expression` counts this level: a call is one level deep, as
            // it prints.
            args.push(self.expression());
            match self.peek() {
                Token::Comma => {
                    self.advance();
                }
                Token::RParen => {
                    let end = self.advance().span.end;
                    return self.build(Expr::Call { name, args }, name_span.start..end);
                }
                other => {
                    let found = other.describe();
                    self.error_here(format!(
                        "expected ')' to close '{name}(' opened at {line}:{column}, found {found}"
                    ));
                    let end = self.span().start.max(open.end);
                    return self.build(Expr::Call { name, args }, name_span.start..end);
                }
            }
        }
    }

    fn reference(&mut self, root: String, span: std::ops::Range<usize>) -> Node {
        let mut path = Vec::new();
        let mut end = span.end;
        if root.is_empty() {
            self.error_at(span.clone(), "expected a reference name after `$`, such as $payload".to_owned());
        }
        loop {
            match self.peek() {
                Token::Dot => {
                    self.advance();
                    match self.advance() {
                        Spanned { token: Token::Ident(key), span } => {
                            end = span.end;
                            path.push(Segment::Key(key));
                        }
                        Spanned { token: Token::Number(n), span } if n.is_u64() => {
                            // `$payload.items.0` reads as an index.
                            end = span.end;
                            path.push(Segment::Index(n.as_i64().unwrap_or(i64::MAX)));
                        }
                        Spanned { token, span } => {
                            self.error_at(span, format!("expected a field name after `.`, found {}", token.describe()));
                            break;
                        }
                    }
                }
                Token::LBracket => {
                    let open = self.advance().span;
                    let segment = match self.advance() {
                        Spanned { token: Token::Str(key), .. } => Some(Segment::Key(key)),
                        Spanned { token: Token::Number(n), .. } if n.is_i64() => {
                            Some(Segment::Index(n.as_i64().unwrap_or(0)))
                        }
                        Spanned { token: Token::Minus, .. } => match self.advance().token {
                            Token::Number(n) if n.is_i64() => Some(Segment::Index(-n.as_i64().unwrap_or(0))),
                            _ => None,
                        },
                        _ => None,
                    };
                    let Some(segment) = segment else {
                        self.error_at(
                            open,
                            "expected an index such as [0] or [-1], or a key such as [\"name\"]".to_owned(),
                        );
                        break;
                    };
                    if self.peek() == &Token::RBracket {
                        end = self.advance().span.end;
                        path.push(segment);
                    } else {
                        let found = self.peek().describe();
                        self.error_here(format!("expected ']' to close '[', found {found}"));
                        break;
                    }
                }
                _ => break,
            }
        }
        Node::new(Expr::Ref { root, path }, span.start..end)
    }
}

fn negate(n: &serde_json::Number) -> Option<serde_json::Number> {
    if let Some(i) = n.as_i64() {
        return i.checked_neg().map(serde_json::Number::from);
    }
    n.as_f64().and_then(|f| serde_json::Number::from_f64(-f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(source: &str) -> (Node, Vec<String>) {
        let parsed = parse_expression(source, source, 0);
        (parsed.node, parsed.errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn precedence_is_the_usual_one() {
        let (node, errors) = parse("1 + 2 * 3 == 7 && !false || $payload.a < -2");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(node.to_string(), "((((1 + (2 * 3)) == 7) && !(false)) || ($payload.a < -2))");
    }

    #[test]
    fn references_take_keys_indexes_and_quoted_keys() {
        let (node, errors) = parse(r#"$payload.items[0]["first name"][-1].x"#);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(node.to_string(), r#"$payload.items[0]["first name"][-1].x"#);
    }

    #[test]
    fn unclosed_calls_say_what_they_expected_and_where_it_opened() {
        let (_, errors) = parse("concat($payload.a, \"b\"");
        assert_eq!(errors, ["1:23: expected ')' to close 'concat(' opened at 1:1, found the end of the expression"]);
    }

    #[test]
    fn every_error_is_reported() {
        let (_, errors) = parse("upper(foo) + (1 + ) * \"open");
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("1:7: unexpected name `foo`"));
        assert!(errors[1].starts_with("1:19: expected an expression, found `)`"));
        assert!(errors[2].contains("string is not closed"));
        assert!(errors[3].starts_with("1:28: expected ')' to close '(' opened at 1:14"));
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing() {
        let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        let (_, errors) = parse(&deep);
        assert!(errors.iter().any(|e| e.contains("nests deeper")));
        let (_, errors) = parse(&"!".repeat(10_000));
        assert!(errors.iter().any(|e| e.contains("nests deeper")));
    }
}
