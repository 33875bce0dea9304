//! Printing a compiled program back as source.
//!
//! Nodes keep only compiled programs (the memory of a fleet's every
//! connector), so when a node writes its snapshot cache it prints them
//! back. The text is not the user's original: operators are fully
//! parenthesised, `default(a, b)` is written `coalesce(a, b)`, and spacing
//! is normalised. What holds, and the tests check, is that it compiles to a
//! program that behaves the same, and that printing that program again
//! gives the same text.

use std::fmt::Write as _;

use serde_json::Value;

use super::ast::is_plain_key;
use super::code::{Code, Op, Root, Step};
use super::functions::FUNCTIONS;

/// The source of the program rooted at `root`, read the way it was
/// compiled: a template prints as template text, anything else as one
/// expression.
pub(crate) fn source(code: &Code, root: u32) -> String {
    let mut out = String::new();
    match code.op(root) {
        Op::Template(parts) => template(code, code.args(parts), &mut out),
        _ => expression(code, root, &mut out),
    }
    out
}

fn template(code: &Code, parts: &[u32], out: &mut String) {
    for &part in parts {
        match code.op(part) {
            Op::Text(text) => out.push_str(&code.str(text).replace('$', "$$")),
            _ => {
                out.push_str("${ ");
                expression(code, part, out);
                out.push_str(" }");
            }
        }
    }
}

fn expression(code: &Code, index: u32, out: &mut String) {
    match code.op(index) {
        Op::Const(value) => {
            let _ = write!(out, "{}", code.constant(value));
        }
        // Text is only ever a template part; as an expression it is the
        // string it holds.
        Op::Text(text) => {
            let _ = write!(out, "{}", Value::String(code.str(text).to_owned()));
        }
        Op::Ref(root, steps) => {
            out.push('$');
            out.push_str(match root {
                Root::Payload => "payload",
                Root::Lookup => "lookup",
                Root::Processed => "processed",
                Root::Secret => "secret",
            });
            path(code, code.steps(steps), out);
        }
        Op::Secret(name) => {
            out.push_str("$secret");
            path(code, &[Step::Key(name)], out);
        }
        Op::Not(a) => unary("!", code, a, out),
        Op::Neg(a) => unary("-", code, a, out),
        Op::And(a, b) => binary("&&", code, a, b, out),
        Op::Or(a, b) => binary("||", code, a, b, out),
        Op::Binary(op, a, b) => binary(op.symbol(), code, a, b, out),
        Op::If(start) => call("if", code, &code.branches(start), out),
        Op::Coalesce(args) => call("coalesce", code, code.args(args), out),
        Op::Call(func, args) => {
            let name = FUNCTIONS.iter().find(|s| s.func == func).map_or("?", |s| s.name);
            call(name, code, code.args(args), out);
        }
        // Templates are only ever roots; were one nested, `concat` of its
        // parts renders the same text.
        Op::Template(parts) if code.args(parts).is_empty() => out.push_str("\"\""),
        Op::Template(parts) => call("concat", code, code.args(parts), out),
    }
}

fn path(code: &Code, steps: &[Step], out: &mut String) {
    for &step in steps {
        match step {
            Step::Key(key) if is_plain_key(code.str(key)) => {
                out.push('.');
                out.push_str(code.str(key));
            }
            Step::Key(key) => {
                let _ = write!(out, "[{}]", Value::String(code.str(key).to_owned()));
            }
            Step::Index(index) => {
                let _ = write!(out, "[{index}]");
            }
        }
    }
}

/// No parentheses around the operand: binary operations print their own
/// and everything else is atomic, so the printed text nests exactly as deep
/// as the program does, and the parser's depth limit lets it back in. (A
/// negative number is never the operand of `-`: the parser folds it.)
fn unary(symbol: &str, code: &Code, operand: u32, out: &mut String) {
    out.push_str(symbol);
    expression(code, operand, out);
}

fn binary(symbol: &str, code: &Code, lhs: u32, rhs: u32, out: &mut String) {
    out.push('(');
    expression(code, lhs, out);
    out.push(' ');
    out.push_str(symbol);
    out.push(' ');
    expression(code, rhs, out);
    out.push(')');
}

fn call(name: &str, code: &Code, args: &[u32], out: &mut String) {
    out.push_str(name);
    out.push('(');
    for (i, &arg) in args.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        expression(code, arg, out);
    }
    out.push(')');
}
