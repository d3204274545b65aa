//! The real `graphrw` binary: inspect, validate, convert and prune on the
//! TensorFlow fixtures, and clear errors on bad input.

mod common;

use std::path::{Path, PathBuf};

use common::{fingerprint, graphrw, graphrw_in, stderr, stdout};

#[test]
fn inspect_json_agrees_with_what_tensorflow_saw() {
    for (dir, meta) in common::fixtures() {
        let out = graphrw(
            ["inspect", "--json"]
                .map(String::from)
                .into_iter()
                .chain([dir.join("model.pb").display().to_string()]),
        );
        assert!(out.status.success(), "{}: {}", meta.name, stderr(&out));
        let summary: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(summary["nodes"], meta.graph.nodes, "{}", meta.name);
        let ops: std::collections::BTreeMap<String, usize> = summary["ops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| (pair[0].as_str().unwrap().to_string(), pair[1].as_u64().unwrap() as usize))
            .collect();
        assert_eq!(ops, meta.graph.ops, "{}", meta.name);
        assert_eq!(summary["functions"], meta.graph.functions, "{}", meta.name);
        assert_eq!(summary["producer"], meta.graph.producer, "{}", meta.name);
        // Inputs: every placeholder TensorFlow saw, with its dtype and shape.
        let inputs = summary["inputs"].as_array().unwrap();
        assert_eq!(inputs.len(), meta.graph.placeholders.len(), "{}", meta.name);
        for input in inputs {
            let name = input["name"].as_str().unwrap();
            let tf = &meta.graph.placeholders[name];
            assert_eq!(input["dtype"], tf.dtype.as_str(), "{name}");
            assert_eq!(input["op"], tf.op.as_str(), "{name}");
            let shape = match &tf.shape {
                None => "<unknown>".to_string(),
                Some(dims) => format!(
                    "[{}]",
                    dims.iter()
                        .map(|d| if *d < 0 { "?".to_string() } else { d.to_string() })
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            };
            assert_eq!(input["shape"], shape.as_str(), "{name}");
        }
        // The inferred outputs are the outputs the graph was frozen with
        // (TF2 freezing adds a NoOp that nothing consumes).
        let outputs: Vec<&str> =
            summary["outputs"].as_array().unwrap().iter().map(|o| o.as_str().unwrap()).collect();
        for expected in &meta.outputs {
            assert!(outputs.contains(&expected.as_str()), "{}: {outputs:?}", meta.name);
        }
        assert!(summary["problems"].as_array().unwrap().is_empty(), "{}", meta.name);
        assert!(summary["constant_bytes"].as_u64().unwrap() > 0);
    }
}

#[test]
fn inspect_text_names_inputs_outputs_and_ops() {
    let model = common::fixtures_dir().join("seed/model.pb");
    let out = graphrw([Path::new("inspect"), &model]);
    assert!(out.status.success());
    let text = stdout(&out);
    for expected in [
        "nodes:      113",
        "input_node  float32 [?,128,128,3]  (Placeholder)",
        "training    bool []  (PlaceholderWithDefault)",
        "outputs:\n  backend/final_dense/MatMul\n",
        "FusedBatchNormV3",
        "problems:   none",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
}

#[test]
fn convert_round_trips_through_text_and_back() {
    let tmp = tempfile::tempdir().unwrap();
    for (dir, meta) in common::fixtures() {
        let model = dir.join("model.pb");
        let before = fingerprint(&model);
        let text = tmp.path().join(format!("{}.pbtxt", meta.name));
        let back = tmp.path().join(format!("{}.pb", meta.name));
        let out = graphrw([Path::new("convert"), &model, &text]);
        assert!(out.status.success(), "{}", stderr(&out));
        let out = graphrw([Path::new("convert"), &text, &back]);
        assert!(out.status.success(), "{}", stderr(&out));
        let read = |path: &Path| graphrw::io::read_graph(path, None).unwrap().to_def().unwrap();
        assert_eq!(read(&back), read(&model), "{}", meta.name);
        // Text to binary is deterministic too.
        let again = tmp.path().join(format!("{}.again.pb", meta.name));
        let out = graphrw([Path::new("convert"), &text, &again]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(std::fs::read(&again).unwrap() == std::fs::read(&back).unwrap(), "{}", meta.name);
        assert_eq!(fingerprint(&model), before, "the input was modified");
    }
}

#[test]
fn convert_to_stdout_with_explicit_formats() {
    let model = common::fixtures_dir().join("tf2_if/model.pb");
    let out = graphrw([
        Path::new("convert"),
        &model,
        Path::new("-"),
        Path::new("--to"),
        Path::new("text"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("node {\n  name: \"x\"\n"), "{text}");
    assert!(text.contains("library {\n  function {\n"));
    // A text file with a binary extension reads with --format.
    let tmp = tempfile::tempdir().unwrap();
    let odd = tmp.path().join("graph.bin");
    std::fs::write(&odd, &text).unwrap();
    let out = graphrw([Path::new("inspect"), &odd, Path::new("--format"), Path::new("pbtxt")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("StatelessIf"));
}

#[test]
fn prune_writes_beside_the_input_and_keeps_the_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("seed.pb");
    std::fs::copy(common::fixtures_dir().join("seed/model.pb"), &model).unwrap();
    let before = fingerprint(&model);
    // Pruning to the first conv keeps only its producers.
    let out = graphrw([
        Path::new("prune"),
        &model,
        Path::new("--outputs"),
        Path::new("backend/conv_1/BiasAdd"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let written = tmp.path().join("seed.pruned.pb");
    assert_eq!(stdout(&out).trim(), written.display().to_string());
    let pruned = graphrw::io::read_graph(&written, None).unwrap();
    let names: Vec<&str> = pruned.ids().map(|id| pruned.name(id)).collect();
    assert_eq!(
        names,
        [
            "input_node",
            "backend/conv_1/kernel",
            "backend/conv_1/kernel/read",
            "backend/conv_1/bias",
            "backend/conv_1/bias/read",
            "backend/conv_1/Conv2D",
            "backend/conv_1/BiasAdd",
        ]
    );
    assert_eq!(fingerprint(&model), before, "the input was modified");
    let out = graphrw([Path::new("prune"), &model, Path::new("--outputs"), Path::new("nope")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("output `nope` names no node of the graph"));
    // A --set without a name is refused before anything is read.
    let out = graphrw([
        Path::new("apply"),
        Path::new("inference"),
        &model,
        Path::new("--set"),
        Path::new("=x"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--set =x: expected NAME=VALUE"), "{}", stderr(&out));
}

#[test]
fn validate_fails_with_the_problems_of_a_broken_graph() {
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("broken.pbtxt");
    std::fs::write(
        &broken,
        "node { name: \"a\" op: \"Const\" }\nnode { name: \"a\" op: \"Const\" }\n\
         node { name: \"s\" op: \"Switch\" input: \"a\" input: \"a\" }\n\
         node { name: \"b\" op: \"Identity\" input: \"s:2\" input: \"^gone\" }\n",
    )
    .unwrap();
    let out = graphrw_in(tmp.path(), ["validate", "broken.pbtxt"]);
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!("validate_broken", stderr(&out));
    let out = graphrw([Path::new("validate"), &common::fixtures_dir().join("seed/model.pb")]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("valid, 113 nodes"));
}

/// Bad inputs: each a clear error naming the file, exit 1 (not a panic's
/// 101), and the file untouched.
#[test]
fn bad_inputs_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = std::fs::read(common::fixtures_dir().join("seed/model.pb")).unwrap();
    let mut random = Vec::with_capacity(4096);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..4096 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        random.push((state >> 24) as u8);
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.pb", vec![]),
        ("truncated.pb", seed[..seed.len() / 2].to_vec()),
        ("random.pb", random),
        ("text_named_binary.pb", b"node {\n  name: \"x\"\n  op: \"Const\"\n}\n".to_vec()),
        ("binary_named_text.pbtxt", seed[..2000].to_vec()),
        ("model.json.pb", b"{\"nodes\": []}".to_vec()),
        ("saved_model.pb", b"\x08\x01\x12\x04\x0a\x02\x08\x01".to_vec()),
        ("syntax_error.pbtxt", b"node {\n  name: \"x\"\n  op: \n}\n".to_vec()),
        ("unknown_field.pbtxt", b"node {\n  nmae: \"x\"\n}\n".to_vec()),
        // A tensor's bytes keep a text-format model's line long: a mistake
        // 70 000 columns in is located, not drawn.
        (
            "far_into_a_line.pbtxt",
            format!(
                "node {{\n  name: \"x\"\n  attr {{ key: \"s\" value {{ s: \"{}\\q\" }} }}\n}}\n",
                "a".repeat(70_000)
            )
            .into_bytes(),
        ),
    ];
    for (name, bytes) in cases {
        let path = tmp.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let before = fingerprint(&path);
        for command in ["inspect", "validate"] {
            let out = graphrw_in(tmp.path(), [command, name]);
            assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
            let err = stderr(&out);
            assert!(err.contains(name), "{name}: the error does not name the file:\n{err}");
            assert!(!err.contains("panicked"), "{name}: {err}");
            if command == "inspect" {
                insta::assert_snapshot!(format!("bad_input_{name}"), err);
            }
        }
        let out = graphrw([Path::new("convert"), &path, &tmp.path().join("out.pb")]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(!tmp.path().join("out.pb").exists(), "{name}: an output was written");
        assert_eq!(fingerprint(&path), before, "{name}: the input was modified");
    }
    let missing = tmp.path().join("missing.pb");
    let out = graphrw([Path::new("inspect"), &missing]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing.pb") && stderr(&out).contains("No such file"));
    let out = graphrw([Path::new("inspect"), tmp.path()]);
    assert_eq!(out.status.code(), Some(1));
}

/// Output no one reads any more (`graphrw packs | head -1`) is dropped, not
/// a panic, and the command's files are still written.
#[test]
fn a_closed_pipe_stops_no_command() {
    let (code, err) = common::graphrw_unread(["packs"], true);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let model = common::fixtures_dir().join("seed/model.pb");
    let (code, err) = common::graphrw_unread(
        [Path::new("convert"), &model, Path::new("-"), Path::new("--to"), Path::new("pbtxt")],
        true,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.pb");
    let (code, printed) = common::graphrw_unread(
        [
            Path::new("apply"),
            Path::new("inference"),
            &model,
            Path::new("-o"),
            &out,
            Path::new("--report"),
            Path::new("text"),
        ],
        false,
    );
    assert_eq!(code, Some(0), "{printed}");
    assert_eq!(printed.trim(), out.display().to_string());
    assert_eq!(graphrw::io::read_graph(&out, None).unwrap().len(), 24);
}

#[test]
fn unwritable_output_is_an_error_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let model = common::fixtures_dir().join("tf2_if/model.pb");
    let target = tmp.path().join("no/such/dir/out.pb");
    let out = graphrw([Path::new("convert"), &model, &target]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot write"), "{}", stderr(&out));
    assert!(!tmp.path().join("no").exists());
}

#[test]
fn apply_writes_beside_the_model_and_keeps_the_input() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("seed.pb");
    std::fs::copy(common::fixtures_dir().join("seed/model.pb"), &model).unwrap();
    let before = fingerprint(&model);
    let out = graphrw(
        ["apply", "lock-training", "merge", "switch"]
            .map(Into::into)
            .into_iter()
            .chain([model.clone().into_os_string()]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let written = tmp.path().join("seed.rewritten.pb");
    assert_eq!(stdout(&out).trim(), written.display().to_string());
    assert!(stderr(&out).contains("113 -> 58 nodes"), "{}", stderr(&out));
    let graph = graphrw::io::read_graph(&written, None).unwrap();
    for gone in ["Switch", "Merge", "PlaceholderWithDefault", "RandomUniform"] {
        assert!(graph.nodes_with_op(gone).is_empty(), "{gone} left");
    }
    assert!(graph.id("backend/final_dense/MatMul").is_some(), "the output keeps its name");
    assert_eq!(fingerprint(&model), before, "the input was modified");
}

#[test]
fn apply_dry_run_and_json_report() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.pb");
    std::fs::copy(common::fixtures_dir().join("small_cnn/model.pb"), &model).unwrap();
    let out = graphrw([
        Path::new("apply"),
        Path::new("lock-training"),
        Path::new("merge"),
        &model,
        Path::new("--dry-run"),
        Path::new("--report"),
        Path::new("json"),
        Path::new("--set"),
        Path::new("flag=is_training"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stderr(&out)).unwrap();
    assert_eq!(report["fired"][0], serde_json::json!(["lock_training_flag", 1]));
    assert_eq!(report["nodes_before"], 81);
    assert!(report["ops_after"]["Merge"].is_null());
    // Each round's rules add up to the totals.
    let rounds = report["per_round"].as_array().unwrap();
    assert_eq!(rounds.len() as u64, report["rounds"].as_u64().unwrap());
    let mut totals = std::collections::BTreeMap::new();
    for (rule, n) in report["fired"].as_array().unwrap().iter().map(|f| (&f[0], &f[1])) {
        totals.insert(rule.as_str().unwrap(), n.as_u64().unwrap());
    }
    for round in rounds {
        for f in round["fired"].as_array().unwrap() {
            *totals.get_mut(f[0].as_str().unwrap()).unwrap() -= f[1].as_u64().unwrap();
        }
    }
    assert!(totals.values().all(|&n| n == 0), "{totals:?}");
    let files: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "--dry-run wrote a file");
}

/// A chain of 30 Identities of a constant folds a link a round: the text
/// report shows the first and last ten rounds.
#[test]
fn a_long_cascade_shows_its_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let float = "attr { key: \"T\" value { type: DT_FLOAT } }";
    let mut text = String::from(
        "node { name: \"i0\" op: \"Const\" attr { key: \"dtype\" value { type: DT_FLOAT } } \
         attr { key: \"value\" value { tensor { dtype: DT_FLOAT tensor_shape {} float_val: 1 } } } }\n",
    );
    for i in 1..=30 {
        text +=
            &format!("node {{ name: \"i{i}\" op: \"Identity\" input: \"i{}\" {float} }}\n", i - 1);
    }
    text += &format!("node {{ name: \"out\" op: \"Relu\" input: \"i30\" {float} }}\n");
    let model = tmp.path().join("chain.pbtxt");
    std::fs::write(&model, text).unwrap();
    let (rows, err) = rounds_table("fold", &model);
    assert_eq!(rows.len(), 21, "{err}");
    assert_eq!(rows[10].trim(), "... 10 more rounds", "{err}");
    let numbers: Vec<&str> = rows.iter().map(|r| r.split_whitespace().next().unwrap()).collect();
    assert_eq!((numbers[9], numbers[11], numbers[20]), ("10", "21", "30"), "{err}");
    assert!(rows[20].ends_with("identity_of_const 1"), "{err}");
}

/// The rows of the table of rounds that `apply PACK MODEL --report text`
/// prints, and all it printed.
fn rounds_table(pack: &str, model: &Path) -> (Vec<String>, String) {
    let out = graphrw([
        Path::new("apply"),
        Path::new(pack),
        model,
        Path::new("--dry-run"),
        Path::new("--report"),
        Path::new("text"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let rows = err
        .lines()
        .skip_while(|l| !l.starts_with("round "))
        .skip(1)
        .take_while(|l| !l.starts_with("op "))
        .map(String::from)
        .collect();
    (rows, err)
}

#[test]
fn the_text_report_shows_each_round() {
    let (rows, err) = rounds_table("inference", &common::fixtures_dir().join("seed/model.pb"));
    let rounds: Vec<Vec<&str>> = rows.iter().map(|l| l.split_whitespace().collect()).collect();
    // The seed's cascade: the flag and the weights' Identities, then the
    // predicates' Identities, then the Switches, then the Merges with the
    // batch norms behind them.
    assert_eq!(rounds.len(), 4, "{err}");
    assert_eq!(rounds[0][..2], ["1", "72"], "{err}");
    assert!(err.contains("lock_training_flag 1, identity_of_const 19"), "{err}");
    assert_eq!(rounds[3][2], "24", "{err}");
    assert_eq!(rounds[3][4..], ["merge_first_live", "4,", "fold_bn_after_bias", "3"], "{err}");
}

#[test]
fn apply_to_stdout_and_with_a_rules_file() {
    let tmp = tempfile::tempdir().unwrap();
    let rules = tmp.path().join("mine.rules");
    std::fs::write(&rules, "import \"merge\"\nrule relu6: Relu6(x) => Relu(x)\n").unwrap();
    let model = common::fixtures_dir().join("seed/model.pb");
    let out = graphrw([
        Path::new("apply"),
        &rules,
        &model,
        Path::new("-o"),
        Path::new("-"),
        Path::new("--to"),
        Path::new("pbtxt"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("node {"), "{}", &text[..100.min(text.len())]);
    assert!(!text.contains("op: \"Relu6\"") && text.contains("op: \"Relu\""));
    // A binary graph on standard output is the file's bytes.
    let file = tmp.path().join("out.pb");
    let to_file = graphrw([Path::new("apply"), &rules, &model, Path::new("-o"), &file]);
    assert!(to_file.status.success(), "{}", stderr(&to_file));
    let out = graphrw([Path::new("apply"), &rules, &model, Path::new("-o"), Path::new("-")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let written = std::fs::read(&file).unwrap();
    assert!(out.stdout == written, "{} bytes, the file {}", out.stdout.len(), written.len());
    let graph = graphrw::io::decode_binary(written.into()).unwrap();
    assert!(graph.nodes_with_op("Relu6").is_empty() && !graph.nodes_with_op("Relu").is_empty());
}

/// A temporary directory holding the rules file `name` with `text` and
/// `m.pb`, a copy of a fixture's model (so nothing is written beside the
/// fixture).
fn rules_and_model(name: &str, text: &str, fixture: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let rules = tmp.path().join(name);
    std::fs::write(&rules, text).unwrap();
    let model = tmp.path().join("m.pb");
    std::fs::copy(common::fixtures_dir().join(fixture).join("model.pb"), &model).unwrap();
    (tmp, rules, model)
}

#[test]
fn a_rule_set_that_never_ends_stops_at_the_cap_and_writes_nothing() {
    let (tmp, rules, model) =
        rules_and_model("forever.rules", "rule forever: Relu6(x) => Relu6(x)\n", "seed");
    let cap = |n: &str| {
        graphrw([Path::new("apply"), &rules, &model, "--max-rewrites".as_ref(), n.as_ref()])
    };
    let out = cap("5");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    // The seed has three Relu6, each rewritten once a round: the second
    // round passes the cap of 5.
    assert!(err.contains("stopped after 6 rewrites (--max-rewrites)"), "{err}");
    assert!(err.contains("`forever` fired 6 times"), "{err}");
    assert!(!tmp.path().join("m.rewritten.pb").exists());
    // A cap of 0 stops after the first round that rewrites anything.
    let err = stderr(&cap("0"));
    assert!(err.contains("stopped after 3 rewrites"), "{err}");
}

#[test]
fn apply_with_bad_rules_shows_every_diagnostic_and_writes_nothing() {
    let (tmp, rules, model) = rules_and_model(
        "bad.rules",
        "rule a: Merge(x, _) => y\nrule b: Relu(p, q) => p\n",
        "tf2_if",
    );
    let out = graphrw([Path::new("apply"), &rules, &model]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("`y` is not bound") && err.contains("Relu takes 1"), "{err}");
    assert!(err.contains("bad.rules:1:24"), "{err}");
    assert!(!tmp.path().join("m.rewritten.pb").exists());
    let out = graphrw([Path::new("apply"), Path::new("no-such-pack"), &model]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("`no-such-pack` is neither a rules file nor a built-in pack"), "{err}");
    assert!(err.contains("unknown rules"), "{err}");
    for pack in ["bn,", "dropout,", "lock-training,", "merge,", "switch"] {
        assert!(err.contains(pack), "the packs are listed: {err}");
    }
}

#[test]
fn check_and_packs() {
    let out = graphrw(["check", "merge", "switch", "lock-training"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("switch: 1 rules, 0 warnings"), "{}", stdout(&out));
    // Each file is checked on its own: a pack and another that imports it
    // both define its rules, and that is not a duplicate.
    let files: Vec<String> = std::fs::read_dir("rules")
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    assert!(files.len() >= 8, "{files:?}");
    let out = graphrw(std::iter::once("check".to_string()).chain(files));
    assert!(out.status.success(), "every shipped pack checks clean: {}", stderr(&out));
    assert!(stdout(&out).contains("inference.rules: "), "{}", stdout(&out));
    // Errors of several files add up.
    let out = graphrw(["check", "tests/rules/check/arity.rules", "tests/rules/check/arity.rules"]);
    assert!(stderr(&out).contains("6 errors, 2 warnings"), "{}", stderr(&out));
    let out = graphrw(["check", "tests/rules/check/arity.rules"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("3 errors, 1 warning"), "{}", stderr(&out));
    let out = graphrw(["check", "tests/rules/check/unused.rules"]);
    assert!(out.status.success(), "warnings alone pass");
    let out = graphrw(["packs"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for expected in [
        "lock-training\n",
        "merge\n",
        "switch\n",
        "  - merge_first_input: A Merge's value",
        "day 27",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
}

#[test]
fn run_writes_outputs_as_npy() {
    let dir = common::fixtures_dir().join("small_cnn");
    let tmp = tempfile::tempdir().unwrap();
    let feed = format!("images={}", dir.join("case0/in_images_0.npy").display());
    let out = graphrw([
        "run".to_string(),
        dir.join("model.pb").display().to_string(),
        "--feed".into(),
        feed,
        "--feed".into(),
        "is_training=false".into(),
        "-o".into(),
        tmp.path().display().to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = graphrw::npy::Array::read(&tmp.path().join("probs_0.npy")).unwrap();
    let want = graphrw::npy::Array::read(&dir.join("case0/out_probs_0.npy")).unwrap();
    assert_eq!(got.shape, want.shape);
    for (g, w) in got.to_f64().iter().zip(want.to_f64()) {
        assert!((g - w).abs() < 1e-6, "{g} vs {w}");
    }
    // A port named is the port computed: an inference batch norm's second
    // output is the mean it was given (its fourth input).
    let model = graphrw::io::read_graph(&dir.join("model.pb"), None).unwrap();
    let bn = "bn1/cond/FusedBatchNormV3_1";
    let mean = model.input_strs(model.id(bn).unwrap()).nth(3).unwrap().to_string();
    let run_outputs = |outputs: &str| {
        graphrw([
            "run".to_string(),
            dir.join("model.pb").display().to_string(),
            "--feed".into(),
            format!("images={}", dir.join("case0/in_images_0.npy").display()),
            "--feed".into(),
            "is_training=false".into(),
            "--outputs".into(),
            outputs.into(),
            "-o".into(),
            tmp.path().display().to_string(),
        ])
    };
    let out = run_outputs(&format!("{bn}:1,{mean}"));
    assert!(out.status.success(), "{}", stderr(&out));
    let file = |tensor: &str| tmp.path().join(format!("{}.npy", tensor.replace(['/', ':'], "_")));
    let got = graphrw::npy::Array::read(&file(&format!("{bn}:1"))).unwrap();
    let want = graphrw::npy::Array::read(&file(&format!("{mean}:0"))).unwrap();
    assert_eq!(got.shape, [8]);
    assert_eq!(got.to_f64(), want.to_f64());
    // A port the op does not have is refused, naming it.
    let out = run_outputs("probs:1");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("output `probs:1`: `probs` (Softmax) has 1 output, so no port 1"),
        "{}",
        stderr(&out)
    );
    // A Placeholder without a feed is named.
    let out = graphrw([
        "run".to_string(),
        dir.join("model.pb").display().to_string(),
        "-o".into(),
        tmp.path().display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("placeholder `images` needs a feed"), "{}", stderr(&out));
}

/// The seed's merge pack keeps every cond's false branch: right for
/// training conds, wrong for a data-dependent cond taking its true branch.
/// `verify` and `apply --verify` catch it.
#[test]
fn verify_catches_a_rewrite_that_changed_the_outputs() {
    let dir = common::fixtures_dir().join("data_cond");
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.pb");
    std::fs::copy(dir.join("model.pb"), &model).unwrap();
    let rewritten = tmp.path().join("m.rewritten.pb");
    let out =
        graphrw([Path::new("apply"), Path::new("merge"), &model, Path::new("-o"), &rewritten]);
    assert!(out.status.success(), "{}", stderr(&out));
    let positive = format!("x={}", dir.join("case0/in_x_0.npy").display()); // mean > 0: true branch
    let negative = format!("x={}", dir.join("case1/in_x_0.npy").display()); // false branch
    let verify = |feed: &str| {
        graphrw([
            "verify".to_string(),
            model.display().to_string(),
            rewritten.display().to_string(),
            "--feed".into(),
            feed.to_string(),
        ])
    };
    let out = verify(&negative);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("1 outputs match"), "{}", stdout(&out));
    let out = verify(&positive);
    assert_eq!(out.status.code(), Some(1));
    // The kept false branch does not run for this input: the output is dead.
    let err = stderr(&out).replace(['\n', '│'], " ");
    assert!(err.contains("output `output:0` differs: it is dead"), "{err}");

    let target = tmp.path().join("checked.pb");
    let out = graphrw([
        Path::new("apply"),
        Path::new("merge"),
        &model,
        Path::new("-o"),
        &target,
        Path::new("--verify"),
        Path::new("--feed"),
        Path::new(&positive),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("the rewrite changed output `output:0`"), "{}", stderr(&out));
    assert!(!target.exists(), "nothing is written when verification fails");
}

/// The job users come for, as they run it: `apply inference` from another
/// directory, then `verify --expect` against TensorFlow's stored outputs,
/// for both branches of the data-dependent cond.
#[test]
fn apply_inference_then_verify_against_tensorflow_outputs() {
    let dir = common::fixtures_dir().join("data_cond");
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.pb");
    std::fs::copy(dir.join("model.pb"), &model).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_graphrw"))
        .args(["apply", "inference", "m.pb"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let rewritten = tmp.path().join("m.rewritten.pb");
    assert_eq!(stdout(&out).trim(), "m.rewritten.pb");
    let check = |case: &str, expect_case: &str| {
        graphrw([
            "verify".to_string(),
            rewritten.display().to_string(),
            "--feed".into(),
            format!("x:0={}", dir.join(case).join("in_x_0.npy").display()),
            "--expect".into(),
            format!("output:0={}", dir.join(expect_case).join("out_output_0.npy").display()),
        ])
    };
    for case in ["case0", "case1"] {
        let out = check(case, case);
        assert!(out.status.success(), "{case}: {}", stderr(&out));
        assert!(stdout(&out).contains("1 outputs match the stored outputs"), "{}", stdout(&out));
    }
    // The other case's outputs are not these: verify says where.
    let out = check("case0", "case1");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("output `output:0` differs: element"), "{}", stderr(&out));
    // A malformed --expect is named as such.
    let out = graphrw([
        "verify".to_string(),
        rewritten.display().to_string(),
        "--expect".into(),
        "output:0".into(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--expect output:0: expected NAME=FILE.npy"), "{}", stderr(&out));
    // Without a second model or --expect there is nothing to compare.
    let out = graphrw([Path::new("verify"), &rewritten]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// `--verify` builds the result as a graph to run it; the text written
/// after is that same graph's, as without `--verify`.
#[test]
fn a_verified_result_written_as_text_is_the_unverified_one() {
    let tmp = tempfile::tempdir().unwrap();
    let model = common::fixtures_dir().join("keras_tf2/model.pb");
    let write = |name: &str, verify: bool| {
        let target = tmp.path().join(name);
        let mut args = vec![Path::new("apply"), Path::new("inference"), &model];
        args.extend([Path::new("-o"), &target]);
        if verify {
            args.push(Path::new("--verify"));
        }
        let out = graphrw(args);
        assert!(out.status.success(), "{}", stderr(&out));
        std::fs::read_to_string(&target).unwrap()
    };
    let verified = write("verified.pbtxt", true);
    assert!(verified.starts_with("node {"), "{}", &verified[..100.min(verified.len())]);
    assert_eq!(verified, write("plain.pbtxt", false));
}
