//! The rule engine on small hand-built graphs, one capability per test.

use bytes::Bytes;
use graphrw::Graph;
use graphrw::proto::{AttrValue, DataType, GraphDef, NodeDef, attr_value::Value};
use graphrw::rules::compile::{RuleSet, compile};
use graphrw::rules::engine::{ApplyError, Options, Report, apply, rewrite};
use graphrw::rules::load::load_text;
use graphrw::tensor::{Array, from_proto, to_proto};

/// A node: name, op, inputs, attributes.
fn node(name: &str, op: &str, inputs: &[&str], attrs: &[(&str, Value)]) -> NodeDef {
    NodeDef {
        name: name.into(),
        op: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        attr: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), AttrValue { value: Some(v.clone()) }))
            .collect(),
        ..Default::default()
    }
}

fn float() -> Value {
    Value::Type(DataType::DtFloat as i32)
}

fn constant(name: &str, shape: Vec<usize>, values: &[f64], dtype: DataType) -> NodeDef {
    let tensor = to_proto(&Array { shape, data: values.to_vec() }, dtype).unwrap();
    node(
        name,
        "Const",
        &[],
        &[("dtype", Value::Type(dtype as i32)), ("value", Value::Tensor(tensor))],
    )
}

fn graph(nodes: Vec<NodeDef>) -> Graph {
    Graph::from_def(&GraphDef { node: nodes, ..Default::default() })
}

fn rules(text: &str, sets: &[(&str, &str)]) -> RuleSet {
    let loaded = load_text("test.rules", text);
    let sets: Vec<(String, String)> =
        sets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    match compile(&loaded, &sets) {
        Ok(rules) => rules,
        Err(diags) => panic!("{}", diags.iter().map(|d| d.render(80)).collect::<String>()),
    }
}

