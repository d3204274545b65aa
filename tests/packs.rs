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
use graphrw::rules::engine::{Options, apply, rewrite};
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

/// A tiny conv + BN graph, with knobs for the near-misses.
fn conv_bn(is_training: bool, extra_consumer: bool, weight_op: &str) -> Graph {
    use build::{G, ints, s};
    let mut g = G::default();
    g.input("x").konst("w", &[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]).input("w_in");
    let w = if weight_op == "Const" { "w" } else { "w_in" };
    g.op(
        "conv",
        "Conv2D",
        &["x", w],
        vec![("strides", ints(&[1, 1, 1, 1])), ("padding", s("VALID"))],
    );
    g.konst("bn/gamma", &[2], &[1.5, 0.5])
        .konst("bn/beta", &[2], &[0.1, -0.2])
        .konst("bn/mean", &[2], &[0.3, 0.4])
        .konst("bn/var", &[2], &[2.0, 0.5])
        .fused_bn("bn", "conv", "NHWC", is_training)
        .op("out", "Relu", &["bn"], vec![]);
    if extra_consumer {
        g.op("other", "Relu", &["conv"], vec![]);
    }
    g.graph()
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

/// A small graph builder with attributes, for the inference pack's cases.
mod build {
    use graphrw::proto::{GraphDef, NodeDef, attr_value::Value};

    #[derive(Default)]
    pub struct G(pub Vec<NodeDef>);

    pub fn s(text: &'static str) -> Value {
        Value::S(bytes::Bytes::from_static(text.as_bytes()))
    }

    pub fn ints(v: &[i64]) -> Value {
        Value::List(graphrw::proto::attr_value::ListValue { i: v.to_vec(), ..Default::default() })
    }

    impl G {
        pub fn konst(&mut self, name: &str, shape: &[usize], data: &[f64]) -> &mut Self {
            let array = graphrw::tensor::Array { shape: shape.to_vec(), data: data.to_vec() };
            let t = graphrw::tensor::to_proto(&array, graphrw::proto::DataType::DtFloat).unwrap();
            self.node(
                name,
                "Const",
                &[],
                vec![("dtype", Value::Type(1)), ("value", Value::Tensor(t))],
            )
        }

        /// A float32 node (`T` set) with more attributes.
        pub fn op(
            &mut self,
            name: &str,
            op: &str,
            inputs: &[&str],
            attrs: Vec<(&str, Value)>,
        ) -> &mut Self {
            let mut attrs = attrs;
            attrs.push(("T", Value::Type(1)));
            self.node(name, op, inputs, attrs)
        }

        pub fn node(
            &mut self,
            name: &str,
            op: &str,
            inputs: &[&str],
            attrs: Vec<(&str, Value)>,
        ) -> &mut Self {
            self.0.push(super::common::node_def(name, op, inputs, attrs));
            self
        }

        pub fn input(&mut self, name: &str) -> &mut Self {
            self.node(name, "Placeholder", &[], vec![("dtype", Value::Type(1))])
        }

        /// gamma, beta, mean, var for `c` channels, under `prefix`.
        pub fn stats(&mut self, prefix: &str, c: usize) -> &mut Self {
            let v = |k: f64| (0..c).map(|i| k + 0.25 * i as f64).collect::<Vec<_>>();
            self.konst(&format!("{prefix}/gamma"), &[c], &v(0.5))
                .konst(&format!("{prefix}/beta"), &[c], &v(-0.3))
                .konst(&format!("{prefix}/mean"), &[c], &v(0.1))
                .konst(&format!("{prefix}/var"), &[c], &v(1.5))
        }

        pub fn fused_bn(
            &mut self,
            name: &str,
            x: &str,
            format: &'static str,
            training: bool,
        ) -> &mut Self {
            let stats: Vec<String> =
                ["gamma", "beta", "mean", "var"].iter().map(|s| format!("{name}/{s}")).collect();
            let inputs: Vec<&str> =
                std::iter::once(x).chain(stats.iter().map(String::as_str)).collect();
            self.op(
                name,
                "FusedBatchNormV3",
                &inputs,
                vec![
                    ("U", Value::Type(1)),
                    ("epsilon", Value::F(0.001)),
                    ("is_training", Value::B(training)),
                    ("data_format", s(format)),
                ],
            )
        }

        pub fn graph(&self) -> graphrw::Graph {
            graphrw::Graph::from_def(&GraphDef { node: self.0.clone(), ..Default::default() })
        }
    }
}

/// The evaluator gives the same `out` for both graphs on a fixed input.
fn same_values(before: &Graph, after: &Graph, x: Tensor) {
    let feeds: HashMap<String, Tensor> = [("x".to_string(), x)].into();
    let verdict =
        graphrw::eval::verify::verify(before, after, &["out:0".into()], &feeds, 1e-5, 1e-6)
            .unwrap();
    assert!(verdict.mismatch.is_none(), "{verdict:?}");
}

fn ramp(shape: Vec<usize>) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::f32(shape, (0..n).map(|i| ((i * 7) % 11) as f32 * 0.3 - 1.2).collect())
}

