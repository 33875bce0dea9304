//! Field mappings: an ordered program where each mapping sees the earlier
//! ones as `$processed`.

use serde_json::{Map, Value};

use super::compile::Context;
use super::error::{CompileErrors, EvalError};
use super::eval::{Limits, Scope};
use super::{Program, SourceKind, compile_in};

/// Compiled mappings, evaluated in order.
#[derive(Clone, Debug)]
pub struct MappingProgram {
    mappings: Box<[(Box<str>, Program)]>,
}

/// A mapping that failed to compile, by position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappingError {
    pub index: usize,
    pub errors: CompileErrors,
}

/// Compiles `(name, source)` mappings. A mapping may read `$processed` of
/// the mappings before it only; reading itself, a later one or an unknown
/// one is an error. Every mapping's errors are returned.
pub fn compile_mappings(mappings: &[(&str, &str)]) -> Result<MappingProgram, Vec<MappingError>> {
    let mut compiled = Vec::with_capacity(mappings.len());
    let mut errors = Vec::new();
    let names: Vec<&str> = mappings.iter().map(|(name, _)| *name).collect();
    for (index, (name, source)) in mappings.iter().enumerate() {
        let context = Context { processed: Some(&names[..index]) };
        match compile_in(source, SourceKind::Template, context) {
            Ok(program) => compiled.push((Box::from(*name), program)),
            Err(err) => errors.push(MappingError { index, errors: err }),
        }
    }
    if errors.is_empty() { Ok(MappingProgram { mappings: compiled.into_boxed_slice() }) } else { Err(errors) }
}

impl MappingProgram {
    /// Evaluates every mapping in order into `$processed`; a failure names
    /// the mapping's position.
    pub fn eval(
        &self,
        payload: &Value,
        lookup: Option<&Value>,
        secrets: &dyn super::SecretSource,
        limits: &Limits,
    ) -> Result<Map<String, Value>, (usize, EvalError)> {
        let mut processed = Map::new();
        for (index, (name, program)) in self.mappings.iter().enumerate() {
            let value = {
                let scope = Scope { payload, lookup, processed: &processed, secrets };
                program.eval(&scope, limits).map_err(|err| (index, err))?
            };
            processed.insert(name.to_string(), value);
        }
        Ok(processed)
    }

    /// The mapping names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.mappings.iter().map(|(name, _)| &**name)
    }

    /// Every secret the mappings read.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        self.mappings.iter().flat_map(|(_, p)| p.secrets())
    }
}
