//! Pruning: keep what the graph outputs reach through data and control
//! edges, as TensorFlow's `extract_sub_graph` does, in file order.

use crate::graph::{Graph, NodeId, NodeSource};
use crate::input::parse_tensor_name;

/// A requested output that the graph does not have.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum UnknownOutput {
    /// No node has that name.
    #[error("output `{name}` names no node of the graph")]
    #[diagnostic(code(graphrw::prune::unknown_output))]
    NoNode {
        /// The name as given.
        name: String,
        /// The closest node name, if any is close.
        #[help]
        suggestion: Option<String>,
    },
    /// Not `node` nor `node:N` (and no node has it for a name).
    #[error("output `{name}` is not a tensor name: write `node` or `node:N`")]
    #[diagnostic(code(graphrw::prune::bad_output_name))]
    NotATensor {
        /// The name as given.
        name: String,
    },
    /// The node has no output of that number.
    #[error("output `{name}`: `{node}` ({op}) has {outputs} output{}, so no port {port}", if *outputs == 1 { "" } else { "s" })]
    #[diagnostic(code(graphrw::prune::unknown_port))]
    NoPort {
        /// The name as given.
        name: String,
        /// The node.
        node: String,
        /// Its op.
        op: String,
        /// How many outputs it has.
        outputs: u32,
        /// The port asked for.
        port: u32,
    },
}

impl UnknownOutput {
    /// The closest node name, when no node has the name given.
    pub fn suggestion(&self) -> Option<&str> {
        match self {
            UnknownOutput::NoNode { suggestion, .. } => suggestion.as_deref(),
            UnknownOutput::NoPort { .. } | UnknownOutput::NotATensor { .. } => None,
        }
    }
}

/// The nodes nothing consumes, through data or control edges: the graph's
/// outputs when the user names none.
pub fn default_outputs(graph: &Graph) -> Vec<NodeId> {
    graph.ids().filter(|&id| graph.consumers(id).is_empty()).collect()
}

/// Resolves tensor names (`node`, port 0, or `node:N`) to nodes and ports.
/// A port the node's op is known not to have is refused (an op outside
/// the table of well-known ops may have any).
pub fn resolve_tensors<S: AsRef<str>>(
    graph: &Graph,
    names: &[S],
) -> Result<Vec<(NodeId, u32)>, UnknownOutput> {
    names
        .iter()
        .map(|name| {
            let name = name.as_ref();
            let (node, port) = match parse_tensor_name(name) {
                Ok(tensor) => tensor,
                // A name TensorFlow would not give a node may still be one.
                Err(_) if graph.id(name).is_some() => (name, 0),
                Err(_) => return Err(UnknownOutput::NotATensor { name: name.to_string() }),
            };
            let id = graph.id(node).ok_or_else(|| UnknownOutput::NoNode {
                name: name.to_string(),
                suggestion: closest_name(graph, node).map(|s| format!("did you mean `{s}`?")),
            })?;
            match crate::ops::num_outputs(graph, id) {
                Some(outputs) if port >= outputs => Err(UnknownOutput::NoPort {
                    name: name.to_string(),
                    node: node.to_string(),
                    op: graph.op(id).to_string(),
                    outputs,
                    port,
                }),
                _ => Ok((id, port)),
            }
        })
        .collect()
}

/// Resolves output names (`node` or `node:N`) to their nodes, as
/// [`resolve_tensors`] does.
pub fn resolve_outputs<S: AsRef<str>>(
    graph: &Graph,
    names: &[S],
) -> Result<Vec<NodeId>, UnknownOutput> {
    Ok(resolve_tensors(graph, names)?.into_iter().map(|(id, _)| id).collect())
}

/// The tensors the user named, or port 0 of the default outputs.
pub fn tensors_or_default<S: AsRef<str>>(
    graph: &Graph,
    names: &[S],
) -> Result<Vec<(NodeId, u32)>, UnknownOutput> {
    match names.is_empty() {
        true => Ok(default_outputs(graph).into_iter().map(|id| (id, 0)).collect()),
        false => resolve_tensors(graph, names),
    }
}

/// The outputs the user named, or the default ones.
pub fn outputs_or_default<S: AsRef<str>>(
    graph: &Graph,
    names: &[S],
) -> Result<Vec<NodeId>, UnknownOutput> {
    Ok(tensors_or_default(graph, names)?.into_iter().map(|(id, _)| id).collect())
}

/// Marks every node that one of `roots` reaches through inputs.
pub fn reachable(graph: &Graph, roots: &[NodeId]) -> Vec<bool> {
    let mut keep = vec![false; graph.len()];
    let mut stack: Vec<NodeId> = Vec::with_capacity(roots.len());
    for &root in roots {
        if !keep[root as usize] {
            keep[root as usize] = true;
            stack.push(root);
        }
    }
    while let Some(id) = stack.pop() {
        for edge in graph.inputs(id) {
            if let Some(src) = edge.src() {
                if !keep[src as usize] {
                    keep[src as usize] = true;
                    stack.push(src);
                }
            }
        }
    }
    keep
}

/// The graph without the nodes `outputs` do not reach. Everything else
/// (versions, library, debug info, the kept nodes' bytes and order) is kept.
pub fn prune(graph: &Graph, outputs: &[NodeId]) -> Graph {
    let keep = reachable(graph, outputs);
    let nodes = graph.ids().filter(|&id| keep[id as usize]).map(NodeSource::Existing);
    graph.rebuilt(nodes).expect("existing nodes are not read again")
}

/// The node name closest to `name` by edit distance, when close enough to
/// be a likely typo.
pub fn closest_name<'g>(graph: &'g Graph, name: &str) -> Option<&'g str> {
    let limit = (name.len() / 3).max(2);
    graph
        .ids()
        .map(|id| graph.name(id))
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over chars.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(diag + usize::from(ca != *cb));
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}