fn ops(g: &Graph) -> Vec<String> {
    let mut ops: Vec<String> = g.ids().map(|id| g.op(id).to_string()).collect();
    ops.sort();
    ops
}

#[test]
fn inference_folds_batch_norm_in_every_layout_or_turns_it_into_a_scale() {
    use build::{G, ints, s};
    let conv = |g: &mut G, name: &str, x: &str, format: &'static str| {
        g.op(
            name,
            "Conv2D",
            &[x, &format!("{name}/w")],
            vec![
                ("strides", ints(&[1, 1, 1, 1])),
                ("padding", s("VALID")),
                ("data_format", s(format)),
            ],
        );
    };
    let w: Vec<f64> = (0..12).map(|i| (i as f64 - 5.0) * 0.2).collect();

    // NCHW conv, then a fused batch norm: folded into an NCHW BiasAdd.
    let mut g = G::default();
    g.input("x").konst("c/w", &[1, 1, 4, 3], &w);
    conv(&mut g, "c", "x", "NCHW");
    g.stats("bn", 3).fused_bn("bn", "c", "NCHW", false).op("out", "Relu", &["bn"], vec![]);
    let before = g.graph();
    let after = apply_packs(&before, &["inference"]);
    assert_eq!(ops(&after), ["BiasAdd", "Const", "Const", "Conv2D", "Placeholder", "Relu"]);
    same_values(&before, &after, ramp(vec![1, 4, 2, 2]));

    // The same NCHW conv with its weights read through an Identity (frozen
    // TF1): the batch norm may become a scale first, and is folded all the same.
    let mut g = G::default();
    g.input("x").konst("c/w_const", &[1, 1, 4, 3], &w);
    g.op("c/w", "Identity", &["c/w_const"], vec![]);
    conv(&mut g, "c", "x", "NCHW");
    g.stats("bn", 3).fused_bn("bn", "c", "NCHW", false).op("out", "Relu", &["bn"], vec![]);
    let before = g.graph();
    let after = apply_packs(&before, &["inference"]);
    assert_eq!(ops(&after), ["BiasAdd", "Const", "Const", "Conv2D", "Placeholder", "Relu"]);
    assert_eq!(after.op(after.id("bn").unwrap()), "BiasAdd", "the name is kept");
    same_values(&before, &after, ramp(vec![1, 4, 2, 2]));

    // Depthwise without bias, weights through an Identity.
    let mut g = G::default();
    g.input("x").konst("d/w_const", &[1, 1, 3, 2], &w[..6]);
    g.op("d/w", "Identity", &["d/w_const"], vec![]);
    g.op(
        "d",
        "DepthwiseConv2dNative",
        &["x", "d/w"],
        vec![("strides", ints(&[1, 1, 1, 1])), ("padding", s("VALID")), ("data_format", s("NHWC"))],
    );
    g.stats("bn", 6).fused_bn("bn", "d", "NHWC", false).op("out", "Relu", &["bn"], vec![]);
    let before = g.graph();
    let after = apply_packs(&before, &["inference"]);
    assert_eq!(
        ops(&after),
        ["BiasAdd", "Const", "Const", "DepthwiseConv2dNative", "Placeholder", "Relu"]
    );
    same_values(&before, &after, ramp(vec![1, 2, 2, 3]));

    // A batch norm with no conv before it: a multiply and an add, NHWC and NCHW.
    for format in ["NHWC", "NCHW"] {
        let mut g = G::default();
        g.input("x").stats("bn", 3).fused_bn("bn", "x", format, false);
        g.op("out", "Relu", &["bn"], vec![]);
        let before = g.graph();
        let after = apply_packs(&before, &["inference"]);
        assert_eq!(ops(&after), ["AddV2", "Const", "Const", "Mul", "Placeholder", "Relu"]);
        let shape = if format == "NCHW" { vec![2, 3, 2, 2] } else { vec![2, 2, 2, 3] };
        same_values(&before, &after, ramp(shape));
    }

    // Near-misses: a conv read elsewhere keeps its weights (the batch norm
    // becomes a scale); a training-mode batch norm is left as it is.
    let mut g = G::default();
    g.input("x").konst("c/w", &[1, 1, 4, 3], &w);
    conv(&mut g, "c", "x", "NHWC");
    g.stats("bn", 3).fused_bn("bn", "c", "NHWC", false).op("out", "Relu", &["bn"], vec![]);
    g.op("other", "Relu", &["c"], vec![]);
    let before = g.graph();
    let after = apply_packs(&before, &["inference"]);
    assert_eq!(after.input_str(after.id("c").unwrap(), 1), "c/w", "the shared conv was changed");
    assert_eq!(after.op(after.id("bn").unwrap()), "AddV2");
    same_values(&before, &after, ramp(vec![1, 2, 2, 4]));
    let mut g = G::default();
    g.input("x").stats("bn", 3).fused_bn("bn", "x", "NHWC", true);
    g.op("out", "Relu", &["bn"], vec![]);
    let after = apply_packs(&g.graph(), &["inference"]);
    assert_eq!(after.op(after.id("bn").unwrap()), "FusedBatchNormV3");
}

