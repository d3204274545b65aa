//! The indexed graph: a GraphDef's nodes as slices of the file's bytes, plus
//! the indexes every later stage needs.
//!
//! Reading a model does not decode its nodes into owned messages: each node
//! keeps its encoded bytes (a zero-copy slice of the buffer the file was
//! read into), and only the name, op and input strings are located in them.
//! Attributes are decoded on demand, one at a time. Writing copies the bytes
//! of every node back out, so a node no rule touched comes out exactly as it
//! went in. This keeps reading and writing a 100 MB model bound by memory
//! bandwidth, and a million-node graph in a few hundred bytes per node.
//!
//! Nodes keep their file order and are addressed by [`NodeId`], their
//! position. The indexes (nodes by name, nodes by op, each node's parsed
//! inputs, each node's consumers) are built in one pass. Problems met while
//! indexing (duplicate names, inputs that resolve to nothing) are kept, not
//! fatal; [`crate::validate`] reports them.

use std::io::{self, Write};

use bytes::Bytes;
use indexmap::IndexMap;
use prost::Message;
use rustc_hash::FxBuildHasher;

use crate::input::{InputRef, InputSyntaxError, parse_input};
use crate::proto::{AttrValue, GraphDef, NodeDef};
use crate::wire::{self, LEN, VARINT};

mod rebuild;

pub use rebuild::{NodeSource, Part};

/// A node's position in the graph (its index in `GraphDef.node`).
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

/// One entry of a node's input list, resolved: its producer ([`Edge::src`])
/// and what it reads from it ([`Edge::port`]). Eight bytes (a graph holds
/// one per input, a rewrite one per input of every node it rewires).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// The producer's id; `NONE` for none.
    s: u32,
    /// The port read; `NONE` for a control edge.
    p: u32,
}

impl Edge {
    /// Stands for "no producer" and for a control edge.
    const NONE: u32 = u32::MAX;

    /// The edge reading `port` of `src` (`None`: the input is malformed or
    /// names no node).
    pub fn new(src: Option<NodeId>, port: Port) -> Edge {
        debug_assert!(src != Some(Self::NONE) && port != Port::Data(Self::NONE));
        let s = src.unwrap_or(Self::NONE);
        match port {
            Port::Data(p) => Edge { s, p },
            Port::Control => Edge { s, p: Self::NONE },
        }
    }

    /// The producer, or `None` if the input is malformed or names no node.
    pub fn src(&self) -> Option<NodeId> {
        (self.s != Self::NONE).then_some(self.s)
    }

    /// What the edge reads from its producer.
    pub fn port(&self) -> Port {
        match self.p {
            Self::NONE => Port::Control,
            p => Port::Data(p),
        }
    }
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge").field("src", &self.src()).field("port", &self.port()).finish()
    }
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

/// Why bytes are not a GraphDef.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(pub String);

/// Why a node's attributes could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("node `{node}`: cannot decode {what}: {reason}")]
pub struct NodeDecodeError {
    /// The node's name.
    pub node: String,
    /// What was being decoded.
    pub what: String,
    /// prost's message.
    pub reason: String,
}

/// A range of a node's bytes.
#[derive(Clone, Copy, Debug, Default)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn of(range: std::ops::Range<usize>) -> Span {
        Span { start: range.start as u32, len: (range.end - range.start) as u32 }
    }

    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..(self.start + self.len) as usize
    }
}

/// One node: where its encoded `NodeDef` is, and where its strings are in
/// it (relative to its start).
#[derive(Clone, Copy, Debug)]
struct NodeRec {
    /// Into `Graph::bufs`.
    buf: u32,
    raw: Span,
    name: Span,
    op: Span,
    /// Into `Graph::input_spans`.
    first_input: u32,
    inputs: u32,
}

impl NodeRec {
    /// A place held for a node not scanned yet.
    const STAND_IN: NodeRec = NodeRec {
        buf: 0,
        raw: Span { start: 0, len: 0 },
        name: Span { start: 0, len: 0 },
        op: Span { start: 0, len: 0 },
        first_input: 0,
        inputs: 0,
    };
}

/// The encoded `AttrValue` of attribute `key` in an encoded NodeDef (empty
/// for an entry without a value; the last entry wins if the key repeats),
/// found by walking the node's fields, without decoding anything else.
pub fn attr_raw<'a>(raw: &'a [u8], key: &str) -> Result<Option<&'a [u8]>, wire::WireError> {
    if let Some(found) = attr_raw_plain(raw, key.as_bytes()) {
        return Ok(found);
    }
    attr_raw_walk(raw, key)
}

