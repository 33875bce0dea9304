//! Checking a syntax tree and lowering it to the program the evaluator runs.
//!
//! Every check that can be made before run time is made here: unknown
//! functions (with a suggestion), wrong arities, unknown reference roots,
//! malformed secret references, references to mappings that do not exist
//! (yet), and invalid constant date patterns.

use serde_json::Value;

use super::ast::{BinaryOp, Expr, Node, Part, Segment, UnaryOp};
use super::error::CompileError;
use super::functions::{self, Func};

/// Where a reference starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Root {
    Payload,
    Lookup,
    Processed,
    Secret,
}

impl Root {
    fn parse(name: &str) -> Option<Root> {
        Some(match name {
            "payload" => Root::Payload,
            "lookup" => Root::Lookup,
            "processed" => Root::Processed,
            "secret" => Root::Secret,
            _ => return None,
        })
    }
}

/// A resolved path step.
#[derive(Clone, Debug)]
pub enum Step {
    Key(Box<str>),
    Index(i64),
}

/// The program the evaluator runs: the tree with names resolved.
#[derive(Clone, Debug)]
pub enum Op {
    Const(Value),
    Ref(Root, Box<[Step]>),
    Secret(Box<str>),
    Not(Box<Op>),
    Neg(Box<Op>),
    And(Box<Op>, Box<Op>),
    Or(Box<Op>, Box<Op>),
    Binary(BinaryOp, Box<Op>, Box<Op>),
    /// `if(c, a, b)`: only the chosen branch runs.
    If(Box<[Op; 3]>),
    /// `coalesce(...)` and `default(a, b)`: stops at the first non-null.
    Coalesce(Box<[Op]>),
    Call(Func, Box<[Op]>),
    Template(Box<[TemplatePart]>),
}

#[derive(Clone, Debug)]
pub enum TemplatePart {
    Text(Box<str>),
    Op(Op),
}

/// What a compilation may refer to.
#[derive(Clone, Copy, Debug, Default)]
pub struct Context<'a> {
    /// Mapping names `$processed` may use; `None` allows any.
    pub processed: Option<&'a [&'a str]>,
}

/// Lowers `node`, appending every problem to `errors`.
pub struct Lowering<'a> {
    pub source: &'a str,
    pub context: Context<'a>,
    pub errors: Vec<CompileError>,
}

impl Lowering<'_> {
    fn error(&mut self, node: &Node, message: String) {
        self.errors.push(CompileError::at(self.source, node.span.clone(), message));
    }

    pub fn lower(&mut self, node: &Node) -> Op {
        match &node.expr {
            Expr::Literal(value) => Op::Const(value.clone()),
            Expr::Ref { root, path } => self.reference(node, root, path),
            Expr::Unary { op: UnaryOp::Not, operand } => Op::Not(Box::new(self.lower(operand))),
            Expr::Unary { op: UnaryOp::Neg, operand } => Op::Neg(Box::new(self.lower(operand))),
            Expr::Binary { op: BinaryOp::And, lhs, rhs } => {
                Op::And(Box::new(self.lower(lhs)), Box::new(self.lower(rhs)))
            }
            Expr::Binary { op: BinaryOp::Or, lhs, rhs } => Op::Or(Box::new(self.lower(lhs)), Box::new(self.lower(rhs))),
            Expr::Binary { op, lhs, rhs } => Op::Binary(*op, Box::new(self.lower(lhs)), Box::new(self.lower(rhs))),
            Expr::Call { name, args } => self.call(node, name, args),
            Expr::Template(parts) => Op::Template(
                parts
                    .iter()
                    .map(|part| match part {
                        Part::Text(text) => TemplatePart::Text(text.as_str().into()),
                        Part::Expr(node) => TemplatePart::Op(self.lower(node)),
                    })
                    .collect(),
            ),
        }
    }

    fn reference(&mut self, node: &Node, root: &str, path: &[Segment]) -> Op {
        let Some(resolved) = Root::parse(root) else {
            if !root.is_empty() {
                self.error(
                    node,
                    format!("unknown reference `${root}`; expected $payload, $lookup, $processed or $secret"),
                );
            }
            return Op::Const(Value::Null);
        };
        match resolved {
            Root::Secret => match path {
                [Segment::Key(name)] => return Op::Secret(name.as_str().into()),
                _ => {
                    self.error(node, "name one secret, as $secret.NAME".to_owned());
                    return Op::Const(Value::Null);
                }
            },
            Root::Processed => match path.first() {
                Some(Segment::Key(name)) => {
                    if let Some(known) = self.context.processed
                        && !known.contains(&name.as_str())
                    {
                        self.error(
                            node,
                            format!("`$processed.{name}` refers to no earlier mapping; a mapping sees only the mappings before it"),
                        );
                    }
                }
                _ => self.error(node, "name a mapping, as $processed.NAME".to_owned()),
            },
            Root::Payload | Root::Lookup => {}
        }
        let steps = path
            .iter()
            .map(|segment| match segment {
                Segment::Key(key) => Step::Key(key.as_str().into()),
                Segment::Index(index) => Step::Index(*index),
            })
            .collect();
        Op::Ref(resolved, steps)
    }

    fn call(&mut self, node: &Node, name: &str, args: &[Node]) -> Op {
        let lowered: Vec<Op> = args.iter().map(|arg| self.lower(arg)).collect();
        let Some(signature) = functions::lookup(name) else {
            let hint = functions::suggest(name).map(|s| format!("; did you mean `{s}`?")).unwrap_or_default();
            self.error(node, format!("unknown function `{name}`{hint}"));
            return Op::Const(Value::Null);
        };
        if args.len() < signature.min || args.len() > signature.max {
            let expected = match (signature.min, signature.max) {
                (min, usize::MAX) => format!("at least {min}"),
                (min, max) if min == max => format!("{min}"),
                (min, max) => format!("{min} to {max}"),
            };
            self.error(node, format!("{name}() takes {expected} argument(s), got {}: {}", args.len(), signature.usage));
            return Op::Const(Value::Null);
        }
        for (index, arg) in args.iter().enumerate() {
            if let Expr::Literal(value) = &arg.expr
                && let Some(message) = functions::check_constant_argument(signature.func, index, value)
            {
                self.error(arg, message);
            }
        }
        match signature.func {
            Func::If => {
                let [c, a, b]: [Op; 3] = lowered.try_into().expect("arity checked");
                Op::If(Box::new([c, a, b]))
            }
            Func::Coalesce | Func::Default => Op::Coalesce(lowered.into()),
            func => Op::Call(func, lowered.into()),
        }
    }
}
