//! The gRPC API generated from `proto/hookplane/v1` by `build.rs`.

/// Package `hookplane.v1`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("hookplane.v1");
}

/// Encoded `FileDescriptorSet` of the whole API, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("hookplane_descriptor");
