//! The indexed graph: a `GraphDef` plus the indexes every later stage needs.
//!
//! Nodes keep their file order and are addressed by [`NodeId`], their index
//! in `GraphDef.node`. The indexes are built once, in one pass over the
//! inputs: nodes by name, nodes by op, each node's parsed inputs, and each
//! node's consumers (data consumers per output port, and control consumers).
//! Problems met while indexing (duplicate names, inputs that resolve to
//! nothing) are kept, not fatal; [`crate::validate`] reports them.

use indexmap::IndexMap;
use rustc_hash::FxBuildHasher;

use crate::input::{InputRef, InputSyntaxError, parse_input};
use crate::proto::{GraphDef, NodeDef};

/// A node's position in `GraphDef.node`.
pub type NodeId = u32;

type Map<K, V> = IndexMap<K, V, FxBuildHasher>;

/// Which output of a producer an edge reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Port {
    /// Output `n`.
    Data(u32),
    /// A control edge (`^producer`).
    Control,
}

/// One entry of a node's input list, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    /// The producer, or `None` if the input is malformed or names no node.
    pub src: Option<NodeId>,
    /// What the edge reads from it.
    pub port: Port,
}

/// One use of a node's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Consumer {
    /// The consuming node.
    pub node: NodeId,
    /// The position in the consumer's input list.
    pub slot: u32,
    /// The producer's port read (or `Control`).
    pub port: Port,
}

/// An input entry that could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadInput {
    /// The string is not of the form `node`, `node:N` or `^node`.
    Syntax(InputSyntaxError),
    /// No node has the name.
    Missing,
}

/// A `GraphDef` with its indexes. Immutable: rewriting produces a new graph.
#[derive(Debug)]
pub struct Graph {
    def: GraphDef,
    by_name: Map<Box<str>, NodeId>,
    by_op: Map<Box<str>, Vec<NodeId>>,
    /// All nodes' edges; node `i` owns `edges[edge_start[i]..edge_start[i + 1]]`.
    edges: Vec<Edge>,
    edge_start: Vec<u32>,
    /// All consumers, grouped by producer, in the same layout.
    consumers: Vec<Consumer>,
    consumer_start: Vec<u32>,
    duplicates: Vec<NodeId>,
    bad_inputs: Vec<(NodeId, u32, BadInput)>,
}

impl Graph {
    /// Indexes `def`. Never fails: problems are recorded for validation.
    pub fn new(def: GraphDef) -> Graph {
        let n = def.node.len();
        assert!(n < u32::MAX as usize, "more nodes than NodeId can address");
        let mut by_name: Map<Box<str>, NodeId> = Map::with_capacity_and_hasher(n, FxBuildHasher);
        let mut by_op: Map<Box<str>, Vec<NodeId>> = Map::default();
        let mut duplicates = Vec::new();
        for (id, node) in def.node.iter().enumerate() {
            let id = id as NodeId;
            match by_name.entry(node.name.as_str().into()) {
                indexmap::map::Entry::Occupied(_) => duplicates.push(id),
                indexmap::map::Entry::Vacant(slot) => {
                    slot.insert(id);
                }
            }
            match by_op.get_mut(node.op.as_str()) {
                Some(ids) => ids.push(id),
                None => {
                    by_op.insert(node.op.as_str().into(), vec![id]);
                }
            }
        }

        let total: usize = def.node.iter().map(|node| node.input.len()).sum();
        let mut edges = Vec::with_capacity(total);
        let mut edge_start = Vec::with_capacity(n + 1);
        let mut bad_inputs = Vec::new();
        let mut fan_out = vec![0u32; n + 1];
        for (id, node) in def.node.iter().enumerate() {
            edge_start.push(edges.len() as u32);
            for (slot, text) in node.input.iter().enumerate() {
                let edge = match parse_input(text) {
                    Ok(input) => {
                        let port = match input {
                            InputRef::Data { port, .. } => Port::Data(port),
                            InputRef::Control { .. } => Port::Control,
                        };
                        let src = by_name.get(input.node()).copied();
                        match src {
                            Some(src) => fan_out[src as usize] += 1,
                            None => bad_inputs.push((id as NodeId, slot as u32, BadInput::Missing)),
                        }
                        Edge { src, port }
                    }
                    Err(e) => {
                        bad_inputs.push((id as NodeId, slot as u32, BadInput::Syntax(e)));
                        Edge {
                            src: None,
                            port: Port::Control,
                        }
                    }
                };
                edges.push(edge);
            }
        }
        edge_start.push(edges.len() as u32);

        // Counting sort of the edges by producer gives the consumer lists,
        // each in (consumer, slot) order.
        let mut consumer_start = Vec::with_capacity(n + 1);
        let mut acc = 0u32;
        for count in &fan_out[..n] {
            consumer_start.push(acc);
            acc += count;
        }
        consumer_start.push(acc);
        let mut fill = consumer_start.clone();
        let placeholder = Consumer {
            node: 0,
            slot: 0,
            port: Port::Control,
        };
        let mut consumers = vec![placeholder; acc as usize];
        for id in 0..n {
            let range = edge_start[id] as usize..edge_start[id + 1] as usize;
            for (slot, edge) in edges[range].iter().enumerate() {
                if let Some(src) = edge.src {
                    let at = &mut fill[src as usize];
                    consumers[*at as usize] = Consumer {
                        node: id as NodeId,
                        slot: slot as u32,
                        port: edge.port,
                    };
                    *at += 1;
                }
            }
        }

        Graph {
            def,
            by_name,
            by_op,
            edges,
            edge_start,
            consumers,
            consumer_start,
            duplicates,
            bad_inputs,
        }
    }

