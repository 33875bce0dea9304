//! Compiled programs: a [`ProgramSet`] holds many (a connector's every
//! expression) in one arena, a [`Program`] is a set of one.

use std::borrow::Cow;

use serde_json::Value;

use super::budget::{Budget, Limits};
use super::code::{Code, CodeBuilder, Op, Root, Step, Str};
use super::compile::{Context, Lowering};
use super::error::{CompileError, CompileErrors, EvalError};
use super::eval::{Evaluator, Scope};
use super::functions;
use super::lexer::is_ident_continue;
use super::projection::Captured;
use super::{SourceKind, parser, template};

/// Longest source of one expression or template a connector may be saved
/// with (checked where sources enter, by the API's conversion). Text is
/// compiled once but every pass over it is linear.
pub const MAX_SOURCE_BYTES: usize = 64 * 1024;
/// Longest sources of one connector in all, likewise.
pub const MAX_SET_SOURCE_BYTES: usize = 256 * 1024;
/// Most operations of one program. Counted in operations, not bytes,
/// because a program printed back (nodes cache what they compiled as
/// printed text, which is longer) compiles to the same operations.
pub const MAX_PROGRAM_OPS: usize = 1 << 16;
/// Most operations of one set: a connector's programs, far below the
/// arena's `u32` indices.
pub const MAX_SET_OPS: usize = 1 << 18;

/// A program of a [`ProgramSet`]: valid only in the set that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramId(u32);

/// A name stored in a [`ProgramSet`]'s text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Name(Str);

/// Programs compiled into one flat arena, immutable and shared by the
/// threads evaluating them.
#[derive(Clone, Debug, Default)]
pub struct ProgramSet {
    code: Code,
}

/// Compiles programs into a [`ProgramSet`].
#[derive(Debug, Default)]
pub struct ProgramSetBuilder {
    code: CodeBuilder,
}

impl ProgramSetBuilder {
    pub fn new() -> ProgramSetBuilder {
        ProgramSetBuilder::default()
    }

    /// Compiles `source` where `context` says what it may refer to,
    /// returning every error found; a failed program leaves nothing behind.
    pub fn compile(
        &mut self,
        source: &str,
        kind: SourceKind,
        context: Context<'_>,
    ) -> Result<ProgramId, CompileErrors> {
        let (node, mut errors) = match kind {
            SourceKind::Expression => {
                if source.trim().is_empty() {
                    let error = CompileError::at(source, 0..source.len(), "expected an expression");
                    return Err(CompileErrors(vec![error]));
                }
                let parsed = parser::parse_expression(source, source, 0);
                (parsed.node, parsed.errors)
            }
            SourceKind::Template => {
                let parsed = parser::parse_expression(source, source, 0);
                if parsed.errors.is_empty() && !source.trim().is_empty() {
                    (parsed.node, parsed.errors)
                } else if parsed.too_deep || starts_with_call(source) {
                    // `concat($payload.a` is a broken expression, not text;
                    // so is one refused for its depth.
                    (parsed.node, parsed.errors)
                } else {
                    template::parse_template(source)
                }
            }
        };
        let mark = self.code.mark();
        let mut lowering = Lowering { source, context, code: &mut self.code, errors: Vec::new() };
        let root = lowering.lower(&node);
        errors.extend(lowering.errors);
        let (program_ops, set_ops) = (self.code.ops_since(mark), self.code.ops_len());
        if program_ops > MAX_PROGRAM_OPS {
            let message = format!("is {program_ops} operations long; a program may have at most {MAX_PROGRAM_OPS}");
            errors.push(CompileError::at(source, 0..0, message));
        } else if set_ops > MAX_SET_OPS {
            let message = format!("brings the connector's programs to more than {MAX_SET_OPS} operations");
            errors.push(CompileError::at(source, 0..0, message));
        }
        if !errors.is_empty() {
            self.code.reset(mark);
            errors.sort_by_key(|e| e.span.start);
            return Err(CompileErrors(errors));
        }
        Ok(ProgramId(root))
    }

    /// Stores a name (a header, a body key …) with the programs, so a
    /// connector's names and programs share one arena.
    pub fn name(&mut self, name: &str) -> Name {
        Name(self.code.str(name))
    }

    pub fn finish(self) -> ProgramSet {
        ProgramSet { code: self.code.finish() }
    }
}

/// Whether `source` opens with a known function's name and `(`.
fn starts_with_call(source: &str) -> bool {
    let trimmed = source.trim_start();
    let name_len = trimmed.chars().take_while(|&c| is_ident_continue(c)).count();
    trimmed[name_len..].starts_with('(') && functions::lookup(&trimmed[..name_len]).is_some()
}

impl ProgramSet {
    /// Evaluates a program on its own budget; the result is owned.
    pub fn eval(&self, id: ProgramId, scope: &Scope<'_>, limits: &Limits) -> Result<Value, EvalError> {
        self.eval_in(id, scope, &mut Budget::new(*limits))
    }

    /// Evaluates a program on an execution's budget; the result is owned
    /// (a borrowed one is copied, and the copy paid for).
    pub fn eval_in(&self, id: ProgramId, scope: &Scope<'_>, budget: &mut Budget) -> Result<Value, EvalError> {
        Evaluator { code: &self.code, scope, budget }.eval_owned(id.0)
    }

