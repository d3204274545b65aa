//! Graph validity: what the seed's day 23 checks (unique names, every input
//! resolves) and more: input syntax, output ports the producer has, control
//! inputs after data inputs, and cycles outside TensorFlow loop frames.
//! Each problem names the node it is in.

use std::fmt;

use serde::Serialize;

use crate::graph::{BadInput, Graph, NodeId, Port};
use crate::input::parse_input;
use crate::ops;

/// One thing wrong with a graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// Two nodes share a name.
    DuplicateName {
        /// The repeated name.
        node: String,
        /// Positions of the first and the repeated node in the file.
        first: usize,
        /// The repeated node's position.
        again: usize,
    },
    /// An input string is not `node`, `node:N` or `^node`.
    MalformedInput {
        /// The node holding the input.
        node: String,
        /// The input string.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An input names a node the graph does not have.
    MissingInput {
        /// The node holding the input.
        node: String,
        /// The input string.
        input: String,
    },
    /// An input reads a port its producer does not have.
    NoSuchPort {
        /// The node holding the input.
        node: String,
        /// The input string.
        input: String,
        /// The producer's op.
        op: String,
        /// How many outputs the producer has.
        outputs: u32,
    },
    /// A data input comes after a control input.
    DataAfterControl {
        /// The node holding the input.
        node: String,
        /// The data input.
        input: String,
    },
    /// The node's bytes do not decode as a NodeDef (a corrupt attribute...).
    Undecodable {
        /// The node.
        node: String,
        /// prost's message.
        reason: String,
    },
    /// A `_class` attribute colocates the node with a node the graph does
    /// not have (TensorFlow refuses to import such a graph).
    UnknownColocation {
        /// The node holding the attribute.
        node: String,
        /// The node it names.
        with: String,
    },
    /// The nodes form a cycle that is not a TensorFlow loop (through NextIteration).
    Cycle {
        /// The cycle, each node an input of the next, the last an input of the first.
        nodes: Vec<String>,
    },
}

impl Problem {
    /// The node the problem is in (the first, for a cycle).
    pub fn node(&self) -> &str {
        match self {
            Problem::DuplicateName { node, .. }
            | Problem::MalformedInput { node, .. }
            | Problem::MissingInput { node, .. }
            | Problem::NoSuchPort { node, .. }
            | Problem::DataAfterControl { node, .. }
            | Problem::Undecodable { node, .. }
            | Problem::UnknownColocation { node, .. } => node,
            Problem::Cycle { nodes } => nodes.first().map_or("", String::as_str),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::DuplicateName { node, first, again } => {
                write!(f, "node `{node}`: the name is used twice (nodes #{first} and #{again})")
            }
            Problem::MalformedInput { node, input, reason } => {
                write!(f, "node `{node}`: input `{input}` is malformed: {reason}")
            }
            Problem::MissingInput { node, input } => {
                write!(f, "node `{node}`: input `{input}` names no node of the graph")
            }
            Problem::NoSuchPort { node, input, op, outputs } => write!(
                f,
                "node `{node}`: input `{input}` reads a port its producer lacks ({op} has {outputs} output{})",
                if *outputs == 1 { "" } else { "s" }
            ),
            Problem::DataAfterControl { node, input } => {
                write!(f, "node `{node}`: data input `{input}` comes after a control input")
            }
            Problem::Undecodable { node, reason } => {
                write!(f, "node `{node}`: does not decode as a NodeDef: {reason}")
            }
            Problem::UnknownColocation { node, with } => {
                write!(
                    f,
                    "node `{node}`: `_class` colocates it with `{with}`, which is not in the graph"
                )
            }
            Problem::Cycle { nodes } => {
                write!(f, "node `{}`: cycle {}", self.node(), nodes.join(" -> "))?;
                write!(f, " -> {}", nodes.first().map_or("", String::as_str))
            }
        }
    }
}