#[test]
fn the_decomposed_batch_norm_folds_into_a_matmul_without_bias() {
    use build::G;
    let mut g = G::default();
    g.input("x")
        .konst("w", &[4, 3], &(0..12).map(|i| i as f64 * 0.1 - 0.5).collect::<Vec<_>>())
        .node("w/read", "Identity", &["w"], vec![("T", graphrw::proto::attr_value::Value::Type(1))])
        .op(
            "mm",
            "MatMul",
            &["x", "w/read"],
            vec![
                ("transpose_a", graphrw::proto::attr_value::Value::B(false)),
                ("transpose_b", graphrw::proto::attr_value::Value::B(false)),
            ],
        )
        .stats("bn", 3)
        .konst("bn/eps", &[], &[0.001])
        // tf.nn.batch_normalization: x * (gamma * rsqrt(var + eps)) + (beta - mean * that)
        .op("bn/add", "AddV2", &["bn/var", "bn/eps"], vec![])
        .op("bn/rsqrt", "Rsqrt", &["bn/add"], vec![])
        .op("bn/mul", "Mul", &["bn/rsqrt", "bn/gamma"], vec![])
        .op("bn/mul_1", "Mul", &["mm", "bn/mul"], vec![])
        .op("bn/mul_2", "Mul", &["bn/mean", "bn/mul"], vec![])
        .op("bn/sub", "Sub", &["bn/beta", "bn/mul_2"], vec![])
        .op("bn/add_1", "AddV2", &["bn/mul_1", "bn/sub"], vec![])
        .op("out", "Relu", &["bn/add_1"], vec![]);
    let before = g.graph();
    let after = apply_packs(&before, &["inference"]);
    assert_eq!(ops(&after), ["BiasAdd", "Const", "Const", "MatMul", "Placeholder", "Relu"]);
    assert_eq!(after.op(after.id("bn/add_1").unwrap()), "BiasAdd");
    same_values(&before, &after, ramp(vec![2, 4]));
}

#[test]
fn fold_leaves_integers_and_non_constants_alone() {
    use build::G;
    use graphrw::proto::attr_value::Value;
    let mut g = G::default();
    let int = graphrw::tensor::to_proto(
        &graphrw::tensor::Array { shape: vec![], data: vec![7.0] },
        graphrw::proto::DataType::DtInt32,
    )
    .unwrap();
    g.node("i", "Const", &[], vec![("dtype", Value::Type(3)), ("value", Value::Tensor(int))])
        .node("isum", "AddV2", &["i", "i"], vec![("T", Value::Type(3))])
        .input("x")
        .konst("k", &[], &[2.0])
        .op("xk", "Mul", &["x", "k"], vec![])
        .op("kk", "Mul", &["k", "k"], vec![])
        .op("out", "AddV2", &["xk", "kk"], vec![]);
    let after = apply_packs(&g.graph(), &["fold"]);
    assert_eq!(after.op(after.id("isum").unwrap()), "AddV2", "int32 arithmetic was folded");
    assert_eq!(after.op(after.id("xk").unwrap()), "Mul", "a product with an input was folded");
    assert_eq!(after.op(after.id("kk").unwrap()), "Const");
}

