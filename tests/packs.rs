//! The shipped packs on graphs TensorFlow wrote and on near-misses: what
//! must be rewritten is, what must not be is left alone, and the evaluator
//! gives the original graph's outputs for the rewritten one.

mod common;

use std::collections::HashMap;

use graphrw::Graph;
use graphrw::eval::Tensor;
use graphrw::io::read_graph;
use graphrw::npy::Array;
use graphrw::rules::compile::compile;
use graphrw::rules::engine::{Options, apply};
use graphrw::rules::load::{Origin, load};

fn apply_packs(graph: &Graph, packs: &[&str]) -> Graph {
    let origins: Vec<Origin> = packs.iter().map(|p| Origin::Pack(p.to_string())).collect();
    let rules = compile(&load(&origins), &[]).unwrap_or_else(|d| panic!("{}", d[0].render(80)));
    apply(graph, &rules, &Options::default()).unwrap_or_else(|e| panic!("{e}")).0
}

/// Every case of the fixture: the rewritten graph, fed the inputs alone,
/// gives the outputs TensorFlow stored for the original in inference mode.
fn same_outputs(dir: &std::path::Path, meta: &common::Meta, rewritten: &Graph) {
    for case in &meta.cases {
        let feeds: HashMap<String, Tensor> = case
            .inputs
            .iter()
            .map(|(k, f)| {
                (k.clone(), Tensor::from_npy(&Array::read(&dir.join(f)).unwrap()).unwrap())
            })
            .collect();
        let outputs: Vec<String> = case.outputs.keys().cloned().collect();
        for (name, value) in graphrw::eval::run(rewritten, &feeds, &outputs).unwrap() {
            let got = value.expect("live").to_f64();
            let want = Array::read(&dir.join(&case.outputs[&name])).unwrap().to_f64();
            let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
            let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / scale;
            assert!(err < 1e-4, "{} {name}: relative error {err:e}", meta.name);
        }
    }
}

#[test]
fn the_seed_passes_in_order_remove_the_training_machinery() {
    for (dir, meta) in common::fixtures() {
        let packs: &[&str] = match meta.name.as_str() {
            "seed" | "small_cnn" | "keep_prob_nonfused" => {
                &["lock-training", "merge", "switch", "bn"]
            }
            "keras_tf2" => &["bn"],
            _ => continue,
        };
        let graph = read_graph(&dir.join("model.pb"), None).unwrap();
        let after = apply_packs(&graph, packs);
        for op in
            ["Switch", "Merge", "FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3", "Rsqrt"]
        {
            assert!(after.nodes_with_op(op).is_empty(), "{}: {op} left", meta.name);
        }
        // Boolean training flags are locked (keep_prob is the dropout pack's).
        for name in meta
            .training_placeholders
            .iter()
            .filter(|n| meta.graph.placeholders[*n].dtype == "bool")
        {
            if let Some(id) = after.id(name) {
                assert_eq!(after.op(id), "Const", "{}: {name} is not locked", meta.name);
            }
        }
        assert!(after.len() < graph.len(), "{}", meta.name);
        for output in &meta.outputs {
            assert!(after.id(output).is_some(), "{}: output {output} lost", meta.name);
        }
        same_outputs(&dir, &meta, &after);
    }
}

#[test]
fn the_folded_bias_add_keeps_the_batch_norm_name() {
    let dir = common::fixtures_dir().join("seed");
    let graph = read_graph(&dir.join("model.pb"), None).unwrap();
    let after = apply_packs(&graph, &["lock-training", "merge", "switch", "bn"]);
    let bn = after.id("backend/bn_1/cond/FusedBatchNormV3_1").expect("the BN's name is kept");
    assert_eq!(after.op(bn), "BiasAdd");
}

