//! Encoded event traces.

use bytes::Bytes;

/// A trace in its stored form: the protobuf encoding of an `EventTrace`
/// message, known to decode. Only this crate makes one (the constructor is private to it), after
/// encoding a trace or checking bytes a node sent.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct EncodedTrace(Bytes);

impl EncodedTrace {
    /// Wraps bytes the caller has encoded or checked.
    pub(crate) fn new_unchecked(bytes: Bytes) -> EncodedTrace {
        EncodedTrace(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}