/// [`attr_raw`] for a node written as TensorFlow and prost write them
/// (one-byte field keys, varint and length-delimited fields, each map entry
/// its key then at most its value), read with a few comparisons per field;
/// `None` for anything else, which the general walk then reads (and reports
/// if malformed). Attribute lookups run for every candidate of every rule.
fn attr_raw_plain<'a>(raw: &'a [u8], key: &[u8]) -> Option<Option<&'a [u8]>> {
    let mut found = None;
    let mut at = 0;
    while at < raw.len() {
        // Field 5 (attr), length-delimited: a map entry; others skipped.
        let (0x2a, wire::Plain::Len(entry)) = wire::plain_field(raw, &mut at)? else { continue };
        let (&[0x0a, key_len], rest) = entry.split_first_chunk::<2>()? else { return None };
        if key_len >= 0x80 {
            return None; // a key of 128 bytes or more
        }
        let entry_key = rest.get(..usize::from(key_len))?;
        if !wire::same(entry_key, key) {
            continue;
        }
        let rest = &rest[entry_key.len()..];
        found = Some(match rest.split_first() {
            None => rest,
            Some((0x12, value)) => {
                let mut p = 0;
                let value_len = usize::try_from(wire::read_varint(value, &mut p)?).ok()?;
                if p.checked_add(value_len)? != value.len() {
                    return None;
                }
                &value[p..]
            }
            Some(_) => return None,
        });
    }
    Some(found)
}

/// [`attr_raw`] by the general field walk.
fn attr_raw_walk<'a>(raw: &'a [u8], key: &str) -> Result<Option<&'a [u8]>, wire::WireError> {
    let mut found = None;
    'entries: for field in wire::fields(raw) {
        let field = field?;
        if field.number != 5 || field.wire != LEN {
            continue;
        }
        let entry = &raw[field.payload()];
        let mut entry_key: &[u8] = b"";
        let mut value: &[u8] = &entry[entry.len()..];
        for part in wire::fields(entry) {
            let part = part?;
            match (part.number, part.wire) {
                // An entry for another key is passed over as soon as its
                // key is read (encoders write it first).
                (1, LEN) if entry[part.payload()] != *key.as_bytes() => continue 'entries,
                (1, LEN) => entry_key = &entry[part.payload()],
                (2, LEN) => value = &entry[part.payload()],
                _ => {}
            }
        }
        if entry_key == key.as_bytes() {
            found = Some(value);
        }
    }
    Ok(found)
}

/// A GraphDef with its indexes. Immutable: rewriting builds a new graph.
///
/// The indexes are built on first use, so reading and writing a model
/// without querying it (`convert`) costs one scan of its bytes.
#[derive(Clone, Debug)]
pub struct Graph {
    /// The buffers the nodes live in: the file, then one per rebuild.
    bufs: Vec<Bytes>,
    nodes: Vec<NodeRec>,
    input_spans: Vec<Span>,
    /// The top-level fields other than nodes (library, versions, debug
    /// info...), each with its key, in file order.
    tail: Vec<Bytes>,
    index: std::sync::OnceLock<std::sync::Arc<Index>>,
    /// The parent's index, when this graph was rebuilt from an indexed one.
    seed: Option<std::sync::Arc<Seed>>,
}

/// The name, op, edge and consumer indexes of a graph.
///
/// Names are indexed by a 64-bit hash of the name's bytes (in the graph's
/// buffer), so a million names cost no allocation; a lookup checks the name
/// itself, and the rare names whose hash another name took are kept in
/// `collisions`. The hashes are split between maps by [`shard`] (one map per
/// core for a large graph, each filled on its own core).
#[derive(Clone, Debug)]
struct Index {
    by_name: Vec<Map<u64, NodeId>>,
    collisions: std::collections::HashMap<Box<str>, NodeId>,
    by_op: Map<Box<str>, Vec<NodeId>>,
    /// Each node's op as its position in `by_op`: reading an op through it
    /// touches a few hot strings instead of the node's bytes.
    op_of: Vec<u32>,
    /// All nodes' edges; node `i` owns `edges[edge_start[i]..edge_start[i + 1]]`.
    edges: Vec<Edge>,
    edge_start: Vec<u32>,
    /// All consumers, grouped by producer, in the same layout.
    consumers: Vec<Consumer>,
    consumer_start: Vec<u32>,
    duplicates: Vec<NodeId>,
    bad_inputs: Vec<(NodeId, u32, BadInput)>,
}