#[test]
fn cond_folds_either_constant_predicate_and_leaves_a_data_one() {
    let cond = |pred: &'static str| -> Graph {
        let p = ("p", if pred == "data" { "Placeholder" } else { "Const" }, &[][..]);
        tiny(&[
            ("x", "Placeholder", &[]),
            p,
            ("sw", "Switch", &["x", "p"]),
            ("f", "Neg", &["sw"]),
            ("t", "Abs", &["sw:1"]),
            ("m", "Merge", &["f", "t"]),
            ("out", "Relu", &["m"]),
        ])
    };
    // tiny() makes Consts without values: give the predicate one.
    let with_value = |g: Graph, v: bool| -> Graph {
        let mut def = g.to_def().unwrap();
        let t = graphrw::tensor::to_proto(
            &graphrw::tensor::Array { shape: vec![], data: vec![f64::from(u8::from(v))] },
            graphrw::proto::DataType::DtBool,
        )
        .unwrap();
        let p = def.node.iter_mut().find(|n| n.name == "p").unwrap();
        p.attr.insert(
            "value".into(),
            graphrw::proto::AttrValue { value: Some(graphrw::proto::attr_value::Value::Tensor(t)) },
        );
        Graph::from_def(&def)
    };
    for (value, kept) in [(false, "Neg"), (true, "Abs")] {
        let after = apply_packs(&with_value(cond("const"), value), &["cond"]);
        let names: Vec<String> =
            after.ids().map(|id| format!("{}: {}", after.name(id), after.op(id))).collect();
        let branch = if value { "t" } else { "f" };
        assert_eq!(names, ["x: Placeholder", format!("{branch}: {kept}").as_str(), "out: Relu"]);
        assert_eq!(after.input_str(after.id("out").unwrap(), 0), branch);
    }
    let g = cond("data");
    let after = apply_packs(&g, &["cond"]);
    assert_eq!(after.len(), g.len(), "a data-dependent cond was touched");
}

/// The producers a tensor depends on, through data and control inputs.
fn ancestors(g: &Graph, start: graphrw::NodeId) -> std::collections::HashSet<graphrw::NodeId> {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![start];
    while let Some(id) = stack.pop() {
        if seen.insert(id) {
            stack.extend(g.inputs(id).iter().filter_map(|e| e.src()));
        }
    }
    seen
}

#[test]
fn inference_on_every_fixture_leaves_no_training_machinery_and_the_same_outputs() {
    for (dir, meta) in common::fixtures() {
        let graph = read_graph(&dir.join("model.pb"), None).unwrap();
        let after = apply_packs(&graph, &["inference"]);
        let name = &meta.name;
        for op in ["RandomUniform", "FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"] {
            assert!(after.nodes_with_op(op).is_empty(), "{name}: {op} left");
        }
        for &id in after.nodes_with_op("Rsqrt") {
            let input = after.inputs(id)[0].src().unwrap();
            assert_ne!(after.op(input), "Const", "{name}: Rsqrt of a constant left");
        }
        for flag in &meta.training_placeholders {
            assert!(
                after.id(flag).is_none_or(|id| after.op(id) == "Const"),
                "{name}: training placeholder {flag} left"
            );
        }
        // A Switch or Merge left belongs to a cond on data: nothing it
        // depends on is a training flag or a constant predicate.
        for &id in after.nodes_with_op("Switch") {
            let pred = after.inputs(id)[1].src().unwrap();
            let up = ancestors(&after, pred);
            assert!(
                up.iter().all(|&a| !meta.training_placeholders.iter().any(|t| t == after.name(a)))
            );
            assert!(
                up.iter().any(|&a| after.op(a) == "Placeholder"),
                "{name}: Switch {} on a constant predicate",
                after.name(id)
            );
        }
        // An If left is a cond on data (tf2_if's); keras_tf1_if's, on the
        // learning phase, are inlined.
        let ifs = after.nodes_with_op("If").len() + after.nodes_with_op("StatelessIf").len();
        assert_eq!(ifs, usize::from(name == "tf2_if"), "{name}: If left or lost");
        if name == "data_cond" {
            assert_eq!(after.nodes_with_op("Merge").len(), 1, "the data cond stays");
        } else if meta.graph.ops.contains_key("Merge") {
            assert!(after.nodes_with_op("Merge").is_empty(), "{name}: Merge left");
        }
        assert!(after.len() < graph.len(), "{name}: {} -> {}", graph.len(), after.len());
        same_outputs(&dir, &meta, &after);
    }
}

