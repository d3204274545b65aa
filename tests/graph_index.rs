//! The indexed graph, validation and pruning on small hand-built graphs,
//! one case per line.

use graphrw::graph::{Consumer, Edge, Graph, Port};
use graphrw::input::{InputRef, InputSyntaxError, parse_input};
use graphrw::proto::NodeDef;
use graphrw::prune::{default_outputs, prune, resolve_outputs};
use graphrw::validate::{Problem, topological_order, validate};

mod common;

use common::{Spec, graph_of as graph};

fn problems(nodes: &[Spec]) -> Vec<String> {
    validate(&graph(nodes)).iter().map(ToString::to_string).collect()
}

#[test]
fn input_strings_parse_in_one_place() {
    use InputRef::*;
    let ok = [
        ("x", Data { node: "x", port: 0 }),
        ("x:0", Data { node: "x", port: 0 }),
        ("scope/sw:1", Data { node: "scope/sw", port: 1 }),
        ("^a/b", Control { node: "a/b" }),
        ("bn/FusedBatchNormV3:5", Data { node: "bn/FusedBatchNormV3", port: 5 }),
    ];
    for (text, expected) in ok {
        assert_eq!(parse_input(text), Ok(expected), "{text}");
    }
    let bad = [
        ("", InputSyntaxError::Empty),
        ("^", InputSyntaxError::Empty),
        (":1", InputSyntaxError::Empty),
        ("x:", InputSyntaxError::BadPort("".into())),
        ("x:a", InputSyntaxError::BadPort("a".into())),
        ("x:-1", InputSyntaxError::BadPort("-1".into())),
        ("x:+1", InputSyntaxError::BadPort("+1".into())),
        ("^x:1", InputSyntaxError::ControlWithPort),
    ];
    for (text, expected) in bad {
        assert_eq!(parse_input(text), Err(expected), "{text}");
    }
    // Display gives the canonical form back.
    for text in ["x", "x:2", "^x"] {
        assert_eq!(parse_input(text).unwrap().to_string(), text);
    }
    assert_eq!(parse_input("x:0").unwrap().to_string(), "x");
    // `write_to` writes what Display does, `text_len` bytes of it.
    for input in [
        Data { node: "a/b", port: 0 },
        Data { node: "a/b", port: 7 },
        Data { node: "a", port: 10 },
        Data { node: "a", port: 4_294_967_295 },
        Control { node: "c" },
        Data { node: "", port: 0 },
    ] {
        let mut out = b"prefix".to_vec();
        input.write_to(&mut out);
        assert_eq!(out[6..], *input.to_string().as_bytes(), "{input}");
        assert_eq!(input.text_len(), out.len() - 6, "{input}");
    }
}

#[test]
fn index_finds_names_ops_inputs_and_consumers() {
    let g = graph(&[
        ("pred", "Placeholder", &[]),
        ("x", "Placeholder", &[]),
        ("sw", "Switch", &["x", "pred"]),
        ("t", "Identity", &["sw:1"]),
        ("f", "Identity", &["sw", "^t"]),
        ("m", "Merge", &["f", "t"]),
    ]);
    let id = |n: &str| g.id(n).unwrap();
    assert_eq!(g.nodes_with_op("Identity"), &[id("t"), id("f")]);
    assert_eq!(g.nodes_with_op("Conv2D"), &[] as &[u32]);
    assert_eq!(
        g.inputs(id("f")),
        &[Edge::new(Some(id("sw")), Port::Data(0)), Edge::new(Some(id("t")), Port::Control)]
    );
    assert_eq!(
        g.consumers(id("sw")),
        &[
            Consumer { node: id("t"), slot: 0, port: Port::Data(1) },
            Consumer { node: id("f"), slot: 0, port: Port::Data(0) },
        ]
    );
    let port1: Vec<_> = g.port_consumers(id("sw"), 1).map(|c| c.node).collect();
    assert_eq!(port1, vec![id("t")]);
    let control: Vec<_> = g.control_consumers(id("t")).map(|c| c.node).collect();
    assert_eq!(control, vec![id("f")]);
    assert_eq!(g.consumers(id("t")).len(), 2);
    assert!(g.consumers(id("m")).is_empty());
    assert_eq!(default_outputs(&g), vec![id("m")]);
    assert!(validate(&g).is_empty());
}

