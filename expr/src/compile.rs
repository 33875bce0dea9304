//! Checking a syntax tree and lowering it to the program the evaluator runs.
//!
//! Every check that can be made before run time is made here: unknown
//! functions (with a suggestion), wrong arities, unknown reference roots,
//! malformed secret references, references to mappings that do not exist
//! (yet), and invalid constant date patterns.

use serde_json::Value;

use super::ast::{BinaryOp, Expr, Node, Part, Segment, UnaryOp};
use super::code::{CodeBuilder, Op, Root, Step};
use super::error::CompileError;
use super::functions::{self, Func};

/// What a compilation may refer to.
#[derive(Clone, Copy, Debug, Default)]
pub struct Context<'a> {
    /// Mapping names `$processed` may use; `None` allows any.
    pub processed: Option<&'a [&'a str]>,
}

/// Lowers `node` into `code`, appending every problem to `errors`.
pub struct Lowering<'a> {
    pub source: &'a str,
    pub context: Context<'a>,
    pub code: &'a mut CodeBuilder,
    pub errors: Vec<CompileError>,
}

impl Lowering<'_> {
    /// Lowers `node`; returns the index of its operation.
    pub fn lower(&mut self, node: &Node) -> u32 {
        let op = match &node.expr {
            Expr::Literal(value) => return self.code.constant(value.clone()),
            Expr::Ref { root, path } => return self.reference(node, root, path),
            Expr::Unary { op: UnaryOp::Not, operand } => Op::Not(self.lower(operand)),
            Expr::Unary { op: UnaryOp::Neg, operand } => Op::Neg(self.lower(operand)),
            Expr::Binary { op: BinaryOp::And, lhs, rhs } => Op::And(self.lower(lhs), self.lower(rhs)),
            Expr::Binary { op: BinaryOp::Or, lhs, rhs } => Op::Or(self.lower(lhs), self.lower(rhs)),
            Expr::Binary { op, lhs, rhs } => Op::Binary(*op, self.lower(lhs), self.lower(rhs)),
            Expr::Call { name, args } => return self.call(node, name, args),
            Expr::Template(parts) => {
                let parts: Vec<u32> = parts
                    .iter()
                    .map(|part| match part {
                        Part::Text(text) => {
                            let text = self.code.str(text);
                            self.code.push(Op::Text(text))
                        }
                        Part::Expr(node) => self.lower(node),
                    })
                    .collect();
                Op::Template(self.code.args(&parts))
            }
        };
        self.code.push(op)
    }

    fn error(&mut self, node: &Node, message: String) -> u32 {
        self.errors.push(CompileError::at(self.source, node.span.clone(), message));
        self.code.constant(Value::Null)
    }

    fn reference(&mut self, node: &Node, root: &str, path: &[Segment]) -> u32 {
        let Some(resolved) = Root::parse(root) else {
            if root.is_empty() {
                return self.code.constant(Value::Null);
            }
            return self.error(
                node,
                format!("unknown reference `${root}`; expected $payload, $lookup, $processed or $secret"),
            );
        };
        match resolved {
            Root::Secret => match path {
                [Segment::Key(name)] => {
                    let name = self.code.str(name);
                    return self.code.push(Op::Secret(name));
                }
                _ => return self.error(node, "name one secret, as $secret.NAME".to_owned()),
            },
            Root::Processed => match path.first() {
                Some(Segment::Key(name)) => {
                    if let Some(known) = self.context.processed
                        && !known.contains(&name.as_str())
                    {
                        return self.error(
                            node,
                            format!("`$processed.{name}` refers to no earlier mapping; a mapping sees only the mappings before it"),
                        );
                    }
                }
                _ => return self.error(node, "name a mapping, as $processed.NAME".to_owned()),
            },
            Root::Payload | Root::Lookup => {}
        }
        let steps: Vec<Step> = path
            .iter()
            .map(|segment| match segment {
                Segment::Key(key) => Step::Key(self.code.str(key)),
                Segment::Index(index) => Step::Index(*index),
            })
            .collect();
        let steps = self.code.steps(steps);
        self.code.push(Op::Ref(resolved, steps))
    }

    fn call(&mut self, node: &Node, name: &str, args: &[Node]) -> u32 {
        let lowered: Vec<u32> = args.iter().map(|arg| self.lower(arg)).collect();
        let Some(signature) = functions::lookup(name) else {
            let hint = functions::suggest(name).map(|s| format!("; did you mean `{s}`?")).unwrap_or_default();
            return self.error(node, format!("unknown function `{name}`{hint}"));
        };
        if args.len() < signature.min || args.len() > signature.max {
            let expected = match (signature.min, signature.max) {
                (min, usize::MAX) => format!("at least {min}"),
                (min, max) if min == max => format!("{min}"),
                (min, max) => format!("{min} to {max}"),
            };
            return self.error(
                node,
                format!("{name}() takes {expected} argument(s), got {}: {}", args.len(), signature.usage),
            );
        }
        for (index, arg) in args.iter().enumerate() {
            if let Expr::Literal(value) = &arg.expr
                && let Some(message) = functions::check_constant_argument(signature.func, index, value)
            {
                self.error(arg, message);
            }
        }
        let operands = self.code.args(&lowered);
        let op = match signature.func {
            Func::If => Op::If(operands.start()),
            Func::Coalesce | Func::Default => Op::Coalesce(operands),
            func => Op::Call(func, operands),
        };
        self.code.push(op)
    }
}
