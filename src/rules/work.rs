//! The engine's working copy of a graph, edited in place.
//!
//! Nodes are numbered once and keep their number: the source graph's nodes
//! first (same ids), then every node a rule adds. A removed node is only
//! marked so. A node's inputs are the source's resolved edges until a round
//! rewires it; then they live in this copy's own edge arena, and the node's
//! generation goes up. Consumer lists are the source's (generation 0) plus
//! links appended on each rewiring; an entry counts only while its consumer
//! is alive and still at the generation it was recorded with, so removing
//! a reader costs nothing and a producer read by a million nodes is never
//! rescanned per edit.
//!
//! New nodes keep their name and body apart from their inputs: a copy of a
//! source node is its bytes under a new name, a node a rule builds is
//! encoded once without name and inputs. A node's whole bytes are written
//! once, when the result becomes a [`Graph`] (on every core, for a large
//! one); a source node no round rewired is shared with the input, not
//! copied. Attributes are read where they lie in those bytes.
//! Output order is the source's, each replaced root's place taken by the
//! nodes that replaced it, then the dead-tensor marker.

use super::names::HashedIds;
use bytes::Bytes;
use prost::Message;
use rustc_hash::FxHashMap;

use crate::graph::{Consumer, Edge, Graph, NodeDecodeError, NodeId, Port};
use crate::input::{InputRef, parse_input};
use crate::proto::{AttrValue, FunctionDef, NodeDef};

/// What a node added by the engine is.
#[derive(Clone, Debug)]
pub enum Body {
    /// A source node's bytes, under a new name and with new inputs.
    Copy(NodeId),
    /// A node a rule built, encoded without its name and inputs (they are
    /// kept apart, and written in when the graph is).
    Encoded(Bytes),
    /// A node a rule built with no inputs (a constant), encoded whole under
    /// its name: while it has none, the written graph shares these bytes.
    Whole(Bytes),
    /// An input of the source that names no node, kept as written: never
    /// written out, matched or removed.
    Phantom,
}

#[derive(Clone, Debug)]
struct Added {
    name: String,
    body: Body,
    /// The root this node took the place of (`NodeId::MAX` for the marker
    /// and phantoms), and its place among that root's replacements.
    parent: NodeId,
    index: u32,
}

#[derive(Clone, Copy, Debug)]
struct Link {
    node: NodeId,
    slot: u32,
    era: u32,
    port: Port,
    next: u32,
}

const NONE: u32 = u32::MAX;

/// Reader lists of at most this many are read whole by [`Work::is_read`].
const SHORT: usize = 16;

/// A node for [`Work::add_all`]: what [`Work::add`] takes, and the
/// [`crate::graph::name_hash`] of its name.
pub struct Adding<'a> {
    pub name: String,
    pub hash: u64,
    pub op: &'a str,
    pub body: Body,
    pub parent: NodeId,
    pub index: u32,
}

/// The working graph.
pub struct Work<'g> {
    src: &'g Graph,
    n0: u32,
    op_names: Vec<Box<str>>,
    op_ids: FxHashMap<Box<str>, u32>,
    ops: Vec<u32>,
    alive: Vec<bool>,
    era: Vec<u32>,
    /// Start and length in `edges`; start `NONE`: the source's edges.
    ins: Vec<(u32, u32)>,
    edges: Vec<Edge>,
    /// First consumer link of each node.
    head: Vec<u32>,
    /// How many of each source node's source consumers are known to be
    /// gone (removed or rewired): [`Work::is_read`] looks past them.
    gone_readers: Vec<u32>,
    links: Vec<Link>,
    added: Vec<Added>,
    /// Added nodes by the hash of their name (a removed one may be shadowed
    /// by a later one); names whose hashes collide with another's are in
    /// `collisions`. Sized round by round for what is added (room for half
    /// the graph up front scattered a 1M-node graph's 143k new names over
    /// 16 MB of table, each insert and lookup touching fresh memory), and
    /// filled a round at a time by [`Work::add_all`].
    names: HashedIds,
    collisions: FxHashMap<Box<str>, NodeId>,
    /// Added nodes by op.
    added_by_op: Vec<Vec<NodeId>>,
    /// Each replaced root's first replacement (the others follow it, in
    /// id order, while their parent is that root).
    kids: Vec<u32>,
    /// Source nodes whose definition was edited (colocation fixes), encoded
    /// without name and inputs.
    redefined: FxHashMap<NodeId, Bytes>,
    /// The dead-tensor marker, once there is one (it may since be removed).
    marker: Option<NodeId>,
    alive_count: usize,
    /// The source's function library by name, decoded when a rule first
    /// asks for a function.
    functions: std::sync::OnceLock<Result<FxHashMap<String, FunctionDef>, String>>,
}

