//! hookplane's shared core: the gRPC API generated from `proto/`, the
//! domain model it converts into, and the expression language.
//!
//! Generated types never travel past [`convert`]: everything else in the
//! product speaks [`model`].
#![forbid(unsafe_code)]

pub mod api;
pub mod convert;
pub mod expr;
pub mod model;