/// GraphDef's top-level fields and their wire types.
fn top_level_wire(number: u32) -> Option<u8> {
    match number {
        1 | 2 | 4 | 5 => Some(LEN),
        3 => Some(VARINT),
        _ => None,
    }
}

impl Graph {
    /// Indexes an encoded GraphDef. The nodes share `data`; nothing is copied.
    ///
    /// Fails when the top level is not a GraphDef's (unknown fields, wrong
    /// wire types, lengths past the end) or a node's name, op or inputs are
    /// malformed: prost would skip unknown fields, so arbitrary bytes would
    /// otherwise pass as a graph.
    pub fn from_bytes(data: Bytes) -> Result<Graph, FormatError> {
        let mut nodes = Vec::new();
        let mut tail = Vec::new();
        for field in wire::fields(&data) {
            let field = field.map_err(|e| FormatError(e.to_string()))?;
            let Some(expected) = top_level_wire(field.number) else {
                return Err(FormatError(format!(
                    "byte {}: field number {} (wire type {}) is not a GraphDef field",
                    field.start, field.number, field.wire
                )));
            };
            if field.wire != expected {
                return Err(FormatError(format!(
                    "byte {}: field {} has wire type {}, a GraphDef's has {expected}",
                    field.start, field.number, field.wire
                )));
            }
            if field.number == 1 {
                nodes.push(field.payload());
            } else {
                tail.push(data.slice(field.start..field.end));
            }
        }
        if nodes.is_empty() && !tail.iter().any(|f| f.first() == Some(&0x12)) {
            return Err(FormatError("it has neither nodes nor a function library".into()));
        }
        let mut graph = Graph::empty(tail);
        graph.bufs.push(data);
        graph.nodes.reserve_exact(nodes.len());
        graph.input_spans.reserve(nodes.len() * 2);
        for (index, range) in nodes.into_iter().enumerate() {
            graph.push_scanned(0, range, index)?;
        }
        Ok(graph)
    }

    fn empty(tail: Vec<Bytes>) -> Graph {
        Graph {
            bufs: Vec::new(),
            nodes: Vec::new(),
            input_spans: Vec::new(),
            tail,
            index: std::sync::OnceLock::new(),
            seed: None,
        }
    }

    /// Adds the node encoded at `range` of buffer `buf`, locating its strings.
    fn push_scanned(
        &mut self,
        buf: u32,
        range: std::ops::Range<usize>,
        index: usize,
    ) -> Result<(), FormatError> {
        assert!(self.nodes.len() < u32::MAX as usize, "more nodes than NodeId can address");
        let raw = &self.bufs[buf as usize][range.clone()];
        let first_input = self.input_spans.len() as u32;
        let (name, op) = locate_strings(index, raw, &mut self.input_spans)?;
        let inputs = self.input_spans.len() as u32 - first_input;
        self.nodes.push(NodeRec { buf, raw: Span::of(range), name, op, first_input, inputs });
        Ok(())
    }

    /// A graph of encoded `NodeDef`s (without keys) and encoded top-level
    /// fields (with keys).
    pub fn from_nodes(raw_nodes: Vec<Bytes>, tail: Vec<Bytes>) -> Result<Graph, FormatError> {
        Graph::empty(tail).rebuilt(raw_nodes.into_iter().map(NodeSource::Encoded))
    }

    /// Indexes an owned GraphDef (encoding it once).
    pub fn from_def(def: &GraphDef) -> Graph {
        let data = Bytes::from(def.encode_to_vec());
        Graph::from_bytes(data).expect("prost's own encoding of a GraphDef is one")
    }

    fn index(&self) -> &Index {
        self.index.get_or_init(|| {
            std::sync::Arc::new(match &self.seed {
                Some(seed) => Index::build_from(self, seed),
                None => Index::build(self),
            })
        })
    }
}

/// Graphs of fewer nodes are indexed on one core (splitting the work
/// would cost more than it saves).
const INDEX_PARALLEL_MIN: usize = 1 << 15;

