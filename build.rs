//! Generates the gRPC API from `proto/hookplane/v1/*.proto`.
//!
//! protox is a pure-Rust protobuf compiler, so a fresh machine needs no
//! system `protoc`. The encoded descriptor set is written next to the
//! generated code for gRPC server reflection.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from("proto");
    let api_dir = proto_dir.join("hookplane/v1");
    println!("cargo:rerun-if-changed={}", api_dir.display());

    let mut files: Vec<PathBuf> = fs::read_dir(&api_dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    files.sort();

    let descriptors = protox::compile(&files, [&proto_dir])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("hookplane_descriptor.bin"), descriptors.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Ordered maps: the model's trace headers are B-trees, so a
        // conversion moves them instead of rehashing, and encodings are
        // deterministic.
        .btree_map(".")
        // A reported trace stays one shared buffer from decode to store.
        .bytes(".hookplane.v1.NodeEvent.encoded_trace")
        .compile_fds(descriptors)?;
    Ok(())
}
