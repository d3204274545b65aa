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

#[test]
fn the_original_graphs_give_tensorflow_outputs() {
    let mut checked = 0;
    for (dir, meta) in common::fixtures() {
        if meta.graph.ops.contains_key("StatelessIf") {
            continue; // function calls: see the next test
        }
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
                assert!(err < 1e-5, "{} case {i} {name}: relative error {err:e}", meta.name);
                checked += 1;
            }
        }
    }
    assert!(checked >= 6, "checked {checked} outputs");
}

#[test]
fn an_unsupported_op_is_an_error_naming_it() {
    let dir = common::fixtures_dir().join("tf2_if");
    let graph = read_graph(&dir.join("model.pb"), None).unwrap();
    let mut feeds = HashMap::new();
    feeds.insert("x:0".to_string(), Tensor::f32(vec![1, 4], vec![1.0; 4]));
    let err = run(&graph, &feeds, &["Identity".to_string()]).unwrap_err();
    assert!(matches!(&err, EvalError::Unsupported { op, .. } if op == "StatelessIf"), "{err}");
    assert!(err.to_string().contains("StatelessIf"));
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