impl Index {
    /// Builds every index from the graph's strings.
    fn build(graph: &Graph) -> Index {
        let n = graph.len();
        let shards = if n < INDEX_PARALLEL_MIN { 1 } else { crate::par::threads() };
        // The names' hashes, read and computed on every core; then each
        // core fills the maps of its shards, taking the nodes in order (the
        // first of a repeated name is the one indexed).
        let hashes: Vec<u64> = crate::par::ranges(n, INDEX_PARALLEL_MIN, |ids| {
            ids.map(|id| name_hash(graph.name(id as NodeId))).collect::<Vec<u64>>()
        })
        .concat();
        // A shard holds about `n / shards` names, give or take a few
        // hundred: room for a little more, so its map is never copied to grow.
        let room = n / shards + n / shards / 16 + 64;
        let parts = crate::par::ranges(shards, 1, |range| {
            range
                .map(|s| {
                    let mut names = Names {
                        by_name: vec![Map::with_capacity_and_hasher(room, FxBuildHasher)],
                        collisions: std::collections::HashMap::new(),
                        duplicates: Vec::new(),
                    };
                    for (id, &hash) in hashes.iter().enumerate() {
                        if shard(hash, shards) == s {
                            names.insert_in(graph, id as NodeId, hash, 0);
                        }
                    }
                    names
                })
                .collect::<Vec<Names>>()
        });
        let mut names = Names {
            by_name: Vec::with_capacity(shards),
            collisions: std::collections::HashMap::new(),
            duplicates: Vec::new(),
        };
        for part in parts.into_iter().flatten() {
            names.by_name.extend(part.by_name);
            names.collisions.extend(part.collisions);
            names.duplicates.extend(part.duplicates);
        }
        names.duplicates.sort_unstable();
        Index::with_names(graph, names, None)
    }

    /// Builds the indexes of a graph rebuilt from `seed`'s graph: names and
    /// edges of the nodes it kept are carried over (their ids remapped)
    /// instead of being hashed and resolved again. Exact: when a name would
    /// repeat, it falls back to [`Index::build`].
    fn build_from(graph: &Graph, seed: &Seed) -> Index {
        let old = &*seed.index;
        if !old.duplicates.is_empty() {
            return Index::build(graph);
        }
        let mut old_to_new = vec![NodeId::MAX; seed.old_len];
        for (new, &o) in seed.origin.iter().enumerate() {
            if o != NodeId::MAX {
                old_to_new[o as usize] = new as NodeId;
            }
        }
        let remap = |v: &mut NodeId| {
            let n = old_to_new[*v as usize];
            *v = n;
            n != NodeId::MAX
        };
        let mut names = Names {
            by_name: old.by_name.clone(),
            collisions: old.collisions.clone(),
            duplicates: Vec::new(),
        };
        for map in &mut names.by_name {
            map.retain(|_, v| remap(v));
        }
        names.collisions.retain(|_, v| remap(v));
        for id in graph.ids() {
            if seed.origin[id as usize] == NodeId::MAX {
                let hash = name_hash(graph.name(id));
                names.insert_in(graph, id, hash, shard(hash, names.by_name.len()));
            }
        }
        if !names.duplicates.is_empty() {
            return Index::build(graph);
        }
        Index::with_names(graph, names, Some((old, &seed.origin, &old_to_new)))
    }