/// Applies the rules, and checks that the bytes `graphrw apply` writes
/// (straight from the engine's copy) are those of the graph built.
fn run(g: &Graph, text: &str) -> (Graph, Report) {
    let (rewritten, report) =
        rewrite(g, &rules(text, &[]), &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let built = rewritten.to_graph();
    let (mut written, mut encoded) = (Vec::new(), Vec::new());
    rewritten.encode(&mut written).unwrap();
    built.encode(&mut encoded).unwrap();
    assert!(written == encoded, "written out, the bytes of the graph built");
    (built, report)
}

/// `name: op(inputs)` for every node, in order.
fn shape_of(g: &Graph) -> Vec<String> {
    g.ids()
        .map(|id| {
            format!(
                "{}: {}({})",
                g.name(id),
                g.op(id),
                g.input_strs(id).collect::<Vec<_>>().join(", ")
            )
        })
        .collect()
}

fn fired(report: &Report, rule: &str) -> usize {
    report.fired.iter().find(|f| f.0 == rule).map_or(0, |f| f.1)
}

#[test]
fn replacing_by_a_tensor_rewires_consumers_and_moves_control_edges() {
    let g = graph(vec![
        node("x", "Placeholder", &[], &[("dtype", float())]),
        node("y", "Placeholder", &[], &[("dtype", float())]),
        node("m", "Merge", &["x", "y"], &[("T", float())]),
        node("a", "Relu", &["m"], &[]),
        node("b", "NoOp", &["^m"], &[]),
        node("out", "Identity", &["a", "^b"], &[]),
    ]);
    let (g, report) = run(&g, "rule merge_first: Merge(a, _) => a");
    assert_eq!(fired(&report, "merge_first"), 1);
    assert_eq!(
        shape_of(&g),
        ["x: Placeholder()", "a: Relu(x)", "b: NoOp(^x)", "out: Identity(a, ^b)"],
        "the control edge to m moved to x, the producer of its replacement; y and m are gone"
    );
}

#[test]
fn each_output_port_is_replaced_separately() {
    let g = graph(vec![
        node("x", "Placeholder", &[], &[]),
        node("p", "Placeholder", &[], &[]),
        node("scope/pred_id", "Identity", &["p"], &[]),
        node("sw", "Switch", &["x", "scope/pred_id"], &[]),
        node("f", "Relu", &["sw"], &[]),
        node("t", "Tanh", &["sw:1"], &[]),
        node("out", "AddV2", &["f", "t"], &[]),
    ]);
    let text = r#"rule switch_data: Switch(x, p) where name(p) ~ "*/pred_id" => [x, x]"#;
    let (g, _) = run(&g, text);
    assert_eq!(shape_of(&g), ["x: Placeholder()", "f: Relu(x)", "t: Tanh(x)", "out: AddV2(f, t)"]);
    // The glob must match: another predicate name leaves the Switch alone.
    let text = r#"rule switch_data: Switch(x, p) where name(p) ~ "*/other" => [x, x]"#;
    let (g2, report) = run(&g, text);
    assert_eq!(fired(&report, "switch_data"), 0);
    assert_eq!(g2.len(), g.len());
}

/// TensorFlow's cond with a constant predicate: the untaken branch is dead,
/// deadness flows through it, Merge forwards the live input.
fn cond_graph(pred: NodeDef) -> Graph {
    graph(vec![
        node("x", "Placeholder", &[], &[("dtype", float())]),
        pred,
        node("cond/Switch", "Switch", &["x", "pred"], &[("T", float())]),
        node("cond/true", "Relu", &["cond/Switch:1"], &[]),
        node("cond/true2", "Tanh", &["cond/true"], &[]),
        node("cond/false", "Identity", &["cond/Switch"], &[]),
        node(
            "cond/Merge",
            "Merge",
            &["cond/false", "cond/true2"],
            &[("T", float()), ("N", Value::I(2))],
        ),
        node("out", "Identity", &["cond/Merge"], &[]),
    ])
}

const DEAD_RULES: &str = r#"
rule switch_false: Switch(x, Const{value: false}) => [x, dead]
rule switch_true: Switch(x, Const{value: true}) => [dead, x]
rule merge_live_first: Merge(x, dead) => [x, 0]
rule merge_live_second: Merge(dead, x) => [x, 1]
"#;

#[test]
fn dead_tensors_fold_a_constant_cond_soundly() {
    let pred = constant("pred", vec![], &[0.0], DataType::DtBool);
    let (g, report) = run(&cond_graph(pred), DEAD_RULES);
    assert_eq!(fired(&report, "switch_false"), 1);
    assert_eq!(fired(&report, "merge_live_first"), 1);
    assert_eq!(
        shape_of(&g),
        ["x: Placeholder()", "cond/false: Identity(x)", "out: Identity(cond/false)"]
    );

    let pred = constant("pred", vec![], &[1.0], DataType::DtBool);
    let (g, report) = run(&cond_graph(pred), DEAD_RULES);
    assert_eq!(fired(&report, "merge_live_second"), 1);
    assert_eq!(
        shape_of(&g),
        [
            "x: Placeholder()",
            "cond/true: Relu(x)",
            "cond/true2: Tanh(cond/true)",
            "out: Identity(cond/true2)"
        ]
    );
}

#[test]
fn a_data_dependent_cond_stays() {
    let pred = node("pred", "Placeholder", &[], &[("dtype", Value::Type(DataType::DtBool as i32))]);
    let g = cond_graph(pred);
    let (after, report) = run(&g, DEAD_RULES);
    assert!(report.fired.iter().all(|f| f.1 == 0));
    assert_eq!(shape_of(&after), shape_of(&g));
}

#[test]
fn a_merge_with_dead_inputs_only_is_dead_and_a_dead_output_is_an_error() {
    let pred = constant("pred", vec![], &[0.0], DataType::DtBool);
    let mut g = cond_graph(pred).to_def().unwrap();
    // Make the output read the true branch only.
    g.node.last_mut().unwrap().input = vec!["cond/true2".into()];
    let err =
        apply(&Graph::from_def(&g), &rules(DEAD_RULES, &[]), &Options::default()).unwrap_err();
    assert!(matches!(&err, ApplyError::DeadOutput { output, .. } if output == "out"), "{err}");
}

#[test]
fn new_nodes_take_the_root_name_or_a_unique_derived_one() {
    let g = graph(vec![
        node("x", "Placeholder", &[], &[("dtype", float())]),
        node("w", "Placeholder", &[], &[("dtype", float())]),
        node(
            "conv",
            "Conv2D",
            &["x", "w"],
            &[("T", float()), ("padding", Value::S(Bytes::from_static(b"SAME")))],
        ),
        node("act", "Relu", &["conv"], &[("T", float())]),
        node("out", "Identity", &["act"], &[]),
    ]);
    let text = "rule split: a = Relu(c: Conv2D) => Relu{T: a.T}(Neg{T: a.T}(Neg{T: a.T}(c)))";
    let (g, _) = run(&g, text);
    assert_eq!(
        shape_of(&g),
        [
            "x: Placeholder()",
            "w: Placeholder()",
            "conv: Conv2D(x, w)",
            "act/split/neg: Neg(conv)",
            "act/split/neg_1: Neg(act/split/neg)",
            "act: Relu(act/split/neg_1)",
            "out: Identity(act)",
        ]
    );
    let id = g.id("act/split/neg").unwrap();
    assert_eq!(g.attr(id, "T").unwrap(), Some(AttrValue { value: Some(float()) }));
}

#[test]
fn graph_outputs_are_protected() {
    let g = graph(vec![node("x", "Placeholder", &[], &[]), node("out", "Identity", &["x"], &[])]);
    let (after, report) = run(&g, "rule drop_identity: Identity(x) => x");
    assert_eq!(fired(&report, "drop_identity"), 0);
    assert_eq!(shape_of(&after), shape_of(&g));
    assert!(
        report.warnings.iter().any(|w| w.contains("`out`: it is a graph output")),
        "{:?}",
        report.warnings
    );
    // Named outputs are protected the same way.
    let g = graph(vec![
        node("x", "Placeholder", &[], &[]),
        node("mid", "Identity", &["x"], &[]),
        node("out", "Relu", &["mid"], &[]),
    ]);
    let options = Options { outputs: vec!["mid:0".into(), "out".into()], ..Options::default() };
    let (after, _) =
        apply(&g, &rules("rule drop_identity: Identity(x) => x", &[]), &options).unwrap();
    assert!(after.id("mid").is_some());
    // An output replaced by a node that takes its name stays the output in
    // later rounds: still protected, still kept.
    let g = graph(vec![
        node("x", "Placeholder", &[], &[]),
        node("out", "Relu", &["x"], &[]),
        node("side", "Relu", &["x"], &[]),
    ]);
    let text = "rule six: Relu(x) => Relu6(x)\nrule drop: Relu6(x) => x";
    let options = Options { outputs: vec!["out".into()], ..Options::default() };
    let (after, report) = apply(&g, &rules(text, &[]), &options).unwrap();
    assert_eq!(fired(&report, "six"), 2);
    assert_eq!(fired(&report, "drop"), 0);
    assert!(
        report.warnings.iter().any(|w| w.contains("`out`: it is a graph output")),
        "{:?}",
        report.warnings
    );
    assert_eq!(shape_of(&after), ["x: Placeholder()", "out: Relu6(x)"]);
}

/// A node many read: counts of its readers per port, and whether anything
/// still reads it once most of its readers are gone, come out as for a
/// node few read (the engine keeps the first and steps past lost readers).
#[test]
fn nodes_many_read_are_counted_by_port_and_kept_while_read() {
    let n = 100;
    let mut nodes = vec![
        node("x", "Placeholder", &[], &[]),
        constant("p", vec![], &[0.0], DataType::DtBool),
        node("s", "Switch", &["x", "p"], &[]),
        constant("c", vec![], &[2.0], DataType::DtFloat),
    ];
    let names = |prefix: &'static str| (0..n).map(move |k| format!("{prefix}{k}"));
    for (a, b) in names("i").zip(names("r")) {
        nodes.push(node(&a, "Identity", &["c"], &[]));
        nodes.push(node(&b, "Relu", &[&a], &[]));
    }
    for reader in names("a") {
        nodes.push(node(&reader, "Sqrt", &["s"], &[]));
    }
    for reader in ["b0", "b1", "b2"] {
        nodes.push(node(reader, "Sqrt", &["s:1"], &[]));
    }
    // Read last: the one reader of `c` left once the Identities fold.
    nodes.push(node("keep", "Neg", &["c"], &[]));
    let g = graph(nodes);
    let text = "rule few: Sqrt(t) where consumers(t) < 10 => Abs(t)
rule fold: Identity(c: Const) where consumers(c) > 1 => c";
    let (after, report) = apply(&g, &rules(text, &[]), &Options::default()).unwrap();
    assert_eq!(fired(&report, "few"), 3, "the readers of port 1 alone");
    assert_eq!(fired(&report, "fold"), n);
    assert_eq!(after.op(after.id("b2").unwrap()), "Abs");
    assert_eq!(after.op(after.id("a0").unwrap()), "Sqrt");
    assert!(after.id("i0").is_none());
    let keep = after.id("keep").unwrap();
    assert_eq!(after.input_strs(keep).collect::<Vec<_>>(), ["c"]);
    let r = after.id("r7").unwrap();
    assert_eq!(after.input_strs(r).collect::<Vec<_>>(), ["c"]);
    // Its readers replaced by nodes that do not read it: kept while its
    // last reader is, gone with it.
    let cut = rules("rule cut: Identity(c: Const) => Const{dtype: DT_FLOAT, value: 1.0}()", &[]);
    let (after, report) = apply(&g, &cut, &Options::default()).unwrap();
    assert_eq!(fired(&report, "cut"), n);
    assert!(after.id("c").is_some());
    let mut without_keep = g.to_def().unwrap();
    without_keep.node.retain(|node| node.name != "keep");
    let (after, _) = apply(&graph(without_keep.node), &cut, &Options::default()).unwrap();
    assert!(after.id("c").is_none(), "read by nothing, `c` is pruned");
    assert!(after.id("r0").is_some());
}

#[test]
fn a_rule_that_never_ends_hits_the_cap_and_names_itself() {
    let g = graph(vec![
        node("x", "Placeholder", &[], &[]),
        node("r", "Relu", &["x"], &[]),
        node("out", "Identity", &["r"], &[]),
    ]);
    let options = Options { max_rewrites: Some(10), ..Options::default() };
    let err = apply(&g, &rules("rule forever: Relu(x) => Relu(x)", &[]), &options).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ApplyError::Cap { .. }), "{text}");
    assert!(text.contains("`forever` fired 11 times, on r"), "{text}");
    // Rules that fired as often are named in rule order, every time.
    let g = graph(vec![
        node("x", "Placeholder", &[], &[]),
        node("t", "Tanh", &["x"], &[]),
        node("r", "Relu", &["t"], &[]),
        node("out", "Identity", &["r"], &[]),
    ]);
    let both = rules("rule b: Tanh(x) => Tanh(x)\nrule a: Relu(x) => Relu(x)", &[]);
    for _ in 0..8 {
        let text = apply(&g, &both, &options).unwrap_err().to_string();
        let (b, a) = (text.find("`b` fired 6 times"), text.find("`a` fired 6 times"));
        assert!(b.is_some() && a.is_some() && b < a, "{text}");
    }
}

/// A boolean flag named `phase` (a PlaceholderWithDefault) that an
/// Identity reads.
fn phase_flag_graph() -> Graph {
    graph(vec![
        node(
            "phase",
            "PlaceholderWithDefault",
            &["d"],
            &[("dtype", Value::Type(DataType::DtBool as i32))],
        ),
        node("d", "Const", &[], &[]),
        node("out", "Identity", &["phase"], &[]),
    ])
}

