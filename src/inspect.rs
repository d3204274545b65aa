//! The summary behind `graphrw inspect`: what a model holds, what it takes
//! and gives, and what is wrong with it.

use std::fmt::{self, Write as _};

use serde::Serialize;

use crate::graph::Graph;
use crate::proto::{attr_value, dtype_name};
use crate::prune::default_outputs;
use crate::validate::{Problem, validate};

/// A graph input: a Placeholder or PlaceholderWithDefault.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InputInfo {
    /// The node's name.
    pub name: String,
    /// `Placeholder` or `PlaceholderWithDefault`.
    pub op: String,
    /// The element type (`float32`, `bool`...).
    pub dtype: String,
    /// `[?,128,128,3]`, or `<unknown>`.
    pub shape: String,
}

/// Everything `graphrw inspect` reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Number of nodes.
    pub nodes: usize,
    /// Nodes per op, most frequent first (ties by name).
    pub ops: Vec<(String, usize)>,
    /// Placeholders, in file order.
    pub inputs: Vec<InputInfo>,
    /// Nodes nothing consumes, in file order.
    pub outputs: Vec<String>,
    /// Number of Const nodes.
    pub constants: usize,
    /// Bytes the Const nodes' values occupy.
    pub constant_bytes: u64,
    /// Functions in the library.
    pub functions: usize,
    /// `versions.producer`, if set.
    pub producer: Option<i32>,
    /// Validation problems.
    pub problems: Vec<Problem>,
}

/// An attribute's value; undecodable ones count as absent here (validation
/// reports them).
fn attr(graph: &Graph, id: crate::NodeId, key: &str) -> Option<attr_value::Value> {
    graph.attr(id, key).ok()??.value
}

/// Summarises the graph.
pub fn summarize(graph: &Graph) -> Summary {
    let mut ops: Vec<(String, usize)> =
        graph.ops().map(|(op, ids)| (op.to_string(), ids.len())).collect();
    ops.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));

    let mut inputs = Vec::new();
    for op in ["Placeholder", "PlaceholderWithDefault"] {
        for &id in graph.nodes_with_op(op) {
            let dtype = match attr(graph, id, "dtype") {
                Some(attr_value::Value::Type(t)) => dtype_name(t),
                _ => "?".to_string(),
            };
            let shape = match attr(graph, id, "shape") {
                Some(attr_value::Value::Shape(s)) => s.display(),
                _ => "<unknown>".to_string(),
            };
            let name = graph.name(id).to_string();
            inputs.push((id, InputInfo { name, op: op.to_string(), dtype, shape }));
        }
    }
    inputs.sort_by_key(|(id, _)| *id);

    let consts = graph.nodes_with_op("Const");
    let constant_bytes = consts
        .iter()
        .filter_map(|&id| match attr(graph, id, "value") {
            Some(attr_value::Value::Tensor(t)) => Some(t.value_bytes()),
            _ => None,
        })
        .sum();

    let header = graph.header().unwrap_or_default();
    Summary {
        nodes: graph.len(),
        ops,
        inputs: inputs.into_iter().map(|(_, info)| info).collect(),
        outputs: default_outputs(graph).into_iter().map(|id| graph.name(id).to_string()).collect(),
        constants: consts.len(),
        constant_bytes,
        functions: header.library.as_ref().map_or(0, |l| l.function.len()),
        producer: header.versions.as_ref().map(|v| v.producer),
        problems: validate(graph),
    }
}

/// `1.2 MB`, `340 B`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        if value < 1000.0 {
            break;
        }
        value /= 1000.0;
        unit = u;
    }
    format!("{value:.1} {unit}")
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        writeln!(out, "nodes:      {}", self.nodes)?;
        writeln!(
            out,
            "constants:  {} in {} Const node{}",
            human_bytes(self.constant_bytes),
            self.constants,
            if self.constants == 1 { "" } else { "s" }
        )?;
        writeln!(out, "functions:  {}", self.functions)?;
        if let Some(producer) = self.producer {
            writeln!(out, "producer:   {producer}")?;
        }
        writeln!(out, "inputs:")?;
        let width = self.inputs.iter().map(|i| i.name.len()).max().unwrap_or(0);
        for input in &self.inputs {
            writeln!(
                out,
                "  {:width$}  {} {}  ({})",
                input.name, input.dtype, input.shape, input.op
            )?;
        }
        if self.inputs.is_empty() {
            writeln!(out, "  (none)")?;
        }
        writeln!(out, "outputs:")?;
        for output in &self.outputs {
            writeln!(out, "  {output}")?;
        }
        writeln!(out, "ops:")?;
        let width = self.ops.iter().map(|(op, _)| op.len()).max().unwrap_or(0);
        for (op, count) in &self.ops {
            writeln!(out, "  {op:width$}  {count:>6}")?;
        }
        if self.problems.is_empty() {
            writeln!(out, "problems:   none")?;
        } else {
            writeln!(out, "problems:   {}", self.problems.len())?;
            for problem in &self.problems {
                writeln!(out, "  {problem}")?;
            }
        }
        f.write_str(&out)
    }
}