#[test]
fn bn_folds_through_a_bias_written_as_an_add() {
    use build::{G, ints, s};
    let w: Vec<f64> = (0..12).map(|i| (i as f64 - 5.0) * 0.2).collect();
    for (bias_op, format, folds) in
        [("AddV2", "NHWC", true), ("BiasAdd", "NCHW", true), ("AddV2", "NCHW", false)]
    {
        let mut g = G::default();
        g.input("x").konst("c/w", &[1, 1, 4, 3], &w);
        g.op(
            "c",
            "Conv2D",
            &["x", "c/w"],
            vec![
                ("strides", ints(&[1, 1, 1, 1])),
                ("padding", s("VALID")),
                ("data_format", s(format)),
            ],
        );
        g.konst("c/b", &[3], &[0.5, -0.25, 1.0]);
        let attrs = if bias_op == "BiasAdd" { vec![("data_format", s(format))] } else { vec![] };
        g.op("c/bias", bias_op, &["c", "c/b"], attrs);
        g.stats("bn", 3).fused_bn("bn", "c/bias", format, false).op("out", "Relu", &["bn"], vec![]);
        let before = g.graph();
        let after = apply_packs(&before, &["bn"]);
        let folded = after.nodes_with_op("FusedBatchNormV3").is_empty();
        assert_eq!(folded, folds, "{bias_op} {format}");
        if folds {
            assert_eq!(after.op(after.id("bn").unwrap()), "BiasAdd");
            let shape = if format == "NCHW" { vec![1, 4, 2, 3] } else { vec![1, 2, 3, 4] };
            same_values(&before, &after, ramp(shape));
        }
    }
}

#[test]
fn lock_training_locks_bool_flags_by_name_only() {
    use build::G;
    use graphrw::proto::attr_value::Value;
    let mut g = G::default();
    g.node("training", "Placeholder", &[], vec![("dtype", Value::Type(10))])
        .node("is_training", "Placeholder", &[], vec![("dtype", Value::Type(1))]) // a float
        .node("mode", "Placeholder", &[], vec![("dtype", Value::Type(10))]) // another name
        .node("out", "NoOp", &["^training", "^is_training", "^mode"], vec![]);
    let after = apply_packs(&g.graph(), &["lock-training"]);
    let op = |n: &str| after.op(after.id(n).unwrap()).to_string();
    assert_eq!(op("training"), "Const");
    assert_eq!(op("is_training"), "Placeholder", "a float placeholder was locked");
    assert_eq!(op("mode"), "Placeholder", "a flag under another name was locked");
}

/// A half-precision batch norm keeps float statistics (`T` half, `U`
/// float): a constant computed from them would be float where the graph
/// needs half, so neither the fold without bias nor the scale applies.
#[test]
fn a_half_precision_batch_norm_with_float_statistics_is_left_alone() {
    use build::{G, ints, s};
    use graphrw::proto::attr_value::Value;
    const HALF: i32 = 19;
    let bn_attrs = || {
        vec![
            ("T", Value::Type(HALF)),
            ("U", Value::Type(1)),
            ("epsilon", Value::F(0.001)),
            ("is_training", Value::B(false)),
            ("data_format", s("NHWC")),
        ]
    };
    let stats = ["bn/gamma", "bn/beta", "bn/mean", "bn/var"];
    for with_conv in [false, true] {
        let mut g = G::default();
        g.node("x", "Placeholder", &[], vec![("dtype", Value::Type(HALF))]).stats("bn", 3);
        let input = if with_conv {
            let w = graphrw::tensor::to_proto(
                &graphrw::tensor::Array { shape: vec![1, 1, 3, 3], data: vec![0.5; 9] },
                graphrw::proto::DataType::DtHalf,
            )
            .unwrap();
            g.node(
                "w",
                "Const",
                &[],
                vec![("dtype", Value::Type(HALF)), ("value", Value::Tensor(w))],
            );
            g.node(
                "c",
                "Conv2D",
                &["x", "w"],
                vec![
                    ("T", Value::Type(HALF)),
                    ("strides", ints(&[1, 1, 1, 1])),
                    ("padding", s("VALID")),
                    ("data_format", s("NHWC")),
                ],
            );
            "c"
        } else {
            "x"
        };
        let inputs: Vec<&str> = std::iter::once(input).chain(stats).collect();
        g.node("bn", "FusedBatchNormV3", &inputs, bn_attrs());
        g.node("out", "Relu", &["bn"], vec![("T", Value::Type(HALF))]);
        let after = apply_packs(&g.graph(), &["inference"]);
        assert_eq!(after.op(after.id("bn").unwrap()), "FusedBatchNormV3", "conv: {with_conv}");
    }
}