impl<'g> Work<'g> {
    /// A working copy of `src` (whose indexes are built here if they were not).
    pub fn new(src: &'g Graph) -> Work<'g> {
        let n = src.len();
        let mut op_names = Vec::new();
        let mut op_ids = FxHashMap::default();
        for (op, _) in src.ops() {
            op_ids.insert(op.into(), op_names.len() as u32);
            op_names.push(op.into());
        }
        // Per-node vectors have room for the nodes rules add (half the
        // source's, as many as the first rounds add), so they are not copied
        // as they grow; memory not used is never touched.
        let room = n + n / 2;
        fn filled<T: Clone>(n: usize, room: usize, value: T) -> Vec<T> {
            let mut v = Vec::with_capacity(room);
            v.resize(n, value);
            v
        }
        let mut ops = Vec::with_capacity(room);
        ops.extend((0..n as NodeId).map(|id| src.op_index(id)));
        let mut work = Work {
            src,
            n0: n as u32,
            added_by_op: vec![Vec::new(); op_names.len()],
            op_names,
            op_ids,
            ops,
            alive: filled(n, room, true),
            era: filled(n, room, 0),
            ins: filled(n, room, (NONE, 0)),
            edges: Vec::new(),
            head: filled(n, room, NONE),
            // Zeroed by the allocator: pages no node writes are not touched.
            gone_readers: vec![0; n],
            links: Vec::new(),
            added: Vec::with_capacity(n / 2),
            names: HashedIds::default(),
            collisions: FxHashMap::default(),
            kids: filled(n, room, NONE),
            redefined: FxHashMap::default(),
            marker: None,
            alive_count: n,
            functions: std::sync::OnceLock::new(),
        };
        // And for rewired inputs: their memory is only touched as they come.
        work.reserve_edges(src.edge_count());
        work
    }

    /// Asks the CPU to fetch the start of the node's bytes and its inputs
    /// into the caches (a hint, see [`crate::hint::prefetch`]; it reads the
    /// node's records, where they are, to find them).
    pub fn prefetch(&self, id: NodeId) {
        if let Some(raw) = self.raw(id) {
            crate::hint::prefetch(raw.as_ptr());
            crate::hint::prefetch(raw.as_ptr().wrapping_add(64));
        }
        crate::hint::prefetch(self.inputs(id).as_ptr());
    }

    /// Asks the CPU to fetch the node's records: where its inputs are, its
    /// first reader link, its generation and liveness (a hint, see
    /// [`crate::hint::prefetch`]; nothing is read).
    pub fn prefetch_records(&self, id: NodeId) {
        let i = id as usize;
        crate::hint::prefetch(self.ins.as_ptr().wrapping_add(i));
        crate::hint::prefetch(self.head.as_ptr().wrapping_add(i));
        crate::hint::prefetch(self.era.as_ptr().wrapping_add(i));
        crate::hint::prefetch(self.alive.as_ptr().wrapping_add(i));
        if id < self.n0 {
            self.src.prefetch_inputs(id);
        }
    }

    /// The graph this is a copy of.
    pub fn source(&self) -> &'g Graph {
        self.src
    }

    /// The function of the graph's library named `name`, if there is one.
    /// The library is decoded on the first call.
    pub fn function(&self, name: &str) -> Result<Option<&FunctionDef>, String> {
        let library = self.functions.get_or_init(|| {
            let header = self
                .src
                .header()
                .map_err(|e| format!("the graph's function library does not decode: {e}"))?;
            let functions = header.library.map(|l| l.function).unwrap_or_default();
            Ok(functions
                .into_iter()
                .filter_map(|f| Some((f.signature.as_ref()?.name.clone(), f)))
                .collect())
        });
        match library {
            Ok(functions) => Ok(functions.get(name)),
            Err(e) => Err(e.clone()),
        }
    }

    /// Every id ever given out (alive or not).
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_alive(&self, id: NodeId) -> bool {
        self.alive[id as usize]
    }

    pub fn is_phantom(&self, id: NodeId) -> bool {
        matches!(self.added(id), Some(Added { body: Body::Phantom, .. }))
    }

    fn added(&self, id: NodeId) -> Option<&Added> {
        id.checked_sub(self.n0).map(|i| &self.added[i as usize])
    }

    pub fn name(&self, id: NodeId) -> &str {
        match self.added(id) {
            Some(a) => &a.name,
            None => self.src.name(id),
        }
    }

    pub fn op(&self, id: NodeId) -> &str {
        &self.op_names[self.ops[id as usize] as usize]
    }

    /// The op with this number.
    pub fn op_name(&self, op: u32) -> &str {
        &self.op_names[op as usize]
    }

    /// Whether the node's bytes hold what `finder` looks for.
    pub fn bytes_hold(&self, id: NodeId, finder: &memchr::memmem::Finder) -> bool {
        self.raw(id).is_some_and(|raw| finder.find(raw).is_some())
    }

    /// Whether the node's bytes are the source's (a source node as read,
    /// or a copy of one).
    pub fn bytes_from_source(&self, id: NodeId) -> bool {
        !self.redefined.contains_key(&id)
            && self.added(id).is_none_or(|a| matches!(a.body, Body::Copy(_)))
    }

    /// The node decoded, when its bytes hold `loc:@` (it may colocate with
    /// others): what colocation fixes edit.
    pub fn colocated_def(&self, id: NodeId, finder: &memchr::memmem::Finder) -> Option<NodeDef> {
        finder.find(self.raw(id)?)?;
        NodeDef::decode(self.bytes_of(id)?).ok()
    }

    /// How many op numbers there are: every op number is below it.
    pub fn op_count(&self) -> usize {
        self.op_names.len()
    }

    /// The op's number, if any node ever had it.
    pub fn op_number(&self, op: &str) -> Option<u32> {
        self.op_ids.get(op).copied()
    }

    pub fn op_of(&self, id: NodeId) -> u32 {
        self.ops[id as usize]
    }

