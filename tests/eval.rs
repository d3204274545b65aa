//! The reference evaluator against TensorFlow: every fixture TensorFlow
//! wrote, run by graphrw, gives TensorFlow's stored outputs.

mod common;

use std::collections::HashMap;

use graphrw::eval::{EvalError, Tensor, run};
use graphrw::io::read_graph;
use graphrw::npy::Array;

/// The mode feeds of meta.json (training false, keep_prob 1) as tensors.
fn mode_feed(value: &serde_json::Value) -> Tensor {
    match value {
        serde_json::Value::Bool(b) => {
            Tensor { shape: vec![], data: graphrw::eval::Data::Bool(vec![*b]) }
        }
        other => Tensor::f32(vec![], vec![other.as_f64().expect("a number") as f32]),
    }
}

/// Worst relative error, scaled by the largest expected magnitude.
fn relative_error(got: &[f64], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-12);
    got.iter().zip(want).map(|(g, w)| (g - w).abs() / scale).fold(0.0, f64::max)
}

/// Runs every case of every fixture under `fixtures`; returns how many
/// outputs were compared.
fn check_all(fixtures: Vec<(std::path::PathBuf, common::Meta)>, tolerance: f64) -> usize {
    let mut checked = 0;
    for (dir, meta) in fixtures {
        let graph = read_graph(&dir.join("model.pb"), None).unwrap();
        for (i, case) in meta.cases.iter().enumerate() {
            let mut feeds = HashMap::new();
            for (name, file) in &case.inputs {
                feeds.insert(
                    name.clone(),
                    Tensor::from_npy(&Array::read(&dir.join(file)).unwrap()).unwrap(),
                );
            }
            for (name, value) in &case.mode {
                feeds.insert(name.clone(), mode_feed(value));
            }
            let outputs: Vec<String> = case.outputs.keys().cloned().collect();
            let results =
                run(&graph, &feeds, &outputs).unwrap_or_else(|e| panic!("{}: {e}", meta.name));
            for (name, value) in results {
                let value = value.unwrap_or_else(|| panic!("{}: {name} is dead", meta.name));
                let want = Array::read(&dir.join(&case.outputs[&name])).unwrap();
                assert_eq!(value.shape, want.shape, "{} {name}", meta.name);
                let err = relative_error(&value.to_f64(), &want.to_f64());
                assert!(err < tolerance, "{} case {i} {name}: relative error {err:e}", meta.name);
                checked += 1;
            }
        }
    }
    checked
}

#[test]
fn the_original_graphs_give_tensorflow_outputs() {
    // Real Switch/Merge evaluation: the training flag is fed false.
    // tf2_if's StatelessIf and keras_tf1_if's Ifs run their branch
    // functions from the library.
    let checked = check_all(common::fixtures(), 1e-5);
    assert_eq!(checked, 9, "every case of every fixture");
}

#[test]
fn every_kernel_case_gives_tensorflow_values() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kernels");
    let cases = common::fixtures_in(&root);
    assert!(cases.len() >= 25, "found {} kernel cases", cases.len());
    assert_eq!(check_all(cases, 1e-5), 25);
}

#[test]
fn nchw_convolution_and_pooling_equal_nhwc() {
    use graphrw::proto::{
        AttrValue, GraphDef, NodeDef,
        attr_value::{ListValue, Value},
    };
    let values: Vec<f32> = (0..2 * 5 * 6 * 3).map(|i| ((i * 37 % 17) as f32) / 7.0 - 1.0).collect();
    let x = Tensor::f32(vec![2, 5, 6, 3], values);
    let w = Tensor::f32(vec![3, 2, 3, 4], (0..72).map(|i| (i % 5) as f32 - 2.0).collect());
    let list = |v: &[i64]| AttrValue {
        value: Some(Value::List(ListValue { i: v.to_vec(), ..Default::default() })),
    };
    let s =
        |v: &str| AttrValue { value: Some(Value::S(bytes::Bytes::copy_from_slice(v.as_bytes()))) };
    let node = |name: &str, op: &str, inputs: &[&str], attrs: Vec<(&str, AttrValue)>| NodeDef {
        name: name.into(),
        op: op.into(),
        input: inputs.iter().map(|i| i.to_string()).collect(),
        attr: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        ..Default::default()
    };
    let graph = graphrw::Graph::from_def(&GraphDef {
        node: vec![
            node("x", "Placeholder", &[], vec![]),
            node("xt", "Placeholder", &[], vec![]),
            node("w", "Placeholder", &[], vec![]),
            node(
                "hwc",
                "Conv2D",
                &["x", "w"],
                vec![
                    ("strides", list(&[1, 2, 1, 1])),
                    ("dilations", list(&[1, 1, 2, 1])),
                    ("padding", s("SAME")),
                ],
            ),
            node(
                "chw",
                "Conv2D",
                &["xt", "w"],
                vec![
                    ("strides", list(&[1, 1, 2, 1])),
                    ("dilations", list(&[1, 1, 1, 2])),
                    ("padding", s("SAME")),
                    ("data_format", s("NCHW")),
                ],
            ),
            node(
                "phwc",
                "AvgPool",
                &["x"],
                vec![
                    ("ksize", list(&[1, 2, 3, 1])),
                    ("strides", list(&[1, 2, 2, 1])),
                    ("padding", s("SAME")),
                ],
            ),
            node(
                "pchw",
                "AvgPool",
                &["xt"],
                vec![
                    ("ksize", list(&[1, 1, 2, 3])),
                    ("strides", list(&[1, 1, 2, 2])),
                    ("padding", s("SAME")),
                    ("data_format", s("NCHW")),
                ],
            ),
        ],
        ..Default::default()
    });
    let xt = graphrw::eval::kernels::transpose_nchw(&x, true).unwrap();
    assert_eq!(xt.shape, vec![2, 3, 5, 6]);
    let feeds: HashMap<String, Tensor> =
        [("x".to_string(), x), ("xt".to_string(), xt), ("w".to_string(), w)].into_iter().collect();
    let names: Vec<String> = ["hwc", "chw", "phwc", "pchw"].iter().map(|s| s.to_string()).collect();
    let out = run(&graph, &feeds, &names).unwrap();
    let get = |i: usize| (*out[i].1.clone().unwrap()).clone();
    for (hwc, chw) in [(get(0), get(1)), (get(2), get(3))] {
        assert_eq!(graphrw::eval::kernels::transpose_nchw(&chw, false).unwrap(), hwc);
    }
    assert_eq!(get(0).shape, vec![2, 3, 6, 4]);
}