#[test]
fn parameters_have_defaults_and_can_be_set() {
    let g = phase_flag_graph();
    let text = r#"
param flag = ["training", "is_training"]
rule lock: t = PlaceholderWithDefault{dtype: DT_BOOL}(...) where name(t) in flag
    => Const{dtype: DT_BOOL, value: false}()
"#;
    let (_, report) = apply(&g, &rules(text, &[]), &Options::default()).unwrap();
    assert_eq!(fired(&report, "lock"), 0, "`phase` is not among the default names");
    let (after, report) =
        apply(&g, &rules(text, &[("flag", "phase")]), &Options::default()).unwrap();
    assert_eq!(fired(&report, "lock"), 1);
    let id = after.id("phase").unwrap();
    assert_eq!(after.op(id), "Const");
    let Some(AttrValue { value: Some(Value::Tensor(t)) }) = after.attr(id, "value").unwrap() else {
        panic!()
    };
    assert_eq!(from_proto(&t).unwrap().data, vec![0.0]);
    let err = compile(&load_text("t.rules", text), &[("nope".into(), "x".into())]).unwrap_err();
    assert!(err[0].to_string().contains("--set nope"));
}

#[test]
fn set_values_are_read_as_their_parameters_kind() {
    let text = r#"
param flag = ["training"]
param eps = 0.001
param strict = true
param t = DT_FLOAT
rule lock: p = PlaceholderWithDefault{dtype: DT_BOOL}(...) where name(p) in flag
    => Const{dtype: DT_BOOL, value: false}()
"#;
    let set = |name: &str, value: &str| {
        compile(&load_text("t.rules", text), &[(name.into(), value.into())]).err().map(|diags| {
            assert_eq!(diags.len(), 1);
            diags[0].render(200)
        })
    };
    for (name, value) in
        [("flag", "a,b"), ("flag", "phase"), ("eps", "1e-5"), ("strict", "false"), ("t", "DT_HALF")]
    {
        assert_eq!(set(name, value), None, "--set {name}={value}");
    }
    for (name, value, problem) in [
        ("flag", "", "the value is empty"),
        ("flag", "a,,b", "the value is empty"),
        ("eps", "small", "`small` is not a number"),
        ("strict", "yes", "`yes` is not `true` or `false`"),
        ("t", "float", "`float` is not a dtype"),
    ] {
        let shown = set(name, value).unwrap_or_else(|| panic!("--set {name}={value} accepted"));
        assert!(shown.contains(&format!("--set {name}={value}: {problem}")), "{shown}");
        assert!(shown.contains(&format!("`{name}` defaults to")), "{shown}");
    }
    // A list given as several names locks a flag under any of them.
    let g = phase_flag_graph();
    let (_, report) =
        apply(&g, &rules(text, &[("flag", "mode, phase")]), &Options::default()).unwrap();
    assert_eq!(fired(&report, "lock"), 1);
}

#[test]
fn attribute_constraints_bindings_and_computed_constants() {
    let g = graph(vec![
        node("x", "Placeholder", &[], &[("dtype", float())]),
        constant("w", vec![2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], DataType::DtDouble),
        constant("s", vec![3], &[10.0, 100.0, 1000.0], DataType::DtDouble),
        node("m", "Mul", &["w", "s"], &[("T", Value::Type(DataType::DtDouble as i32))]),
        node(
            "bn",
            "Scale",
            &["x", "m"],
            &[("eps", Value::F(0.5)), ("is_training", Value::B(false))],
        ),
        node("out", "Identity", &["bn", "m"], &[]),
    ]);
    let text = r#"
rule fold_mul: Mul(a: Const, b: Const) => const(a * b + 1)
rule scale_eps: n = Scale{is_training: false, eps: e}(x, c: Const) => Mul(x, const(c * e))
"#;
    let (after, report) = run(&g, text);
    assert_eq!(fired(&report, "fold_mul"), 1);
    assert_eq!(fired(&report, "scale_eps"), 1);
    let m = after.id("m").unwrap();
    assert_eq!(after.op(m), "Const");
    let Some(AttrValue { value: Some(Value::Tensor(t)) }) = after.attr(m, "value").unwrap() else {
        panic!()
    };
    assert_eq!(
        t.dtype,
        DataType::DtDouble as i32,
        "stored in the dtype of the constants it replaces"
    );
    let v = from_proto(&t).unwrap();
    assert_eq!(v.shape, vec![2, 3]);
    assert_eq!(v.data, vec![11.0, 201.0, 3001.0, 41.0, 501.0, 6001.0]);
    // The second rule saw the folded constant in the next round.
    let bn = after.id("bn").unwrap();
    assert_eq!(after.op(bn), "Mul");
    let c = after.input_str(bn, 1).to_string();
    let c = after.id(&c).unwrap();
    let Some(AttrValue { value: Some(Value::Tensor(t)) }) = after.attr(c, "value").unwrap() else {
        panic!()
    };
    assert_eq!(from_proto(&t).unwrap().data, vec![5.5, 100.5, 1500.5, 20.5, 250.5, 3000.5]);
}

/// Constants read several times, by two computed constants of one patch,
/// each get their own values on every read (the patch decodes each once).
#[test]
fn constants_read_again_keep_their_values() {
    let g = graph(vec![
        constant("a", vec![3], &[1.0, 2.0, 3.0], DataType::DtDouble),
        constant("b", vec![3], &[10.0, 20.0, 30.0], DataType::DtDouble),
        constant("c", vec![], &[0.5], DataType::DtDouble),
        node("m", "Pair", &["a", "b", "c"], &[]),
        node("out", "Identity", &["m", "m:1"], &[]),
    ]);
    let text = "rule pair: Pair(a: Const, b: Const, c: Const) => \
        [const(a * b - a + c), const(b * c - (b + a) * a * c - a)]";
    let (after, report) = run(&g, text);
    assert_eq!(fired(&report, "pair"), 1);
    let value = |name: &str| {
        let id = after.id(name).unwrap();
        let Some(AttrValue { value: Some(Value::Tensor(t)) }) = after.attr(id, "value").unwrap()
        else {
            panic!("{name} is no constant")
        };
        from_proto(&t).unwrap().data
    };
    let (a, b, c) = ([1.0, 2.0, 3.0], [10.0, 20.0, 30.0], 0.5);
    let first: Vec<f64> = (0..3).map(|i| a[i] * b[i] - a[i] + c).collect();
    let second: Vec<f64> = (0..3).map(|i| b[i] * c - (b[i] + a[i]) * a[i] * c - a[i]).collect();
    assert_eq!(value("m"), first);
    let out = after.id("out").unwrap();
    let second_name = after.input_str(out, 1).to_string();
    assert_eq!(value(&second_name), second);
}

#[test]
fn a_constant_whose_shapes_do_not_fit_fails_the_match_with_a_reason() {
    let g = graph(vec![
        constant("a", vec![2], &[1.0, 2.0], DataType::DtFloat),
        constant("b", vec![3], &[1.0, 2.0, 3.0], DataType::DtFloat),
        node("m", "Mul", &["a", "b"], &[]),
        node("out", "Identity", &["m"], &[]),
    ]);
    let (after, report) = run(&g, "rule fold: Mul(a: Const, b: Const) => const(a * b)");
    assert_eq!(fired(&report, "fold"), 0);
    assert_eq!(shape_of(&after), shape_of(&g));
    assert!(
        report.warnings.iter().any(|w| w.contains("do not broadcast")),
        "{:?}",
        report.warnings
    );
}