#[test]
fn inference_on_a_graph_large_enough_to_match_on_every_core_keeps_its_outputs() {
    // 3000 blocks: every rule has thousands of candidates, so matching is
    // split over the cores and the matches merged in candidate order; the
    // result is large enough to be encoded on every core too.
    let before = graphrw::synth::synth(60_000);
    let after = apply_packs(&before, &["inference"]);
    let again = apply_packs(&before, &["inference"]);
    let encode = |g: &Graph| {
        let mut out = Vec::new();
        g.encode(&mut out).unwrap();
        out
    };
    assert_eq!(encode(&after), encode(&again), "the same bytes every time");
    for op in ["Switch", "Merge", "FusedBatchNormV3"] {
        assert!(after.nodes_with_op(op).is_empty(), "{op} left");
    }
    // Every block's batch norm folded into its conv: one BiasAdd per block.
    assert_eq!(after.nodes_with_op("BiasAdd").len(), before.nodes_with_op("Conv2D").len());
    let training = graphrw::proto::TensorProto {
        dtype: graphrw::proto::DataType::DtBool as i32,
        bool_val: vec![false],
        ..Default::default()
    };
    let feeds: HashMap<String, Tensor> = [
        ("input".to_string(), ramp(vec![1, 8, 8, 4])),
        ("training".to_string(), Tensor::from_proto(&training).unwrap()),
    ]
    .into();
    let verdict =
        graphrw::eval::verify::verify(&before, &after, &["output:0".into()], &feeds, 1e-4, 1e-5)
            .unwrap();
    assert!(verdict.mismatch.is_none(), "{verdict:?}");
}

/// `graphrw apply` writes its result straight from the engine's copy of the
/// graph: the bytes are those of the graph `apply` builds (and not the
/// input's), on every fixture with every pack, and on a graph large enough
/// to be built on every core.
#[test]
fn the_bytes_written_are_those_of_the_graph_built() {
    let mut graphs: Vec<(String, Graph)> = common::fixtures()
        .into_iter()
        .map(|(dir, meta)| (meta.name, read_graph(&dir.join("model.pb"), None).unwrap()))
        .collect();
    graphs.push(("synth".into(), graphrw::synth::synth(60_000)));
    // Large nodes are written from where they are: a constant left as it
    // was read, and one a rule computes (`fold`: `a * b`).
    let ramp: Vec<f64> = (0..20_000).map(|i| f64::from(i) * 1e-3).collect();
    let mut large = build::G::default();
    large
        .input("x")
        .konst("big", &[20_000], &ramp)
        .konst("a", &[20_000], &ramp)
        .konst("b", &[20_000], &ramp)
        .op("m", "Mul", &["a", "b"], vec![])
        .op("out", "AddV2", &["x", "big"], vec![])
        .op("out2", "AddV2", &["x", "m"], vec![]);
    graphs.push(("large constants".into(), large.graph()));
    let bytes = |write: &dyn Fn(&mut Vec<u8>) -> std::io::Result<()>| {
        let mut out = Vec::new();
        write(&mut out).unwrap();
        out
    };
    for pack in ["inference", "bn", "cond", "dropout", "lock-training", "fold"] {
        let rules = compile(&load(&[Origin::Pack(pack.into())]), &[]).unwrap();
        for (name, graph) in &graphs {
            let (rewritten, report) = rewrite(graph, &rules, &Options::default()).unwrap();
            let written = bytes(&|out| rewritten.encode(out));
            let built = rewritten.to_graph();
            assert!(written == bytes(&|out| built.encode(out)), "{name}, {pack}");
            assert_eq!(built.len(), report.nodes_after, "{name}, {pack}");
            if report.rounds > 0 {
                assert!(written != bytes(&|out| graph.encode(out)), "{name}, {pack}");
            }
        }
    }
}
