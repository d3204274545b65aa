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
        let tag = raw[at];
        at += 1;
        match tag {
            // Field 5 (attr), length-delimited: a map entry.
            0x2a => {
                let len = usize::try_from(wire::read_varint(raw, &mut at)?).ok()?;
                let entry = raw.get(at..at.checked_add(len)?)?;
                at += len;
                let (&[0x0a, key_len], rest) = entry.split_first_chunk::<2>()? else { return None };
                if key_len >= 0x80 {
                    return None; // a key of 128 bytes or more
                }
                let entry_key = rest.get(..usize::from(key_len))?;
                if entry_key != key {
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
            // Other fields 1 to 15: length-delimited ones skipped, varints read.
            t if t & 0x80 == 0 && t >> 3 != 0 && t & 7 == 2 => {
                let len = usize::try_from(wire::read_varint(raw, &mut at)?).ok()?;
                at = at.checked_add(len).filter(|&end| end <= raw.len())?;
            }
            t if t & 0x80 == 0 && t >> 3 != 0 && t & 7 == 0 => {
                wire::read_varint(raw, &mut at)?;
            }
            _ => return None,
        }
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

/// Where a node of a graph being built comes from.
#[derive(Clone, Debug)]
pub enum NodeSource {
    /// A node of the graph being rebuilt, as it is.
    Existing(NodeId),
    /// A new or changed node, encoded.
    Encoded(Bytes),
}

/// A run of the nodes of a graph being built from another (made by
/// [`Graph::part`], joined by [`Graph::assembled`]): nodes of the source,
/// shared, and nodes encoded into the part's own buffer. Parts are built on
/// several threads, each locating the strings of the nodes it encodes.
pub struct Part<'g> {
    src: &'g Graph,
    /// The encoded nodes: one is written here, then added with
    /// [`Part::push_written`].
    pub buffer: Vec<u8>,
    nodes: Vec<NodeRec>,
    input_spans: Vec<Span>,
    /// Each node's id in the source, or `NodeId::MAX` for an encoded one.
    origin: Vec<NodeId>,
    start: usize,
}

impl Part<'_> {
    /// Marks a node of the part's own buffer, until the parts are joined.
    const OWN: u32 = u32::MAX;

    /// Adds node `id` of the source graph, as it is.
    pub fn push_existing(&mut self, id: NodeId) {
        let rec = self.src.nodes[id as usize];
        let first_input = self.input_spans.len() as u32;
        let spans = &self.src.input_spans[rec.first_input as usize..][..rec.inputs as usize];
        self.input_spans.extend_from_slice(spans);
        self.nodes.push(NodeRec { first_input, ..rec });
        self.origin.push(id);
    }

    /// Adds the node encoded at `range` of the buffer, locating its strings.
    pub fn push_written(&mut self, range: std::ops::Range<usize>) -> Result<(), FormatError> {
        let raw = &self.buffer[range.clone()];
        let first_input = self.input_spans.len() as u32;
        let position = self.start + self.nodes.len();
        let (name, op) = locate_strings(position, raw, &mut self.input_spans)?;
        let inputs = self.input_spans.len() as u32 - first_input;
        self.nodes.push(NodeRec {
            buf: Self::OWN,
            raw: Span::of(range),
            name,
            op,
            first_input,
            inputs,
        });
        self.origin.push(NodeId::MAX);
        Ok(())
    }
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
/// `collisions`.
#[derive(Clone, Debug)]
struct Index {
    by_name: Map<u64, NodeId>,
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

    /// A new graph with this graph's top-level fields and the given nodes, in
    /// that order: existing nodes are shared, not copied or re-read; encoded
    /// ones are gathered into one new buffer.
    pub fn rebuilt(
        &self,
        nodes: impl IntoIterator<Item = NodeSource>,
    ) -> Result<Graph, FormatError> {
        // Where a new node is: the buffer gathering the small encoded nodes,
        // or a large node's own buffer.
        enum In {
            Gathered,
            Large(usize),
        }
        let mut fresh = Vec::new();
        let nodes = nodes.into_iter();
        let mut graph = Graph::empty(self.tail.clone());
        graph.bufs = self.bufs.clone();
        let mut large: Vec<Bytes> = Vec::new();
        let mut pending = Vec::new();
        let mut origin = Vec::with_capacity(nodes.size_hint().0);
        graph.nodes.reserve(nodes.size_hint().0);
        graph.input_spans.reserve(self.input_spans.len());
        for (position, source) in nodes.enumerate() {
            match source {
                NodeSource::Existing(id) => {
                    origin.push(id);
                    let rec = self.nodes[id as usize];
                    let first_input = graph.input_spans.len() as u32;
                    let spans =
                        &self.input_spans[rec.first_input as usize..][..rec.inputs as usize];
                    graph.input_spans.extend_from_slice(spans);
                    graph.nodes.push(NodeRec { first_input, ..rec });
                }
                NodeSource::Encoded(bytes) => {
                    origin.push(NodeId::MAX);
                    // Small nodes are gathered in one new buffer; a large one
                    // (a computed weight) becomes a buffer of its own, uncopied.
                    let (buf, range) = if bytes.len() >= 1 << 16 {
                        large.push(bytes);
                        (In::Large(large.len() - 1), 0..0)
                    } else {
                        let start = fresh.len();
                        fresh.extend_from_slice(&bytes);
                        (In::Gathered, start..fresh.len())
                    };
                    pending.push((graph.nodes.len(), buf, range, position));
                    graph.nodes.push(NodeRec::STAND_IN);
                }
            }
        }
        if !pending.is_empty() {
            let gathered = graph.bufs.len() as u32;
            graph.bufs.push(Bytes::from(fresh));
            let first_large = graph.bufs.len() as u32;
            graph.bufs.extend(large);
            let jobs: Vec<(usize, u32, std::ops::Range<usize>, usize)> = pending
                .into_iter()
                .map(|(slot, own, range, position)| match own {
                    In::Large(i) => {
                        let b = first_large + i as u32;
                        (slot, b, 0..graph.bufs[b as usize].len(), position)
                    }
                    In::Gathered => (slot, gathered, range, position),
                })
                .collect();
            // Locating the strings of many nodes is split between threads,
            // each scanning its share in order; the results are then joined
            // in order (the first problem is the first node's).
            let bufs = &graph.bufs;
            let scan = |jobs: &[(usize, u32, std::ops::Range<usize>, usize)]| {
                let mut scanned = Graph::empty(Vec::new());
                scanned.bufs = bufs.clone();
                scanned.nodes.reserve(jobs.len());
                for (_, b, range, position) in jobs {
                    scanned.push_scanned(*b, range.clone(), *position)?;
                }
                Ok::<_, FormatError>((scanned.nodes, scanned.input_spans))
            };
            let scans = crate::par::shares(&jobs, 1 << 14, |_, share| scan(share));
            let mut slots = jobs.iter().map(|j| j.0);
            for result in scans {
                let (recs, spans) = result?;
                for rec in recs {
                    let slot = slots.next().expect("a node per job");
                    let first_input = graph.input_spans.len() as u32;
                    graph.input_spans.extend_from_slice(
                        &spans[rec.first_input as usize..][..rec.inputs as usize],
                    );
                    graph.nodes[slot] = NodeRec { first_input, ..rec };
                }
            }
        }
        if let Some(index) = self.index.get() {
            graph.seed = Some(std::sync::Arc::new(Seed {
                index: index.clone(),
                origin,
                old_len: self.len(),
            }));
        }
        Ok(graph)
    }

    /// An empty part of a graph built from this one (see
    /// [`Graph::assembled`]), whose first node is the new graph's node
    /// `start`, with room for `nodes` nodes and `bytes` bytes of encoded ones.
    pub fn part(&self, start: usize, nodes: usize, bytes: usize) -> Part<'_> {
        Part {
            src: self,
            buffer: Vec::with_capacity(bytes),
            nodes: Vec::with_capacity(nodes),
            input_spans: Vec::new(),
            origin: Vec::with_capacity(nodes),
            start,
        }
    }

    /// A graph with this graph's top-level fields and the nodes of `parts`,
    /// in order (what [`Graph::rebuilt`] makes, from parts built on several
    /// threads): their buffers become the new graph's, uncopied.
    pub fn assembled(&self, parts: Vec<Part<'_>>) -> Graph {
        let mut graph = Graph::empty(self.tail.clone());
        graph.bufs = self.bufs.clone();
        let count = parts.iter().map(|p| p.nodes.len()).sum();
        graph.nodes.reserve_exact(count);
        graph.input_spans.reserve_exact(parts.iter().map(|p| p.input_spans.len()).sum());
        let mut origin = Vec::with_capacity(count);
        for part in parts {
            let own = graph.bufs.len() as u32;
            let offset = graph.input_spans.len() as u32;
            graph.input_spans.extend_from_slice(&part.input_spans);
            graph.nodes.extend(part.nodes.iter().map(|rec| NodeRec {
                buf: if rec.buf == Part::OWN { own } else { rec.buf },
                first_input: rec.first_input + offset,
                ..*rec
            }));
            origin.extend_from_slice(&part.origin);
            graph.bufs.push(Bytes::from(part.buffer));
        }
        if let Some(index) = self.index.get() {
            graph.seed = Some(std::sync::Arc::new(Seed {
                index: index.clone(),
                origin,
                old_len: self.len(),
            }));
        }
        graph
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

impl Index {
    /// Builds every index from the graph's strings.
    fn build(graph: &Graph) -> Index {
        let n = graph.len();
        let mut names = Names {
            by_name: Map::with_capacity_and_hasher(n, FxBuildHasher),
            collisions: std::collections::HashMap::new(),
            duplicates: Vec::new(),
        };
        for id in graph.ids() {
            names.insert(graph, id);
        }
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
        names.by_name.retain(|_, v| remap(v));
        names.collisions.retain(|_, v| remap(v));
        for id in graph.ids() {
            if seed.origin[id as usize] == NodeId::MAX {
                names.insert(graph, id);
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
            None => graph.ids().for_each(|id| add(&mut by_op, id)),
        }

        let mut edges = Vec::with_capacity(graph.input_spans.len());
        let mut edge_start = Vec::with_capacity(n + 1);
        let mut bad_inputs = Vec::new();
        let mut fan_out = vec![0u32; n];
        for id in 0..n {
            edge_start.push(edges.len() as u32);
            if let Some((old, origin, old_to_new)) = reuse {
                let o = origin[id] as usize;
                if o != NodeId::MAX as usize {
                    let old_edges =
                        &old.edges[old.edge_start[o] as usize..old.edge_start[o + 1] as usize];
                    let kept = old_edges
                        .iter()
                        .all(|e| e.src.is_some_and(|s| old_to_new[s as usize] != NodeId::MAX));
                    if kept {
                        for e in old_edges {
                            let src = old_to_new[e.src.expect("checked") as usize];
                            fan_out[src as usize] += 1;
                            edges.push(Edge { src: Some(src), port: e.port });
                        }
                        continue;
                    }
                }
            }
            for (slot, text) in graph.input_strs(id as NodeId).enumerate() {
                let edge = match parse_input(text) {
                    Ok(input) => {
                        let port = match input {
                            InputRef::Data { port, .. } => Port::Data(port),
                            InputRef::Control { .. } => Port::Control,
                        };
                        let src = lookup(graph, &by_name, &collisions, input.node());
                        match src {
                            Some(src) => fan_out[src as usize] += 1,
                            None => bad_inputs.push((id as NodeId, slot as u32, BadInput::Missing)),
                        }
                        Edge { src, port }
                    }
                    Err(e) => {
                        bad_inputs.push((id as NodeId, slot as u32, BadInput::Syntax(e)));
                        Edge { src: None, port: Port::Control }
                    }
                };
                edges.push(edge);
            }
        }
        edge_start.push(edges.len() as u32);

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
                if let Some(src) = edge.src {
                    let at = &mut fill[src as usize];
                    consumers[*at as usize] =
                        Consumer { node: id as NodeId, slot: slot as u32, port: edge.port };
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
    by_name: Map<u64, NodeId>,
    collisions: std::collections::HashMap<Box<str>, NodeId>,
    duplicates: Vec<NodeId>,
}

impl Names {
    fn insert(&mut self, graph: &Graph, id: NodeId) {
        let name = graph.name(id);
        match self.by_name.entry(name_hash(name)) {
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
    pub fn encode<W: Write>(&self, out: &mut W) -> io::Result<()> {
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
        let index = self.index();
        lookup(self, &index.by_name, &index.collisions, name)
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

fn lookup(
    graph: &Graph,
    by_name: &Map<u64, NodeId>,
    collisions: &std::collections::HashMap<Box<str>, NodeId>,
    name: &str,
) -> Option<NodeId> {
    match by_name.get(&name_hash(name)) {
        Some(&id) if graph.name(id) == name => Some(id),
        Some(_) => collisions.get(name).copied(),
        None => None,
    }
}

/// A string field of a node.
fn str_at(raw: &[u8], span: Span) -> &str {
    let bytes = &raw[span.range()];
    debug_assert!(std::str::from_utf8(bytes).is_ok());
    // SAFETY: every span stored in a `NodeRec` or `Graph::input_spans` was
    // made by `locate_strings`, which checked those bytes are UTF-8, and the
    // buffers they point into are immutable `Bytes`.
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
mod tests {
    use super::*;

    thread_local! {
        pub(super) static COLLIDE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// The plain reading of attributes finds what the general walk finds,
    /// on every node TensorFlow wrote in the fixtures (where it always
    /// applies) and on hand-made encodings, where it gives way to the walk
    /// on anything unusual.
    #[test]
    fn attributes_read_plainly_are_the_walked_ones() {
        use crate::wire::{write_bytes_field, write_varint};
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path().join("model.pb");
            let Ok(bytes) = std::fs::read(&path) else { continue };
            let graph = Graph::from_bytes(Bytes::from(bytes)).unwrap();
            for id in graph.ids() {
                let raw = graph.node_raw(id);
                let def = NodeDef::decode(raw).unwrap();
                let keys = def.attr.keys().map(String::as_str).chain(["missing", "", "valu"]);
                for key in keys {
                    let plain = attr_raw_plain(raw, key.as_bytes());
                    assert_eq!(plain, Some(attr_raw_walk(raw, key).unwrap()), "{path:?} {key}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 1000, "{checked}");
        // Hand-made entries: (entry bytes, what the plain reading gives).
        let entry = |parts: &[(u32, &[u8])]| {
            let mut e = Vec::new();
            for (n, p) in parts {
                write_bytes_field(*n, p, &mut e);
            }
            e
        };
        let cases: Vec<(Vec<u8>, bool)> = vec![
            (entry(&[(1, b"T"), (2, b"\x30\x01")]), true),
            (entry(&[(1, b"T")]), true),
            (entry(&[(2, b"\x30\x01"), (1, b"T")]), false), // value first
            (entry(&[(1, b"T"), (2, b"\x30\x01"), (2, b"\x30\x02")]), false), // two values
            (entry(&[(1, b"T"), (3, b"x")]), false),        // an unknown part
            (vec![], false),
        ];
        for (e, plain) in cases {
            for repeat in [1, 2] {
                let mut node = Vec::new();
                write_bytes_field(2, b"Op", &mut node);
                for _ in 0..repeat {
                    write_bytes_field(5, &e, &mut node);
                }
                // A varint field and a field numbered past 15 (two-byte key).
                node.extend_from_slice(&[0x38, 0x05]);
                let walked = attr_raw_walk(&node, "T").unwrap();
                assert_eq!(attr_raw(&node, "T").unwrap(), walked);
                assert_eq!(attr_raw_plain(&node, b"T").is_some(), plain, "{e:?}");
                let mut far = node.clone();
                write_varint(16 << 3 | 2, &mut far);
                far.push(0);
                assert_eq!(attr_raw_plain(&far, b"T"), None);
                assert_eq!(attr_raw(&far, "T").unwrap(), walked);
            }
        }
        // Malformed: the walk's error, not a panic.
        assert!(attr_raw(&[0x2a, 0x05, 0x0a], "T").is_err());
    }

    /// The indexes a rebuilt graph derives from its parent's equal those
    /// built from scratch.
    #[test]
    fn indexes_carried_over_from_the_parent_are_exact() {
        let data =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/seed/model.pb"))
                .unwrap();
        let g = Graph::from_bytes(Bytes::from(data)).unwrap();
        g.id("training").unwrap(); // index the parent
        // Drop every third node, replace the Merges by new nodes of the same
        // name reading other inputs, and add a node reading a dropped one.
        let mut nodes = Vec::new();
        for id in g.ids() {
            if g.op(id) == "Merge" {
                let mut def = g.node_def(id).unwrap();
                def.input.reverse();
                nodes.push(NodeSource::Encoded(Bytes::from(def.encode_to_vec())));
            } else if id % 3 != 1 {
                nodes.push(NodeSource::Existing(id));
            }
        }
        let extra = NodeDef {
            name: "extra".into(),
            op: "Identity".into(),
            input: vec![g.name(1).into()],
            ..Default::default()
        };
        nodes.push(NodeSource::Encoded(Bytes::from(extra.encode_to_vec())));
        let rebuilt = g.rebuilt(nodes).unwrap();
        assert!(rebuilt.seed.is_some());
        let carried = Index::build_from(&rebuilt, rebuilt.seed.as_ref().unwrap());
        let fresh = Index::build(&rebuilt);
        assert_eq!(carried.edges, fresh.edges);
        assert_eq!(carried.edge_start, fresh.edge_start);
        assert_eq!(carried.consumers, fresh.consumers);
        assert_eq!(carried.bad_inputs, fresh.bad_inputs);
        assert!(!fresh.bad_inputs.is_empty(), "the test should drop some producers");
        assert_eq!(carried.by_op, fresh.by_op);
        for id in rebuilt.ids() {
            let name = rebuilt.name(id);
            let find = |index: &Index| lookup(&rebuilt, &index.by_name, &index.collisions, name);
            assert_eq!(find(&carried), Some(id), "{name}");
            assert_eq!(find(&fresh), Some(id), "{name}");
        }
    }

    /// Parts built apart and assembled give the graph `rebuilt` gives from
    /// the same nodes: same bytes, strings and indexes (carried over from
    /// the parent exactly); a malformed node is named by its place in the
    /// whole graph.
    #[test]
    fn assembled_parts_are_the_rebuilt_graph() {
        let data =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/seed/model.pb"))
                .unwrap();
        let g = Graph::from_bytes(Bytes::from(data)).unwrap();
        g.id("training").unwrap(); // index the parent
        // Every third node encoded anew with its inputs reversed, every
        // fifth dropped, the rest kept.
        let sources: Vec<NodeSource> = g
            .ids()
            .filter(|id| id % 5 != 2)
            .map(|id| match id % 3 {
                0 => {
                    let mut def = g.node_def(id).unwrap();
                    def.input.reverse();
                    NodeSource::Encoded(Bytes::from(def.encode_to_vec()))
                }
                _ => NodeSource::Existing(id),
            })
            .collect();
        let assemble = |sources: &[NodeSource], cuts: &[usize]| {
            let mut parts = Vec::new();
            let mut start = 0;
            for &end in cuts.iter().chain([sources.len()].iter()) {
                let mut part = g.part(start, end - start, 0);
                for source in &sources[start..end] {
                    match source {
                        NodeSource::Existing(id) => part.push_existing(*id),
                        NodeSource::Encoded(bytes) => {
                            let at = part.buffer.len();
                            part.buffer.extend_from_slice(bytes);
                            let end = part.buffer.len();
                            part.push_written(at..end)?;
                        }
                    }
                }
                parts.push(part);
                start = end;
            }
            Ok::<_, FormatError>(g.assembled(parts))
        };
        let rebuilt = g.rebuilt(sources.clone()).unwrap();
        let assembled = assemble(&sources, &[7, 8, 20]).unwrap();
        assert_eq!(assembled.len(), rebuilt.len());
        for id in rebuilt.ids() {
            assert_eq!(assembled.node_raw(id), rebuilt.node_raw(id));
            assert_eq!(assembled.name(id), rebuilt.name(id));
            assert_eq!(assembled.op(id), rebuilt.op(id));
            assert!(assembled.input_strs(id).eq(rebuilt.input_strs(id)));
        }
        let carried = Index::build_from(&assembled, assembled.seed.as_ref().unwrap());
        let fresh = Index::build(&rebuilt);
        assert_eq!(carried.edges, fresh.edges);
        assert_eq!(carried.consumers, fresh.consumers);
        assert_eq!(carried.by_op, fresh.by_op);
        for id in rebuilt.ids() {
            assert_eq!(assembled.id(rebuilt.name(id)), Some(id));
        }
        // Field 1 (the name) with wire type 0: not a string.
        let mut broken = sources;
        broken[12] = NodeSource::Encoded(Bytes::from_static(&[0x08, 0x01]));
        let Err(err) = assemble(&broken, &[7, 8, 20]) else { panic!("a malformed node") };
        assert!(err.to_string().contains("node #12"), "{err}");
    }

    #[test]
    fn names_whose_hashes_collide_still_resolve() {
        COLLIDE.with(|c| c.set(true));
        let node = |name: &str, inputs: &[&str]| NodeDef {
            name: name.into(),
            op: "Identity".into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let def = GraphDef {
            node: vec![node("a", &[]), node("b", &["a"]), node("c", &["b", "^a"]), node("b", &[])],
            ..Default::default()
        };
        let g = Graph::from_def(&def);
        assert_eq!((g.id("a"), g.id("b"), g.id("c"), g.id("d")), (Some(0), Some(1), Some(2), None));
        assert_eq!(g.duplicates(), &[3]);
        assert_eq!(
            g.inputs(2),
            &[
                Edge { src: Some(1), port: Port::Data(0) },
                Edge { src: Some(0), port: Port::Control }
            ]
        );
        assert_eq!(g.consumers(0).len(), 2);
        COLLIDE.with(|c| c.set(false));
    }
}
