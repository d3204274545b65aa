//! Synthetic training-style graphs for benchmarks: repeated blocks of a conv
//! with bias, a fused batch norm under a `training` cond built as TF1's
//! `tf.cond` builds one (the predicate's own Switch and `switch_t`, every
//! outside tensor entering through its own Switch, the true branch reading
//! port 1 and the false branch port 0, the true branch's empty statistics
//! as Consts under `^switch_t`, a Merge of the two; `switch_f` has no
//! reader, so freezing dropped it), relu, residual adds and control edges,
//! with the attributes TensorFlow puts on such nodes. Nodes are encoded as they are made, so a
//! million of them stay small.

use crate::Graph;
use crate::proto::{
    AttrValue, DataType, GraphDef, NodeDef, TensorProto, TensorShapeProto, VersionDef,
    attr_value::{ListValue, Value},
    tensor_shape_proto::Dim,
};
use bytes::Bytes;
use prost::Message;

fn attr(value: Value) -> AttrValue {
    AttrValue { value: Some(value) }
}

fn shape(dims: &[i64]) -> TensorShapeProto {
    TensorShapeProto {
        dim: dims.iter().map(|&size| Dim { size, name: String::new() }).collect(),
        unknown_rank: false,
    }
}

fn node(name: String, op: &str, inputs: Vec<String>, attrs: &[(&str, Value)]) -> NodeDef {
    NodeDef {
        name,
        op: op.into(),
        input: inputs,
        attr: attrs.iter().map(|(k, v)| (k.to_string(), attr(v.clone()))).collect(),
        ..Default::default()
    }
}

fn constant(name: String, dims: &[i64]) -> NodeDef {
    let count: i64 = dims.iter().product();
    let content: Vec<u8> = (0..count).flat_map(|i| (i as f32 * 0.01).to_le_bytes()).collect();
    let tensor = TensorProto {
        dtype: DataType::DtFloat as i32,
        tensor_shape: Some(shape(dims)),
        tensor_content: Bytes::from(content),
        ..Default::default()
    };
    node(
        name,
        "Const",
        vec![],
        &[("dtype", Value::Type(DataType::DtFloat as i32)), ("value", Value::Tensor(tensor))],
    )
}

