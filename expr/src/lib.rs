//! The expression language of SPEC §6: references, literals, operators,
//! functions and templates.
//!
//! Pipeline: [`lexer`] → [`parser`] (or [`template`]) → [`ast`] → checked
//! and lowered by [`compile`] into the flat arena of [`code`] (one per
//! [`ProgramSet`]) → evaluated by [`eval`]. A source is compiled
//! once — when a connector is saved and when a node builds a snapshot — and
//! evaluated per request, from many threads at once, on a payload tree
//! [`projection`] builds with only the parts the programs can read.
//!
//! Invariants: this module does no I/O and knows nothing of HTTP or the API;
//! compiling reports every error with its position; whatever compiles runs
//! in bounded stack and memory (trees are at most `parser::MAX_DEPTH`
//! levels, programs at most [`MAX_PROGRAM_OPS`] operations and a set's at
//! most [`MAX_SET_OPS`]; sources enter through the API at most
//! [`MAX_SOURCE_BYTES`] long);
//! evaluating never panics and is bounded in steps and bytes, each value
//! claimed from the execution's [`Budget`] before it is built.

mod ast;
mod budget;
mod code;
mod compile;
mod error;
mod eval;
mod functions;
mod lexer;
mod mappings;
mod parser;
mod payload;
mod print;
mod processed;
mod program;
mod projection;
mod template;
mod value;

pub use budget::{Budget, Limits};
pub use code::Root;
pub use compile::Context;
pub use error::{CompileError, CompileErrors, EvalError};
pub use eval::{NoSecrets, Scope, SecretSource};
pub use functions::FUNCTIONS;
pub use mappings::{MappingError, MappingProgram, Mappings, compile_mappings};
pub use payload::{Payload, Projected};
pub use processed::Processed;
pub use program::{
    MAX_PROGRAM_OPS, MAX_SET_OPS, MAX_SET_SOURCE_BYTES, MAX_SOURCE_BYTES, Name, Program, ProgramId, ProgramSet,
    ProgramSetBuilder,
};
pub use projection::Captured;
pub use value::{render, truthy};

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
    Program::compile(source, kind, context)
}

#[cfg(test)]
mod tests;
