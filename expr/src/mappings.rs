//! Field mappings: an ordered program where each mapping sees the earlier
//! ones as `$processed`.

use serde_json::Value;

use super::budget::{Budget, Limits};
use super::compile::Context;
use super::error::{CompileErrors, EvalError};
use super::eval::Scope;
use super::payload::Payload;
use super::processed::Processed;
use super::program::{Name, ProgramId, ProgramSet, ProgramSetBuilder};
use super::{SecretSource, SourceKind};

/// Compiled mappings in a [`ProgramSet`], evaluated in order.
#[derive(Clone, Debug, Default)]
pub struct Mappings {
    /// Names are kept in the set's text.
    entries: Box<[(Name, ProgramId)]>,
}

/// A mapping that failed to compile, by position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappingError {
    pub index: usize,
    pub errors: CompileErrors,
}

impl Mappings {
    /// A mapping may read `$processed` of the mappings before it only;
    /// reading itself, a later one or an unknown one is an error. Every
    /// mapping's errors are returned.
    pub fn compile(builder: &mut ProgramSetBuilder, mappings: &[(&str, &str)]) -> Result<Mappings, Vec<MappingError>> {
        let mut entries = Vec::with_capacity(mappings.len());
        let mut errors = Vec::new();
        let names: Vec<&str> = mappings.iter().map(|(name, _)| *name).collect();
        for (index, (name, source)) in mappings.iter().enumerate() {
            let context = Context { processed: Some(&names[..index]) };
            match builder.compile(source, SourceKind::Template, context) {
                Ok(program) => entries.push((builder.name(name), program)),
                Err(err) => errors.push(MappingError { index, errors: err }),
            }
        }
        if errors.is_empty() { Ok(Mappings { entries: entries.into() }) } else { Err(errors) }
    }

    /// Evaluates every mapping in order into `$processed`, on the
    /// execution's budget; a failure names the mapping's position.
    pub fn eval<'s>(
        &self,
        set: &'s ProgramSet,
        payload: Payload<'_>,
        lookup: Option<&Value>,
        secrets: &dyn SecretSource,
        budget: &mut Budget,
    ) -> Result<Processed<'s>, (usize, EvalError)> {
        let mut processed = Processed::default();
        for (index, &(name, program)) in self.entries.iter().enumerate() {
            let value = {
                let scope = Scope { payload, lookup, processed: &processed, secrets };
                set.eval_in(program, &scope, budget).map_err(|err| (index, err))?
            };
            processed.insert(set.name(name), value);
        }
        Ok(processed)
    }

    /// The mapping names, in order.
    pub fn names<'s>(&'s self, set: &'s ProgramSet) -> impl Iterator<Item = &'s str> {
        self.entries.iter().map(|&(name, _)| set.name(name))
    }

    /// Each mapping's name and program, in order.
    pub fn entries<'s>(&'s self, set: &'s ProgramSet) -> impl Iterator<Item = (&'s str, ProgramId)> {
        self.entries.iter().map(|&(name, program)| (set.name(name), program))
    }
}

/// Mappings compiled on their own.
#[derive(Clone, Debug)]
pub struct MappingProgram {
    set: ProgramSet,
    mappings: Mappings,
}

/// Compiles `(name, source)` mappings on their own (see [`Mappings`]).
pub fn compile_mappings(mappings: &[(&str, &str)]) -> Result<MappingProgram, Vec<MappingError>> {
    let mut builder = ProgramSetBuilder::new();
    let mappings = Mappings::compile(&mut builder, mappings)?;
    Ok(MappingProgram { set: builder.finish(), mappings })
}

impl MappingProgram {
    /// Evaluates every mapping in order on one budget (see
    /// [`Mappings::eval`]).
    pub fn eval(
        &self,
        payload: &Value,
        lookup: Option<&Value>,
        secrets: &dyn SecretSource,
        limits: &Limits,
    ) -> Result<Processed<'_>, (usize, EvalError)> {
        self.mappings.eval(&self.set, payload.into(), lookup, secrets, &mut Budget::new(*limits))
    }

    /// The mapping names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.mappings.names(&self.set)
    }

    /// Every secret the mappings read, sorted.
    pub fn secrets(&self) -> Vec<&str> {
        self.set.all_secrets()
    }
}
