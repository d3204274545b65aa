//! graphrw: a declarative pattern-rewrite language and its interpreter for
//! TensorFlow `GraphDef`s.
//!
//! The library is a pipeline. This crate's foundation stages are:
//! - [`proto`]: TensorFlow's messages, generated from our own `proto/` files;
//! - [`io`]: lossless reading and writing of binary `.pb` and text `.pbtxt`;
//! - [`text`]: the text format, printed as TensorFlow prints it;
//! - [`input`]: the one parser of `NodeDef.input` strings;
//! - [`ops`]: the table of well-known TensorFlow ops and their arities;
//! - [`wire`]: the protobuf wire format, walked without decoding;
//! - [`graph`]: the indexed graph: nodes as slices of the file, by name and
//!   by op, with their consumers;
//! - [`validate`]: graph validity (names, inputs, ports, cycles);
//! - [`prune`]: keep what the outputs reach, as `extract_sub_graph` does;
//! - [`rules`]: the rule language: grammar, syntax tree, loading, checks;
//! - [`eval`]: the reference evaluator (TensorFlow's executor semantics on the CPU);
//! - [`inspect`]: the summary behind `graphrw inspect`;
//! - [`synth`]: synthetic graphs of any size, for benchmarks;
//! - [`tensor`]: constant tensors as f64 arrays, for computed constants;
//! - [`memory`]: how the process takes memory (no transparent huge pages);
//! - [`npy`]: NumPy `.npy` arrays, the format of feeds and fetched outputs;
//! - [`par`]: large work split between the cores, in order.
#![warn(missing_docs)]

pub mod eval;
pub mod graph;
mod hint;
pub mod input;
pub mod inspect;
pub mod io;
pub mod memory;
pub mod npy;
pub mod ops;
pub mod par;
pub mod proto;
pub mod prune;
pub mod rules;
mod snippet;
pub mod synth;
pub mod tensor;
pub mod text;
pub mod validate;
pub mod wire;

pub use graph::{Graph, NodeId};
pub use proto::GraphDef;