    /// The op, edge and consumer indexes, given the name index. With `reuse`
    /// (the old index, each node's old id, and the old-to-new id map), a kept
    /// node whose producers were all kept takes its old edges, remapped.
    fn with_names(
        graph: &Graph,
        names: Names,
        reuse: Option<(&Index, &[NodeId], &[NodeId])>,
    ) -> Index {
        let n = graph.len();
        let Names { by_name, collisions, duplicates } = names;
        let mut by_op: Map<Box<str>, Vec<NodeId>> = Map::default();
        let add = |by_op: &mut Map<Box<str>, Vec<NodeId>>, id: NodeId| {
            let op = graph.op(id);
            match by_op.get_mut(op) {
                Some(ids) => ids.push(id),
                None => {
                    by_op.insert(op.into(), vec![id]);
                }
            }
        };
        match reuse {
            // Kept nodes keep their op: remap the parent's lists, then add
            // the new nodes where they belong.
            Some((old, origin, old_to_new)) => {
                for (op, ids) in &old.by_op {
                    let kept: Vec<NodeId> = ids
                        .iter()
                        .map(|&o| old_to_new[o as usize])
                        .filter(|&n| n != NodeId::MAX)
                        .collect();
                    if !kept.is_empty() {
                        by_op.insert(op.clone(), kept);
                    }
                }
                let mut touched = std::collections::HashSet::new();
                for id in graph.ids() {
                    if origin[id as usize] == NodeId::MAX {
                        add(&mut by_op, id);
                        touched.insert(graph.op(id));
                    }
                }
                for op in touched {
                    if let Some(ids) = by_op.get_mut(op) {
                        ids.sort_unstable();
                    }
                }
            }
            // Each share of the nodes lists its ops on a core of its own, and
            // the lists are joined in order: an op first seen in a later share
            // comes after the earlier shares' ops, as in one pass.
            None => {
                let parts = crate::par::ranges(n, INDEX_PARALLEL_MIN, |ids| {
                    let mut part = Map::default();
                    ids.for_each(|id| add(&mut part, id as NodeId));
                    part
                });
                for part in parts {
                    if by_op.is_empty() {
                        by_op = part;
                        continue;
                    }
                    for (op, ids) in part {
                        by_op.entry(op).or_default().extend(ids);
                    }
                }
            }
        }

        // Each node's edges start where the inputs of the nodes before it
        // end; they are resolved on every core, each share of the nodes
        // into its own part of `edges` (a lookup is a read at a random place
        // of the name index, and then of the graph, to compare the name).
        let mut edge_start = Vec::with_capacity(n + 1);
        let mut total = 0u32;
        for rec in &graph.nodes {
            edge_start.push(total);
            total += rec.inputs;
        }
        edge_start.push(total);
        let mut edges = vec![Edge::new(None, Port::Control); total as usize];
        let resolve = |ids: std::ops::Range<usize>, edges: &mut [Edge]| {
            let mut bad_inputs = Vec::new();
            let mut at = 0;
            for id in ids {
                if let Some((old, origin, old_to_new)) = reuse {
                    let o = origin[id] as usize;
                    if o != NodeId::MAX as usize {
                        let old_edges =
                            &old.edges[old.edge_start[o] as usize..old.edge_start[o + 1] as usize];
                        let kept = old_edges.len() == graph.nodes[id].inputs as usize
                            && old_edges.iter().all(|e| {
                                e.src().is_some_and(|s| old_to_new[s as usize] != NodeId::MAX)
                            });
                        if kept {
                            for e in old_edges {
                                let src = old_to_new[e.src().expect("checked") as usize];
                                edges[at] = Edge::new(Some(src), e.port());
                                at += 1;
                            }
                            continue;
                        }
                    }
                }
                for (slot, text) in graph.input_strs(id as NodeId).enumerate() {
                    edges[at] = match parse_input(text) {
                        Ok(input) => {
                            let port = match input {
                                InputRef::Data { port, .. } => Port::Data(port),
                                InputRef::Control { .. } => Port::Control,
                            };
                            let node = input.node();
                            let src = lookup(graph, &by_name, &collisions, node, name_hash(node));
                            if src.is_none() {
                                bad_inputs.push((id as NodeId, slot as u32, BadInput::Missing));
                            }
                            Edge::new(src, port)
                        }
                        Err(e) => {
                            bad_inputs.push((id as NodeId, slot as u32, BadInput::Syntax(e)));
                            Edge::new(None, Port::Control)
                        }
                    };
                    at += 1;
                }
            }
            debug_assert_eq!(at, edges.len(), "a node's edges are as many as its inputs");
            bad_inputs
        };
        let bad_inputs: Vec<(NodeId, u32, BadInput)> =
            crate::par::split_mut(&mut edges, &edge_start, INDEX_PARALLEL_MIN, resolve).concat();
        let mut fan_out = vec![0u32; n];
        for src in edges.iter().filter_map(|e| e.src()) {
            fan_out[src as usize] += 1;
        }

        // A counting sort of the edges by producer gives the consumer lists,
        // each in (consumer, slot) order.
        let mut consumer_start = Vec::with_capacity(n + 1);
        let mut acc = 0u32;
        for count in &fan_out {
            consumer_start.push(acc);
            acc += count;
        }
        consumer_start.push(acc);
        let mut fill = consumer_start.clone();
        let placeholder = Consumer { node: 0, slot: 0, port: Port::Control };
        let mut consumers = vec![placeholder; acc as usize];
        for id in 0..n {
            let range = edge_start[id] as usize..edge_start[id + 1] as usize;
            for (slot, edge) in edges[range].iter().enumerate() {
                if let Some(src) = edge.src() {
                    let at = &mut fill[src as usize];
                    consumers[*at as usize] =
                        Consumer { node: id as NodeId, slot: slot as u32, port: edge.port() };
                    *at += 1;
                }
            }
        }

        let mut op_of = vec![0u32; n];
        for (i, (_, ids)) in by_op.iter().enumerate() {
            for &id in ids {
                op_of[id as usize] = i as u32;
            }
        }
        Index {
            by_name,
            collisions,
            by_op,
            op_of,
            edges,
            edge_start,
            consumers,
            consumer_start,
            duplicates,
            bad_inputs,
        }
    }
}

