//! The stored TensorFlow fixtures are what the tests assume: every case's
//! arrays read as .npy, inputs match their placeholders' dtype and shape,
//! and outputs name nodes of the graph.

mod common;

use graphrw::Graph;
use graphrw::input::parse_tensor_name;
use graphrw::io::read_graph;
use graphrw::npy::{Array, Dtype};
use graphrw::proto::{attr_value, dtype_name};

#[test]
fn every_case_matches_its_graph() {
    for (dir, meta) in common::fixtures() {
        let graph = read_graph(&dir.join("model.pb"), None).unwrap();
        assert!(!meta.cases.is_empty(), "{}", meta.name);
        for name in &meta.training_placeholders {
            let id = graph.id(name).unwrap_or_else(|| panic!("{}: no node {name}", meta.name));
            assert!(graph.op(id).starts_with("Placeholder"), "{}: {name}", meta.name);
        }
        for case in &meta.cases {
            for (tensor, file) in &case.inputs {
                let (node, _) = parse_tensor_name(tensor).unwrap();
                let id = graph.id(node).expect("fed node exists");
                let array = Array::read(&dir.join(file)).unwrap();
                let attr = |key| graph.attr(id, key).unwrap().and_then(|a| a.value);
                let Some(attr_value::Value::Type(dtype)) = attr("dtype") else {
                    panic!("{}: {node} has no dtype", meta.name)
                };
                assert_eq!(dtype_name(dtype), dtype_name(array.dtype.to_tf() as i32));
                let Some(attr_value::Value::Shape(shape)) = attr("shape") else {
                    panic!("{}: {node} has no shape", meta.name)
                };
                let dims = shape.dims().unwrap();
                assert_eq!(dims.len(), array.shape.len(), "{}: {tensor}", meta.name);
                for (want, got) in dims.iter().zip(&array.shape) {
                    if let Some(want) = want {
                        assert_eq!(*want as usize, *got, "{}: {tensor}", meta.name);
                    }
                }
            }
            for (tensor, file) in &case.outputs {
                let (node, _) = parse_tensor_name(tensor).unwrap();
                assert!(graph.id(node).is_some(), "{}: output {node}", meta.name);
                let array = Array::read(&dir.join(file)).unwrap();
                assert_eq!(array.dtype, Dtype::F32);
                let values = array.to_f64();
                assert!(!values.is_empty() && values.iter().all(|v| v.is_finite()));
                // Outputs that are all one value would make comparisons weak.
                assert!(values.iter().any(|v| *v != values[0]), "{}: constant output", meta.name);
            }
        }
    }
}

#[test]
fn npy_round_trips_and_rejects_what_it_cannot_read() {
    let array = Array::from_f32(vec![2, 3], &[1.0, -2.5, 3.25, 0.0, f32::MAX, 1e-8]);
    let bytes = array.to_bytes();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    assert_eq!((bytes.len() - array.data.len()) % 64, 0, "data is 64-byte aligned");
    assert_eq!(Array::parse(&bytes).unwrap(), array);
    let scalar = Array { dtype: Dtype::Bool, shape: vec![], data: vec![1] };
    assert_eq!(Array::parse(&scalar.to_bytes()).unwrap(), scalar);
    let vector = Array { dtype: Dtype::I64, shape: vec![1], data: 7i64.to_le_bytes().to_vec() };
    assert_eq!(Array::parse(&vector.to_bytes()).unwrap().to_f64(), vec![7.0]);

    let header = |descr: &str, rest: &str| {
        let h = format!("{{'descr': '{descr}', 'fortran_order': {rest}, 'shape': (1,), }}\n");
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&[0; 4]);
        out
    };
    assert!(Array::parse(&header("<f4", "False")).is_ok());
    assert!(Array::parse(&header(">f4", "False")).unwrap_err().contains("big-endian"));
    assert!(Array::parse(&header("<f4", "True")).unwrap_err().contains("Fortran"));
    assert!(Array::parse(&header("<U4", "False")).unwrap_err().contains("not supported"));
    assert!(Array::parse(b"not an npy file").unwrap_err().contains("magic"));
    let mut short = header("<f4", "False");
    short.pop();
    assert!(Array::parse(&short).unwrap_err().contains("needs 4"));
}

#[test]
fn the_op_table_is_sorted_and_knows_multi_output_ops() {
    let one = |node: graphrw::proto::NodeDef| {
        Graph::from_def(&graphrw::proto::GraphDef { node: vec![node], ..Default::default() })
    };
    let names: Vec<&str> = graphrw::ops::OPS.iter().map(|o| o.name).collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "ops::OPS must be sorted and unique for binary search");
    for (op, outputs) in [
        ("Switch", 2),
        ("Merge", 2),
        ("FusedBatchNormV3", 6),
        ("FusedBatchNorm", 5),
        ("Conv2D", 1),
        ("NoOp", 0),
    ] {
        let node =
            graphrw::proto::NodeDef { name: "n".into(), op: op.into(), ..Default::default() };
        assert_eq!(graphrw::ops::num_outputs(&one(node), 0), Some(outputs), "{op}");
    }
    let mut split =
        graphrw::proto::NodeDef { name: "s".into(), op: "Split".into(), ..Default::default() };
    let unknown = graphrw::ops::num_outputs(&one(split.clone()), 0);
    assert_eq!(unknown, None, "unknown without num_split");
    split.attr.insert(
        "num_split".into(),
        graphrw::proto::AttrValue { value: Some(attr_value::Value::I(3)) },
    );
    assert_eq!(graphrw::ops::num_outputs(&one(split), 0), Some(3));
}

/// Function bodies name outputs `node:name:index`: every op of the table
/// with several outputs has one name for each, and the names give ports.
#[test]
fn the_op_table_names_the_outputs_of_multi_output_ops() {
    use graphrw::ops::{OPS, Outputs, named_outputs, output_port};
    for info in OPS {
        if let Outputs::Fixed(n) = info.outputs {
            if n > 1 {
                let names = named_outputs().find(|(op, _)| *op == info.name).map(|(_, n)| n);
                assert_eq!(names.map(<[_]>::len), Some(n as usize), "{}", info.name);
            }
        }
    }
    assert!(named_outputs().all(|(op, _)| graphrw::ops::lookup(op).is_some()));
    assert_eq!(output_port("FusedBatchNormV3", "y", 0), Some(0));
    assert_eq!(output_port("FusedBatchNormV3", "reserve_space_3", 0), Some(5));
    assert_eq!(output_port("FusedBatchNorm", "reserve_space_3", 0), None);
    assert_eq!(output_port("Switch", "output_true", 0), Some(1));
    assert_eq!(output_port("Switch", "output_true", 1), None);
    // One output (a tensor or a list): the index is the port, the name free.
    assert_eq!(output_port("Conv2D", "output", 0), Some(0));
    assert_eq!(output_port("Conv2D", "output", 1), None);
    assert_eq!(output_port("Split", "output", 2), Some(2));
    assert_eq!(output_port("NoOp", "output", 0), None);
    assert_eq!(output_port("NotAnOp", "output", 0), None);
}
