//! A connector's expressions compiled once, the same way everywhere: the
//! control plane on save, nodes for each snapshot, test runs and replays.
//! "Accepted by the control plane" means "a node compiles it", because it
//! is the same function.
//!
//! Compiling reports every problem of every field at once, each with its
//! field path and position ([`Diagnostic`]), as a compiler should.

use std::fmt;

use hookplane_expr::{Context, Name, ProgramId, ProgramSet, ProgramSetBuilder, SourceKind};

use super::repr::{Compiled, Deployed, OpenedSecret, Repr, Source};
use super::walk::{ExpressionField, ProcessedScope, SecretSlot, SpecVisitor};
use super::{ConnectorSpec, SecretField};

/// One problem of one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The field's path in the API's terms, e.g. `perform.headers[2].value`.
    pub field: String,
    /// 1-based line and column in the field's text; 0 when the problem is
    /// the field as a whole.
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.field, self.message)
        } else {
            write!(f, "{}: {}:{}: {}", self.field, self.line, self.column, self.message)
        }
    }
}

/// A spec whose expressions are programs of one set.
#[derive(Clone, Debug)]
pub struct CompiledSpec<R: Repr<Expr = ProgramId, Name = Name> = Compiled> {
    pub programs: ProgramSet,
    pub spec: ConnectorSpec<R>,
}

/// Compiles every expression of `spec` into one set, or returns every
/// problem found.
pub fn compile_connector(spec: &ConnectorSpec) -> Result<CompiledSpec, Vec<Diagnostic>> {
    let mut compiler = Compiler {
        builder: ProgramSetBuilder::new(),
        names: spec.mappings.iter().map(|m| m.name.as_str()).collect(),
        diagnostics: Vec::new(),
    };
    let attempt = spec.map(&mut compiler);
    if !compiler.diagnostics.is_empty() {
        return Err(compiler.diagnostics);
    }
    let spec = attempt.map(&mut Unwrap);
    Ok(CompiledSpec { programs: compiler.builder.finish(), spec })
}

/// A compiled spec as source text again, secrets through `secret`: what a
/// node caches. The text is the programs printed (see
/// `hookplane_expr::ProgramSet::source`), not the user's original; it
/// compiles to programs that behave the same.
pub fn print_spec<R: Repr<Expr = ProgramId, Name = Name>>(
    programs: &ProgramSet,
    spec: &ConnectorSpec<R>,
    secret: impl FnMut(SecretSlot, &R::Secret) -> SecretField,
) -> ConnectorSpec<Source> {
    spec.map(&mut Printer { programs, secret })
}

impl CompiledSpec {
    /// The same connector with its secrets opened, for a node to run; the
    /// secrets must have arrived opened (`SecretField::Plain`). An absent
    /// secret is empty, except the signature's, which a signed connector
    /// cannot do without.
    pub fn open(self) -> Result<CompiledSpec<Deployed>, Vec<Diagnostic>> {
        let mut opener = Opener { diagnostics: Vec::new() };
        let spec = self.spec.map(&mut opener);
        if !opener.diagnostics.is_empty() {
            return Err(opener.diagnostics);
        }
        Ok(CompiledSpec { programs: self.programs, spec })
    }
}

/// Compiled, or not: the first pass, which collects every diagnostic.
#[derive(Clone, Debug, PartialEq)]
struct Attempt;

impl Repr for Attempt {
    type Expr = Option<ProgramId>;
    type Name = Name;
    type Secret = SecretField;
}

struct Compiler<'s> {
    builder: ProgramSetBuilder,
    /// The mapping names, in order, for what `$processed` may name.
    names: Vec<&'s str>,
    diagnostics: Vec<Diagnostic>,
}