/// A tiny conv + BN graph, in text form, with knobs for the near-misses.
fn conv_bn(is_training: bool, extra_consumer: bool, weight_op: &str) -> Graph {
    use graphrw::proto::{AttrValue, GraphDef, NodeDef, attr_value::Value};
    let f32s = |name: &str, shape: Vec<usize>, v: Vec<f64>| {
        let t = graphrw::tensor::to_proto(
            &graphrw::tensor::Array { shape, data: v },
            graphrw::proto::DataType::DtFloat,
        )
        .unwrap();
        NodeDef {
            name: name.into(),
            op: "Const".into(),
            attr: [
                ("dtype".to_string(), AttrValue { value: Some(Value::Type(1)) }),
                ("value".to_string(), AttrValue { value: Some(Value::Tensor(t)) }),
            ]
            .into(),
            ..Default::default()
        }
    };
    let node = |name: &str, op: &str, inputs: &[&str], attrs: Vec<(&str, Value)>| NodeDef {
        name: name.into(),
        op: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        attr: attrs
            .into_iter()
            .map(|(k, v)| (k.to_string(), AttrValue { value: Some(v) }))
            .collect(),
        ..Default::default()
    };
    let list = |v: &[i64]| {
        Value::List(graphrw::proto::attr_value::ListValue { i: v.to_vec(), ..Default::default() })
    };
    let mut nodes = vec![
        node("x", "Placeholder", &[], vec![("dtype", Value::Type(1))]),
        f32s("w", vec![1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]),
        node("w_in", "Placeholder", &[], vec![("dtype", Value::Type(1))]),
        node(
            "conv",
            "Conv2D",
            &["x", if weight_op == "Const" { "w" } else { "w_in" }],
            vec![
                ("T", Value::Type(1)),
                ("strides", list(&[1, 1, 1, 1])),
                ("padding", Value::S(bytes::Bytes::from_static(b"VALID"))),
            ],
        ),
        f32s("gamma", vec![2], vec![1.5, 0.5]),
        f32s("beta", vec![2], vec![0.1, -0.2]),
        f32s("mean", vec![2], vec![0.3, 0.4]),
        f32s("var", vec![2], vec![2.0, 0.5]),
        node(
            "bn",
            "FusedBatchNormV3",
            &["conv", "gamma", "beta", "mean", "var"],
            vec![
                ("T", Value::Type(1)),
                ("U", Value::Type(1)),
                ("epsilon", Value::F(0.001)),
                ("is_training", Value::B(is_training)),
                ("data_format", Value::S(bytes::Bytes::from_static(b"NHWC"))),
            ],
        ),
        node("out", "Relu", &["bn"], vec![("T", Value::Type(1))]),
    ];
    if extra_consumer {
        nodes.push(node("other", "Relu", &["conv"], vec![("T", Value::Type(1))]));
    }
    Graph::from_def(&GraphDef { node: nodes, ..Default::default() })
}

#[test]
fn bn_folds_what_it_must_and_leaves_near_misses() {
    let folded = apply_packs(&conv_bn(false, false, "Const"), &["bn"]);
    assert!(folded.nodes_with_op("FusedBatchNormV3").is_empty());
    assert_eq!(folded.op(folded.id("bn").unwrap()), "BiasAdd");
    // Same outputs as the batch norm, checked with the evaluator.
    let x = Tensor::f32(vec![1, 2, 2, 2], vec![0.5, -1.0, 2.0, 0.25, -0.75, 1.5, 0.0, 3.0]);
    let feeds: HashMap<String, Tensor> = [("x".to_string(), x)].into();
    let verdict = graphrw::eval::verify::verify(
        &conv_bn(false, false, "Const"),
        &folded,
        &["out:0".into()],
        &feeds,
        1e-5,
        1e-6,
    )
    .unwrap();
    assert!(verdict.mismatch.is_none(), "{verdict:?}");
    // Near-misses: training mode, a conv read elsewhere, weights not constant.
    for (graph, why) in [
        (conv_bn(true, false, "Const"), "a training-mode batch norm"),
        (conv_bn(false, true, "Const"), "a conv with another consumer"),
        (conv_bn(false, false, "Placeholder"), "weights that are not constant"),
    ] {
        let after = apply_packs(&graph, &["bn"]);
        assert_eq!(after.nodes_with_op("FusedBatchNormV3").len(), 1, "{why} was folded");
    }
}

