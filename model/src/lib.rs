//! The domain model: what hookplane is about, independent of the wire.
//!
//! Both planes speak these types. They are produced from the
//! generated API types by `hookplane_convert` (which validates shape and
//! names the offending field) and serialised with serde for storage and for
//! config snapshots. Secret-bearing fields use [`SecretField`] and
//! [`HashedField`] so that plaintext can never be persisted by accident.

mod compile;
mod config;
mod connector;
mod event;
mod node;
mod organization;
mod protected;
mod repr;
pub mod sealing;
mod secret;
mod signature;
mod subscription;
mod test_run;
mod walk;

pub use compile::{CompiledSpec, Diagnostic, compile_connector, print_spec};
pub use config::*;
pub use connector::*;
pub use event::*;
pub use node::*;
pub use organization::*;
pub use protected::{HashedField, SecretField};
pub use repr::{Compiled, Deployed, OpenedSecret, Repr, Source};
pub use secret::*;
pub use signature::*;
pub use subscription::*;
pub use test_run::*;
pub use walk::{ExpressionField, ProcessedScope, SecretSlot, SpecVisitor};

/// Point in time, always UTC.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// The revision of a stored resource; its etag is this number as text.
///
/// Starts at 1 and grows by one on every change, so an etag never repeats
/// for the same resource.
pub type Revision = i64;

/// Formats a revision as the opaque etag clients see.
pub fn etag_of(revision: Revision) -> String {
    format!("r{revision}")
}

/// Parses an etag sent by a client; `None` when it is not one of ours.
pub fn revision_of(etag: &str) -> Option<Revision> {
    etag.strip_prefix('r')?.parse().ok().filter(|r| *r > 0)
}

/// The current time at the precision the stores keep (microseconds), so a
/// create's response equals what a later read returns.
pub fn now() -> Timestamp {
    chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_round_trip_and_reject_foreign_values() {
        assert_eq!(revision_of(&etag_of(42)), Some(42));
        assert_eq!(revision_of("42"), None);
        assert_eq!(revision_of("r0"), None);
        assert_eq!(revision_of("r-1"), None);
        assert_eq!(revision_of(""), None);
    }
}
