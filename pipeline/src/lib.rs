//! The connector pipeline's steps that need no network (SPEC §7): the
//! condition, the mappings, the outbound credential and the rendering of
//! requests, with the redaction of secrets. A node's executor runs them
//! around its lookup and perform; the control plane's dry runs and
//! replays (SPEC §10) run them alone (`dry_run`) and compare requests
//! (`diff`). One implementation, so a dry run shows what a node would do.
//!
//! Invariant: no I/O here; every value a program produces is drawn from
//! the execution's `Budget`.

pub mod diff;
pub mod dry_run;
pub mod redact;
pub mod render;
pub mod steps;