    /// Evaluates a program on its own budget, borrowing the result from
    /// the scope when it is a plain reference (no copy of the payload).
    pub fn eval_cow<'a>(&self, id: ProgramId, scope: &Scope<'a>, limits: &Limits) -> Result<Cow<'a, Value>, EvalError> {
        self.eval_cow_in(id, scope, &mut Budget::new(*limits))
    }

    /// Evaluates a program on an execution's budget, borrowing the result
    /// from the scope when it is a plain reference.
    pub fn eval_cow_in<'a>(
        &self,
        id: ProgramId,
        scope: &Scope<'a>,
        budget: &mut Budget,
    ) -> Result<Cow<'a, Value>, EvalError> {
        Evaluator { code: &self.code, scope, budget }.eval(id.0)
    }

    /// Parses a JSON payload into the tree these programs evaluate on,
    /// building only the parts they can read (see [`super::projection`]):
    /// every program gives the same result on it as on the full tree.
    pub fn read_payload(&self, json: &str) -> serde_json::Result<Value> {
        super::projection::parse(&self.code, json)
    }

    /// The first half of [`ProgramSet::read_payload`]: validates `json` and
    /// notes the text of what these programs can read, building no tree;
    /// [`Captured::into_value`] is the second half, or, for evaluating these
    /// programs only, [`Captured::into_projected`]. A trigger's JSON check
    /// and its later parse are then one scan of the body.
    pub fn capture_payload<'a>(&self, json: &'a str) -> serde_json::Result<Captured<'a>> {
        super::projection::capture(&self.code, json)
    }

    /// Names of the secrets a program reads (`$secret.NAME`), sorted.
    /// Derived on demand: nodes hold many programs and ask this rarely.
    pub fn secrets(&self, id: ProgramId) -> Vec<&str> {
        let mut names = Vec::new();
        self.code.visit(id.0, &mut |op| {
            if let Op::Secret(name) = op {
                names.push(self.code.str(name));
            }
        });
        sorted(names)
    }

    /// Names of the secrets any program of the set reads, sorted.
    pub fn all_secrets(&self) -> Vec<&str> {
        let names = self.code.ops().iter().filter_map(|op| match *op {
            Op::Secret(name) => Some(self.code.str(name)),
            _ => None,
        });
        sorted(names.collect())
    }

    /// Names of the mappings a program reads (`$processed.NAME`), sorted.
    pub fn processed(&self, id: ProgramId) -> Vec<&str> {
        let mut names = Vec::new();
        self.code.visit(id.0, &mut |op| {
            if let Op::Ref(Root::Processed, steps) = op
                && let Some(Step::Key(name)) = self.code.steps(steps).first()
            {
                names.push(self.code.str(*name));
            }
        });
        sorted(names)
    }

    /// The text a program always renders to, if it is literal text (a
    /// template without expressions, or a string constant), so a caller
    /// may parse it once instead of at each evaluation (a constant URL).
    pub fn constant_text(&self, id: ProgramId) -> Option<&str> {
        let text_of = |index: u32| match self.code.op(index) {
            Op::Text(text) => Some(self.code.str(text)),
            Op::Const(constant) => self.code.constant(constant).as_str(),
            _ => None,
        };
        match self.code.op(id.0) {
            Op::Template(parts) => match self.code.args(parts) {
                [only] => text_of(*only),
                _ => None,
            },
            _ => text_of(id.0),
        }
    }

    /// Whether a program reads `$lookup` (so a lookup must run first).
    pub fn uses_lookup(&self, id: ProgramId) -> bool {
        let mut found = false;
        self.code.visit(id.0, &mut |op| found |= matches!(op, Op::Ref(Root::Lookup, _)));
        found
    }

    /// A program as source text that compiles to a program behaving the
    /// same (see [`super::print`]).
    pub fn source(&self, id: ProgramId) -> String {
        super::print::source(&self.code, id.0)
    }

    /// The text of a name stored with [`ProgramSetBuilder::name`].
    pub fn name(&self, name: Name) -> &str {
        self.code.str(name.0)
    }
}

fn sorted(mut names: Vec<&str>) -> Vec<&str> {
    names.sort_unstable();
    names.dedup();
    names
}

/// One compiled expression or template, on its own.
#[derive(Clone, Debug)]
pub struct Program {
    set: ProgramSet,
    id: ProgramId,
}

impl Program {
    pub(crate) fn compile(source: &str, kind: SourceKind, context: Context<'_>) -> Result<Program, CompileErrors> {
        let mut builder = ProgramSetBuilder::new();
        let id = builder.compile(source, kind, context)?;
        Ok(Program { set: builder.finish(), id })
    }

    /// Evaluates the program; the result is owned.
    pub fn eval(&self, scope: &Scope<'_>, limits: &Limits) -> Result<Value, EvalError> {
        self.set.eval(self.id, scope, limits)
    }

    /// Evaluates the program, borrowing the result from the scope when it
    /// is a plain reference (no copy of the payload).
    pub fn eval_cow<'a>(&self, scope: &Scope<'a>, limits: &Limits) -> Result<Cow<'a, Value>, EvalError> {
        self.set.eval_cow(self.id, scope, limits)
    }

    /// Names of the secrets the program reads (`$secret.NAME`), sorted.
    pub fn secrets(&self) -> Vec<&str> {
        self.set.secrets(self.id)
    }

    /// Names of the mappings the program reads (`$processed.NAME`), sorted.
    pub fn processed(&self) -> Vec<&str> {
        self.set.processed(self.id)
    }

    /// The text the program always renders to, if it is literal text
    /// (see [`ProgramSet::constant_text`]).
    pub fn constant_text(&self) -> Option<&str> {
        self.set.constant_text(self.id)
    }

    /// Whether the program reads `$lookup` (so a lookup must run first).
    pub fn uses_lookup(&self) -> bool {
        self.set.uses_lookup(self.id)
    }

    /// The program as source text (see [`ProgramSet::source`]).
    pub fn source(&self) -> String {
        self.set.source(self.id)
    }
}
