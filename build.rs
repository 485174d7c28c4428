//! Compiles `proto/caffe.proto` without `protoc`: protobuf-parse's pure-Rust
//! parser produces the descriptor set, prost-build generates the structs, and
//! the encoded descriptor set is written next to them for prost-reflect
//! (text format parsing and printing).
use std::path::PathBuf;

use prost::Message;

fn main() {
    let proto = PathBuf::from("proto/caffe.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let parsed = protobuf_parse::Parser::new()
        .pure()
        .include("proto")
        .input(&proto)
        .file_descriptor_set()
        .expect("parse proto/caffe.proto");
    // protobuf's descriptor types -> bytes -> prost's descriptor types.
    let bytes = protobuf::Message::write_to_bytes(&parsed).expect("encode descriptor set");
    let fds =
        prost_types::FileDescriptorSet::decode(bytes.as_slice()).expect("decode descriptor set");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    std::fs::write(out.join("caffe_descriptor.bin"), fds.encode_to_vec()).unwrap();
    prost_build::Config::new()
        .compile_fds(fds)
        .expect("generate caffe.rs");
}