/// The name index being built.
struct Names {
    by_name: Vec<Map<u64, NodeId>>,
    collisions: std::collections::HashMap<Box<str>, NodeId>,
    duplicates: Vec<NodeId>,
}

impl Names {
    /// Adds node `id`, whose name's [`name_hash`] is `hash`, to map `map`
    /// (its shard).
    fn insert_in(&mut self, graph: &Graph, id: NodeId, hash: u64, map: usize) {
        let name = graph.name(id);
        match self.by_name[map].entry(hash) {
            indexmap::map::Entry::Vacant(slot) => {
                slot.insert(id);
            }
            indexmap::map::Entry::Occupied(first) if graph.name(*first.get()) == name => {
                self.duplicates.push(id)
            }
            indexmap::map::Entry::Occupied(_) => match self.collisions.entry(name.into()) {
                std::collections::hash_map::Entry::Occupied(_) => self.duplicates.push(id),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(id);
                }
            },
        }
    }
}

/// What a rebuilt graph keeps of its parent, to build its indexes from the
/// parent's: the parent's index, and each node's id in the parent.
#[derive(Debug)]
struct Seed {
    index: std::sync::Arc<Index>,
    /// Per node, its id in the parent, or `NodeId::MAX` for a new node.
    origin: Vec<NodeId>,
    old_len: usize,
}

impl Graph {
    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// All node ids, in file order.
    pub fn ids(&self) -> impl ExactSizeIterator<Item = NodeId> + use<> {
        0..self.nodes.len() as NodeId
    }

    fn raw(&self, id: NodeId) -> &[u8] {
        let rec = &self.nodes[id as usize];
        &self.bufs[rec.buf as usize][rec.raw.range()]
    }

    /// The node's name.
    pub fn name(&self, id: NodeId) -> &str {
        str_at(self.raw(id), self.nodes[id as usize].name)
    }

    /// The node's op.
    pub fn op(&self, id: NodeId) -> &str {
        match self.index.get() {
            Some(index) => {
                index.by_op.get_index(index.op_of[id as usize] as usize).map_or("", |e| e.0)
            }
            None => str_at(self.raw(id), self.nodes[id as usize].op),
        }
    }

    /// The node's op as a position in [`Graph::ops`]' order.
    pub fn op_index(&self, id: NodeId) -> u32 {
        self.index().op_of[id as usize]
    }

    /// The node's input strings, in order.
    pub fn input_strs(&self, id: NodeId) -> impl ExactSizeIterator<Item = &str> {
        let rec = &self.nodes[id as usize];
        let raw = self.raw(id);
        let spans = &self.input_spans[rec.first_input as usize..][..rec.inputs as usize];
        spans.iter().map(move |span| str_at(raw, *span))
    }

    /// The node's input string at `slot`.
    pub fn input_str(&self, id: NodeId, slot: u32) -> &str {
        let rec = &self.nodes[id as usize];
        str_at(self.raw(id), self.input_spans[(rec.first_input + slot) as usize])
    }

    /// The node's encoded `NodeDef`, borrowed.
    pub fn node_raw(&self, id: NodeId) -> &[u8] {
        self.raw(id)
    }

    /// Whether `finder`'s needle is anywhere in the buffers the graph's
    /// nodes live in (a `false` holds for every node's bytes): a read in
    /// order, split between cores, where asking node by node would read
    /// them scattered.
    pub fn bytes_hold(&self, finder: &memchr::memmem::Finder) -> bool {
        self.bufs.iter().any(|buf| holds(buf, finder, 1 << 22))
    }

    /// The node's encoded `NodeDef`, sharing the graph's buffer.
    pub fn node_bytes(&self, id: NodeId) -> Bytes {
        let rec = &self.nodes[id as usize];
        self.bufs[rec.buf as usize].slice(rec.raw.range())
    }