#[test]
fn an_unsupported_op_is_an_error_naming_it() {
    use graphrw::proto::{GraphDef, NodeDef};
    let node = |name: &str, op: &str, inputs: &[&str]| NodeDef {
        name: name.into(),
        op: op.into(),
        input: inputs.iter().map(|i| i.to_string()).collect(),
        ..Default::default()
    };
    let graph = graphrw::Graph::from_def(&GraphDef {
        node: vec![node("x", "Placeholder", &[]), node("fft", "FFT", &["x"])],
        ..Default::default()
    });
    let feeds: HashMap<String, Tensor> =
        [("x".to_string(), Tensor::f32(vec![2], vec![1.0, 2.0]))].into();
    let err = run(&graph, &feeds, &["fft".to_string()]).unwrap_err();
    assert!(
        matches!(&err, EvalError::Unsupported { op, node } if op == "FFT" && node == "fft"),
        "{err}"
    );
    assert_eq!(err.to_string(), "node `fft`: op FFT is not supported by graphrw's evaluator");
}

#[test]
fn a_missing_feed_names_the_placeholder_and_defaults_are_used() {
    let dir = common::fixtures_dir().join("seed");
    let graph = read_graph(&dir.join("model.pb"), None).unwrap();
    let err =
        run(&graph, &HashMap::new(), &["backend/final_dense/MatMul".to_string()]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "placeholder `input_node` needs a feed (--feed input_node=FILE.npy)"
    );
}