/// A refused match is reported once, though later rounds try it again:
/// here every round changes most of the graph, so every node is tried in
/// each, the refused fold too.
#[test]
fn a_match_refused_in_every_round_is_reported_once() {
    let mut nodes = vec![
        node("x", "Placeholder", &[], &[]),
        constant("a", vec![2], &[1.0, 2.0], DataType::DtFloat),
        constant("b", vec![3], &[1.0, 2.0, 3.0], DataType::DtFloat),
        node("m", "Mul", &["a", "b"], &[]),
        node("m_out", "Identity", &["m"], &[]),
    ];
    for i in 0..40 {
        nodes.push(node(&format!("act_{i}"), "Relu", &["x"], &[]));
        nodes.push(node(&format!("out_{i}"), "Identity", &[&format!("act_{i}")], &[]));
    }
    let text = "
        rule fold: Mul(a: Const, b: Const) => const(a * b)
        rule sigmoid: Relu(x) => Sigmoid(x)
        rule tanh: Sigmoid(x) => Tanh(x)
        rule abs: Tanh(x) => Abs(x)";
    let (after, report) = run(&graph(nodes), text);
    assert_eq!((report.rounds, fired(&report, "abs")), (3, 40));
    assert_eq!(after.nodes_with_op("Abs").len(), 40);
    let refused: Vec<&String> =
        report.warnings.iter().filter(|w| w.contains("do not broadcast")).collect();
    assert_eq!(refused.len(), 1, "{:?}", report.warnings);
}

/// The report says what each round did: a chain of Identities of a
/// constant folds one Identity a round (each sees a Const only once the one
/// below it is gone), a Relu turned into a Sigmoid in the first round and
/// into a Tanh in the second; the round that finds nothing is not listed.
#[test]
fn each_round_is_reported() {
    let g = graph(vec![
        constant("c", vec![1], &[1.0], DataType::DtFloat),
        node("i1", "Identity", &["c"], &[]),
        node("i2", "Identity", &["i1"], &[]),
        node("i3", "Identity", &["i2"], &[]),
        node("r", "Relu", &["i3"], &[]),
        node("out", "Identity", &["r"], &[]),
    ]);
    let text = "
        rule fold: Identity(c: Const) => c
        rule sigmoid: Relu(x) => Sigmoid(x)
        rule tanh: Sigmoid(x) => Tanh(x)";
    let (after, report) = run(&g, text);
    assert_eq!(shape_of(&after), ["c: Const()", "r: Tanh(c)", "out: Identity(r)"]);
    assert_eq!(report.rounds, 3);
    let rounds: Vec<(Vec<(&str, usize)>, usize)> = report
        .per_round
        .iter()
        .map(|r| (r.fired.iter().map(|(name, n)| (name.as_str(), *n)).collect(), r.nodes_after))
        .collect();
    assert_eq!(
        rounds,
        [
            (vec![("fold", 1), ("sigmoid", 1)], 5),
            (vec![("fold", 1), ("tanh", 1)], 4),
            (vec![("fold", 1)], 3),
        ]
    );
    // The first round tries every node a rule may be rooted at: the four
    // Identities and the Relu.
    assert_eq!(report.per_round[0].candidates, 5);
    for round in &report.per_round {
        assert!(round.candidates >= 1 && round.candidates <= 6, "{round:?}");
        for seconds in [round.find, round.apply, round.settle, round.check] {
            assert!(seconds >= 0.0 && seconds <= report.seconds, "{round:?}");
        }
    }
}

/// A constant a rule built is written under its name, and so is a copy of
/// it a later round makes (its bytes hold the original's name).
#[test]
fn a_copy_of_a_built_constant_has_its_own_name() {
    let g = graph(vec![
        constant("a", vec![2], &[1.0, 2.0], DataType::DtFloat),
        constant("b", vec![2], &[3.0, 4.0], DataType::DtFloat),
        node("m", "Mul", &["a", "b"], &[]),
        node("r", "Relu", &["m"], &[]),
        node("out", "Identity", &["r"], &[]),
    ]);
    let text = "
        rule fold: Mul(a: Const, b: Const) => const(a * b)
        rule copy: Relu(c = Const()) => Neg(c())";
    let (after, report) = run(&g, text);
    assert_eq!((report.rounds, fired(&report, "fold"), fired(&report, "copy")), (2, 1, 1));
    assert_eq!(shape_of(&after), ["r/copy/m: Const()", "r: Neg(r/copy/m)", "out: Identity(r)"]);
    let mut bytes = Vec::new();
    after.encode(&mut bytes).unwrap();
    let read = Graph::from_bytes(Bytes::from(bytes)).unwrap();
    assert_eq!(shape_of(&read), shape_of(&after));
    let value = |name: &str| {
        let id = read.id(name).unwrap();
        let Some(AttrValue { value: Some(Value::Tensor(t)) }) = read.attr(id, "value").unwrap()
        else {
            panic!("{name} has no tensor");
        };
        from_proto(&t).unwrap().data
    };
    assert_eq!(value("r/copy/m"), [3.0, 8.0]);
}

#[test]
fn alternation_producers_sharing_copies_and_guards() {
    let g = graph(vec![
        node("x", "Placeholder", &[], &[]),
        node("y", "Placeholder", &[], &[]),
        node("same", "AddV2", &["x", "x"], &[]),
        node("diff", "AddV2", &["x", "y"], &[]),
        node("r6", "Relu6", &["same"], &[]),
        node("r", "Relu", &["diff"], &[]),
        node("out", "Pack", &["r6", "r"], &[]),
    ]);
    let text = r#"
# `x` twice: only an add of a tensor with itself.
rule double: AddV2(x, x) => Mul(x, 2)
# Copy the matched activation with a new input; alternation of ops.
rule wrap: act = (Relu|Relu6)(a: Mul) where consumers(a) == 1 => act(Neg(a))
"#;
    let (after, report) = run(&g, text);
    assert_eq!(fired(&report, "double"), 1);
    assert_eq!(fired(&report, "wrap"), 1);
    let shape = shape_of(&after);
    assert!(shape.contains(&"same: Mul(x, same/double/const)".to_string()), "{shape:?}");
    assert!(shape.contains(&"r6: Relu6(r6/wrap/neg)".to_string()), "{shape:?}");
    assert!(shape.contains(&"diff: AddV2(x, y)".to_string()), "{shape:?}");
}

#[test]
fn control_inputs_are_ignored_unless_named() {
    let g = graph(vec![
        node("x", "Placeholder", &[], &[]),
        node("init", "NoOp", &[], &[]),
        node("i", "Identity", &["x", "^init"], &[]),
        node("out", "Relu", &["i"], &[]),
    ]);
    // Matching ignores the control input...
    let (after, _) = run(&g, "rule id: Identity(x) => x");
    assert_eq!(shape_of(&after), ["x: Placeholder()", "out: Relu(x)"]);
    // ...and binds it when the pattern names one.
    let (after, _) = run(&g, "rule keep_ctl: Identity(x, ^c) => StopGradient(x, ^c)");
    assert_eq!(
        shape_of(&after),
        ["x: Placeholder()", "init: NoOp()", "i: StopGradient(x, ^init)", "out: Relu(i)"]
    );
}

#[test]
fn a_rule_that_breaks_the_graph_is_refused_by_name() {
    let g = graph(vec![
        node("x", "Placeholder", &[], &[]),
        node("n", "Identity", &["x"], &[]),
        node("out", "Relu", &["n"], &[]),
    ]);
    let err =
        apply(&g, &rules("rule loop: n = Identity(_) => Identity(n)", &[]), &Options::default())
            .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ApplyError::Invalid { .. }), "{text}");
    assert!(text.contains("`loop`") && text.contains("cycle"), "{text}");
}

#[test]
fn rule_order_is_priority() {
    let g = graph(vec![
        node("x", "Placeholder", &[], &[]),
        node("i", "Identity", &["x"], &[]),
        node("out", "Relu", &["i"], &[]),
    ]);
    let (after, report) =
        run(&g, "rule first: Identity(x) => Neg(x)\nrule second: Identity(x) => Abs(x)");
    assert_eq!(fired(&report, "first"), 1);
    assert_eq!(fired(&report, "second"), 0);
    assert_eq!(after.op(after.id("i").unwrap()), "Neg");
}