#[test]
fn merge_and_switch_packs_are_the_seeds_with_their_blind_spots() {
    // On a data-dependent cond the merge pack keeps the false branch, as the
    // seed does (its documented blind spot): outputs change for inputs that
    // take the true branch.
    let dir = common::fixtures_dir().join("data_cond");
    let graph = read_graph(&dir.join("model.pb"), None).unwrap();
    let after = apply_packs(&graph, &["merge"]);
    assert!(after.nodes_with_op("Merge").is_empty());
    let x = Tensor::from_npy(&Array::read(&dir.join("case0/in_x_0.npy")).unwrap()).unwrap();
    let feeds: HashMap<String, Tensor> = [("x:0".to_string(), x)].into();
    let verdict =
        graphrw::eval::verify::verify(&graph, &after, &["output:0".into()], &feeds, 1e-5, 1e-6)
            .unwrap();
    assert!(verdict.mismatch.is_some(), "the true-branch input shows the blind spot");
}

use common::{Spec, graph_of as tiny};

#[test]
fn dropout_is_recognised_in_every_form_by_structure() {
    let forms: Vec<(&str, Vec<Spec>)> = vec![
        (
            "keep_prob",
            vec![
                ("x", "Placeholder", &[]),
                ("kp", "Const", &[]),
                ("shape", "Shape", &["x"]),
                ("u", "RandomUniform", &["shape"]),
                ("add", "AddV2", &["kp", "u"]),
                ("floor", "Floor", &["add"]),
                ("div", "RealDiv", &["x", "kp"]),
                ("drop", "Mul", &["div", "floor"]),
                ("out", "Relu", &["drop"]),
            ],
        ),
        (
            "rate",
            vec![
                ("x", "Placeholder", &[]),
                ("scale", "Const", &[]),
                ("rate", "Const", &[]),
                ("shape", "Shape", &["x"]),
                ("u", "RandomUniform", &["shape"]),
                ("keep", "GreaterEqual", &["u", "rate"]),
                ("cast", "Cast", &["keep"]),
                ("mul", "Mul", &["x", "scale"]),
                ("drop", "Mul", &["mul", "cast"]),
                ("out", "Relu", &["drop"]),
            ],
        ),
        (
            "select",
            vec![
                ("x", "Placeholder", &[]),
                ("scale", "Const", &[]),
                ("rate", "Const", &[]),
                ("zero", "Const", &[]),
                ("shape", "Shape", &["x"]),
                ("u", "RandomUniform", &["shape"]),
                ("keep", "GreaterEqual", &["u", "rate"]),
                ("mul", "Mul", &["x", "scale"]),
                ("drop", "SelectV2", &["keep", "mul", "zero"]),
                ("out", "Relu", &["drop"]),
            ],
        ),
    ];
    for (form, nodes) in forms {
        let after = apply_packs(&tiny(&nodes), &["dropout"]);
        let shape: Vec<String> =
            after.ids().map(|id| format!("{}: {}", after.name(id), after.op(id))).collect();
        assert_eq!(shape, ["x: Placeholder", "out: Relu"], "{form}");
        assert_eq!(after.input_str(after.id("out").unwrap(), 0), "x", "{form}");
    }
    // Near-misses: a threshold that is not random, a keep_prob that differs
    // between the scale and the threshold.
    let near: Vec<(&str, Vec<Spec>)> = vec![
        (
            "a SelectV2 on a data condition",
            vec![
                ("x", "Placeholder", &[]),
                ("t", "Placeholder", &[]),
                ("zero", "Const", &[]),
                ("keep", "GreaterEqual", &["x", "t"]),
                ("mul", "Mul", &["x", "t"]),
                ("sel", "SelectV2", &["keep", "mul", "zero"]),
                ("out", "Relu", &["sel"]),
            ],
        ),
        (
            "two different keep_probs",
            vec![
                ("x", "Placeholder", &[]),
                ("kp", "Const", &[]),
                ("kp2", "Const", &[]),
                ("u", "RandomUniform", &["x"]),
                ("add", "AddV2", &["kp2", "u"]),
                ("floor", "Floor", &["add"]),
                ("div", "RealDiv", &["x", "kp"]),
                ("drop", "Mul", &["div", "floor"]),
                ("out", "Relu", &["drop"]),
            ],
        ),
    ];
    for (why, nodes) in near {
        let g = tiny(&nodes);
        let after = apply_packs(&g, &["dropout"]);
        assert_eq!(after.len(), g.len(), "{why} was rewritten");
    }
}
