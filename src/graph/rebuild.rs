//! Building a graph from another: [`Graph::rebuilt`] from a list of node
//! sources (kept nodes shared, encoded ones gathered), and
//! [`Graph::assembled`] from [`Part`]s encoded on several threads. Either
//! way the new graph carries its parent's index over (see `Seed`), so
//! indexing it re-reads only the new nodes.

use bytes::Bytes;

use super::{FormatError, Graph, NodeId, NodeRec, Seed, Span, locate_strings};

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
/// several threads, each locating the strings of the nodes it encodes (or
/// told where they are by what wrote them).
pub struct Part<'g> {
    src: &'g Graph,
    /// The encoded nodes: one is written here, then added with
    /// [`Part::push_written`] or [`Part::push_located`].
    pub buffer: Vec<u8>,
    nodes: Vec<NodeRec>,
    input_spans: Vec<Span>,
    /// Each node's id in the source, or `NodeId::MAX` for an encoded one.
    origin: Vec<NodeId>,
    start: usize,
    /// Nodes encoded elsewhere, whose bytes the new graph shares.
    shared: Vec<Bytes>,
}

impl Part<'_> {
    /// Marks a node of the part's own buffer, until the parts are joined.
    const OWN: u32 = u32::MAX;
    /// Marks a node of `shared` (its index in the low bits), until the
    /// parts are joined.
    const SHARED: u32 = 1 << 31;

    /// Adds node `id` of the source graph, as it is.
    pub fn push_existing(&mut self, id: NodeId) {
        let rec = self.src.nodes[id as usize];
        let first_input = self.input_spans.len() as u32;
        let spans = &self.src.input_spans[rec.first_input as usize..][..rec.inputs as usize];
        self.input_spans.extend_from_slice(spans);
        self.nodes.push(NodeRec { first_input, ..rec });
        self.origin.push(id);
    }

    /// Adds the node written at `start..` (to the end) of the buffer by
    /// [`crate::wire::write_with_name_and_inputs`], whose strings are where
    /// it put them (`located`, `inputs`: positions in the buffer), so the
    /// node is not read again.
    ///
    /// # Safety
    ///
    /// The bytes at `located.name`, `located.op` and each of `inputs` are
    /// UTF-8: a graph hands its strings out without checking them again.
    /// (They are, when they were written from Rust strings or copied from
    /// the fields of a node of a graph, which were checked when it was
    /// read.) Checked in debug builds.
    pub(crate) unsafe fn push_located(
        &mut self,
        start: usize,
        located: &crate::wire::Located,
        inputs: &[std::ops::Range<usize>],
    ) {
        let span = |r: &std::ops::Range<usize>| {
            debug_assert!(std::str::from_utf8(&self.buffer[r.clone()]).is_ok());
            match r.is_empty() {
                true => Span::default(),
                false => Span::of(r.start - start..r.end - start),
            }
        };
        let (name, op) = (span(&located.name), span(&located.op));
        let first_input = self.input_spans.len() as u32;
        self.input_spans.extend(inputs.iter().map(span));
        self.nodes.push(NodeRec {
            buf: Self::OWN,
            raw: Span::of(start..self.buffer.len()),
            name,
            op,
            first_input,
            inputs: inputs.len() as u32,
        });
        self.origin.push(NodeId::MAX);
    }

    /// Adds a new node encoded elsewhere, whose bytes the new graph shares
    /// rather than copies; `name` and `op` are where its strings are in
    /// them. It has no inputs.
    ///
    /// # Safety
    ///
    /// The bytes at `name` and `op` are UTF-8 (see [`Part::push_located`]).
    /// Checked in debug builds.
    pub(crate) unsafe fn push_shared(
        &mut self,
        bytes: Bytes,
        name: std::ops::Range<usize>,
        op: std::ops::Range<usize>,
    ) {
        debug_assert!(std::str::from_utf8(&bytes[name.clone()]).is_ok());
        debug_assert!(std::str::from_utf8(&bytes[op.clone()]).is_ok());
        self.nodes.push(NodeRec {
            buf: Self::SHARED | self.shared.len() as u32,
            raw: Span::of(0..bytes.len()),
            name: Span::of(name),
            op: Span::of(op),
            first_input: self.input_spans.len() as u32,
            inputs: 0,
        });
        self.origin.push(NodeId::MAX);
        self.shared.push(bytes);
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

impl Graph {
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
            shared: Vec::new(),
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
            let shared = own + 1;
            let offset = graph.input_spans.len() as u32;
            graph.input_spans.extend_from_slice(&part.input_spans);
            graph.nodes.extend(part.nodes.iter().map(|rec| NodeRec {
                buf: match rec.buf {
                    Part::OWN => own,
                    b if b & Part::SHARED != 0 => shared + (b & !Part::SHARED),
                    b => b,
                },
                first_input: rec.first_input + offset,
                ..*rec
            }));
            origin.extend_from_slice(&part.origin);
            graph.bufs.push(Bytes::from(part.buffer));
            graph.bufs.extend(part.shared);
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
}