#[test]
fn validation_reports_each_problem_with_its_node() {
    let cases: &[(&[Spec], &[&str])] = &[
        (
            &[("a", "Const", &[]), ("a", "Const", &[])],
            &["node `a`: the name is used twice (nodes #0 and #1)"],
        ),
        (
            &[("a", "Const", &[]), ("b", "Identity", &["c"])],
            &["node `b`: input `c` names no node of the graph"],
        ),
        (
            &[("a", "Const", &[]), ("b", "Identity", &["a:x"])],
            &["node `b`: input `a:x` is malformed: `x` is not a port number"],
        ),
        (
            &[("p", "Placeholder", &[]), ("s", "Switch", &["p", "p"]), ("i", "Identity", &["s:2"])],
            &["node `i`: input `s:2` reads a port its producer lacks (Switch has 2 outputs)"],
        ),
        (
            &[("a", "Const", &[]), ("i", "Identity", &["a:1"])],
            &["node `i`: input `a:1` reads a port its producer lacks (Const has 1 output)"],
        ),
        (
            &[("a", "Const", &[]), ("b", "Const", &[]), ("add", "AddV2", &["^a", "b"])],
            &["node `add`: data input `b` comes after a control input"],
        ),
        (
            &[
                ("x", "Const", &[]),
                ("a", "AddV2", &["x", "c"]),
                ("b", "Relu", &["a"]),
                ("c", "Relu", &["b"]),
            ],
            &["node `a`: cycle a -> b -> c -> a"],
        ),
        (
            // A cycle through a control edge is still a cycle.
            &[("a", "NoOp", &["^b"]), ("b", "NoOp", &["^a"])],
            &["node `a`: cycle a -> b -> a"],
        ),
        // Ports of ops not in the table are not checked; 5 is V3's last port.
        (&[("a", "MyCustomOp", &[]), ("i", "Identity", &["a:7"])], &[]),
        (&[("bn", "FusedBatchNormV3", &[]), ("i", "Identity", &["bn:5"])], &[]),
    ];
    for (nodes, expected) in cases {
        assert_eq!(problems(nodes), *expected, "{nodes:?}");
    }
}

