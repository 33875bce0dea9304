//! What `$payload` reads: a whole tree, or a trigger's projected payload.
//!
//! A trigger keeps of its body only what the connector's programs can
//! read (`projection.rs`). Building that part into a `serde_json::Value`
//! tree cost the trigger-load bench 5.6k instructions per call with its
//! drop, much of it in the maps: a `BTreeMap` node and an owned key for
//! every kept member, whose only use was to be looked up by the paths
//! the capture was made for. A [`Projected`] payload keeps the capture's
//! objects and arrays as they are (keys borrowed from the body unless they
//! had escapes, elements by position) and makes values only where paths
//! end, which is where a program's reference resolves to a value it can
//! borrow (making and dropping those and the kept nodes still costs 2.6k
//! of the 5.6k). Measured with
//! callgrind: the check path's call 87.1k → 83.8k instructions and 31.6 →
//! 24.6 allocations, the end-to-end call 154.8k → 150.9k and 72.1 → 65.4.

use std::borrow::Cow;

use serde_json::Value;

use super::code::{Code, Step};

use super::value::NULL;

/// The payload programs read through `$payload`.
#[derive(Clone, Copy, Debug)]
pub enum Payload<'a> {
    /// A whole tree (test runs, replays, the CLI, `MappingProgram`), or
    /// one [`crate::ProgramSet::read_payload`] built.
    Tree(&'a Value),
    /// What a trigger kept of its body for the programs of the set it was
    /// captured for ([`crate::Captured::into_projected`]), which alone may
    /// read it (checked in debug builds): another set's program could
    /// find `null` where the body has a value.
    Projected(&'a Projected<'a>),
}

impl<'a> From<&'a Value> for Payload<'a> {
    fn from(value: &'a Value) -> Payload<'a> {
        Payload::Tree(value)
    }
}

impl<'a> From<&'a Projected<'a>> for Payload<'a> {
    fn from(projected: &'a Projected<'a>) -> Payload<'a> {
        Payload::Projected(projected)
    }
}

impl<'a> Payload<'a> {
    /// The value `steps` lead to as far as the payload's own structure
    /// goes, and the steps still to take inside that value.
    pub(crate) fn resolve<'s>(self, code: &Code, steps: &'s [Step]) -> (&'a Value, &'s [Step]) {
        match self {
            Payload::Tree(value) => (value, steps),
            Payload::Projected(projected) => {
                debug_assert_eq!(projected.1, SetId::of(code), "a projected payload read by another set's program");
                projected.0.resolve(code, steps)
            }
        }
    }
}

/// A projected payload: see the module's documentation.
#[derive(Debug)]
pub struct Projected<'a>(pub(crate) Kept<'a>, pub(crate) SetId);

/// Which program set a capture was made for: the address of its
/// operations, which stays put while the set lives, wherever the set is
/// moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SetId(usize);

impl SetId {
    pub(crate) fn of(code: &Code) -> SetId {
        SetId(code.ops().as_ptr().addr())
    }
}

/// A part of a projected payload.
#[derive(Debug)]
pub(crate) enum Kept<'a> {
    /// Where a path ends, a scalar met where a path went on, an array a
    /// negative index needs whole, or the whole body (a bare `$payload`,
    /// or more paths than a capture tracks).
    Value(Value),
    /// The members kept, each key once.
    Object(Vec<(Cow<'a, str>, Kept<'a>)>),
    /// The elements kept, by position, in order.
    Array(Vec<(usize, Kept<'a>)>),
}

impl<'a> Kept<'a> {
    /// Walks `steps` through kept objects and arrays. A path the capture
    /// was made for never stops on one: where it ends, the capture kept a
    /// value, and a negative index (which needs the array's length) keeps
    /// the array whole. So a walk that stops on an object or array, like
    /// one that finds no member or element, is on a path of the body that
    /// is not there (`{}` read at `.a`) and reads `null`, as on the full
    /// tree.
    fn resolve<'s>(&'a self, code: &Code, steps: &'s [Step]) -> (&'a Value, &'s [Step]) {
        let mut current = self;
        for (taken, step) in steps.iter().enumerate() {
            let next = match (step, current) {
                (_, Kept::Value(value)) => return (value, &steps[taken..]),
                (Step::Key(key), Kept::Object(members)) => {
                    let key = code.str(*key);
                    members.iter().find(|(name, _)| name == key).map(|(_, kept)| kept)
                }
                (Step::Index(index), Kept::Array(elements)) => {
                    let position = usize::try_from(*index).ok();
                    elements.iter().find(|(at, _)| Some(*at) == position).map(|(_, kept)| kept)
                }
                _ => None,
            };
            match next {
                Some(kept) => current = kept,
                None => return (&NULL, &[]),
            }
        }
        match current {
            Kept::Value(value) => (value, &[]),
            Kept::Object(_) | Kept::Array(_) => (&NULL, &[]),
        }
    }
}
