//! Pruning: keep what the graph outputs reach through data and control
//! edges, as TensorFlow's `extract_sub_graph` does, in file order.

use crate::graph::{Graph, NodeId, NodeSource};
use crate::input::parse_tensor_name;

/// A requested output that the graph does not have.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("output `{name}` names no node of the graph")]
#[diagnostic(code(graphrw::prune::unknown_output))]
pub struct UnknownOutput {
    /// The name as given.
    pub name: String,
    /// The closest node name, if any is close.
    #[help]
    pub suggestion: Option<String>,
}

/// The nodes nothing consumes, through data or control edges: the graph's
/// outputs when the user names none.
pub fn default_outputs(graph: &Graph) -> Vec<NodeId> {
    graph.ids().filter(|&id| graph.consumers(id).is_empty()).collect()
}

/// Resolves output names (`node` or `node:N`; the port is ignored) to ids.
pub fn resolve_outputs<S: AsRef<str>>(
    graph: &Graph,
    names: &[S],
) -> Result<Vec<NodeId>, UnknownOutput> {
    names
        .iter()
        .map(|name| {
            let name = name.as_ref();
            let node = parse_tensor_name(name).map_or(name, |(node, _)| node);
            graph.id(node).ok_or_else(|| UnknownOutput {
                name: name.to_string(),
                suggestion: closest_name(graph, node).map(|s| format!("did you mean `{s}`?")),
            })
        })
        .collect()
}

/// The outputs the user named, or the default ones.
pub fn outputs_or_default<S: AsRef<str>>(
    graph: &Graph,
    names: &[S],
) -> Result<Vec<NodeId>, UnknownOutput> {
    if names.is_empty() { Ok(default_outputs(graph)) } else { resolve_outputs(graph, names) }
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