/// A graph of about `target` nodes (at least one block); every block adds 28.
pub fn synth(target: usize) -> Graph {
    let float = Value::Type(DataType::DtFloat as i32);
    let nhwc = Value::S(Bytes::from_static(b"NHWC"));
    let mut nodes = Nodes(vec![]);
    for first in [
        node(
            "input".into(),
            "Placeholder",
            vec![],
            &[("dtype", float.clone()), ("shape", Value::Shape(shape(&[-1, 8, 8, 4])))],
        ),
        node(
            "training".into(),
            "Placeholder",
            vec![],
            &[("dtype", Value::Type(DataType::DtBool as i32)), ("shape", Value::Shape(shape(&[])))],
        ),
    ] {
        nodes.push(first);
    }
    let mut x = "input".to_string();
    let mut block = 0;
    while nodes.len() + BLOCK <= target.max(BLOCK + 2) {
        let p = format!("block_{block}");
        let conv = |s: &str| format!("{p}/{s}");
        nodes.push(constant(conv("kernel"), &[3, 3, 4, 4]));
        nodes.push(node(
            conv("kernel/read"),
            "Identity",
            vec![conv("kernel")],
            &[("T", float.clone())],
        ));
        nodes.push(node(
            conv("Conv2D"),
            "Conv2D",
            vec![x.clone(), conv("kernel/read")],
            &[
                ("T", float.clone()),
                ("data_format", nhwc.clone()),
                ("padding", Value::S(Bytes::from_static(b"SAME"))),
                ("strides", Value::List(ListValue { i: vec![1, 1, 1, 1], ..Default::default() })),
                ("dilations", Value::List(ListValue { i: vec![1, 1, 1, 1], ..Default::default() })),
                ("use_cudnn_on_gpu", Value::B(true)),
            ],
        ));
        nodes.push(constant(conv("bias"), &[4]));
        nodes.push(node(
            conv("BiasAdd"),
            "BiasAdd",
            vec![conv("Conv2D"), conv("bias")],
            &[("T", float.clone()), ("data_format", nhwc.clone())],
        ));
        let boolean = Value::Type(DataType::DtBool as i32);
        nodes.push(node(
            conv("cond/Switch"),
            "Switch",
            vec!["training".into(), "training".into()],
            &[("T", boolean.clone())],
        ));
        nodes.push(node(
            conv("cond/switch_t"),
            "Identity",
            vec![conv("cond/Switch:1")],
            &[("T", boolean.clone())],
        ));
        nodes.push(node(
            conv("cond/pred_id"),
            "Identity",
            vec!["training".into()],
            &[("T", boolean)],
        ));
        nodes.push(node(
            conv("cond/Switch_1"),
            "Switch",
            vec![conv("BiasAdd"), conv("cond/pred_id")],
            &[("T", float.clone())],
        ));
        // Each statistic enters the cond through its own Switch.
        for (i, s) in ["gamma", "beta", "mean", "variance"].into_iter().enumerate() {
            nodes.push(constant(conv(s), &[4]));
            nodes.push(node(
                conv(&format!("cond/Switch_{}", i + 2)),
                "Switch",
                vec![conv(s), conv("cond/pred_id")],
                &[("T", float.clone())],
            ));
        }
        let bn_attrs = |training: bool| {
            vec![
                ("T", float.clone()),
                ("U", float.clone()),
                ("data_format", nhwc.clone()),
                ("epsilon", Value::F(0.001)),
                ("exponential_avg_factor", Value::F(1.0)),
                ("is_training", Value::B(training)),
            ]
        };
        // The training branch computes its own statistics: it reads empty
        // Consts in their place.
        for c in ["cond/Const", "cond/Const_1"] {
            let mut empty = constant(conv(c), &[0]);
            empty.input.push(format!("^{}", conv("cond/switch_t")));
            nodes.push(empty);
        }
        let switched = |i: usize, port: &str| conv(&format!("cond/Switch_{i}{port}"));
        let mut training: Vec<String> = (1..4).map(|i| switched(i, ":1")).collect();
        training.extend([conv("cond/Const"), conv("cond/Const_1")]);
        nodes.push(node(
            conv("cond/FusedBatchNormV3"),
            "FusedBatchNormV3",
            training,
            &bn_attrs(true),
        ));
        nodes.push(node(
            conv("cond/FusedBatchNormV3_1"),
            "FusedBatchNormV3",
            (1..6).map(|i| switched(i, "")).collect(),
            &bn_attrs(false),
        ));
        nodes.push(node(
            conv("cond/Merge"),
            "Merge",
            vec![conv("cond/FusedBatchNormV3_1"), conv("cond/FusedBatchNormV3")],
            &[("T", float.clone()), ("N", Value::I(2))],
        ));
        nodes.push(node(conv("Relu"), "Relu", vec![conv("cond/Merge")], &[("T", float.clone())]));
        nodes.push(node(
            conv("add"),
            "AddV2",
            vec![conv("Relu"), x.clone()],
            &[("T", float.clone())],
        ));
        nodes.push(node(conv("Relu6"), "Relu6", vec![conv("add")], &[("T", float.clone())]));
        nodes.push(node(
            conv("out"),
            "Identity",
            vec![conv("Relu6"), format!("^{}", conv("Conv2D"))],
            &[("T", float.clone())],
        ));
        nodes.push(node(
            conv("scale"),
            "Const",
            vec![],
            &[
                ("dtype", float.clone()),
                (
                    "value",
                    Value::Tensor(TensorProto {
                        dtype: DataType::DtFloat as i32,
                        tensor_shape: Some(shape(&[])),
                        float_val: vec![0.5],
                        ..Default::default()
                    }),
                ),
            ],
        ));
        nodes.push(node(
            conv("scaled"),
            "Mul",
            vec![conv("out"), conv("scale")],
            &[("T", float.clone())],
        ));
        x = conv("scaled");
        block += 1;
    }
    nodes.push(node("output".into(), "Identity", vec![x], &[("T", float)]));
    let header = GraphDef {
        versions: Some(VersionDef { producer: 2474, min_consumer: 12, bad_consumers: vec![] }),
        ..Default::default()
    };
    Graph::from_nodes(nodes.0, vec![Bytes::from(header.encode_to_vec())]).expect("valid nodes")
}

/// A graph of about `target` nodes around one shared constant: `c`, read
/// by Identities `i0`, `i1`, ..., each read by a Relu (`r0`, ...), the
/// outputs. Folding the Identities leaves one node read by half the graph,
/// that lost as many readers: what a shared flag or axis constant is in a
/// real model, at the scale where work per lost reader would show.
pub fn shared(target: usize) -> Graph {
    let float = || Value::Type(DataType::DtFloat as i32);
    let mut nodes = Nodes(vec![]);
    nodes.push(constant("c".into(), &[]));
    let readers = (target.saturating_sub(1) / 2).max(1);
    for k in 0..readers {
        nodes.push(node(format!("i{k}"), "Identity", vec!["c".into()], &[("T", float())]));
    }
    for k in 0..readers {
        nodes.push(node(format!("r{k}"), "Relu", vec![format!("i{k}")], &[("T", float())]));
    }
    Graph::from_nodes(nodes.0, vec![]).expect("valid nodes")
}

/// Nodes per block.
const BLOCK: usize = 28;

/// Encoded nodes.
struct Nodes(Vec<Bytes>);

impl Nodes {
    fn push(&mut self, node: NodeDef) {
        self.0.push(Bytes::from(node.encode_to_vec()));
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}
