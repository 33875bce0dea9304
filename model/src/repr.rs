//! The representations a connector's spec comes in (see [`Repr`]).

use std::fmt;

use hookplane_expr::{Name, ProgramId};
use zeroize::Zeroizing;

use super::SecretField;

/// What a spec's expressions, names and secrets are in one representation.
pub trait Repr: Clone + fmt::Debug + PartialEq + Send + Sync + 'static {
    /// An expression or template.
    type Expr: Clone + fmt::Debug + PartialEq + Send + Sync;
    /// A header, query parameter, body key or mapping name.
    type Name: Clone + fmt::Debug + PartialEq + Send + Sync;
    /// A signing or OAuth secret.
    type Secret: Clone + fmt::Debug + PartialEq + Send + Sync;
}

/// As written and stored: text, and secrets in whatever state their stage
/// left them (plain from the API, sealed at rest, opened for nodes).
#[derive(Clone, Debug, PartialEq)]
pub struct Source;

impl Repr for Source {
    type Expr = String;
    type Name = String;
    type Secret = SecretField;
}

/// Compiled: programs and names in one `ProgramSet`, secrets as in the
/// source. What the control plane checks on save and what test runs use.
#[derive(Clone, Debug, PartialEq)]
pub struct Compiled;

impl Repr for Compiled {
    type Expr = ProgramId;
    type Name = Name;
    type Secret = SecretField;
}

/// Deployed on a node: compiled, with its secrets opened. Nothing sealed or
/// missing reaches a request: that is settled when the snapshot is built.
#[derive(Clone, Debug, PartialEq)]
pub struct Deployed;

impl Repr for Deployed {
    type Expr = ProgramId;
    type Name = Name;
    type Secret = OpenedSecret;
}

/// A secret in plaintext, on a node, in memory only: never serialised,
/// never printed, wiped when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct OpenedSecret(Zeroizing<String>);

impl OpenedSecret {
    pub fn new(plaintext: String) -> OpenedSecret {
        OpenedSecret(Zeroizing::new(plaintext))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OpenedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OpenedSecret(<redacted>)")
    }
}
