//! Helpers shared by the integration tests: the TensorFlow fixtures, the
//! real `graphrw` binary, and nodes for hand-built graphs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;

/// What `scripts/make_fixtures.py` stored beside each model.
#[derive(Debug, Deserialize)]
pub struct Meta {
    pub name: String,
    pub outputs: Vec<String>,
    pub training_placeholders: Vec<String>,
    pub graph: GraphFacts,
    pub cases: Vec<Case>,
}

/// What TensorFlow saw in the graph it wrote.
#[derive(Debug, Deserialize)]
pub struct GraphFacts {
    pub nodes: usize,
    pub ops: BTreeMap<String, usize>,
    pub placeholders: BTreeMap<String, Placeholder>,
    pub functions: usize,
    pub producer: i32,
}

#[derive(Debug, Deserialize)]
pub struct Placeholder {
    pub op: String,
    pub dtype: String,
    pub shape: Option<Vec<i64>>,
}

/// One run of the model: inputs fed, mode flags fed, outputs TensorFlow computed.
#[derive(Debug, Deserialize)]
pub struct Case {
    pub inputs: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, String>,
    pub mode: BTreeMap<String, serde_json::Value>,
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every fixture directory, sorted by name.
pub fn fixtures() -> Vec<(PathBuf, Meta)> {
    let found = fixtures_in(&fixtures_dir());
    assert!(found.len() >= 6, "expected the six TensorFlow fixtures, found {}", found.len());
    found
}

/// Every fixture directory under `root` (meta.json beside model.pb), sorted.
pub fn fixtures_in(root: &Path) -> Vec<(PathBuf, Meta)> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .expect("the fixtures directory exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let meta = std::fs::read_to_string(dir.join("meta.json")).unwrap();
            let meta: Meta = serde_json::from_str(&meta).unwrap();
            (dir, meta)
        })
        .collect()
}

/// Runs the real binary with `args`, without colour, at a fixed width.
pub fn graphrw<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    command(args).output().expect("the graphrw binary runs")
}

/// Runs graphrw in `dir`, so that paths relative to it appear in messages
/// as given: a snapshot then does not depend on where the temporary
/// directory is (its length would move where a long line wraps).
pub fn graphrw_in<I, S>(dir: &std::path::Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    command(args).current_dir(dir).output().expect("the graphrw binary runs")
}

/// Runs graphrw with its standard output (`stdout: true`) or error output
/// going into a pipe no one reads (closed before it starts); the other is
/// captured. Gives its exit code and what it wrote to the other.
pub fn graphrw_unread<I, S>(args: I, stdout: bool) -> (Option<i32>, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let mut command = command(args);
    if stdout {
        command.stdout(writer).stderr(std::process::Stdio::piped());
    } else {
        command.stderr(writer).stdout(std::process::Stdio::piped());
    }
    let out = command.output().expect("the graphrw binary runs");
    let other = if stdout { &out.stderr } else { &out.stdout };
    (out.status.code(), String::from_utf8_lossy(other).into_owned())
}

fn command<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new(env!("CARGO_BIN_EXE_graphrw"));
    command.args(args).env("NO_COLOR", "1").env("COLUMNS", "100");
    command
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A file's bytes and modification time, to check it was left alone.
pub fn fingerprint(path: &Path) -> (Vec<u8>, std::time::SystemTime) {
    (std::fs::read(path).unwrap(), std::fs::metadata(path).unwrap().modified().unwrap())
}

/// A node as `(name, op, inputs)`.
pub type Spec<'a> = (&'a str, &'a str, &'a [&'a str]);

/// A graph from `(name, op, inputs)` triples (no attributes).
pub fn graph_of(nodes: &[Spec]) -> graphrw::Graph {
    use graphrw::proto::{GraphDef, NodeDef};
    let node = nodes
        .iter()
        .map(|(name, op, inputs)| NodeDef {
            name: name.to_string(),
            op: op.to_string(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .collect();
    graphrw::Graph::from_def(&GraphDef { node, ..Default::default() })
}

/// A node: name, op, inputs, attributes.
pub fn node_def(
    name: &str,
    op: &str,
    inputs: &[&str],
    attrs: Vec<(&str, graphrw::proto::attr_value::Value)>,
) -> graphrw::proto::NodeDef {
    graphrw::proto::NodeDef {
        name: name.into(),
        op: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        attr: attrs
            .into_iter()
            .map(|(k, v)| (k.to_string(), graphrw::proto::AttrValue { value: Some(v) }))
            .collect(),
        ..Default::default()
    }
}