#[test]
fn tensorflow_loops_are_not_cycles() {
    // The shape of a tf.while_loop frame: Enter -> Merge <- NextIteration.
    let g = graph(&[
        ("init", "Const", &[]),
        ("enter", "Enter", &["init"]),
        ("merge", "Merge", &["enter", "next"]),
        ("limit", "Const", &[]),
        ("less", "Less", &["merge", "limit"]),
        ("cond", "LoopCond", &["less"]),
        ("switch", "Switch", &["merge", "cond"]),
        ("body", "Identity", &["switch:1"]),
        ("next", "NextIteration", &["body"]),
        ("exit", "Exit", &["switch"]),
    ]);
    assert_eq!(validate(&g), vec![]);
    let (order, complete) = topological_order(&g);
    assert!(complete);
    let pos = |n: &str| order.iter().position(|&id| id == g.id(n).unwrap()).unwrap();
    assert!(
        pos("enter") < pos("merge") && pos("merge") < pos("switch") && pos("body") < pos("next")
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let found = validate(&graph(&[
        ("a", "Const", &[]),
        ("a", "Const", &[]),
        ("b", "Identity", &["missing"]),
        ("c", "Identity", &["a:9"]),
    ]));
    let kinds: Vec<&str> = found
        .iter()
        .map(|p| match p {
            Problem::DuplicateName { .. } => "duplicate",
            Problem::MissingInput { .. } => "missing",
            Problem::NoSuchPort { .. } => "port",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["duplicate", "missing", "port"]);
}

#[test]
fn prune_keeps_what_outputs_reach_through_data_and_control() {
    let g = graph(&[
        ("x", "Placeholder", &[]),
        ("w", "Const", &[]),
        ("unused", "Const", &[]),
        ("init", "NoOp", &[]),
        ("mm", "MatMul", &["x", "w", "^init"]),
        ("dead_end", "Relu", &["mm"]),
        ("out", "Identity", &["mm"]),
    ]);
    let roots = resolve_outputs(&g, &["out:0"]).unwrap();
    let kept = prune(&g, &roots);
    let names: Vec<&str> = kept.ids().map(|id| kept.name(id)).collect();
    assert_eq!(names, ["x", "w", "init", "mm", "out"]);
}

#[test]
fn prune_defaults_to_nodes_nothing_consumes_and_keeps_the_rest_of_the_file() {
    let g = graph(&[("a", "Const", &[]), ("b", "Identity", &["a"]), ("c", "Const", &[])]);
    let mut def = g.to_def().unwrap();
    def.versions = Some(graphrw::proto::VersionDef {
        producer: 1234,
        min_consumer: 12,
        bad_consumers: vec![3],
    });
    let g = Graph::from_def(&def);
    let roots = default_outputs(&g);
    assert_eq!(roots, vec![1, 2]);
    let kept = prune(&g, &roots);
    let kept = kept.to_def().unwrap();
    assert_eq!(kept, def, "nothing to prune: the graph comes back unchanged");
}

#[test]
fn unknown_output_names_suggest_the_closest_node() {
    let g = graph(&[("backend/final_dense/MatMul", "MatMul", &[])]);
    let err = resolve_outputs(&g, &["backend/final_dense/Matmul"]).unwrap_err();
    assert_eq!(err.to_string(), "output `backend/final_dense/Matmul` names no node of the graph");
    assert_eq!(err.suggestion(), Some("did you mean `backend/final_dense/MatMul`?"));
    assert!(resolve_outputs(&g, &["zzz"]).unwrap_err().suggestion().is_none());
    for bad in [":1", "backend/final_dense/MatMul:", "^backend/final_dense/MatMul", "a:99999999999"]
    {
        assert_eq!(
            resolve_outputs(&g, &[bad]).unwrap_err().to_string(),
            format!("output `{bad}` is not a tensor name: write `node` or `node:N`")
        );
    }
    assert_eq!(
        resolve_outputs(&g, &["backend/final_dense/MatMul:1"]).unwrap_err().to_string(),
        "output `backend/final_dense/MatMul:1`: `backend/final_dense/MatMul` (MatMul) has 1 \
         output, so no port 1"
    );
}

#[test]
fn replacing_inputs_keeps_every_other_field_byte_for_byte() {
    use graphrw::proto::{AttrValue, attr_value::Value};
    use prost::Message;
    let mut node = NodeDef {
        name: "n".into(),
        op: "AddV2".into(),
        input: vec!["a".into(), "b:1".into(), "^c".into()],
        device: "/cpu:0".into(),
        ..Default::default()
    };
    node.attr.insert("T".into(), AttrValue { value: Some(Value::Type(1)) });
    let raw = node.encode_to_vec();
    let new_inputs = vec!["x".to_string(), "^y".to_string()];
    let edited = graphrw::wire::replace_inputs(&raw, &new_inputs).unwrap();
    let back = NodeDef::decode(edited.as_slice()).unwrap();
    assert_eq!(back, NodeDef { input: new_inputs.clone(), ..node.clone() });
    // Same field order as prost writes: the result is what encoding gives.
    assert_eq!(edited, NodeDef { input: new_inputs, ..node.clone() }.encode_to_vec());
    // A node without inputs gets them after its name and op.
    let bare = NodeDef { input: vec![], ..node.clone() }.encode_to_vec();
    let edited = graphrw::wire::replace_inputs(&bare, &["z".to_string()]).unwrap();
    assert_eq!(edited, NodeDef { input: vec!["z".into()], ..node }.encode_to_vec());
}

/// A graph of many encoded nodes is scanned on several threads: every node
/// keeps its place, name, op and inputs, and a malformed node is reported
/// by its position, the first one when there are several.
#[test]
fn many_encoded_nodes_are_scanned_in_order() {
    use bytes::Bytes;
    use prost::Message;
    let n = 40_000;
    let encoded = |i: usize| {
        let input =
            if i == 0 { vec![] } else { vec![format!("n{}", i - 1), format!("^n{}", i / 2)] };
        Bytes::from(
            NodeDef {
                name: format!("n{i}"),
                op: format!("Op{}", i % 7),
                input,
                ..Default::default()
            }
            .encode_to_vec(),
        )
    };
    let nodes: Vec<Bytes> = (0..n).map(encoded).collect();
    let g = Graph::from_nodes(nodes.clone(), vec![]).unwrap();
    assert_eq!(g.len(), n);
    for i in [0, 1, 16_383, 16_384, 20_000, 39_999] {
        let id = g.id(&format!("n{i}")).unwrap();
        assert_eq!(id as usize, i);
        assert_eq!(g.op(id), format!("Op{}", i % 7));
        let inputs: Vec<&str> = g.input_strs(id).collect();
        let expected: Vec<String> =
            if i == 0 { vec![] } else { vec![format!("n{}", i - 1), format!("^n{}", i / 2)] };
        assert_eq!(inputs, expected);
    }
    // Field 1 (the name) with wire type 0: not a string.
    let mut broken = nodes;
    broken[30_000] = Bytes::from_static(&[0x08, 0x01]);
    broken[35_000] = Bytes::from_static(&[0x08, 0x01]);
    let Err(err) = Graph::from_nodes(broken, vec![]) else { panic!("a malformed node") };
    assert!(err.to_string().contains("node #30000"), "{err}");
}

/// A function body names a tensor `node:output:index` (`node:output` for
/// index 0); an argument, a control input or a bad index is not one.
#[test]
fn function_body_outputs_are_parsed() {
    use graphrw::input::parse_body_output;
    assert_eq!(parse_body_output("bn:y:0"), Some(("bn", "y", 0)));
    assert_eq!(parse_body_output("split:output:2"), Some(("split", "output", 2)));
    assert_eq!(parse_body_output("a/b:z"), Some(("a/b", "z", 0)));
    for not_one in ["arg_x", "^node", "n:o:", "n:o:1x", "n:o:-1", "n:o:9999999999"] {
        assert_eq!(parse_body_output(not_one), None, "{not_one}");
    }
}