impl<'s> SpecVisitor<'s, Source, Attempt> for Compiler<'s> {
    fn expression(&mut self, field: ExpressionField, source: &'s String) -> Option<ProgramId> {
        let processed: &[&str] = match field.processed() {
            ProcessedScope::None => &[],
            ProcessedScope::Before(n) => &self.names[..n.min(self.names.len())],
            ProcessedScope::All => &self.names,
        };
        let kind: SourceKind = field.kind();
        match self.builder.compile(source, kind, Context { processed: Some(processed) }) {
            Ok(program) => Some(program),
            Err(errors) => {
                self.diagnostics.extend(errors.iter().map(|e| Diagnostic {
                    field: field.path(),
                    line: e.line,
                    column: e.column,
                    message: e.message.clone(),
                }));
                None
            }
        }
    }

    fn name(&mut self, name: &'s String) -> Name {
        self.builder.name(name)
    }

    fn secret(&mut self, _: SecretSlot, secret: &'s SecretField) -> SecretField {
        secret.clone()
    }
}

/// The second pass, once nothing failed.
struct Unwrap;

impl<'s> SpecVisitor<'s, Attempt, Compiled> for Unwrap {
    fn expression(&mut self, _: ExpressionField, program: &'s Option<ProgramId>) -> ProgramId {
        // Only run when the first pass reported nothing, so every
        // expression has its program.
        program.unwrap_or_else(|| unreachable!("an expression without a program but no diagnostic"))
    }

    fn name(&mut self, name: &'s Name) -> Name {
        *name
    }

    fn secret(&mut self, _: SecretSlot, secret: &'s SecretField) -> SecretField {
        secret.clone()
    }
}

struct Printer<'p, F> {
    programs: &'p ProgramSet,
    secret: F,
}

impl<'s, R, F> SpecVisitor<'s, R, Source> for Printer<'_, F>
where
    R: Repr<Expr = ProgramId, Name = Name>,
    F: FnMut(SecretSlot, &R::Secret) -> SecretField,
{
    fn expression(&mut self, _: ExpressionField, program: &'s ProgramId) -> String {
        self.programs.source(*program)
    }

    fn name(&mut self, name: &'s Name) -> String {
        self.programs.name(*name).to_owned()
    }

    fn secret(&mut self, slot: SecretSlot, secret: &'s R::Secret) -> SecretField {
        (self.secret)(slot, secret)
    }
}

struct Opener {
    diagnostics: Vec<Diagnostic>,
}

impl<'s> SpecVisitor<'s, Compiled, Deployed> for Opener {
    fn expression(&mut self, _: ExpressionField, program: &'s ProgramId) -> ProgramId {
        *program
    }

    fn name(&mut self, name: &'s Name) -> Name {
        *name
    }

