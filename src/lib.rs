//! hookplane's API: the gRPC types and services generated from `proto/` by
//! `build.rs`, and nothing else. The SDK depends on this alone; the rest of
//! the product speaks the model (`hookplane-model`), and
//! `hookplane-convert` is the one boundary between the two.
#![forbid(unsafe_code)]

pub mod api;