#[test]
fn a_root_an_earlier_match_could_not_keep_goes_to_the_next_rule_in_the_same_round() {
    // `inner` takes the Identity first, so `outer`'s match at the Neg (which
    // holds that Identity) is refused; `plain`, the next rule for Neg, takes
    // the Neg in the same round.
    let g = graph(vec![
        node("x", "Placeholder", &[], &[]),
        node("i", "Identity", &["x"], &[]),
        node("n", "Neg", &["i"], &[]),
        node("out", "Relu", &["n"], &[]),
    ]);
    let (after, report) = run(
        &g,
        "rule inner: Identity(x) => x\n\
         rule outer: Neg(Identity(x)) => Square(x)\n\
         rule plain: Neg(y) => Abs(y)",
    );
    assert_eq!(report.rounds, 1);
    assert_eq!((fired(&report, "inner"), fired(&report, "outer")), (1, 0));
    assert_eq!(fired(&report, "plain"), 1);
    assert_eq!(shape_of(&after), ["x: Placeholder()", "n: Abs(x)", "out: Relu(n)"]);
}
#[test]
fn imports_are_expanded_in_place_and_relative() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("lib")).unwrap();
    std::fs::write(dir.path().join("lib/ids.rules"), "rule drop_ids: Identity(x) => x\n").unwrap();
    std::fs::write(
        dir.path().join("main.rules"),
        "import \"lib/ids.rules\"\nimport \"merge\"\nrule after: Identity(x) => Neg(x)\n",
    )
    .unwrap();
    let loaded = graphrw::rules::load::load(&[graphrw::rules::load::Origin::Path(
        dir.path().join("main.rules"),
    )]);
    let names: Vec<&str> = loaded.rules.iter().map(|r| r.rule.name.name.as_str()).collect();
    assert_eq!(names, ["drop_ids", "merge_first_input", "after"]);
    let set = compile(&loaded, &[]).unwrap();
    let g = graph(vec![
        node("x", "Placeholder", &[], &[]),
        node("i", "Identity", &["x"], &[]),
        node("out", "Relu", &["i"], &[]),
    ]);
    let (_, report) = apply(&g, &set, &Options::default()).unwrap();
    assert_eq!(fired(&report, "drop_ids"), 1, "the imported rule comes first");
}

#[test]
fn no_prune_keeps_unreachable_nodes() {
    let g = graph(vec![
        node("x", "Placeholder", &[], &[]),
        node("y", "Placeholder", &[], &[]),
        node("m", "Merge", &["x", "y"], &[]),
        node("out", "Relu", &["m"], &[]),
    ]);
    let options = Options { prune: false, ..Options::default() };
    let (after, _) = apply(&g, &rules("rule m: Merge(a, _) => a", &[]), &options).unwrap();
    assert_eq!(shape_of(&after), ["x: Placeholder()", "y: Placeholder()", "out: Relu(x)"]);
}

/// The first round prunes what no output reaches: by following lost
/// readers when the input shows that every node reached an output (inputs
/// listed first, every unread node an output), by a walk from the outputs
/// otherwise. Either way the same nodes go: an unread node that is not an
/// output, a cycle no output reads, inputs listed after their readers. When
/// no rule fires, what the outputs do not reach goes all the same.
#[test]
fn the_first_round_prunes_what_no_output_reaches() {
    let rule = rules("rule m: Merge(a, _) => a", &[]);
    let prune = |nodes: Vec<NodeDef>, outputs: &[&str]| {
        let options = Options {
            outputs: outputs.iter().map(|o| o.to_string()).collect(),
            ..Options::default()
        };
        shape_of(&apply(&graph(nodes), &rule, &options).unwrap_or_else(|e| panic!("{e}")).0)
    };
    let x = || node("x", "Placeholder", &[], &[]);
    let y = || node("y", "Placeholder", &[], &[]);
    let m = || node("m", "Merge", &["x", "y"], &[]);
    let out = || node("out", "Relu", &["m"], &[]);
    let kept = ["x: Placeholder()", "out: Relu(x)"];
    // Inputs first, the only unread node an output: `y` lost its reader.
    assert_eq!(prune(vec![x(), y(), m(), out()], &[]), kept);
    // An unread node that is not one of the outputs named.
    let extra = node("extra", "Relu", &["x"], &[]);
    assert_eq!(prune(vec![x(), y(), m(), out(), extra], &["out"]), kept);
    // A cycle that no output reads.
    let (a, b) = (node("a", "Identity", &["b"], &[]), node("b", "Identity", &["a"], &[]));
    assert_eq!(prune(vec![x(), y(), a, b, m(), out()], &[]), kept);
    // The same graph with readers listed before their inputs.
    assert_eq!(prune(vec![out(), m(), x(), y()], &[]), ["out: Relu(x)", "x: Placeholder()"]);
    // No rule fires: what the outputs named do not reach still goes, unless
    // pruning is off.
    let never = rules("rule never: NoSuchOp(a) => a", &[]);
    let g = graph(vec![x(), y(), node("o", "Relu", &["x"], &[]), node("z", "Relu", &["y"], &[])]);
    let outputs = vec!["o".to_string()];
    let pruned = Options { outputs: outputs.clone(), ..Options::default() };
    let (after, report) = apply(&g, &never, &pruned).unwrap();
    assert_eq!(report.rounds, 0);
    assert_eq!(shape_of(&after), ["x: Placeholder()", "o: Relu(x)"]);
    let kept = Options { outputs, prune: false, ..Options::default() };
    assert_eq!(shape_of(&apply(&g, &never, &kept).unwrap().0).len(), 4);
}

#[test]
fn untouched_nodes_keep_their_bytes() {
    let g = graph(vec![
        node(
            "x",
            "Placeholder",
            &[],
            &[("dtype", float()), ("shape", Value::S(Bytes::from_static(b"odd")))],
        ),
        node("m", "Merge", &["x", "x"], &[]),
        node("out", "Relu", &["m"], &[("T", float())]),
    ]);
    let (after, _) = run(&g, "rule m: Merge(a, _) => a");
    assert_eq!(after.node_bytes(after.id("x").unwrap()), g.node_bytes(g.id("x").unwrap()));
}