    /// The node decoded in full.
    pub fn node_def(&self, id: NodeId) -> Result<NodeDef, NodeDecodeError> {
        NodeDef::decode(self.node_bytes(id)).map_err(|e| NodeDecodeError {
            node: self.name(id).to_string(),
            what: "the node".into(),
            reason: e.to_string(),
        })
    }

    /// The value of the node's attribute `key`, decoded alone (the last
    /// entry wins if the key repeats, as protobuf maps do). Tensor contents
    /// share the graph's buffer.
    pub fn attr(&self, id: NodeId, key: &str) -> Result<Option<AttrValue>, NodeDecodeError> {
        let raw = self.node_bytes(id);
        let err = |reason: String| NodeDecodeError {
            node: self.name(id).to_string(),
            what: format!("attribute `{key}`"),
            reason,
        };
        match attr_raw(&raw, key).map_err(|e| err(e.to_string()))? {
            Some(value) => {
                AttrValue::decode(raw.slice_ref(value)).map(Some).map_err(|e| err(e.to_string()))
            }
            None => Ok(None),
        }
    }

    /// The top-level fields other than nodes, encoded with their keys.
    pub fn tail(&self) -> &[Bytes] {
        &self.tail
    }

    /// Everything but the nodes (library, versions, debug info), decoded.
    pub fn header(&self) -> Result<GraphDef, prost::DecodeError> {
        GraphDef::decode(self.tail.concat().as_slice())
    }

    /// The whole graph decoded into owned messages.
    pub fn to_def(&self) -> Result<GraphDef, prost::DecodeError> {
        let mut buf = Vec::with_capacity(self.encoded_len());
        self.encode(&mut buf).expect("writing to a Vec cannot fail");
        GraphDef::decode(Bytes::from(buf))
    }

    /// Bytes [`Graph::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        let nodes: usize = self
            .nodes
            .iter()
            .map(|n| {
                1 + prost::encoding::encoded_len_varint(u64::from(n.raw.len)) + n.raw.len as usize
            })
            .sum();
        nodes + self.tail.iter().map(Bytes::len).sum::<usize>()
    }

    /// Writes the binary GraphDef: every node's bytes as they are, then the
    /// other top-level fields, in their original order.
    pub fn encode<W: Write + ?Sized>(&self, out: &mut W) -> io::Result<()> {
        let mut key = Vec::with_capacity(11);
        for id in self.ids() {
            let raw = self.raw(id);
            key.clear();
            key.push(0x0a); // field 1, wire type LEN
            wire::write_varint(raw.len() as u64, &mut key);
            out.write_all(&key)?;
            out.write_all(raw)?;
        }
        for field in &self.tail {
            out.write_all(field)?;
        }
        Ok(())
    }

    /// The id of the node named `name` (the first one, if names repeat).
    pub fn id(&self, name: &str) -> Option<NodeId> {
        self.id_hashed(name, name_hash(name))
    }

    /// [`Graph::id`] for a name whose [`name_hash`] is known.
    pub(crate) fn id_hashed(&self, name: &str, hash: u64) -> Option<NodeId> {
        let index = self.index();
        lookup(self, &index.by_name, &index.collisions, name, hash)
    }

    /// Nodes whose op is `op`, in file order.
    pub fn nodes_with_op(&self, op: &str) -> &[NodeId] {
        self.index().by_op.get(op).map_or(&[], Vec::as_slice)
    }

    /// Every op with its nodes, in order of first appearance.
    pub fn ops(&self) -> impl Iterator<Item = (&str, &[NodeId])> {
        self.index().by_op.iter().map(|(op, ids)| (&**op, ids.as_slice()))
    }

    /// How many inputs all nodes have together.
    pub fn edge_count(&self) -> usize {
        self.input_spans.len()
    }

    /// Asks the CPU to fetch where the node's inputs start (a hint, see
    /// [`crate::hint::prefetch`]).
    pub(crate) fn prefetch_inputs(&self, id: NodeId) {
        crate::hint::prefetch(self.index().edge_start.as_ptr().wrapping_add(id as usize));
    }

    /// The node's inputs, resolved, in `NodeDef.input` order.
    pub fn inputs(&self, id: NodeId) -> &[Edge] {
        let index = self.index();
        let id = id as usize;
        &index.edges[index.edge_start[id] as usize..index.edge_start[id + 1] as usize]
    }

    /// Every use of the node's outputs and every control edge from it,
    /// ordered by consumer id then slot.
    pub fn consumers(&self, id: NodeId) -> &[Consumer] {
        let index = self.index();
        let id = id as usize;
        &index.consumers[index.consumer_start[id] as usize..index.consumer_start[id + 1] as usize]
    }

    /// Uses of output `port` of the node.
    pub fn port_consumers(&self, id: NodeId, port: u32) -> impl Iterator<Item = &Consumer> {
        self.consumers(id).iter().filter(move |c| c.port == Port::Data(port))
    }

    /// Nodes that wait on the node through a control edge.
    pub fn control_consumers(&self, id: NodeId) -> impl Iterator<Item = &Consumer> {
        self.consumers(id).iter().filter(|c| c.port == Port::Control)
    }

    /// Nodes whose name is taken by an earlier node.
    pub fn duplicates(&self) -> &[NodeId] {
        &self.index().duplicates
    }

    /// Inputs that resolve to no node: (node, slot, why).
    pub fn bad_inputs(&self) -> &[(NodeId, u32, BadInput)] {
        &self.index().bad_inputs
    }
}