    fn intern(&mut self, op: &str) -> u32 {
        if let Some(&i) = self.op_ids.get(op) {
            return i;
        }
        let i = self.op_names.len() as u32;
        self.op_names.push(op.into());
        self.op_ids.insert(op.into(), i);
        self.added_by_op.push(Vec::new());
        i
    }

    /// Alive nodes with op number `op`, source nodes first, in id order.
    pub fn with_op(&self, op: u32) -> impl Iterator<Item = NodeId> + '_ {
        let source = self.src.nodes_with_op(&self.op_names[op as usize]).iter().copied();
        let added = self.added_by_op.get(op as usize).into_iter().flatten().copied();
        source.chain(added).filter(|&id| self.alive[id as usize])
    }

    pub fn inputs(&self, id: NodeId) -> &[Edge] {
        let (start, len) = self.ins[id as usize];
        if start == NONE {
            if id < self.n0 { self.src.inputs(id) } else { &[] }
        } else {
            &self.edges[start as usize..][..len as usize]
        }
    }

    /// The nodes the node has control inputs from (those that name a node).
    pub fn control_inputs(&self, id: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.inputs(id).iter().filter(|e| e.port() == Port::Control).filter_map(|e| e.src())
    }

    /// Every current use of the node's outputs (and control edges from it).
    pub fn consumers(&self, id: NodeId) -> impl Iterator<Item = Consumer> + '_ {
        let source: &[Consumer] = if id < self.n0 { self.src.consumers(id) } else { &[] };
        let from_source = source
            .iter()
            .filter(|c| self.alive[c.node as usize] && self.era[c.node as usize] == 0)
            .copied();
        let mut at = self.head[id as usize];
        let linked = std::iter::from_fn(move || {
            while at != NONE {
                let l = self.links[at as usize];
                at = l.next;
                if self.alive[l.node as usize] && self.era[l.node as usize] == l.era {
                    return Some(Consumer { node: l.node, slot: l.slot, port: l.port });
                }
            }
            None
        });
        from_source.chain(linked)
    }

    /// Whether anything reads the node (data or control), as
    /// `consumers(id).next().is_some()` says, in time that does not grow with
    /// the readers it lost: a reader gone stays gone (removed nodes do not
    /// come back, a rewired node's generation only goes up), so the source
    /// readers found gone and the stale links at the head of the node's list
    /// are stepped past for good. Asking after each of a shared node's many
    /// readers goes (pruning asks each time) is then linear, not quadratic.
    pub fn is_read(&mut self, id: NodeId) -> bool {
        if id < self.n0 {
            let source = self.src.consumers(id);
            let live = |c: &Consumer| self.alive[c.node as usize] && self.era[c.node as usize] == 0;
            // A short list is read whole (its count is not worth a read of
            // memory of its own).
            if source.len() <= SHORT {
                if source.iter().any(live) {
                    return true;
                }
            } else {
                let mut gone = self.gone_readers[id as usize] as usize;
                while source.get(gone).is_some_and(|c| !live(c)) {
                    gone += 1;
                }
                self.gone_readers[id as usize] = gone as u32;
                if gone < source.len() {
                    return true;
                }
            }
        }
        let head = self.head[id as usize];
        let mut at = head;
        while at != NONE {
            let l = self.links[at as usize];
            if self.alive[l.node as usize] && self.era[l.node as usize] == l.era {
                break;
            }
            at = l.next;
        }
        if at != head {
            self.head[id as usize] = at;
        }
        at != NONE
    }

    /// The alive node named `name` (phantoms have no name here).
    pub fn id(&self, name: &str) -> Option<NodeId> {
        self.id_hashed(name, crate::graph::name_hash(name))
    }

    /// [`Work::id`] for a name whose [`crate::graph::name_hash`] is known.
    pub fn id_hashed(&self, name: &str, hash: u64) -> Option<NodeId> {
        let added = match self.names.get(hash) {
            Some(id) if self.name(id) == name => Some(id),
            Some(_) => self.collisions.get(name).copied(),
            None => None,
        };
        if let Some(id) = added.filter(|&id| self.alive[id as usize]) {
            return Some(id);
        }
        self.src.id_hashed(name, hash).filter(|&id| self.alive[id as usize])
    }

    /// The bytes the node is written from (an added node's without inputs,
    /// and without its name unless encoded whole); `None` for a phantom.
    fn bytes_of(&self, id: NodeId) -> Option<Bytes> {
        if let Some(bytes) = self.redefined.get(&id) {
            return Some(bytes.clone());
        }
        match self.added(id) {
            None => Some(self.src.node_bytes(id)),
            Some(Added { body: Body::Copy(s), .. }) => Some(self.src.node_bytes(*s)),
            Some(Added { body: Body::Encoded(bytes) | Body::Whole(bytes), .. }) => {
                Some(bytes.clone())
            }
            Some(Added { body: Body::Phantom, .. }) => None,
        }
    }

    /// The bytes the node is written from, borrowed (see `bytes_of`).
    fn raw(&self, id: NodeId) -> Option<&[u8]> {
        if let Some(bytes) = self.redefined.get(&id) {
            return Some(bytes);
        }
        match self.added(id) {
            None => Some(self.src.node_raw(id)),
            Some(Added { body: Body::Copy(s), .. }) => Some(self.src.node_raw(*s)),
            Some(Added { body: Body::Encoded(bytes) | Body::Whole(bytes), .. }) => Some(bytes),
            Some(Added { body: Body::Phantom, .. }) => None,
        }
    }

    /// The node's attribute `key`, decoded (a large tensor's contents
    /// share the graph's bytes).
    pub fn attr(&self, id: NodeId, key: &str) -> Result<Option<AttrValue>, NodeDecodeError> {
        let Some(value) = self.attr_raw(id, key)? else { return Ok(None) };
        let decoded = if value.len() < 4096 {
            AttrValue::decode(value)
        } else {
            let bytes = self.bytes_of(id).expect("a node with attributes has bytes");
            AttrValue::decode(bytes.slice_ref(value))
        };
        decoded.map(Some).map_err(|e| self.decode_error(id, key, e.to_string()))
    }

    /// The node's attribute `key`, encoded (empty for an entry without a
    /// value), borrowed from the node's bytes.
    pub fn attr_raw(&self, id: NodeId, key: &str) -> Result<Option<&[u8]>, NodeDecodeError> {
        match self.raw(id) {
            Some(raw) => crate::graph::attr_raw(raw, key)
                .map_err(|e| self.decode_error(id, key, e.to_string())),
            None => Ok(None),
        }
    }

    fn decode_error(&self, id: NodeId, key: &str, reason: String) -> NodeDecodeError {
        NodeDecodeError {
            node: self.name(id).to_string(),
            what: format!("attribute `{key}`"),
            reason,
        }
    }

    /// The node's device.
    pub fn device(&self, id: NodeId) -> String {
        let Some(raw) = self.raw(id) else { return String::new() };
        // Field 4, length-delimited: key 0x22.
        let device = crate::wire::first_len_field_plain(raw, 0x22).unwrap_or_else(|| {
            crate::wire::fields(raw)
                .flatten()
                .find(|f| f.number == 4 && f.wire == crate::wire::LEN)
                .map(|f| &raw[f.payload()])
        });
        device.map_or_else(String::new, |d| String::from_utf8_lossy(d).into_owned())
    }

    /// What a copy of this node is made of.
    pub fn copy_body(&self, id: NodeId) -> Body {
        match self.added(id) {
            Some(a) => a.body.clone(),
            None => Body::Copy(id),
        }
    }

    /// The input string a source node had at `slot` (for inputs that
    /// resolve to nothing).
    pub fn source_input_text(&self, id: NodeId, slot: u32) -> Option<&str> {
        (id < self.n0 && self.era[id as usize] == 0).then(|| self.src.input_str(id, slot))
    }

    /// Makes room for `more` nodes.
    pub fn reserve(&mut self, more: usize) {
        self.ops.reserve(more);
        self.alive.reserve(more);
        self.era.reserve(more);
        self.ins.reserve(more);
        self.head.reserve(more);
        self.kids.reserve(more);
        self.added.reserve(more);
        self.names.reserve(more);
    }

    /// Adds a node with no inputs yet; `parent` is the root it replaces.
    pub fn add(
        &mut self,
        name: String,
        op: &str,
        body: Body,
        parent: NodeId,
        index: u32,
    ) -> NodeId {
        let hash = crate::graph::name_hash(&name);
        self.add_all([Adding { name, hash, op, body, parent, index }])
    }

    /// Adds nodes, in order, as [`Work::add`] would; their names are indexed
    /// after, all together, each slot asked for a few names ahead (one by
    /// one, a large round's inserts were a cache miss each). Gives the first
    /// one's id (the others follow).
    pub fn add_all<'a>(&mut self, nodes: impl IntoIterator<Item = Adding<'a>>) -> NodeId {
        let first = self.len() as NodeId;
        let nodes = nodes.into_iter();
        let mut named = Vec::with_capacity(nodes.size_hint().0);
        for n in nodes {
            let phantom = matches!(n.body, Body::Phantom);
            let id = self.push(n.name, n.op, n.body, n.parent, n.index);
            if !phantom {
                named.push((n.hash, id));
            }
        }
        // The records every new node starts with, all at once.
        let len = self.ops.len();
        self.alive.resize(len, true);
        self.era.resize(len, 0);
        self.ins.resize(len, (NONE, 0));
        self.head.resize(len, NONE);
        self.kids.resize(len, NONE);
        self.names.reserve(named.len());
        const AHEAD: usize = 16;
        for (i, &(hash, id)) in named.iter().enumerate() {
            if let Some(&(ahead, _)) = named.get(i + AHEAD) {
                self.names.prefetch(ahead);
            }
            self.index_name(hash, id);
        }
        first
    }

    /// Adds the node's op and definition, without indexing its name; its
    /// other records are added by [`Work::add_all`], for all its nodes at once.
    fn push(&mut self, name: String, op: &str, body: Body, parent: NodeId, index: u32) -> NodeId {
        let id = self.ops.len() as NodeId;
        let op = self.intern(op);
        self.ops.push(op);
        if !matches!(body, Body::Phantom) {
            self.added_by_op[op as usize].push(id);
        }
        if parent != NodeId::MAX {
            // A parent added in the same batch has no record yet.
            if self.kids.len() <= parent as usize {
                self.kids.resize(parent as usize + 1, NONE);
            }
            if self.kids[parent as usize] == NONE {
                self.kids[parent as usize] = id;
            }
        }
        self.added.push(Added { name, body, parent, index });
        self.alive_count += 1;
        id
    }

    /// Indexes added node `id` by its name's hash: it shadows an earlier
    /// node of that name.
    fn index_name(&mut self, hash: u64, id: NodeId) {
        let name = &self.added[(id - self.n0) as usize].name;
        if let Some(place) = self.names.insert_new(hash, id) {
            if self.added[(*place - self.n0) as usize].name == *name {
                *place = id;
            } else {
                self.collisions.insert(name.as_str().into(), id);
            }
        }
    }

    /// A phantom standing for an input string that names no node.
    pub fn phantom(&mut self, text: &str) -> Edge {
        let (name, port) = match parse_input(text) {
            Ok(InputRef::Data { node, port }) => (node, Port::Data(port)),
            Ok(InputRef::Control { node }) => (node, Port::Control),
            Err(_) => match text.strip_prefix('^') {
                Some(rest) => (rest, Port::Control),
                None => (text, Port::Data(0)),
            },
        };
        let id = self.add(name.to_string(), "", Body::Phantom, NodeId::MAX, 0);
        Edge::new(Some(id), port)
    }

    /// Makes room for `more` rewired inputs.
    pub fn reserve_edges(&mut self, more: usize) {
        self.edges.reserve(more);
        self.links.reserve(more);
    }

    /// Replaces the node's inputs (a new generation).
    pub fn set_inputs(&mut self, id: NodeId, inputs: &[Edge]) {
        let era = self.era[id as usize] + 1;
        self.era[id as usize] = era;
        let start = self.edges.len() as u32;
        self.edges.extend_from_slice(inputs);
        self.ins[id as usize] = (start, inputs.len() as u32);
        for (slot, e) in inputs.iter().enumerate() {
            if let Some(src) = e.src() {
                let next = self.head[src as usize];
                self.head[src as usize] = self.links.len() as u32;
                self.links.push(Link { node: id, slot: slot as u32, era, port: e.port(), next });
            }
        }
    }

    pub fn remove(&mut self, id: NodeId) {
        if std::mem::replace(&mut self.alive[id as usize], false) {
            self.alive_count -= 1;
        }
    }

    /// The nodes that took a replaced root's place, in order.
    fn replacements(&self, root: NodeId) -> impl DoubleEndedIterator<Item = NodeId> + '_ {
        let first = self.kids[root as usize];
        let count = if first == NONE {
            0
        } else {
            self.added[(first - self.n0) as usize..].iter().take_while(|a| a.parent == root).count()
                as u32
        };
        (0..count).map(move |i| first + i)
    }

    /// A key that orders nodes as they will be written (the source's
    /// order, a replaced root's place taken by its replacements in their
    /// order, the marker last): the source position, then the place among
    /// replacements at each level, 16 bits each. `None` when the chain of
    /// replacements is too deep or wide for that.
    pub fn position(&self, mut id: NodeId) -> Option<u128> {
        let mut places = [0u16; 6];
        let mut depth = 0;
        while let Some(a) = self.added(id) {
            if a.parent == NodeId::MAX {
                return Some(u128::MAX); // the marker (phantoms are never asked)
            }
            if depth == places.len() || a.index > u32::from(u16::MAX - 1) {
                return None;
            }
            places[depth] = a.index as u16 + 1;
            depth += 1;
            id = a.parent;
        }
        let mut key = u128::from(id) << 96;
        for (level, place) in places[..depth].iter().rev().enumerate() {
            key |= u128::from(*place) << (80 - 16 * level);
        }
        Some(key)
    }

    /// Every alive node's rank in output order (`u32::MAX` for the others).
    pub fn ranks(&self) -> Vec<u32> {
        let mut rank = vec![u32::MAX; self.len()];
        for (i, id) in self.order().into_iter().enumerate() {
            rank[id as usize] = i as u32;
        }
        rank
    }

    /// How many nodes are alive (phantoms included).
    pub fn alive(&self) -> usize {
        self.alive_count
    }

    /// Alive nodes in output order (phantoms left out).
    pub fn order(&self) -> Vec<NodeId> {
        self.order_of(self.alive_count, |_| true)
    }

    /// The alive nodes `keep` holds for, in output order (phantoms left
    /// out); `room` is how many there may be. Each source node's place
    /// holds it and its replacements, so shares of the source nodes are
    /// walked on several threads and their parts joined in order.
    pub fn order_of(&self, room: usize, keep: impl Fn(NodeId) -> bool + Sync) -> Vec<NodeId> {
        let walk = |roots: std::ops::Range<usize>, room: usize| {
            let mut out = Vec::with_capacity(room);
            let mut stack = Vec::new();
            let marker = self.marker.filter(|_| roots.end == self.n0 as usize);
            for root in (roots.start as NodeId..roots.end as NodeId).chain(marker) {
                stack.push(root);
                while let Some(id) = stack.pop() {
                    if self.alive[id as usize] && keep(id) && !self.is_phantom(id) {
                        out.push(id);
                    }
                    stack.extend(self.replacements(id).rev());
                }
            }
            out
        };
        let n0 = self.n0 as usize;
        let parts = crate::par::ranges(n0, 1 << 16, |roots| {
            let share = room.saturating_mul(roots.len()) / n0.max(1);
            walk(roots, share + share / 8)
        });
        match <[_; 1]>::try_from(parts) {
            Ok([only]) => only,
            Err(parts) => parts.concat(),
        }
    }

    /// Whether the node is a source node to be written exactly as it was
    /// read (no round rewired or redefined it).
    fn as_read(&self, id: NodeId) -> bool {
        id < self.n0 && self.era[id as usize] == 0 && !self.redefined.contains_key(&id)
    }

    /// Appends the node, encoded, to `out`, and returns where its name and
    /// op went (`inputs_at` gets where each input went); `None` (nothing
    /// appended) for a node written as it was read.
    fn write_node(
        &self,
        id: NodeId,
        out: &mut Vec<u8>,
        inputs_at: &mut Vec<std::ops::Range<usize>>,
    ) -> Option<crate::wire::Located> {
        if self.as_read(id) {
            return None;
        }
        let raw = self.raw(id)?;
        // A source node's bytes hold its name, unless it was redefined
        // (kept without name and inputs, as added nodes are).
        let bare = id >= self.n0 || self.redefined.contains_key(&id);
        let name = bare.then(|| self.name(id));
        inputs_at.clear();
        let located = crate::wire::write_with_name_and_inputs(out, raw, name, |out| {
            for (slot, e) in self.inputs(id).iter().enumerate() {
                // Field 3, length-delimited: key 0x1a.
                out.push(0x1a);
                let Some(src) = e.src() else {
                    // An input of the source that names no node, on a node
                    // redefined but not rewired (a rewired one has a
                    // phantom in its place): written as it was read.
                    let text = self.source_input_text(id, slot as u32).unwrap_or_default();
                    crate::wire::write_varint(text.len() as u64, out);
                    inputs_at.push(out.len()..out.len() + text.len());
                    out.extend_from_slice(text.as_bytes());
                    continue;
                };
                let node = self.name(src);
                let input = match e.port() {
                    Port::Data(port) => InputRef::Data { node, port },
                    Port::Control => InputRef::Control { node },
                };
                crate::wire::write_varint(input.text_len() as u64, out);
                let at = out.len();
                input.write_to(out);
                inputs_at.push(at..out.len());
            }
        })
        .expect("nodes read or encoded here are well formed");
        Some(located)
    }

    /// Replaces a node's definition (not its name or inputs).
    pub fn redefine(&mut self, id: NodeId, mut def: NodeDef) {
        def.name.clear();
        def.input.clear();
        let bytes = Bytes::from(def.encode_to_vec());
        match id.checked_sub(self.n0) {
            Some(i) => self.added[i as usize].body = Body::Encoded(bytes),
            None => {
                self.redefined.insert(id, bytes);
            }
        }
    }

    /// The dead-tensor marker, while it is in the graph.
    pub fn live_marker(&self) -> Option<NodeId> {
        self.marker.filter(|&m| self.alive[m as usize])
    }

    /// Adds the dead-tensor marker (written after every other node).
    pub fn add_marker(&mut self, name: String, op: &str) -> NodeId {
        let def = NodeDef { op: op.into(), ..Default::default() };
        let body = Body::Encoded(Bytes::from(def.encode_to_vec()));
        let id = self.add(name, op, body, NodeId::MAX, 0);
        self.marker = Some(id);
        id
    }

    /// The graph, written.
    pub fn to_graph(&self) -> Graph {
        self.written(&self.order())
    }

    /// The graph with these nodes (alive ones, in output order), written:
    /// nodes no round rewired are shared with the source, the others are
    /// encoded into new buffers, one per thread, and located there while
    /// they are fresh in the cache.
    pub fn written(&self, order: &[NodeId]) -> Graph {
        // Large results are encoded on several threads, each into its own
        // buffer (their fresh memory is first touched in parallel too).
        let encode = |start: usize, ids: &[NodeId]| {
            let mut part = self.src.part(start, ids.len(), self.written_size(ids));
            let mut inputs_at = Vec::new();
            for &id in ids {
                if let Some((bytes, name, op)) = self.whole(id) {
                    // SAFETY: `whole` found the name and op where a rule's
                    // constant has them, written from Rust strings.
                    unsafe { part.push_shared(bytes.clone(), name, op) };
                    continue;
                }
                let at = part.buffer.len();
                match self.write_node(id, &mut part.buffer, &mut inputs_at) {
                    // Where its strings are is known from writing them:
                    // they are not looked for again.
                    // SAFETY: `write_node` writes names and inputs from
                    // `&str`s, and copies ops (and a source node's own name)
                    // from fields of nodes read or encoded from Rust strings.
                    Some(located) => unsafe { part.push_located(at, &located, &inputs_at) },
                    None => part.push_existing(id),
                }
            }
            part
        };
        self.src.assembled(crate::par::shares(order, 1 << 14, encode))
    }

    /// Writes the binary GraphDef of these nodes (alive ones, in output
    /// order) and the source's other top-level fields, as
    /// [`Graph::encode`] writes the graph [`Work::written`] makes: the same
    /// bytes, without building that graph first. A window of the order at
    /// a time is encoded on every core, each share into buffers of its own,
    /// written out in order before the next window: at most a window's
    /// bytes are held at once, and large nodes are written from where they
    /// are.
    pub fn encode<W: std::io::Write + ?Sized>(
        &self,
        order: &[NodeId],
        out: &mut W,
    ) -> std::io::Result<()> {
        for window in order.chunks((1 << 15) * crate::par::threads()) {
            for share in crate::par::shares(window, 1 << 12, |_, ids| self.encoded(ids)) {
                for chunk in share {
                    out.write_all(&chunk)?;
                }
            }
        }
        for field in self.src.tail() {
            out.write_all(field)?;
        }
        Ok(())
    }

    /// The nodes' bytes as [`Work::encode`] writes them, each with its key
    /// and length, in runs: copied or encoded into buffers of their own,
    /// but for the bytes of a large node written as they are, which are
    /// borrowed where they are.
    fn encoded(&self, ids: &[NodeId]) -> Vec<std::borrow::Cow<'_, [u8]>> {
        use std::borrow::Cow;
        /// Nodes this large are not copied.
        const LARGE: usize = 1 << 16;
        let mut chunks = Vec::new();
        let mut own = Vec::with_capacity(ids.len() * 64);
        let (mut node, mut inputs_at) = (Vec::new(), Vec::new());
        for &id in ids {
            // A rule's constant, or a source node no round rewired, is
            // written as its bytes are; any other node is encoded here.
            let kept: Option<&[u8]> = match self.whole(id) {
                Some((bytes, ..)) => Some(bytes),
                None => {
                    node.clear();
                    match self.write_node(id, &mut node, &mut inputs_at) {
                        Some(_) => None,
                        None => Some(self.src.node_raw(id)),
                    }
                }
            };
            let raw = kept.unwrap_or(&node);
            own.push(0x0a); // field 1, wire type LEN
            crate::wire::write_varint(raw.len() as u64, &mut own);
            match kept.filter(|bytes| bytes.len() >= LARGE) {
                Some(bytes) => {
                    chunks.push(Cow::Owned(std::mem::take(&mut own)));
                    chunks.push(Cow::Borrowed(bytes));
                }
                None => own.extend_from_slice(raw),
            }
        }
        chunks.push(Cow::Owned(own));
        chunks
    }

    /// A node written as its bytes are (a rule's constant, still without
    /// inputs, under the name it was encoded with), and where its name and
    /// op are in them.
    fn whole(
        &self,
        id: NodeId,
    ) -> Option<(&Bytes, std::ops::Range<usize>, std::ops::Range<usize>)> {
        let Some(Added { body: Body::Whole(bytes), name, .. }) = self.added(id) else {
            return None;
        };
        if !self.inputs(id).is_empty() {
            return None;
        }
        // Field 1, the name the node has; then field 2, the op.
        use crate::wire::{Plain, plain_field};
        let mut at = 0;
        let (0x0a, Plain::Len(written)) = plain_field(bytes, &mut at)? else { return None };
        if written != name.as_bytes() {
            return None;
        }
        let name = at - written.len()..at;
        let (0x12, Plain::Len(op)) = plain_field(bytes, &mut at)? else { return None };
        Some((bytes, name, at - op.len()..at))
    }

    /// About how many bytes these nodes take once written (those written
    /// as read, or shared, take none): their bodies, names and inputs.
    fn written_size(&self, ids: &[NodeId]) -> usize {
        ids.iter()
            .filter(|&&id| !self.as_read(id) && self.whole(id).is_none())
            .map(|&id| {
                let body = self.raw(id).map_or(0, <[u8]>::len);
                body + self.name(id).len() + 8 + self.inputs(id).len() * 48
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The output order, walked in shares on several threads when the graph
    /// is large, is every alive node (phantoms aside) by its position.
    #[test]
    fn output_order_is_the_order_of_positions() {
        // Enough source nodes for several shares.
        let graph = crate::synth::synth(200_000);
        let mut work = Work::new(&graph);
        let n0 = work.len() as NodeId;
        for root in (0..n0).step_by(997) {
            let first = work.add(format!("r{root}/a"), "Identity", Body::Copy(root), root, 0);
            work.add(format!("r{root}/b"), "Identity", Body::Copy(root), root, 1);
            // A replacement replaced in turn, and one removed.
            if root % 2 == 0 {
                work.add(format!("r{root}/a/c"), "Identity", Body::Copy(root), first, 0);
                work.remove(first);
            }
            work.remove(root);
        }
        work.phantom("nowhere:0");
        let mut expected: Vec<NodeId> = (0..work.len() as NodeId)
            .filter(|&id| work.is_alive(id) && !work.is_phantom(id))
            .collect();
        expected.sort_by_key(|&id| work.position(id).expect("shallow"));
        assert_eq!(work.order(), expected);
        let odd: Vec<NodeId> = expected.iter().copied().filter(|id| id % 2 == 1).collect();
        assert_eq!(work.order_of(0, |id| id % 2 == 1), odd);
    }

    /// Nodes added at once start alive, unread and with no inputs of their
    /// own, and each is found among its parent's replacements, also when
    /// the parent came in the same batch.
    #[test]
    fn nodes_added_at_once_start_as_nodes_added_one_by_one() {
        let graph = crate::synth::synth(100);
        let mut work = Work::new(&graph);
        let root: NodeId = 3;
        let first = work.len() as NodeId;
        let adding = |name: &str, parent: NodeId, index: u32| Adding {
            name: name.to_string(),
            hash: crate::graph::name_hash(name),
            op: "Identity",
            body: Body::Copy(root),
            parent,
            index,
        };
        work.add_all([adding("a", root, 0), adding("b", root, 1), adding("a/c", first, 0)]);
        for id in first..first + 3 {
            assert!(work.is_alive(id));
            assert!(work.inputs(id).is_empty());
            assert_eq!(work.consumers(id).count(), 0);
            assert!(!work.is_read(id));
        }
        assert_eq!(work.replacements(root).collect::<Vec<_>>(), [first, first + 1]);
        assert_eq!(work.replacements(first).collect::<Vec<_>>(), [first + 2]);
        assert_eq!(work.id("a/c"), Some(first + 2));
    }

    /// Names of nodes added one by one or all at once are found, through
    /// clashing hashes and name tables that grow; a name added again shadows
    /// the earlier node, and a removed node is not found.
    #[test]
    fn added_names_are_found_through_clashing_hashes() {
        let graph = crate::synth::synth(100);
        let mut work = Work::new(&graph);
        let source = graph.name(0).to_string();
        let names: Vec<String> = (0..3000).map(|i| format!("added/{i}")).collect();
        // Every third name of those added at once hashed as the same value
        // (all clash), the others by their real hash.
        let hash = |i: usize| {
            if i.is_multiple_of(3) && i < 2000 { 7 } else { crate::graph::name_hash(&names[i]) }
        };
        let adding = |i: usize| Adding {
            name: names[i].clone(),
            hash: hash(i),
            op: "NoOp",
            body: Body::Copy(0),
            parent: NodeId::MAX,
            index: 0,
        };
        let first = work.add_all((0..2000).map(adding));
        for name in &names[2000..] {
            work.add(name.clone(), "NoOp", Body::Copy(0), NodeId::MAX, 0);
        }
        let lookup = |work: &Work, i: usize| match hash(i) {
            7 => work.id_hashed(&names[i], 7),
            _ => work.id(&names[i]),
        };
        for (i, name) in names.iter().enumerate() {
            assert_eq!(lookup(&work, i), Some(first + i as NodeId), "{name}");
        }
        assert_eq!(work.id(&source), Some(0), "a source node");
        assert_eq!(work.id("added/none"), None);
        assert_eq!(work.id_hashed("added/none", 7), None);
        // Names added again (a clashing one and another) shadow the first
        // nodes; removed, they leave neither found.
        let again = work.add_all([0, 1].map(adding));
        assert_eq!(lookup(&work, 0), Some(again));
        assert_eq!(lookup(&work, 1), Some(again + 1));
        work.remove(again);
        work.remove(again + 1);
        assert_eq!(lookup(&work, 0), None);
        assert_eq!(lookup(&work, 1), None);
        assert_eq!(lookup(&work, 3), Some(first + 3), "the other clashing names stay");
    }

    /// The written graph's names, ops and inputs are where writing put them:
    /// what reading its bytes again finds, for new, rewired and redefined
    /// nodes written on several threads.
    #[test]
    fn written_strings_are_where_reading_finds_them() {
        let graph = crate::synth::synth(60_000);
        let mut work = Work::new(&graph);
        let n0 = work.len() as NodeId;
        for root in (0..n0).step_by(101) {
            let new = work.add(format!("r{root}/new"), "Identity", Body::Copy(root), root, 0);
            work.set_inputs(new, &[Edge::new(Some(root), Port::Data(0))]);
        }
        for id in (1..n0).step_by(7) {
            let mut edges = work.inputs(id).to_vec();
            edges.reverse();
            work.set_inputs(id, &edges);
        }
        for id in (3..n0).step_by(501) {
            work.redefine(id, NodeDef { op: "NoOp".into(), ..Default::default() });
        }
        // Constants encoded whole: shared as they are; under another name
        // than their bytes hold (a copy's), or once given inputs, rewritten.
        let whole = |name: &str| {
            let def = NodeDef { name: name.into(), op: "Const".into(), ..Default::default() };
            Body::Whole(Bytes::from(def.encode_to_vec()))
        };
        let mut consts = Vec::new();
        for (i, root) in (50..n0).step_by(97).filter(|r| r % 101 != 0).enumerate() {
            let name = format!("r{root}/const");
            consts.push((name.clone(), i % 3 == 2));
            let body = match i % 3 {
                1 => whole(&name.replacen('r', "x", 1)),
                _ => whole(&name),
            };
            let id = work.add(name, "Const", body, root, 0);
            if i % 3 == 2 {
                work.set_inputs(id, &[Edge::new(Some(root), Port::Control)]);
            }
        }
        let written = work.written(&work.order());
        let mut bytes = Vec::new();
        written.encode(&mut bytes).unwrap();
        let read = Graph::from_bytes(Bytes::from(bytes)).unwrap();
        assert_eq!(written.len(), read.len());
        assert!(read.nodes_with_op("NoOp").len() > 100);
        assert!(consts.len() > 500);
        for (name, has_input) in &consts {
            let id = read.id(name).unwrap_or_else(|| panic!("{name} is not written"));
            assert_eq!(read.op(id), "Const");
            assert_eq!(read.input_strs(id).count(), usize::from(*has_input), "{name}");
        }
        for id in read.ids() {
            assert_eq!(written.name(id), read.name(id));
            assert_eq!(written.op(id), read.op(id));
            assert!(written.input_strs(id).eq(read.input_strs(id)), "{}", read.name(id));
        }
    }
}