#[test]
fn a_root_port_replaces_that_output_alone() {
    let g = graph(vec![
        node("x", "Placeholder", &[], &[]),
        node("p", "Placeholder", &[], &[]),
        node("sw", "Switch", &["x", "p"], &[]),
        node("t", "Relu", &["sw:1"], &[]),
        node("out", "AddV2", &["t", "t"], &[]),
    ]);
    // Only port 1 is read, and the rule replaces only port 1.
    let (after, report) = run(&g, "rule port1: Switch(x, _):1 => x");
    assert_eq!(fired(&report, "port1"), 1);
    assert_eq!(shape_of(&after), ["x: Placeholder()", "t: Relu(x)", "out: AddV2(t, t)"]);
    // A rule for port 0 alone does not apply while port 1 is read.
    let (after, report) = run(&g, "rule port0: Switch(x, _) => x");
    assert_eq!(fired(&report, "port0"), 0);
    assert_eq!(after.len(), g.len());
    assert!(
        report.warnings.iter().any(|w| w.contains("output port 1 is read")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn applying_is_deterministic() {
    let pred = constant("pred", vec![], &[0.0], DataType::DtBool);
    let g = cond_graph(pred);
    let encode = |g: &Graph| {
        let mut out = Vec::new();
        g.encode(&mut out).unwrap();
        out
    };
    let text = format!("{DEAD_RULES}\nrule split: Identity(x: Placeholder) => Abs(Neg(Neg(x)))");
    let first = encode(&run(&g, &text).0);
    for _ in 0..3 {
        assert_eq!(encode(&run(&g, &text).0), first);
    }
}

#[test]
fn unknown_outputs_and_dead_tensors_left_behind_are_errors() {
    let g = graph(vec![node("x", "Placeholder", &[], &[]), node("out", "Relu", &["x"], &[])]);
    let options = Options { outputs: vec!["nope".into()], ..Options::default() };
    let err = apply(&g, &rules("rule r: Relu(x) => x", &[]), &options).unwrap_err();
    assert_eq!(err.to_string(), "output `nope` names no node of the graph");
    let options = Options { outputs: vec!["out:1".into()], ..Options::default() };
    let err = apply(&g, &rules("rule r: Relu(x) => x", &[]), &options).unwrap_err();
    assert_eq!(err.to_string(), "output `out:1`: `out` (Relu) has 1 output, so no port 1");
    // A Merge reading a dead input, with no rule to fold it: refused.
    let pred = constant("pred", vec![], &[0.0], DataType::DtBool);
    let only_switch = "rule switch_false: Switch(x, Const{value: false}) => [x, dead]";
    let err = apply(&cond_graph(pred), &rules(only_switch, &[]), &Options::default()).unwrap_err();
    assert!(matches!(&err, ApplyError::DeadLeft { node } if node == "cond/Merge"), "{err}");
}

#[test]
fn shape_and_dtype_guards() {
    let g = graph(vec![
        node(
            "x",
            "Placeholder",
            &[],
            &[
                ("dtype", float()),
                (
                    "shape",
                    Value::Shape(graphrw::proto::TensorShapeProto {
                        dim: [-1, 4]
                            .iter()
                            .map(|&size| graphrw::proto::tensor_shape_proto::Dim {
                                size,
                                name: String::new(),
                            })
                            .collect(),
                        unknown_rank: false,
                    }),
                ),
            ],
        ),
        constant("w", vec![4, 2], &[0.0; 8], DataType::DtFloat),
        constant("v", vec![3], &[0.0; 3], DataType::DtFloat),
        node("a", "MatMul", &["x", "w"], &[("T", float())]),
        node("b", "Relu", &["v"], &[("T", float())]),
        node("out", "Pack", &["a", "b"], &[]),
    ]);
    let text = r#"
rule matrix_weights: MatMul(x, w: Const) where shape(w) == [4, 2] and rank(x) == 2 and shape(x) == [-1, 4] and dtype(x) == DT_FLOAT => Neg(x)
rule vector_input: r = Relu(v) where rank(v) == 1 and dtype(r) == "float32" => Abs(v)
"#;
    let (after, report) = run(&g, text);
    assert_eq!(fired(&report, "matrix_weights"), 1);
    assert_eq!(fired(&report, "vector_input"), 1);
    assert_eq!(after.op(after.id("a").unwrap()), "Neg");
    let text = "rule wrong_shape: MatMul(x, w: Const) where shape(w) == [2, 4] => x";
    let (_, report) = run(&g, text);
    assert_eq!(fired(&report, "wrong_shape"), 0);
}

/// TensorFlow colocates a cond's Switch with the Merge of another cond
/// (`_class: "loc:@..."`) and refuses to import a graph that colocates with
/// a missing node: a removed node's colocation entries go with it.
#[test]
fn colocation_with_a_removed_node_is_dropped() {
    let class = |names: &[&str]| {
        Value::List(graphrw::proto::attr_value::ListValue {
            s: names.iter().map(|n| Bytes::from(format!("loc:@{n}"))).collect(),
            ..Default::default()
        })
    };
    let g = graph(vec![
        node("x", "Placeholder", &[], &[("dtype", float())]),
        node("y", "Placeholder", &[], &[("dtype", float())]),
        node("m", "Merge", &["x", "y"], &[("T", float())]),
        node("a", "Relu", &["m"], &[("T", float()), ("_class", class(&["m"]))]),
        node("b", "Relu", &["a"], &[("T", float()), ("_class", class(&["m", "x"]))]),
    ]);
    let before = graphrw::validate::validate(&g);
    assert!(before.is_empty(), "{before:?}");
    let (after, _) = run(&g, "rule m: Merge(a, _) => a");
    assert!(
        graphrw::validate::validate(&after).is_empty(),
        "{:?}",
        graphrw::validate::validate(&after)
    );
    let a = after.node_def(after.id("a").unwrap()).unwrap();
    assert!(!a.attr.contains_key("_class"), "an emptied _class is removed");
    let b = after.node_def(after.id("b").unwrap()).unwrap();
    let kept: Vec<&str> = graphrw::validate::colocated_with(&b).collect();
    assert_eq!(kept, ["x"]);
    // validate reports a dangling colocation in a graph it reads.
    let broken = graph(vec![
        node("x", "Placeholder", &[], &[("dtype", float())]),
        node("a", "Relu", &["x"], &[("T", float()), ("_class", class(&["gone"]))]),
    ]);
    let problems: Vec<String> =
        graphrw::validate::validate(&broken).iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        ["node `a`: `_class` colocates it with `gone`, which is not in the graph"]
    );
}

/// A node of an input that was already broken (an input naming no node, a
/// colocation with a node not in the graph) loses its dangling colocation
/// and keeps its inputs, those naming no node too, in their places.
#[test]
fn a_node_redefined_but_not_rewired_keeps_inputs_that_name_no_node() {
    let class = Value::List(graphrw::proto::attr_value::ListValue {
        s: vec![Bytes::from("loc:@gone"), Bytes::from("loc:@x")],
        ..Default::default()
    });
    let g = graph(vec![
        node("x", "Placeholder", &[], &[("dtype", float())]),
        node("y", "Placeholder", &[], &[("dtype", float())]),
        node("m", "Merge", &["x", "y"], &[("T", float())]),
        node(
            "a",
            "AddV2",
            &["gone:0", "m", "^missing"],
            &[("T", float()), ("_class", class.clone())],
        ),
        node("b", "Relu", &["a"], &[("T", float())]),
    ]);
    let (after, report) = run(&g, "rule m: Merge(a, _) => a");
    assert_eq!(fired(&report, "m"), 1);
    let a = after.node_def(after.id("a").unwrap()).unwrap();
    // Rewired: what names no node is kept as a tensor name (port 0 unsaid).
    assert_eq!(a.input, ["gone", "x", "^missing"]);
    assert_eq!(graphrw::validate::colocated_with(&a).collect::<Vec<_>>(), ["x"]);
    // Not rewired: the node's inputs are the source's, written as read.
    let g = graph(vec![
        node("x", "Placeholder", &[], &[("dtype", float())]),
        node("y", "Placeholder", &[], &[("dtype", float())]),
        node("m", "Merge", &["x", "y"], &[("T", float())]),
        node("a", "AddV2", &["gone:0", "x", "^missing"], &[("T", float()), ("_class", class)]),
        node("b", "Relu", &["a", "m"], &[("T", float())]),
    ]);
    let (after, _) = run(&g, "rule m: Merge(a, _) => a");
    let a = after.node_def(after.id("a").unwrap()).unwrap();
    assert_eq!(a.input, ["gone:0", "x", "^missing"]);
    assert_eq!(graphrw::validate::colocated_with(&a).collect::<Vec<_>>(), ["x"]);
    let problems: Vec<String> =
        graphrw::validate::validate(&after).iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        [
            "node `a`: input `gone:0` names no node of the graph",
            "node `a`: input `^missing` names no node of the graph"
        ]
    );
}

/// A node a rule builds may colocate too: its `_class` entries naming a
/// node the rewrite removed are dropped, though the source has none.
#[test]
fn colocation_a_rule_writes_with_a_removed_node_is_dropped() {
    let g = graph(vec![
        node("x", "Placeholder", &[], &[("dtype", float())]),
        node("y", "Placeholder", &[], &[("dtype", float())]),
        node("m", "Merge", &["x", "y"], &[("T", float())]),
        node("a", "Relu", &["m"], &[("T", float())]),
    ]);
    let (after, report) = run(
        &g,
        r#"rule m: Merge(a, _) => a
rule r: Relu(v) => Neg{T: DT_FLOAT, _class: ["loc:@m", "loc:@x"]}(v)"#,
    );
    assert_eq!(fired(&report, "r"), 1);
    assert!(
        graphrw::validate::validate(&after).is_empty(),
        "{:?}",
        graphrw::validate::validate(&after)
    );
    let a = after.node_def(after.id("a").unwrap()).unwrap();
    assert_eq!(a.op, "Neg");
    let kept: Vec<&str> = graphrw::validate::colocated_with(&a).collect();
    assert_eq!(kept, ["x"]);
}

/// A control edge that would move onto a Const with no inputs is dropped:
/// the Const is always ready, so it orders nothing, and keeping it would
/// keep the Const alive (frozen TF2 graphs tie every weight to the output
/// through a NoOp).
#[test]
fn control_edges_onto_a_source_const_are_dropped() {
    let g = graph(vec![
        node("x", "Placeholder", &[], &[("dtype", float())]),
        constant("w", vec![], &[2.0], DataType::DtFloat),
        node("read", "Identity", &["w"], &[("T", float())]),
        node("deps", "NoOp", &["^read", "^x"], &[]),
        node("mul", "Mul", &["x", "read"], &[("T", float())]),
        node("out", "Identity", &["mul", "^deps"], &[("T", float())]),
    ]);
    let (after, _) = run(&g, "rule identity_of_const: Identity(c: Const) => c");
    assert_eq!(
        shape_of(&after),
        [
            "x: Placeholder()",
            "w: Const()",
            "deps: NoOp(^x)",
            "mul: Mul(x, w)",
            "out: Identity(mul, ^deps)"
        ]
    );
}

#[test]
fn many_control_edges_moved_onto_the_same_producers_are_kept_once() {
    // 40 Merges over 20 inputs, all ordering one NoOp: once each Merge is
    // replaced by its input, the NoOp's 40 control edges land on 20 nodes
    // (past the first 16 they are told apart by a set, not a scan).
    let mut nodes: Vec<NodeDef> =
        (0..20).map(|k| node(&format!("x{k}"), "Placeholder", &[], &[])).collect();
    nodes.push(node("y", "Placeholder", &[], &[]));
    let mut controls = Vec::new();
    for k in 0..40 {
        nodes.push(node(&format!("m{k}"), "Merge", &[&format!("x{}", k % 20), "y"], &[]));
        controls.push(format!("^m{k}"));
    }
    let controls: Vec<&str> = controls.iter().map(String::as_str).collect();
    nodes.push(node("sink", "NoOp", &controls, &[]));
    let (g, report) = run(&graph(nodes), "rule merge_first: Merge(a, _) => a");
    assert_eq!(fired(&report, "merge_first"), 40);
    let sink = g.id("sink").unwrap();
    let expected: Vec<String> = (0..20).map(|k| format!("^x{k}")).collect();
    assert_eq!(g.input_strs(sink).collect::<Vec<_>>(), expected);
}

#[test]
fn a_port_replacement_is_built_only_when_the_port_is_read() {
    // A Merge's value_index read by a node: it becomes a constant 1 (the
    // second input was the live one).
    let pred = constant("pred", vec![], &[1.0], DataType::DtBool);
    let mut nodes: Vec<NodeDef> = vec![];
    let g = cond_graph(pred);
    for id in g.ids() {
        nodes.push(g.node_def(id).unwrap());
    }
    nodes.push(node("which", "Identity", &["cond/Merge:1"], &[]));
    let (after, _) = run(&graph(nodes), DEAD_RULES);
    let which = after.id("which").unwrap();
    let index = after.input_strs(which).next().unwrap().to_string();
    assert_eq!(index, "cond/Merge/merge_live_second/const");
    let value = after.attr(after.id(&index).unwrap(), "value").unwrap().unwrap();
    let Some(Value::Tensor(t)) = value.value else { panic!("{value:?}") };
    assert_eq!(t.dtype, DataType::DtInt32 as i32);
    assert_eq!(from_proto(&t).unwrap().data, [1.0]);
    // Nothing reads it: no constant is made, even when nothing is pruned.
    let pred = constant("pred", vec![], &[1.0], DataType::DtBool);
    let options = Options { prune: false, ..Options::default() };
    let (after, _) = apply(&cond_graph(pred), &rules(DEAD_RULES, &[]), &options).unwrap();
    assert!(after.ids().all(|id| after.op(id) != "Const" || after.name(id) == "pred"));
}

/// Round 1 turns the Sigmoid into a Tanh, round 2 drops the add that read
/// it: what only the add needed goes, up the chain, and what another output
/// reads stays.
fn two_round_graph(extra: Vec<NodeDef>, chain_input: &str) -> Graph {
    let mut nodes = vec![node("x", "Placeholder", &[], &[]), node("s", "Placeholder", &[], &[])];
    nodes.extend(extra);
    nodes.extend([
        node("c1", "Relu", &[chain_input], &[]),
        node("c2", "Relu", &["c1"], &[]),
        node("g", "Sigmoid", &["c2"], &[]),
        node("h", "AddV2", &["g", "s"], &[]),
        node("out", "Identity", &["h"], &[]),
        node("other", "Identity", &["c1"], &[]),
    ]);
    graph(nodes)
}

const TWO_ROUNDS: &str = "
rule to_tanh: Sigmoid(a) => Tanh(a)
rule drop: AddV2(Tanh(_), b) => b
";

#[test]
fn what_a_later_round_leaves_unread_is_pruned_up_the_chain() {
    let (after, report) = run(&two_round_graph(vec![], "x"), TWO_ROUNDS);
    assert_eq!(report.rounds, 2);
    assert_eq!(
        shape_of(&after),
        [
            "x: Placeholder()",
            "s: Placeholder()",
            "c1: Relu(x)",
            "out: Identity(s)",
            "other: Identity(c1)"
        ]
    );
}

#[test]
fn a_loop_left_unread_by_a_later_round_is_pruned_whole() {
    // c1 reads the loop's exit; once nothing reads c1's chain but `other`,
    // drop `other` too: the loop (a cycle through NextIteration) is then
    // read only by itself, and must go with everything before it.
    let looped = vec![
        node("enter", "Enter", &["x"], &[]),
        node("merge", "Merge", &["enter", "next"], &[]),
        node("body", "Relu", &["merge"], &[]),
        node("next", "NextIteration", &["body"], &[]),
        node("exit", "Exit", &["merge"], &[]),
    ];
    let g = two_round_graph(looped, "exit");
    let options = Options { outputs: vec!["out".into()], ..Options::default() };
    let (after, report) = apply(&g, &rules(TWO_ROUNDS, &[]), &options).unwrap();
    assert_eq!(report.rounds, 2);
    assert_eq!(shape_of(&after), ["s: Placeholder()", "out: Identity(s)"]);
}

/// A function of the library: `name(args) -> outputs`, its body, and what
/// each output is.
fn function(
    name: &str,
    args: &[&str],
    body: Vec<NodeDef>,
    ret: &[(&str, &str)],
) -> graphrw::proto::FunctionDef {
    use graphrw::proto::{OpDef, op_def::ArgDef};
    let arg =
        |n: &str| ArgDef { name: n.into(), r#type: DataType::DtFloat as i32, ..Default::default() };
    graphrw::proto::FunctionDef {
        signature: Some(OpDef {
            name: name.into(),
            input_arg: args.iter().map(|a| arg(a)).collect(),
            output_arg: ret.iter().map(|(o, _)| arg(o)).collect(),
            ..Default::default()
        }),
        node_def: body,
        ret: ret.iter().map(|(o, t)| (o.to_string(), t.to_string())).collect(),
        ..Default::default()
    }
}

/// `cond = op(pred, x, y, ^init)` (If or StatelessIf) with two outputs,
/// read by `relu` (port 0) and `neg` (port 1); the branches are
/// `functions`, named by the If.
fn if_graph(op: &str, pred: NodeDef, functions: Vec<graphrw::proto::FunctionDef>) -> Graph {
    use graphrw::proto::{FunctionDefLibrary, NameAttrList};
    let func = |name: &str| Value::Func(NameAttrList { name: name.into(), ..Default::default() });
    let types = Value::List(graphrw::proto::attr_value::ListValue {
        r#type: vec![DataType::DtFloat as i32; 2],
        ..Default::default()
    });
    let nodes = vec![
        node("x", "Placeholder", &[], &[("dtype", float())]),
        node("y", "Placeholder", &[], &[("dtype", float())]),
        node("init", "NoOp", &[], &[]),
        pred,
        node(
            "cond",
            op,
            &["pred", "x", "y", "^init"],
            &[
                ("Tcond", Value::Type(DataType::DtBool as i32)),
                ("Tin", types.clone()),
                ("Tout", types),
                ("then_branch", func("f_then")),
                ("else_branch", func("f_else")),
            ],
        ),
        node("relu", "Relu", &["cond"], &[("T", float())]),
        node("neg", "Neg", &["cond:1"], &[("T", float())]),
    ];
    let library = FunctionDefLibrary { function: functions, ..Default::default() };
    Graph::from_def(&GraphDef { node: nodes, library: Some(library), ..Default::default() })
}

/// The else branch: `(a * b + 2, a)`; the then branch: `(a - b, b)`.
fn branches() -> Vec<graphrw::proto::FunctionDef> {
    let two = constant("two", vec![], &[2.0], DataType::DtFloat);
    vec![
        function(
            "f_else",
            &["a", "b"],
            vec![
                node("mul", "Mul", &["a", "b"], &[("T", float())]),
                two,
                node("add", "AddV2", &["mul:z:0", "two:output:0"], &[("T", float())]),
            ],
            &[("sum", "add:z:0"), ("first", "a")],
        ),
        function(
            "f_then",
            &["a", "b"],
            vec![node("sub", "Sub", &["a", "b"], &[("T", float())])],
            &[("diff", "sub:z:0"), ("second", "b")],
        ),
    ]
}

/// The cond pack's rules for If.
const INLINE_IFS: &str = "
rule if_false: r = (If|StatelessIf)(Const{value: false}, ...) => inline(r.else_branch)
rule if_true: r = (If|StatelessIf)(Const{value: true}, ...) => inline(r.then_branch)
";

/// What graphrw's evaluator gives for `relu` and `neg` with x = 3, y = 5.
fn relu_and_neg(g: &Graph) -> Vec<f64> {
    use graphrw::eval::{Tensor, run};
    let feeds = [("x", 3.0f32), ("y", 5.0)]
        .into_iter()
        .map(|(n, v)| (n.to_string(), Tensor::f32(vec![], vec![v])))
        .collect();
    let outputs = ["relu:0".to_string(), "neg:0".to_string()];
    run(g, &feeds, &outputs).unwrap().into_iter().map(|(_, v)| v.unwrap().to_f64()[0]).collect()
}

#[test]
fn an_if_on_a_constant_is_its_branch_inlined() {
    let pred = |value: f64| constant("pred", vec![], &[value], DataType::DtBool);
    let g = if_graph("If", pred(0.0), branches());
    let (after, report) = run(&g, INLINE_IFS);
    assert_eq!(fired(&report, "if_false"), 1);
    // The node giving the If's output 0 takes its name; the others are
    // named under it; what reads no node of the body waits on the If's
    // control inputs; output 1 is the argument `a`, that is, x.
    assert_eq!(
        shape_of(&after),
        [
            "x: Placeholder()",
            "y: Placeholder()",
            "init: NoOp()",
            "cond/if_false/mul: Mul(x, y, ^init)",
            "cond/if_false/two: Const(^init)",
            "cond: AddV2(cond/if_false/mul, cond/if_false/two)",
            "relu: Relu(cond)",
            "neg: Neg(x)",
        ]
    );
    assert_eq!(relu_and_neg(&g), relu_and_neg(&after));
    assert_eq!(relu_and_neg(&after), [17.0, -3.0]);
    // The library is left as it was.
    assert_eq!(after.header().unwrap().library, g.header().unwrap().library);

    // True: the then branch, whose output 1 is y (a StatelessIf alike).
    let g = if_graph("StatelessIf", pred(1.0), branches());
    let (after, report) = run(&g, INLINE_IFS);
    assert_eq!(fired(&report, "if_true"), 1);
    assert!(after.nodes_with_op("StatelessIf").is_empty());
    assert_eq!(relu_and_neg(&after), [0.0, -5.0]);
    assert_eq!(relu_and_neg(&g), relu_and_neg(&after));
}

#[test]
fn an_if_whose_branch_cannot_be_inlined_stays_with_a_reason() {
    let pred = constant("pred", vec![], &[0.0], DataType::DtBool);
    let with_else = |f: graphrw::proto::FunctionDef| {
        let mut fs = branches();
        fs[0] = f;
        if_graph("If", pred.clone(), fs)
    };
    let mut side_effects = branches().remove(0);
    side_effects.control_ret.insert("print".into(), "mul".into());
    let control_inside = function(
        "f_else",
        &["a", "b"],
        vec![
            node("mul", "Mul", &["a", "b"], &[("T", float())]),
            node("add", "AddV2", &["a", "b", "^mul"], &[("T", float())]),
        ],
        &[("sum", "add:z:0"), ("first", "a")],
    );
    let unknown_output = function(
        "f_else",
        &["a", "b"],
        vec![node("top", "TopKV2", &["a", "b"], &[("T", float())])],
        &[("sum", "top:largest:0"), ("first", "a")],
    );
    let unknown_op = function(
        "f_else",
        &["a", "b"],
        vec![node("own", "MyOwnOp", &["a", "b"], &[])],
        &[("sum", "own:out:0"), ("first", "a")],
    );
    let cycle = function(
        "f_else",
        &["a", "b"],
        vec![
            node("p", "AddV2", &["a", "q:z:0"], &[("T", float())]),
            node("q", "AddV2", &["p:z:0", "b"], &[("T", float())]),
        ],
        &[("sum", "q:z:0"), ("first", "a")],
    );
    let dangling = function("f_else", &["a", "b"], vec![], &[("sum", "gone:z:0"), ("first", "a")]);
    let missing = function("f_other", &["a", "b"], vec![], &[("sum", "a"), ("first", "a")]);
    for (g, reason) in [
        (with_else(side_effects), "`f_else` has side effects (control outputs)"),
        (with_else(control_inside), "`add` of `f_else` has control inputs"),
        (
            with_else(unknown_output),
            "TopKV2 has no output `largest:0` the op table knows (in `f_else`)",
        ),
        (with_else(unknown_op), "MyOwnOp has no output `out:0` the op table knows (in `f_else`)"),
        (with_else(cycle), "the body of `f_else` has a cycle"),
        (with_else(dangling), "`gone:z:0` names no node of `f_else`"),
        (with_else(missing), "the graph's library has no function `f_else`"),
    ] {
        let (after, report) = run(&g, INLINE_IFS);
        assert_eq!(after.nodes_with_op("If").len(), 1, "{reason}");
        assert_eq!(fired(&report, "if_false"), 0);
        assert!(
            report.warnings.iter().any(|w| w.contains("if_false") && w.ends_with(reason)),
            "{reason}: {:?}",
            report.warnings
        );
    }
}
