//! The expression language of SPEC §6: references, literals, operators,
//! functions and templates.
//!
//! Pipeline: [`lexer`] → [`parser`] (or [`template`]) → [`ast`] → checked
//! and lowered by [`compile`] → evaluated by [`eval`]. A source is compiled
//! once — when a connector is saved and when a node builds a snapshot — and
//! evaluated per request, from many threads at once.
//!
//! Invariants: this module does no I/O and knows nothing of HTTP or the API;
//! compiling reports every error with its position; evaluating never panics
//! and is bounded in steps and output size ([`Limits`]).

mod ast;
mod compile;
mod error;
mod eval;
mod functions;
mod lexer;
mod mappings;
mod parser;
mod template;
mod value;

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value;

pub use compile::{Context, Root};
pub use error::{CompileError, CompileErrors, EvalError};
pub use eval::{Limits, NoSecrets, Scope, SecretSource};
pub use functions::FUNCTIONS;
pub use mappings::{MappingError, MappingProgram, compile_mappings};
pub use value::{render, truthy};

use compile::{Lowering, Op};
use lexer::is_ident_continue;

/// How a source is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// Exactly one expression (the trigger condition).
    Expression,
    /// A value: if the whole text is one expression it is that expression
    /// and keeps its JSON type (`$payload.count` stays a number); otherwise
    /// it is a template rendered to text (`Bearer $secret.TOKEN`).
    Template,
}

/// A compiled expression or template; cheap to clone and share (one
/// allocation holds the whole program, as nodes keep thousands).
#[derive(Clone, Debug)]
pub struct Program(Arc<ProgramInner>);

#[derive(Debug)]
struct ProgramInner {
    op: Op,
}

/// Compiles `source`, returning every error found.
pub fn compile(source: &str, kind: SourceKind) -> Result<Program, CompileErrors> {
    compile_in(source, kind, Context::default())
}

/// Checks `source` without keeping the program.
pub fn check(source: &str, kind: SourceKind) -> Result<(), CompileErrors> {
    compile(source, kind).map(|_| ())
}

/// Compiles `source` where `context` says what it may refer to.
pub fn compile_in(source: &str, kind: SourceKind, context: Context<'_>) -> Result<Program, CompileErrors> {
    let (node, mut errors) = match kind {
        SourceKind::Expression => {
            if source.trim().is_empty() {
                return Err(CompileErrors(vec![CompileError::at(source, 0..source.len(), "expected an expression")]));
            }
            parser::parse_expression(source, source, 0)
        }
        SourceKind::Template => {
            let (node, errors) = parser::parse_expression(source, source, 0);
            if errors.is_empty() && !source.trim().is_empty() {
                (node, errors)
            } else if starts_with_call(source) {
                // `concat($payload.a` is a broken expression, not text.
                (node, errors)
            } else {
                template::parse_template(source)
            }
        }
    };
    let mut lowering = Lowering { source, context, errors: Vec::new() };
    let op = lowering.lower(&node);
    errors.extend(lowering.errors);
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.span.start);
        return Err(CompileErrors(errors));
    }
    Ok(Program(Arc::new(ProgramInner { op })))
}

/// Whether `source` opens with a known function's name and `(`.
fn starts_with_call(source: &str) -> bool {
    let trimmed = source.trim_start();
    let name_len = trimmed.chars().take_while(|&c| is_ident_continue(c)).count();
    trimmed[name_len..].starts_with('(') && functions::lookup(&trimmed[..name_len]).is_some()
}

impl Program {
    /// Evaluates the program; the result is owned.
    pub fn eval(&self, scope: &Scope<'_>, limits: &Limits) -> Result<Value, EvalError> {
        self.eval_cow(scope, limits).map(Cow::into_owned)
    }

    /// Evaluates the program, borrowing the result from the scope when it
    /// is a plain reference (no copy of the payload).
    pub fn eval_cow<'a>(&self, scope: &Scope<'a>, limits: &Limits) -> Result<Cow<'a, Value>, EvalError> {
        let mut evaluator = eval::Evaluator { scope, limits: *limits, steps: 0 };
        evaluator.eval(&self.0.op)
    }

    /// Names of the secrets the program reads (`$secret.NAME`), sorted.
    /// Derived from the program on demand: nodes hold many programs and
    /// ask this rarely.
    pub fn secrets(&self) -> Vec<&str> {
        let mut names = Vec::new();
        visit(&self.0.op, &mut |op| {
            if let Op::Secret(name) = op {
                names.push(&**name);
            }
        });
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Names of the mappings the program reads (`$processed.NAME`), sorted.
    pub fn processed(&self) -> Vec<&str> {
        let mut names = Vec::new();
        visit(&self.0.op, &mut |op| {
            if let Op::Ref(Root::Processed, steps) = op
                && let Some(compile::Step::Key(name)) = steps.first()
            {
                names.push(&**name);
            }
        });
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Whether the program reads `$lookup` (so a lookup must run first).
    pub fn uses_lookup(&self) -> bool {
        let mut found = false;
        visit(&self.0.op, &mut |op| found |= matches!(op, Op::Ref(Root::Lookup, _)));
        found
    }
}

/// Calls `f` on every node of the program.
fn visit<'p>(op: &'p Op, f: &mut impl FnMut(&'p Op)) {
    f(op);
    match op {
        Op::Const(_) | Op::Ref(..) | Op::Secret(_) => {}
        Op::Not(a) | Op::Neg(a) => visit(a, f),
        Op::And(a, b) | Op::Or(a, b) | Op::Binary(_, a, b) => {
            visit(a, f);
            visit(b, f);
        }
        Op::If(branches) => branches.iter().for_each(|b| visit(b, f)),
        Op::Coalesce(args) | Op::Call(_, args) => args.iter().for_each(|a| visit(a, f)),
        Op::Template(parts) => parts.iter().for_each(|part| {
            if let compile::TemplatePart::Op(op) = part {
                visit(op, f);
            }
        }),
    }
}

#[cfg(test)]
mod tests;