    /// The underlying GraphDef.
    pub fn def(&self) -> &GraphDef {
        &self.def
    }

    /// Gives the GraphDef back, dropping the indexes.
    pub fn into_def(self) -> GraphDef {
        self.def
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.def.node.len()
    }

    /// True when the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.def.node.is_empty()
    }

    /// All node ids, in file order.
    pub fn ids(&self) -> impl ExactSizeIterator<Item = NodeId> + use<> {
        0..self.def.node.len() as NodeId
    }

    /// The node with id `id`.
    pub fn node(&self, id: NodeId) -> &NodeDef {
        &self.def.node[id as usize]
    }

    /// The node's name.
    pub fn name(&self, id: NodeId) -> &str {
        &self.def.node[id as usize].name
    }

    /// The id of the node named `name` (the first one, if names repeat).
    pub fn id(&self, name: &str) -> Option<NodeId> {
        self.by_name.get(name).copied()
    }

    /// Nodes whose op is `op`, in file order.
    pub fn nodes_with_op(&self, op: &str) -> &[NodeId] {
        self.by_op.get(op).map_or(&[], Vec::as_slice)
    }

    /// Every op with its nodes, in order of first appearance.
    pub fn ops(&self) -> impl Iterator<Item = (&str, &[NodeId])> {
        self.by_op.iter().map(|(op, ids)| (&**op, ids.as_slice()))
    }

    /// The node's inputs, resolved, in `NodeDef.input` order.
    pub fn inputs(&self, id: NodeId) -> &[Edge] {
        let id = id as usize;
        &self.edges[self.edge_start[id] as usize..self.edge_start[id + 1] as usize]
    }

    /// Every use of the node's outputs and every control edge from it,
    /// ordered by consumer id then slot.
    pub fn consumers(&self, id: NodeId) -> &[Consumer] {
        let id = id as usize;
        &self.consumers[self.consumer_start[id] as usize..self.consumer_start[id + 1] as usize]
    }

    /// Uses of output `port` of the node.
    pub fn port_consumers(&self, id: NodeId, port: u32) -> impl Iterator<Item = &Consumer> {
        self.consumers(id)
            .iter()
            .filter(move |c| c.port == Port::Data(port))
    }

    /// Nodes that wait on the node through a control edge.
    pub fn control_consumers(&self, id: NodeId) -> impl Iterator<Item = &Consumer> {
        self.consumers(id)
            .iter()
            .filter(|c| c.port == Port::Control)
    }

    /// Nodes whose name is taken by an earlier node.
    pub fn duplicates(&self) -> &[NodeId] {
        &self.duplicates
    }

    /// Inputs that resolve to no node: (node, slot, why).
    pub fn bad_inputs(&self) -> &[(NodeId, u32, BadInput)] {
        &self.bad_inputs
    }
}
