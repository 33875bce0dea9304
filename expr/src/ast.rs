//! The syntax tree, and printing it back as source.
//!
//! Printing fully parenthesises operators, so `parse(print(ast)) == ast`
//! (equality ignores spans) — a property the tests check on random trees.

use std::fmt;
use std::ops::Range;

/// A node and the source bytes it came from.
#[derive(Clone, Debug)]
pub struct Node {
    pub expr: Expr,
    pub span: Range<usize>,
    /// Levels of the tree from here down (a leaf is 1), known when the
    /// node is built, so the parser refuses a tree too deep for the
    /// recursive walks over it (see [`super::parser::MAX_DEPTH`]).
    height: u32,
}

impl Node {
    /// A node over children already built; its height follows from theirs.
    pub fn new(expr: Expr, span: Range<usize>) -> Node {
        let below = match &expr {
            Expr::Literal(_) | Expr::Ref { .. } => 0,
            Expr::Unary { operand, .. } => operand.height,
            Expr::Binary { lhs, rhs, .. } => lhs.height.max(rhs.height),
            Expr::Call { args, .. } => args.iter().map(|a| a.height).max().unwrap_or(0),
            Expr::Template(parts) => parts
                .iter()
                .map(|p| match p {
                    Part::Text(_) => 0,
                    Part::Expr(node) => node.height,
                })
                .max()
                .unwrap_or(0),
        };
        Node { expr, span, height: below + 1 }
    }

    pub fn height(&self) -> u32 {
        self.height
    }
}

impl PartialEq for Node {
    /// Structural equality; spans do not take part.
    fn eq(&self, other: &Node) -> bool {
        self.expr == other.expr
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// `null`, `true`, a number or a string.
    Literal(serde_json::Value),
    /// `$root.path[0]["key"]`.
    Ref {
        root: String,
        path: Vec<Segment>,
    },
    Unary {
        op: UnaryOp,
        operand: Box<Node>,
    },
    Binary {
        op: BinaryOp,
        lhs: Box<Node>,
        rhs: Box<Node>,
    },
    Call {
        name: String,
        args: Vec<Node>,
    },
    /// Text with embedded expressions (only from templates).
    Template(Vec<Part>),
}

/// One step of a reference path.
#[derive(Clone, Debug, PartialEq)]
pub enum Segment {
    Key(String),
    Index(i64),
}

/// A piece of a template.
#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    Text(String),
    Expr(Node),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    Not,
    Neg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "||",
            BinaryOp::And => "&&",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.expr {
            Expr::Literal(value) => write!(f, "{value}"),
            Expr::Ref { root, path } => {
                write!(f, "${root}")?;
                for segment in path {
                    match segment {
                        Segment::Key(key) if is_plain_key(key) => write!(f, ".{key}")?,
                        Segment::Key(key) => write!(f, "[{}]", serde_json::Value::String(key.clone()))?,
                        Segment::Index(i) => write!(f, "[{i}]")?,
                    }
                }
                Ok(())
            }
            Expr::Unary { op: UnaryOp::Not, operand } => write!(f, "!({operand})"),
            Expr::Unary { op: UnaryOp::Neg, operand } => write!(f, "-({operand})"),
            Expr::Binary { op, lhs, rhs } => write!(f, "({lhs} {} {rhs})", op.symbol()),
            Expr::Call { name, args } => {
                write!(f, "{name}(")?;
                for (i, arg) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{arg}")?;
                }
                f.write_str(")")
            }
            Expr::Template(parts) => {
                for part in parts {
                    match part {
                        Part::Text(text) => f.write_str(&text.replace('$', "$$"))?,
                        Part::Expr(node) => write!(f, "${{ {node} }}")?,
                    }
                }
                Ok(())
            }
        }
    }
}

/// Whether a key can be written as `.key`.
pub(crate) fn is_plain_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(super::lexer::is_ident_start) && chars.all(super::lexer::is_ident_continue)
}