/// Kernels given what TensorFlow would refuse (statistics of another
/// length than the channels, a bias of another length, a zero or negative
/// stride, a window of 0, negative padding, a bad reshape) fail with an
/// error naming the node, not a panic.
#[test]
fn malformed_nodes_are_errors_naming_them() {
    use graphrw::proto::attr_value::{ListValue, Value};
    use graphrw::proto::{DataType, GraphDef, NodeDef};
    use graphrw::tensor::{Array, to_proto};
    let node = common::node_def;
    let constant = |name: &str, shape: Vec<usize>, data: Vec<f64>, dtype: DataType| {
        let tensor = to_proto(&Array { shape, data }, dtype).unwrap();
        node(name, "Const", &[], vec![("value", Value::Tensor(tensor))])
    };
    let float = |n: &str, shape: Vec<usize>| {
        let data = vec![1.0; shape.iter().product()];
        constant(n, shape, data, DataType::DtFloat)
    };
    let ints = |v: &[i64]| Value::List(ListValue { i: v.to_vec(), ..Default::default() });
    let text = |s: &str| Value::S(s.as_bytes().to_vec().into());
    let x = || node("x", "Placeholder", &[], vec![]);
    let conv = |filter: Vec<usize>, attrs: Vec<(&str, Value)>| {
        vec![x(), float("w", filter), node("bn", "Conv2D", &["x", "w"], attrs)]
    };
    let cases: Vec<(Vec<NodeDef>, &str)> = vec![
        (
            vec![
                x(),
                float("s", vec![3]),
                float("o", vec![1]),
                node("bn", "FusedBatchNormV3", &["x", "s", "o", "s", "s"], vec![]),
            ],
            "statistics of 3, 1, 3 and 3",
        ),
        (
            vec![
                x(),
                float("s", vec![3]),
                node(
                    "bn",
                    "FusedBatchNormV3",
                    &["x", "s", "s", "s", "s"],
                    vec![("data_format", text("NCHW"))],
                ),
            ],
            "batch norm of shape [1, 4, 4, 3]",
        ),
        (
            vec![
                x(),
                float("b", vec![2]),
                node("bn", "BiasAdd", &["x", "b"], vec![("data_format", text("NCHW"))]),
            ],
            "bias of 2 for shape [1, 4, 4, 3] (NCHW)",
        ),
        (
            conv(
                vec![1, 1, 3, 2],
                vec![("strides", ints(&[1, 0, 1, 1])), ("padding", text("SAME"))],
            ),
            "strides [1, 0, 1, 1]: each must be at least 1",
        ),
        (
            conv(
                vec![1, 1, 3, 2],
                vec![("strides", ints(&[1, -2, 1, 1])), ("padding", text("VALID"))],
            ),
            "strides [1, -2, 1, 1]: each must be at least 1",
        ),
        (conv(vec![0, 1, 3, 2], vec![("padding", text("SAME"))]), "none may be 0"),
        (
            conv(
                vec![1, 1, 3, 2],
                vec![
                    ("padding", text("EXPLICIT")),
                    ("explicit_paddings", ints(&[0, 0, -1, 0, 0, 0, 0, 0])),
                ],
            ),
            "negative explicit padding -1",
        ),
        (
            vec![
                x(),
                node(
                    "bn",
                    "MaxPool",
                    &["x"],
                    vec![("ksize", ints(&[1, 2, 0, 1])), ("padding", text("VALID"))],
                ),
            ],
            "ksize [1, 2, 0, 1]: each must be at least 1",
        ),
        (
            vec![
                x(),
                // No dimension may be negative but -1.
                constant("d", vec![2], vec![-3.0, 16.0], DataType::DtInt32),
                node("bn", "Reshape", &["x", "d"], vec![]),
            ],
            "cannot reshape",
        ),
        (
            vec![
                x(),
                float("y", vec![1, 4, 3, 3]),
                constant("d", vec![], vec![1.0], DataType::DtInt32),
                node("bn", "ConcatV2", &["x", "y", "d"], vec![]),
            ],
            "concatenating shapes [1, 4, 4, 3] and [1, 4, 3, 3] on axis 1",
        ),
        (vec![x(), node("bn", "ConcatV2", &[], vec![])], "nothing to concatenate"),
        (
            vec![x(), node("bn", "Pack", &["x", "x"], vec![("axis", Value::I(7))])],
            "axis 7 out of range for rank 5",
        ),
        (
            vec![
                x(),
                constant(
                    "p",
                    vec![4, 2],
                    vec![0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                    DataType::DtInt32,
                ),
                node("bn", "Pad", &["x", "p"], vec![]),
            ],
            "paddings [0, 0, -1, 0, 0, 0, 0, 0] for rank 4",
        ),
        (
            vec![
                x(),
                constant("b", vec![2], vec![0.0, 0.0], DataType::DtInt32),
                constant("s", vec![1], vec![1.0], DataType::DtInt32),
                node("bn", "StridedSlice", &["x", "b", "b", "s"], vec![]),
            ],
            "StridedSlice of rank 4 with begin [0, 0], end [0, 0], strides [1]",
        ),
        (
            vec![
                x(),
                constant("d", vec![2], vec![-3.0, 4.0], DataType::DtInt32),
                node("bn", "RandomUniform", &["d"], vec![]),
            ],
            "RandomUniform of shape [-3, 4]",
        ),
        (
            // One value repeated over a shape of 2^40: more than graphrw fills in.
            vec![x(), {
                let splat = graphrw::proto::TensorProto {
                    dtype: DataType::DtFloat as i32,
                    tensor_shape: Some(graphrw::proto::TensorShapeProto {
                        dim: vec![graphrw::proto::tensor_shape_proto::Dim {
                            size: 1 << 40,
                            name: String::new(),
                        }],
                        unknown_rank: false,
                    }),
                    float_val: vec![1.0],
                    ..Default::default()
                };
                node("bn", "Const", &[], vec![("value", Value::Tensor(splat))])
            }],
            "1 values for a shape of 1099511627776: more than graphrw fills in",
        ),
    ];
    for (nodes, expected) in cases {
        let graph = graphrw::Graph::from_def(&GraphDef { node: nodes, ..Default::default() });
        let feeds: HashMap<String, Tensor> =
            [("x".to_string(), Tensor::f32(vec![1, 4, 4, 3], vec![0.5; 48]))].into();
        let err = run(&graph, &feeds, &["bn".to_string()]).unwrap_err().to_string();
        assert!(err.starts_with("node `bn`"), "{err}");
        assert!(err.contains(expected), "{expected:?} not in {err}");
    }
}
