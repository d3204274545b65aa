//! Compiles the TensorFlow protos in `proto/` into Rust types with prost.
//!
//! protox parses the `.proto` files in pure Rust, so no `protoc` is needed.
//! The file descriptor set is also written to `$OUT_DIR/graphrw.fds` and
//! embedded in the library: the text format (`.pbtxt`) is read and written
//! through it.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos =
        ["proto/graph.proto", "proto/types.proto", "proto/op_def.proto", "proto/full_type.proto"];
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("graphrw.fds"), prost::Message::encode_to_vec(&fds))?;
    prost_build::Config::new()
        // Sorted maps make encoding deterministic.
        .btree_map(["."])
        // Bytes fields slice the input buffer instead of copying it.
        .bytes(["."])
        .compile_fds(fds)?;
    Ok(())
}
