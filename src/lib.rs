//! hookplane's shared core: the gRPC API generated from `proto/`, the
//! domain model it converts into, the expression language, the egress
//! (SSRF) policy both planes apply to outbound calls, and the sealing of
//! secrets at rest both planes use.
//!
//! Generated types never travel past [`convert`]: everything else in the
//! product speaks [`model`].
#![forbid(unsafe_code)]

pub mod api;
pub mod convert;
pub mod egress;
pub mod expr;
pub mod model;
pub mod sealing;