/// Every problem of the graph, in file order of the nodes they are in
/// (cycles last).
pub fn validate(graph: &Graph) -> Vec<Problem> {
    let mut problems = Vec::new();
    let name = |id: NodeId| graph.name(id).to_string();
    let first_of = |id: NodeId| graph.id(graph.name(id)).unwrap_or(id) as usize;
    for &id in graph.duplicates() {
        problems.push(Problem::DuplicateName {
            node: name(id),
            first: first_of(id),
            again: id as usize,
        });
    }
    for (id, slot, bad) in graph.bad_inputs() {
        let input = graph.input_str(*id, *slot).to_string();
        problems.push(match bad {
            BadInput::Syntax(e) => {
                Problem::MalformedInput { node: name(*id), input, reason: e.to_string() }
            }
            BadInput::Missing => Problem::MissingInput { node: name(*id), input },
        });
    }
    for id in graph.ids() {
        match graph.node_def(id) {
            Err(e) => problems.push(Problem::Undecodable { node: name(id), reason: e.reason }),
            Ok(def) => {
                for with in colocated_with(&def) {
                    if graph.id(with).is_none() {
                        let with = with.to_string();
                        problems.push(Problem::UnknownColocation { node: name(id), with });
                    }
                }
            }
        }
        let mut seen_control = false;
        for (slot, edge) in graph.inputs(id).iter().enumerate() {
            let text = graph.input_str(id, slot as u32);
            let is_control = parse_input(text).is_ok_and(|i| i.is_control());
            if is_control {
                seen_control = true;
            } else if seen_control {
                problems
                    .push(Problem::DataAfterControl { node: name(id), input: text.to_string() });
            }
            if let (Some(src), Port::Data(port)) = (edge.src(), edge.port()) {
                if let Some(outputs) = ops::num_outputs(graph, src) {
                    if port >= outputs {
                        problems.push(Problem::NoSuchPort {
                            node: name(id),
                            input: text.to_string(),
                            op: graph.op(src).to_string(),
                            outputs,
                        });
                    }
                }
            }
        }
    }
    // Problems of one node stay together, in file order.
    problems.sort_by_key(|p| graph.id(p.node()).unwrap_or(NodeId::MAX));
    if let Some(cycle) = find_cycle(graph) {
        problems.push(Problem::Cycle { nodes: cycle.into_iter().map(name).collect() });
    }
    problems
}

/// The nodes a node's `_class` attribute colocates it with (`loc:@name`).
pub fn colocated_with(def: &crate::proto::NodeDef) -> impl Iterator<Item = &str> {
    let list = match def.attr.get("_class").and_then(|a| a.value.as_ref()) {
        Some(crate::proto::attr_value::Value::List(l)) => l.s.as_slice(),
        _ => &[],
    };
    list.iter().filter_map(|s| std::str::from_utf8(s).ok()?.strip_prefix("loc:@"))
}

/// True for the edges TensorFlow's loops close back through.
fn is_back_edge(graph: &Graph, src: NodeId) -> bool {
    matches!(graph.op(src), "NextIteration" | "RefNextIteration")
}

/// Orders the nodes so that each comes after all its inputs (data and
/// control), ignoring loop back edges. Returns the order, and whether every
/// node got a place (false means a cycle).
pub fn topological_order(graph: &Graph) -> (Vec<NodeId>, bool) {
    let n = graph.len();
    let mut pending = vec![0u32; n];
    for id in graph.ids() {
        pending[id as usize] = graph
            .inputs(id)
            .iter()
            .filter(|e| e.src().is_some_and(|src| !is_back_edge(graph, src)))
            .count() as u32;
    }
    let mut order: Vec<NodeId> = graph.ids().filter(|&id| pending[id as usize] == 0).collect();
    let mut next = 0;
    while next < order.len() {
        let id = order[next];
        next += 1;
        if is_back_edge(graph, id) {
            continue;
        }
        for consumer in graph.consumers(id) {
            let count = &mut pending[consumer.node as usize];
            *count -= 1;
            if *count == 0 {
                order.push(consumer.node);
            }
        }
    }
    let complete = order.len() == n;
    (order, complete)
}

/// One cycle, if the graph has any outside loop frames, starting at its
/// earliest node in file order.
fn find_cycle(graph: &Graph) -> Option<Vec<NodeId>> {
    let (order, complete) = topological_order(graph);
    if complete {
        return None;
    }
    let mut placed = vec![false; graph.len()];
    for &id in &order {
        placed[id as usize] = true;
    }
    // A node left out has an input that was left out too, so walking
    // backwards through left-out inputs must come round to a node twice.
    let start = graph.ids().find(|&id| !placed[id as usize])?;
    let mut step_of = vec![usize::MAX; graph.len()];
    let mut path = vec![start];
    step_of[start as usize] = 0;
    let mut at = start;
    loop {
        let prev = graph
            .inputs(at)
            .iter()
            .filter_map(|e| e.src())
            .find(|&src| !placed[src as usize] && !is_back_edge(graph, src))?;
        if step_of[prev as usize] != usize::MAX {
            let mut cycle = path.split_off(step_of[prev as usize]);
            cycle.reverse();
            // Start at the node that comes first in the file, for stable reports.
            let first = (0..cycle.len()).min_by_key(|&i| cycle[i]).unwrap_or(0);
            cycle.rotate_left(first);
            return Some(cycle);
        }
        step_of[prev as usize] = path.len();
        path.push(prev);
        at = prev;
    }
}