    fn secret(&mut self, slot: SecretSlot, secret: &'s SecretField) -> OpenedSecret {
        let problem = match secret {
            SecretField::Plain(plain) => return OpenedSecret::new(plain.clone()),
            SecretField::Absent if !matches!(slot, SecretSlot::Signature | SecretSlot::PreviousSignature) => {
                return OpenedSecret::new(String::new());
            }
            SecretField::Absent => "is missing",
            SecretField::Sealed(_) => "arrived sealed: the control plane did not open it",
        };
        self.diagnostics.push(Diagnostic {
            field: slot.path().to_owned(),
            line: 0,
            column: 0,
            message: problem.into(),
        });
        OpenedSecret::new(String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BodyField, BodyType, FieldMapping, InboundAuth, NamedTemplate, OutboundAuth, Perform, RetryPolicy};

    fn spec() -> ConnectorSpec {
        let named = |name: &str, value: &str| NamedTemplate { name: name.into(), value: value.into() };
        ConnectorSpec {
            display_name: "orders".into(),
            description: String::new(),
            enabled: true,
            async_mode: false,
            auth: InboundAuth { bearer_token: true, ..Default::default() },
            allowed_origins: Vec::new(),
            signature: None,
            condition: Some("$payload.total > 0".into()),
            lookup: None,
            mappings: vec![
                FieldMapping { name: "email".into(), expression: "lower($payload.email)".into() },
                FieldMapping { name: "cents".into(), expression: "$payload.total * 100".into() },
            ],
            perform: Perform {
                method: "POST".into(),
                url: "https://erp.test/orders/$payload.id".into(),
                headers: vec![named("X-Key", "Bearer $secret.ERP")],
                query: Vec::new(),
                body_type: BodyType::Json,
                body: vec![BodyField { key: "amount".into(), value: "$processed.cents".into(), file: None }],
                raw_body: None,
                raw_content_type: String::new(),
                skip_null_values: false,
                auth: OutboundAuth::Basic { username: "u".into(), password: "$secret.PW".into() },
                timeout_ms: 1000,
                retry: RetryPolicy::default(),
            },
            sample_payload: None,
            labels: Default::default(),
        }
    }

    #[test]
    fn every_problem_of_every_field_is_reported_at_once() {
        let mut broken = spec();
        broken.condition = Some("$processed.email == 1".into());
        broken.mappings[0].expression = "lower($payload.email, 2)".into();
        broken.mappings[1].expression = "$processed.later".into();
        broken.perform.headers[0].value = "${ $paylod.x }".into();
        let found: Vec<String> = compile_connector(&broken).unwrap_err().iter().map(ToString::to_string).collect();
        assert_eq!(found.len(), 4, "{found:#?}");
        assert!(
            found[0].starts_with("condition: 1:1: `$processed.email` refers to no earlier mapping"),
            "{}",
            found[0]
        );
        assert!(
            found[1].starts_with("mappings[0].expression: 1:1: lower() takes 1 argument(s), got 2"),
            "{}",
            found[1]
        );
        assert!(found[2].starts_with("mappings[1].expression: 1:1: `$processed.later`"), "{}", found[2]);
        assert!(found[3].starts_with("perform.headers[0].value: 1:4: unknown reference `$paylod`"), "{}", found[3]);
    }

    #[test]
    fn a_connector_stored_before_the_depth_limit_is_refused_not_run() {
        // Saved by an older control plane: 6 000 terms aborted every node
        // on its first call.
        let mut deep = spec();
        deep.mappings[0].expression = format!("$payload.x{}", " + 1".repeat(6_000));
        let found = compile_connector(&deep).unwrap_err();
        assert_eq!(found[0].field, "mappings[0].expression");
        assert!(found[0].message.contains("nests deeper"), "{}", found[0]);
    }

    #[test]
    fn printed_back_it_compiles_to_the_same_text_again() {
        let compiled = compile_connector(&spec()).unwrap();
        let printed = print_spec(&compiled.programs, &compiled.spec, |_, s| s.clone());
        assert_eq!(printed.mappings[1].name, "cents");
        assert_eq!(printed.perform.headers[0].name, "X-Key");
        let again = compile_connector(&printed).unwrap();
        assert_eq!(print_spec(&again.programs, &again.spec, |_, s| s.clone()), printed, "printing is stable");
        assert_eq!(printed.perform.url, "https://erp.test/orders/${ $payload.id }");
    }

    #[test]
    fn only_opened_secrets_deploy() {
        let mut signed = spec();
        signed.signature = Some(Box::new(crate::SignatureSettings {
            preset: crate::SignaturePreset::Custom,
            previous: None,
            secret: SecretField::Sealed("v1.x".into()),
            algorithm: crate::SignatureAlgorithm::Sha256,
            encoding: crate::SignatureEncoding::Hex,
            header: "x-sig".into(),
            prefix: String::new(),
            timestamp_header: None,
            timestamp_tolerance_secs: 300,
        }));
        let sealed = compile_connector(&signed).unwrap().open().unwrap_err();
        assert_eq!(sealed[0].to_string(), "signature.secret: arrived sealed: the control plane did not open it");
        signed.signature.as_mut().unwrap().secret = SecretField::Absent;
        assert_eq!(compile_connector(&signed).unwrap().open().unwrap_err()[0].message, "is missing");
        signed.signature.as_mut().unwrap().secret = SecretField::Plain("whsec".into());
        let deployed = compile_connector(&signed).unwrap().open().unwrap();
        assert_eq!(deployed.spec.signature.unwrap().secret.expose(), "whsec");
    }
}