/// The hash names are indexed by.
pub(crate) fn name_hash(name: &str) -> u64 {
    use std::hash::BuildHasher;
    #[cfg(test)]
    if tests::COLLIDE.with(std::cell::Cell::get) {
        return 7; // every name collides: exercises the collision path
    }
    foldhash::quality::FixedState::with_seed(0x6772_6170_6872_7721).hash_one(name.as_bytes())
}

/// Which of `shards` name maps holds `hash`.
fn shard(hash: u64, shards: usize) -> usize {
    (hash >> 32) as usize % shards
}

fn lookup(
    graph: &Graph,
    by_name: &[Map<u64, NodeId>],
    collisions: &std::collections::HashMap<Box<str>, NodeId>,
    name: &str,
    hash: u64,
) -> Option<NodeId> {
    match by_name[shard(hash, by_name.len())].get(&hash) {
        Some(&id) if graph.name(id) == name => Some(id),
        Some(_) => collisions.get(name).copied(),
        None => None,
    }
}

/// Whether `finder`'s needle is in `buf`, searched in chunks of `chunk`
/// bytes (each reaching on far enough to find a needle it starts) split
/// between cores.
fn holds(buf: &[u8], finder: &memchr::memmem::Finder, chunk: usize) -> bool {
    let overlap = finder.needle().len().saturating_sub(1);
    let chunks = buf.len().div_ceil(chunk);
    crate::par::ranges(chunks, 4, |range| {
        range.into_iter().any(|c| {
            let end = ((c + 1) * chunk + overlap).min(buf.len());
            finder.find(&buf[c * chunk..end]).is_some()
        })
    })
    .contains(&true)
}

/// A string field of a node.
fn str_at(raw: &[u8], span: Span) -> &str {
    let bytes = &raw[span.range()];
    debug_assert!(std::str::from_utf8(bytes).is_ok());
    // SAFETY: every span stored in a `NodeRec` or `Graph::input_spans` was
    // made by `locate_strings`, which checked those bytes are UTF-8, or by
    // `Part::push_located`, whose callers promise it; the buffers they
    // point into are immutable `Bytes`.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

/// Finds a node's name and op in its encoded bytes, and appends its inputs.
fn locate_strings(
    index: usize,
    raw: &[u8],
    inputs: &mut Vec<Span>,
) -> Result<(Span, Span), FormatError> {
    let mut name = Span::default();
    let mut op = Span::default();
    for field in wire::fields(raw) {
        let field = field.map_err(|e| FormatError(format!("node #{index}: {e}")))?;
        let target = match field.number {
            1 => "name",
            2 => "op",
            3 => "input",
            _ => continue,
        };
        if field.wire != LEN {
            return Err(FormatError(format!(
                "node #{index}: its {target} has wire type {}, not a string",
                field.wire
            )));
        }
        if std::str::from_utf8(&raw[field.payload()]).is_err() {
            return Err(FormatError(format!("node #{index}: its {target} is not UTF-8")));
        }
        let span = Span::of(field.payload());
        match field.number {
            1 => name = span,
            2 => op = span,
            _ => inputs.push(span),
        }
    }
    Ok((name, op))
}

#[cfg(test)]
mod tests;
