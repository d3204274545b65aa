//! The interpreter: applies a rule set to a graph until no rule matches.
//!
//! The graph is copied into a working graph (`work.rs`), edited in place.
//! Each round reads it only to find its patches (`search.rs`): the
//! candidates are every node some rule may be rooted at (first round), then
//! the nodes near the last round's changes; each is tried against the rules
//! for its op in priority order, on several cores when there are many, and
//! a match whose guard holds and whose root is not already part of another
//! patch of the round becomes a patch. The round's patches are then applied
//! together: new nodes take their roots' places, roots are removed, their
//! readers rewired (through chains of replacements), control edges move to
//! the producer of the replacement. Dead tensors then propagate as
//! TensorFlow's executor defines them, unreachable nodes are collected, and
//! the graph is checked before the next round. A cap on rewrites stops rule
//! sets that never end. The result is written as a [`Graph`] once.

use std::collections::BTreeMap;
use std::time::Instant;

use rustc_hash::{FxHashMap, FxHashSet};

use super::ast::{RExpr, RInput, Replacement, Rule};
use super::compile::RuleSet;
use super::replace::{NewNode, TRef};
use super::search::{Near, PARALLEL_MIN, Patches, find_patches, near, pattern_depth};
use super::work::{Adding, Body, Work};
use crate::graph::{Edge, Graph, NodeId, Port};
use crate::proto::attr_value;

/// The op of the marker node that dead tensors come from while rewriting.
pub const DEAD_OP: &str = "_GraphrwDead";

/// How to apply.
#[derive(Clone, Debug)]
pub struct Options {
    /// Graph outputs (`node` or `node:N`); empty means the nodes nothing consumes.
    pub outputs: Vec<String>,
    /// Remove what the outputs do not reach.
    pub prune: bool,
    /// Stop (with an error) after this many rewrites; `None`: as many as
    /// [`Options::cap`] allows a graph of its size.
    pub max_rewrites: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options { outputs: vec![], prune: true, max_rewrites: None }
    }
}

/// Rewrites allowed per node of the input unless a cap is set: a rule set
/// that ends rewrites each node a few times at most (the `inference` pack
/// makes 0.36 rewrites per node of a TF1 training graph); one that never
/// ends is stopped after about as much work as rewriting the whole graph
/// ten times.
const REWRITES_PER_NODE: usize = 10;

/// Rewrites allowed however small the graph, unless a cap is set.
const MIN_REWRITES: usize = 1_000_000;

impl Options {
    /// The rewrites allowed on a graph of `nodes` nodes: the cap set, or
    /// ten per node and at least a million (a fixed cap stopped the
    /// `inference` pack on a 3M-node graph, which needs 1.07M).
    pub fn cap(&self, nodes: usize) -> usize {
        self.max_rewrites
            .unwrap_or_else(|| nodes.saturating_mul(REWRITES_PER_NODE).max(MIN_REWRITES))
    }
}

/// What applying did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    /// Each rule with how often it fired, in rule order.
    pub fired: Vec<(String, usize)>,
    /// Rounds run.
    pub rounds: usize,
    /// Nodes before and after.
    pub nodes_before: usize,
    /// Nodes after.
    pub nodes_after: usize,
    /// Op histogram before.
    pub ops_before: BTreeMap<String, usize>,
    /// Op histogram after.
    pub ops_after: BTreeMap<String, usize>,
    /// Matches not applied, and why (protected outputs, failed constants).
    pub warnings: Vec<String>,
    /// Seconds spent rewriting (not reading or writing).
    pub seconds: f64,
    /// Where those seconds went: matching (incl. computing constants),
    /// applying patches, dead propagation and pruning, validity checks.
    pub phases: Phases,
    /// Each round that rewrote something, in order (the last round, which
    /// found nothing, is not one).
    pub per_round: Vec<Round>,
}

/// What one round did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Round {
    /// Nodes rules were tried at: in the first round every node some rule
    /// may be rooted at, then the nodes near the last round's changes.
    pub candidates: usize,
    /// The rules that fired, with how often, in rule order.
    pub fired: Vec<(String, usize)>,
    /// Nodes after the round (dead and, unless `--no-prune`, unneeded
    /// nodes gone).
    pub nodes_after: usize,
    /// Seconds finding the round's candidates (after the first round) and
    /// matching them, constants computed.
    pub find: f64,
    /// Seconds applying the patches.
    pub apply: f64,
    /// Seconds spreading dead tensors and pruning.
    pub settle: f64,
    /// Seconds checking the round's result.
    pub check: f64,
}

/// Seconds per phase of rewriting, summed over rounds.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Phases {
    /// Indexing the input (names, ops, edges, consumers), unless it was
    /// indexed before: what reading any model for queries costs.
    pub index: f64,
    /// Finding matches and building their patches (constants computed here).
    pub find: f64,
    /// Writing the patches into a new graph.
    pub apply: f64,
    /// Dead-tensor propagation and pruning.
    pub settle: f64,
    /// Validity checks after each round.
    pub check: f64,
    /// Setting up the working graph and ordering the result (and, for
    /// [`apply`], building it as a graph).
    pub write: f64,
}

/// Why a rule set could not be applied.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ApplyError {
    /// An output named on the command line is not in the graph.
    #[error(transparent)]
    #[diagnostic(transparent)]
    UnknownOutput(#[from] crate::prune::UnknownOutput),
    /// The cap on rewrites was reached.
    #[error("stopped after {total} rewrites (--max-rewrites): the rules keep firing\n{detail}")]
    #[diagnostic(help(
        "a rule whose replacement matches its own pattern never ends; raise --max-rewrites if the graph is simply large"
    ))]
    Cap {
        /// Rewrites done.
        total: usize,
        /// The rules that kept firing, with counts and nodes.
        detail: String,
    },
    /// A graph output became dead.
    #[error(
        "output `{output}` is dead after rule `{rule}`: it only computes in a branch that never runs"
    )]
    DeadOutput {
        /// The output.
        output: String,
        /// A rule of the round.
        rule: String,
    },
    /// A node still reads a dead tensor once no rule matches.
    #[error("node `{node}` still reads a dead tensor (from a branch that never runs)")]
    #[diagnostic(help(
        "dead tensors must be folded away by rules, e.g. `Merge(x, dead) => [x, 0]`"
    ))]
    DeadLeft {
        /// The node.
        node: String,
    },
    /// The rewritten graph is not valid.
    #[error("rule {rules} broke the graph: {problem}")]
    Invalid {
        /// The rules that fired in the round.
        rules: String,
        /// The first new problem.
        problem: String,
    },
}

/// Applies `rules` to `graph` until no rule matches: the rewritten graph,
/// built (see [`rewrite`], which leaves it to be written out).
pub fn apply(
    graph: &Graph,
    rules: &RuleSet,
    options: &Options,
) -> Result<(Graph, Report), ApplyError> {
    let (rewritten, mut report) = rewrite(graph, rules, options)?;
    let t = Instant::now();
    let built = rewritten.to_graph();
    let seconds = t.elapsed().as_secs_f64();
    report.phases.write += seconds;
    report.seconds += seconds;
    Ok((built, report))
}

/// A rewritten graph as the engine left it: its working copy of the
/// source and the nodes to write, in order. It is written out from there
/// ([`Rewritten::encode`]) or built into a [`Graph`] to be worked on
/// ([`Rewritten::to_graph`]).
pub struct Rewritten<'g> {
    work: Work<'g>,
    order: Vec<NodeId>,
}

impl Rewritten<'_> {
    /// How many nodes it has.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether it has no node.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The graph, built: nodes no round rewired share the source's bytes.
    pub fn to_graph(&self) -> Graph {
        self.work.written(&self.order)
    }

    /// Writes the binary GraphDef: the bytes [`Graph::encode`] writes for
    /// [`Rewritten::to_graph`], without building that graph.
    pub fn encode<W: std::io::Write + ?Sized>(&self, out: &mut W) -> std::io::Result<()> {
        self.work.encode(&self.order, out)
    }
}

/// Applies `rules` to `graph` until no rule matches, and checks the result
/// (the report's time is the rewrite's: writing the result out is not in
/// it).
pub fn rewrite<'g>(
    graph: &'g Graph,
    rules: &RuleSet,
    options: &Options,
) -> Result<(Rewritten<'g>, Report), ApplyError> {
    let start = Instant::now();
    graph.id(""); // builds the indexes, if they were not
    let indexed = start.elapsed().as_secs_f64();
    let mut report = Report {
        fired: rules.rules.iter().map(|r| (r.rule.name.name.clone(), 0)).collect(),
        nodes_before: graph.len(),
        ops_before: histogram(graph.ops().map(|(op, ids)| (op, ids.len()))),
        ..Report::default()
    };
    // The outputs' nodes, by id, sorted: a round that replaces one gives
    // its id to the node that took its name (an output is never removed
    // otherwise), so they are not looked up by name round after round
    // (there may be hundreds of thousands: by default every node no one
    // reads is one).
    let mut outputs = crate::prune::outputs_or_default(graph, &options.outputs)?;
    let cap = options.cap(graph.len());
    outputs.sort_unstable();
    outputs.dedup();
    let t = Instant::now();
    let mut work = Work::new(graph);
    report.phases.write += t.elapsed().as_secs_f64();
    // Whether the input has a cycle is only asked when a round could have
    // made one.
    let mut cyclic_before: Option<bool> = None;
    // A rule's match reads nodes at most this many edges upstream of its
    // root (its pattern's depth, and the consumers of what it matched).
    let reaches: Vec<u8> = rules
        .rules
        .iter()
        .map(|r| u8::try_from(pattern_depth(&r.rule.pattern) + 1).unwrap_or(u8::MAX - 1))
        .collect();
    let reach = reaches.iter().copied().max().unwrap_or(0);
    let mut candidates: Option<Near> = None;
    let mut total = 0usize;
    // The first few roots each rule fired at in the round, by rule (named
    // by the cap's error).
    let mut recent: Vec<Vec<String>> = vec![Vec::new(); rules.rules.len()];
    // Whether every node reaches an output (a round pruned the graph, or
    // the input shows it without a walk), which pruning by orphans relies
    // on.
    let mut pruned = options.prune && !has_loops(&work) && reaches_outputs(graph, &outputs);
    let mut scratch = Scratch::default();
    // Seconds spent finding the next round's candidates, counted in it.
    let mut nearing = 0.0;
    loop {
        let t = Instant::now();
        let patches = find_patches(
            &work,
            rules,
            candidates.as_ref(),
            &reaches,
            &outputs,
            &mut scratch,
            &mut report,
        );
        let mut round = Round {
            candidates: patches.candidates,
            find: t.elapsed().as_secs_f64() + nearing,
            ..Round::default()
        };
        report.phases.find += t.elapsed().as_secs_f64();
        if patches.is_empty() {
            break;
        }
        report.rounds += 1;
        total += patches.len();
        let mut fired = vec![0usize; rules.rules.len()];
        for patch in patches.iter() {
            report.fired[patch.rule as usize].1 += 1;
            fired[patch.rule as usize] += 1;
            let nodes = &mut recent[patch.rule as usize];
            if nodes.len() < 5 {
                nodes.push(work.name(patch.root).to_string());
            }
        }
        // The rules that fired in the round (those it noted roots for), in
        // rule order.
        let rule_names = recent
            .iter()
            .enumerate()
            .filter(|(_, nodes)| !nodes.is_empty())
            .map(|(r, _)| format!("`{}`", rules.rules[r].rule.name.name))
            .collect::<Vec<_>>()
            .join(", ");
        let t = Instant::now();
        // A new cycle can only come from a replacement that reads its own
        // root (every other input of a replacement is upstream of the root,
        // every rewired reader downstream): only then is the whole graph
        // searched for one.
        let cycle_risk = patches.iter().any(|p| {
            p.nodes.iter().any(|n| {
                n.data.iter().any(|r| matches!(r, TRef::Old(t) if t.node == p.root))
                    || n.control.contains(&p.root)
            })
        });
        let mut changes = Changes::default();
        apply_patches(&mut work, patches, &mut outputs, &mut scratch, &mut changes);
        round.apply = t.elapsed().as_secs_f64();
        report.phases.apply += round.apply;
        let t = Instant::now();
        let prune = match options.prune {
            false => Prune::No,
            true if pruned && !has_loops(&work) => Prune::Orphans,
            true => Prune::Walk,
        };
        settle(&mut work, &outputs, prune, &rule_names, &mut scratch, &mut changes)?;
        pruned = true;
        round.settle = t.elapsed().as_secs_f64();
        report.phases.settle += round.settle;
        let t = Instant::now();
        check_round(&work, &changes, cycle_risk, &mut cyclic_before, &rule_names)?;
        round.check = t.elapsed().as_secs_f64();
        report.phases.check += round.check;
        round.fired = fired
            .into_iter()
            .enumerate()
            .filter(|&(_, n)| n > 0)
            .map(|(r, n)| (rules.rules[r].rule.name.name.clone(), n))
            .collect();
        round.nodes_after = work.alive() - usize::from(work.live_marker().is_some());
        report.per_round.push(round);
        if total > cap {
            let mut lines: Vec<(usize, String)> = recent
                .iter()
                .enumerate()
                .filter(|(_, nodes)| !nodes.is_empty())
                .map(|(r, nodes)| {
                    (
                        report.fired[r].1,
                        format!(
                            "  `{}` fired {} times, on {}",
                            rules.rules[r].rule.name.name,
                            report.fired[r].1,
                            nodes.join(", ")
                        ),
                    )
                })
                .collect();
            lines.sort_by_key(|l| std::cmp::Reverse(l.0));
            let detail = lines.into_iter().map(|l| l.1).collect::<Vec<_>>().join("\n");
            return Err(ApplyError::Cap { total, detail });
        }
        recent.iter_mut().for_each(Vec::clear);
        let t = Instant::now();
        let distance = candidates.take().map(|c| c.distance).unwrap_or_default();
        candidates = Some(near(&work, &changes.seeds, reach, distance));
        nearing = t.elapsed().as_secs_f64();
        report.phases.find += nearing;
    }
    // Rounds prune as they go; when none ran, what the outputs do not reach
    // still goes (unless the input showed there is none).
    if report.rounds == 0 && options.prune && !pruned {
        let t = Instant::now();
        let mut changes = Changes::default();
        settle(&mut work, &outputs, Prune::Walk, "", &mut scratch, &mut changes)?;
        report.phases.settle += t.elapsed().as_secs_f64();
    }
    // A dead marker nothing reaches is gone; one that is still read means a
    // node reads a branch that never runs, which must not be written.
    if let Some(marker) = work.live_marker() {
        if let Some(reader) = work.consumers(marker).next() {
            return Err(ApplyError::DeadLeft { node: work.name(reader.node).to_string() });
        }
        work.remove(marker);
    }
    let t = Instant::now();
    let order = work.order();
    drop_dangling_colocation(&mut work, &order, rules.rules.iter().any(|r| builds_class(&r.rule)));
    let mut counts: FxHashMap<u32, usize> = FxHashMap::default();
    for &id in &order {
        *counts.entry(work.op_of(id)).or_default() += 1;
    }
    report.ops_after = histogram(counts.iter().map(|(&op, &n)| (work.op_name(op), n)));
    report.nodes_after = order.len();
    report.phases.write += t.elapsed().as_secs_f64();
    report.phases.index = indexed;
    report.seconds = start.elapsed().as_secs_f64();
    Ok((Rewritten { work, order }, report))
}

/// What a round changed: nodes whose inputs, consumers or existence
/// changed (the next round matches near them), and nodes it removed.
#[derive(Default)]
struct Changes {
    seeds: Vec<NodeId>,
    removed: Vec<NodeId>,
    /// Nodes that may have lost their last reader: the new nodes, the
    /// inputs of removed roots and what the patterns matched below them.
    orphans: Vec<NodeId>,
}

impl Changes {
    /// `id` is gone: its inputs' producers are seeds of the next round and
    /// may have lost their last reader.
    fn inputs_left(&mut self, work: &Work, id: NodeId) {
        let before = self.seeds.len();
        self.seeds.extend(work.inputs(id).iter().filter_map(|e| e.src()));
        self.orphans.extend_from_slice(&self.seeds[before..]);
    }
}

/// Colocation entries (`_class: "loc:@name"`) naming a node the rewrite
/// removed are dropped (and `_class` with them when none is left):
/// TensorFlow refuses to import a graph that colocates with a missing node.
/// Only nodes whose bytes hold `loc:@` are decoded; their bytes are not
/// searched node by node when the source's bytes have none and no rule
/// (`rules_build_class`) gives a node it builds a `_class`.
fn drop_dangling_colocation(work: &mut Work, order: &[NodeId], rules_build_class: bool) {
    let finder = memchr::memmem::Finder::new(b"loc:@");
    let in_source = work.source().bytes_hold(&finder);
    if !in_source && !rules_build_class {
        return;
    }
    // Nodes whose bytes hold `loc:@`, looked for on several threads.
    let colocated = par_filter(order, |id| {
        (in_source || !work.bytes_from_source(id)) && work.bytes_hold(id, &finder)
    });
    let mut changed = Vec::new();
    for id in colocated {
        let Some(mut def) = work.colocated_def(id, &finder) else { continue };
        let dangling = crate::validate::colocated_with(&def).any(|w| work.id(w).is_none());
        if !dangling {
            continue;
        }
        if let Some(attr_value::Value::List(list)) =
            def.attr.get_mut("_class").and_then(|a| a.value.as_mut())
        {
            list.s.retain(|s| {
                std::str::from_utf8(s)
                    .ok()
                    .and_then(|s| s.strip_prefix("loc:@"))
                    .is_none_or(|w| work.id(w).is_some())
            });
            if list.s.is_empty() {
                def.attr.remove("_class");
            }
        }
        changed.push((id, def));
    }
    for (id, def) in changed {
        work.redefine(id, def);
    }
}

/// Whether the rule's replacement gives a node it builds a `_class`
/// attribute (copies keep their source node's).
fn builds_class(rule: &Rule) -> bool {
    fn builds(e: &RExpr) -> bool {
        let inputs = match e {
            RExpr::NewNode { attrs, .. } if attrs.iter().any(|(name, _)| name.name == "_class") => {
                return true;
            }
            RExpr::NewNode { inputs, .. } | RExpr::Copy { inputs, .. } => inputs,
            RExpr::Dead(_) | RExpr::Var { .. } | RExpr::Number(..) | RExpr::Const(..) => {
                return false;
            }
        };
        inputs.iter().any(|i| matches!(i, RInput::Data(e) if builds(e)))
    }
    match &rule.replacement {
        Replacement::Single(e) => builds(e),
        Replacement::Ports(es, _) => es.iter().any(builds),
        // Inlining drops the colocation a function's nodes carry.
        Replacement::Inline { .. } => false,
    }
}

fn histogram<'a>(counts: impl Iterator<Item = (&'a str, usize)>) -> BTreeMap<String, usize> {
    let mut h = BTreeMap::new();
    for (op, n) in counts {
        *h.entry(op.to_string()).or_default() += n;
    }
    h
}

/// The ids for which `keep` holds, in order; many ids are split between
/// threads.
fn par_filter(ids: &[NodeId], keep: impl Fn(NodeId) -> bool + Sync) -> Vec<NodeId> {
    let parts = crate::par::shares(ids, PARALLEL_MIN * 4, |_, part| {
        part.iter().copied().filter(|&id| keep(id)).collect::<Vec<_>>()
    });
    parts.into_iter().flatten().collect()
}

/// The distinct nodes `add(i, ..)` adds for each `i` of `0..len`,
/// ascending: gathered on every core (reading consumer lists scattered over
/// the graph), each share's sorted, then merged.
fn gather_sorted(len: usize, add: impl Fn(usize, &mut Vec<NodeId>) + Sync) -> Vec<NodeId> {
    let parts = crate::par::ranges(len, PARALLEL_MIN, |range| {
        let mut ids = Vec::new();
        for i in range {
            add(i, &mut ids);
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    });
    parts.into_iter().reduce(merge_distinct).unwrap_or_default()
}

/// The distinct entries of two ascending lists without repeats, ascending.
fn merge_distinct(a: Vec<NodeId>, b: Vec<NodeId>) -> Vec<NodeId> {
    let mut merged = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        merged.push(x.min(y));
        i += usize::from(x <= y);
        j += usize::from(y <= x);
    }
    merged.extend_from_slice(&a[i..]);
    merged.extend_from_slice(&b[j..]);
    merged
}

/// Vectors with an entry per node that every round needs afresh, kept from
/// round to round: allocated anew, each would come as fresh pages the
/// system zeroes on first touch, which costs more than refilling them.
#[derive(Default)]
pub(super) struct Scratch {
    pub(super) is_root: Vec<bool>,
    pub(super) is_interior: Vec<bool>,
    patch_of: Vec<u32>,
    dead: Vec<bool>,
    /// The warnings reported so far: a match refused again in a later round
    /// (tried again because something near it changed, or because every
    /// node was) is reported once.
    pub(super) warned: FxHashSet<String>,
}

/// `v` as `n` copies of `value`, in the memory it has.
pub(super) fn refill<T: Copy>(v: &mut Vec<T>, n: usize, value: T) {
    v.clear();
    v.resize(n, value);
}

/// Stands for the dead-tensor marker while a round is planned, before the
/// marker exists.
const DEAD: NodeId = NodeId::MAX - 1;

/// Where a tensor of the round's graph ends up, through the round's
/// replacements.
struct Resolver<'a> {
    work: &'a Work<'a>,
    patches: &'a Patches,
    /// Each root's patch, by node id (`u32::MAX`: not a root of the round).
    patch_of: &'a [u32],
    /// Each patch's first new node.
    base: &'a [NodeId],
}

impl Resolver<'_> {
    fn patch_of(&self, node: NodeId) -> Option<usize> {
        self.patch_of.get(node as usize).filter(|&&p| p != u32::MAX).map(|&p| p as usize)
    }

    /// Follows a replacement through the round's patches (a root's port
    /// replaced by a tensor that is itself a replaced root's port...) to
    /// where it ends: an old tensor no patch replaces, a new node of the
    /// patch it belongs to, or the dead marker.
    fn resolve(&self, mut r: TRef, mut patch: usize) -> (TRef, usize) {
        for _ in 0..64 {
            let TRef::Old(t) = r else { break };
            let Some(p) = self.patch_of(t.node) else { break };
            let Some(Some(next)) = self.patches[p].ports.get(t.port as usize) else { break };
            (r, patch) = (*next, p);
        }
        (r, patch)
    }

    /// The producer and port of a resolved tensor (the marker for dead).
    fn target(&self, (r, patch): (TRef, usize)) -> (NodeId, u32) {
        match r {
            TRef::Old(t) => (t.node, t.port),
            TRef::New(i, port) => (self.base[patch] + i as NodeId, port),
            TRef::Dead => (DEAD, 0),
        }
    }

    /// The data edge reading `r` (of patch `patch`).
    fn data(&self, r: TRef, patch: usize) -> Edge {
        let (src, port) = self.target(self.resolve(r, patch));
        Edge::new(Some(src), Port::Data(port))
    }

    /// The control input replacing `^node`: moved to the producer of what
    /// replaced `node`, or dropped when that is a Const with no inputs (it is
    /// always ready, so an edge to it orders nothing; frozen TF2 graphs tie
    /// every weight to the output this way, which would keep the folded
    /// weights' originals alive).
    fn control(&self, node: NodeId) -> Option<NodeId> {
        let Some(p) = self.patch_of(node) else { return Some(node) };
        let patch = &self.patches[p];
        if let Some(i) = patch.takes_name {
            return Some(self.base[p] + i as NodeId);
        }
        let Some(first) = patch.ports.first().copied().flatten() else {
            return Some(DEAD);
        };
        let (target, patch) = self.resolve(first, p);
        let source_const = match target {
            TRef::Old(t) => self.work.op(t.node) == "Const" && self.work.inputs(t.node).is_empty(),
            TRef::New(i, _) => {
                let new = &self.patches[patch].nodes[i as usize];
                new.op == "Const"
                    && new.data.is_empty()
                    && new.control.is_empty()
                    && new.control_names.is_empty()
            }
            TRef::Dead => false,
        };
        (!source_const).then(|| self.target((target, patch)).0)
    }
}

/// New input lists, planned while the round's graph is read, kept flat:
/// per node its data edges, then its control edges. Inputs that name no
/// node keep their text (data ones by position, control ones after the
/// controls).
#[derive(Default)]
struct Plans {
    /// Node, start in `edges`, count.
    nodes: Vec<(NodeId, u32, u32)>,
    edges: Vec<Edge>,
    /// Plan, data slot (`None`: a control input), text.
    texts: Vec<(u32, Option<u32>, String)>,
}

impl Plans {
    fn with_capacity(nodes: usize) -> Plans {
        Plans {
            nodes: Vec::with_capacity(nodes),
            edges: Vec::with_capacity(nodes * 3),
            texts: Vec::new(),
        }
    }

    /// Starts the plan of `id`.
    fn start(&mut self, id: NodeId) {
        self.nodes.push((id, self.edges.len() as u32, 0));
    }

    fn push(&mut self, edge: Edge) {
        self.edges.push(edge);
        self.nodes.last_mut().expect("a plan was started").2 += 1;
    }

    fn data(&mut self, edge: Edge) {
        self.push(edge);
    }

    fn control(&mut self, node: NodeId) {
        self.push(Edge::new(Some(node), Port::Control));
    }

    /// A data input that names no node (at the next data slot).
    fn data_text(&mut self, text: &str) {
        let plan = self.nodes.len() as u32 - 1;
        let slot = self.nodes[plan as usize].2;
        self.texts.push((plan, Some(slot), text.to_string()));
        self.push(Edge::new(None, Port::Data(0)));
    }

    /// A control input that names no node.
    fn control_text(&mut self, text: &str) {
        self.texts.push((self.nodes.len() as u32 - 1, None, text.to_string()));
    }

    fn reads_dead(&self) -> bool {
        self.edges.iter().any(|e| e.src() == Some(DEAD))
    }

    /// Plans a rewired reader: its data inputs through `data`, its control
    /// inputs through `control` (`None`: dropped), inputs that name no node
    /// as they are written.
    fn reader(
        &mut self,
        work: &Work,
        id: NodeId,
        data: impl Fn(NodeId, u32) -> Edge,
        control: impl Fn(NodeId) -> Option<NodeId>,
    ) {
        self.start(id);
        let inputs = work.inputs(id);
        let text = |slot: usize| work.source_input_text(id, slot as u32).unwrap_or("");
        for (slot, edge) in inputs.iter().enumerate() {
            match (edge.src(), edge.port()) {
                (Some(src), Port::Data(port)) => self.data(data(src, port)),
                (None, _) if !text(slot).starts_with('^') => self.data_text(text(slot)),
                _ => {}
            }
        }
        for (slot, edge) in inputs.iter().enumerate() {
            match (edge.src(), edge.port()) {
                (Some(src), Port::Control) => {
                    if let Some(c) = control(src) {
                        self.control(c);
                    }
                }
                (None, _) if text(slot).starts_with('^') => self.control_text(text(slot)),
                _ => {}
            }
        }
    }

    /// Gives every planned node its inputs: phantoms for the texts, the
    /// marker for `DEAD`, controls without repeats or self-edges. Each node
    /// is a seed of the next round, and so are its inputs' producers when
    /// `producers_too`.
    fn install(
        self,
        work: &mut Work,
        marker: NodeId,
        seeds: &mut Vec<NodeId>,
        producers_too: bool,
    ) {
        let fix = |n: NodeId| if n == DEAD { marker } else { n };
        work.reserve_edges(self.edges.len());
        seeds.reserve(self.nodes.len() + self.edges.len());
        let mut texts = self.texts.into_iter().peekable();
        let mut edges: Vec<Edge> = Vec::new();
        let mut seen: FxHashSet<NodeId> = FxHashSet::default();
        let mut seen_texts: FxHashSet<String> = FxHashSet::default();
        let planned = |start: u32, len: u32| &self.edges[start as usize..][..len as usize];
        for (plan, &(id, start, len)) in self.nodes.iter().enumerate() {
            // The records this writes are scattered: asked for a few nodes
            // ahead.
            if let Some(&(ahead, start, len)) = self.nodes.get(plan + AHEAD) {
                work.prefetch_records(ahead);
                for src in planned(start, len).iter().filter_map(|e| e.src()) {
                    work.prefetch_records(src);
                }
            }
            let planned = planned(start, len);
            edges.clear();
            edges.extend(
                planned
                    .iter()
                    .filter(|e| e.port() != Port::Control)
                    .map(|e| Edge::new(e.src().map(fix), e.port())),
            );
            let data = edges.len();
            // Controls without repeats: a scan while they are few.
            let controls = planned.iter().filter(|e| e.port() == Port::Control);
            seen.clear();
            for c in controls.filter_map(|e| e.src()).map(fix) {
                let repeat = if edges.len() - data < 16 {
                    edges[data..].iter().any(|e| e.src() == Some(c))
                } else {
                    if seen.is_empty() {
                        seen.extend(edges[data..].iter().filter_map(|e| e.src()));
                    }
                    !seen.insert(c)
                };
                if c != id && !repeat {
                    edges.push(Edge::new(Some(c), Port::Control));
                }
            }
            seen_texts.clear();
            while let Some((_, slot, text)) = texts.next_if(|t| t.0 == plan as u32) {
                match slot {
                    Some(slot) => edges[slot as usize] = work.phantom(&text),
                    None => {
                        if seen_texts.insert(text.clone()) {
                            edges.push(work.phantom(&text));
                        }
                    }
                }
            }
            seeds.push(id);
            if producers_too {
                seeds.extend(edges.iter().filter_map(|e| e.src()));
            }
            work.set_inputs(id, &edges);
        }
    }
}

/// Applies a round's patches: new nodes in their roots' places, roots
/// removed, their readers rewired.
fn apply_patches(
    work: &mut Work,
    mut patches: Patches,
    outputs: &mut [NodeId],
    scratch: &mut Scratch,
    changes: &mut Changes,
) {
    let dead_name = match work.live_marker() {
        Some(m) => work.name(m).to_string(),
        None => {
            let mut name = "graphrw_dead".to_string();
            while work.id(&name).is_some() {
                name.push('_');
            }
            name
        }
    };
    let new_nodes: usize = patches.iter().map(|p| p.nodes.len()).sum();
    work.reserve(new_nodes);
    changes.seeds.reserve(new_nodes);
    let patch_of = &mut scratch.patch_of;
    refill(patch_of, work.len(), u32::MAX);
    let mut base = Vec::with_capacity(patches.len());
    // Where each patch's new nodes are: the matching threads made them,
    // each patch's apart, so reading them is a cache miss each unless they
    // are asked for a few patches ahead.
    let mut made: Vec<(*const NewNode, usize)> = Vec::with_capacity(patches.len());
    let mut next = work.len() as NodeId;
    // Outputs replaced: the nodes that take their names are the outputs.
    let mut renamed: Vec<(usize, NodeId)> = Vec::new();
    for (p, patch) in patches.iter().enumerate() {
        patch_of[patch.root as usize] = p as u32;
        if let Some(i) = patch.takes_name {
            if let Ok(at) = outputs.binary_search(&patch.root) {
                renamed.push((at, next + i));
            }
        }
        base.push(next);
        next += patch.nodes.len() as NodeId;
        made.push((patch.nodes.as_ptr(), patch.nodes.len()));
    }
    let first = work.add_all(patches.iter_mut().enumerate().flat_map(|(p, patch)| {
        if let Some(&(at, len)) = made.get(p + AHEAD) {
            let bytes = len * std::mem::size_of::<NewNode>();
            for line in (0..bytes).step_by(64) {
                crate::hint::prefetch(at.cast::<u8>().wrapping_add(line));
            }
        }
        let root = patch.root;
        patch.nodes.iter_mut().enumerate().map(move |(i, node)| {
            let name = std::mem::take(&mut node.name).into_owned();
            let body = std::mem::replace(&mut node.body, Body::Phantom);
            let node: &NewNode = node;
            Adding { name, hash: node.hash, op: &node.op, body, parent: root, index: i as u32 }
        })
    }));
    if !renamed.is_empty() {
        for (at, id) in renamed {
            outputs[at] = id;
        }
        outputs.sort_unstable();
    }
    changes.seeds.extend(first..next);
    // Plan every new input list while the round's graph is intact (it is
    // only read: on every core, in shares whose plans are installed in
    // order).
    let plans: Vec<Plans> = {
        let r = Resolver { work, patches: &patches, patch_of, base: &base };
        let mut plans = crate::par::ranges(patches.len(), PARALLEL_MIN, |range| {
            let mut plans =
                Plans::with_capacity(range.clone().map(|p| patches[p].nodes.len()).sum());
            for p in range {
                for (i, node) in patches[p].nodes.iter().enumerate() {
                    plans.start(base[p] + i as NodeId);
                    for t in &node.data {
                        plans.data(r.data(*t, p));
                    }
                    for c in node.control.iter().filter_map(|&c| r.control(c)) {
                        plans.control(c);
                    }
                    for text in &node.control_names {
                        plans.control_text(text);
                    }
                }
            }
            plans
        });
        let readers = gather_sorted(patches.len(), |p, readers| {
            readers.extend(
                work.consumers(patches[p].root)
                    .map(|c| c.node)
                    .filter(|&n| patch_of.get(n as usize).is_none_or(|&p| p == u32::MAX)),
            );
        });
        plans.extend(crate::par::shares(&readers, PARALLEL_MIN, |_, readers| {
            let mut plans = Plans::with_capacity(readers.len());
            for &id in readers {
                plans.reader(
                    work,
                    id,
                    |src, port| r.data(TRef::Old(super::matcher::Tensor { node: src, port }), 0),
                    |src| r.control(src),
                );
            }
            plans
        }));
        plans
    };
    let marker = match work.live_marker() {
        Some(m) => m,
        None if plans.iter().any(Plans::reads_dead) => {
            let marker = work.add_marker(dead_name, DEAD_OP);
            changes.orphans.push(marker);
            marker
        }
        None => DEAD,
    };
    for plans in plans {
        plans.install(work, marker, &mut changes.seeds, true);
    }
    changes.orphans.extend(first..next);
    {
        // The roots' records are asked for a few patches ahead.
        let mut later = patches.iter().skip(AHEAD);
        for patch in patches.iter() {
            if let Some(later) = later.next() {
                work.prefetch_records(later.root);
            }
            changes.inputs_left(work, patch.root);
            changes.seeds.extend(&patch.interior);
            changes.orphans.extend(&patch.interior);
            work.remove(patch.root);
            changes.removed.push(patch.root);
        }
    }
    // Freeing many patches (small blocks the matching threads allocated) is
    // left to another thread, while this one goes on.
    if patches.len() >= PARALLEL_MIN {
        std::thread::spawn(move || drop(patches));
    }
}

/// How many items ahead a loop over scattered nodes asks for their records.
const AHEAD: usize = 8;

/// How a round prunes what the outputs no longer reach.
#[derive(Clone, Copy, PartialEq)]
enum Prune {
    /// Not at all (`--no-prune`): only dead nodes go.
    No,
    /// A walk from the outputs over the whole graph.
    Walk,
    /// In a graph without loops whose every node reached an output before
    /// the round: a node reaches one when it is one or when a node that
    /// reaches one reads it, so what goes is a node no one reads any more,
    /// then its inputs when that was their last reader, and so on, from the
    /// nodes the round took readers from. The same nodes as the walk, at
    /// the cost of the round's changes instead of the graph.
    Orphans,
}

/// Whether every node of the graph is shown to reach an output without
/// walking from them (a walk's reads are scattered over the whole graph;
/// these are in order, on every core): every input comes from an earlier
/// node, so there is no cycle and following readers from any node ends at
/// a node no one reads, and every such node is an output. TensorFlow writes
/// graphs with inputs first, and the outputs by default are the nodes no
/// one reads. `false` says nothing: the first round walks.
fn reaches_outputs(graph: &Graph, outputs: &[NodeId]) -> bool {
    let mut is_output = vec![false; graph.len()];
    for &id in outputs {
        is_output[id as usize] = true;
    }
    crate::par::ranges(graph.len(), 1 << 16, |ids| {
        ids.into_iter().all(|i| {
            let id = i as NodeId;
            graph.inputs(id).iter().all(|e| e.src().is_none_or(|src| src < id))
                && (is_output[i] || !graph.consumers(id).is_empty())
        })
    })
    .into_iter()
    .all(|share| share)
}

/// Whether the graph has a loop (TensorFlow's only cycles; a cycle without
/// `NextIteration` is not a graph TensorFlow runs): then a node may be read
/// only by nodes no output reaches, and pruning walks.
fn has_loops(work: &Work) -> bool {
    ["NextIteration", "RefNextIteration"]
        .iter()
        .any(|op| work.op_number(op).is_some_and(|op| work.with_op(op).next().is_some()))
}

/// Ends a round: dead tensors propagate, as TensorFlow's executor defines
/// them (a node with a dead data or control input is dead, except Merge,
/// which is dead only when all its data inputs are; every use of a dead
/// node becomes a use of the marker), and, when pruning, what the outputs
/// no longer reach is dropped.
fn settle(
    work: &mut Work,
    outputs: &[NodeId],
    prune: Prune,
    rules: &str,
    scratch: &mut Scratch,
    changes: &mut Changes,
) -> Result<(), ApplyError> {
    let marker = work.live_marker();
    // Dead and orphaned nodes are looked up among the outputs (sorted).
    let is_output = |id: NodeId| outputs.binary_search(&id).is_ok();
    let dead = &mut scratch.dead;
    refill(dead, work.len(), false);
    let mut dead_nodes = Vec::new();
    if let Some(marker) = marker {
        dead[marker as usize] = true;
        let merge = work.op_number("Merge");
        // Deadness only spreads to readers: a worklist from the marker's
        // readers visits the dead region and its border, not the graph.
        let mut queue: Vec<NodeId> = work.consumers(marker).map(|c| c.node).collect();
        while let Some(id) = queue.pop() {
            if dead[id as usize] {
                continue;
            }
            let inputs = work.inputs(id);
            let reads_dead = |e: &&Edge| e.src().is_some_and(|s| dead[s as usize]);
            let is_dead = if Some(work.op_of(id)) == merge {
                let mut data =
                    inputs.iter().filter(|e| matches!(e.port(), Port::Data(_))).peekable();
                (data.peek().is_some() && data.all(|e| reads_dead(&e)))
                    || inputs.iter().filter(|e| e.port() == Port::Control).any(|e| reads_dead(&e))
            } else {
                inputs.iter().any(|e| reads_dead(&e))
            };
            if is_dead {
                if is_output(id) {
                    return Err(ApplyError::DeadOutput {
                        output: work.name(id).to_string(),
                        rule: rules.to_string(),
                    });
                }
                dead[id as usize] = true;
                dead_nodes.push(id);
                queue.extend(work.consumers(id).map(|c| c.node));
            }
        }
    }
    // What the outputs reach, not walking into dead nodes (their readers
    // read the marker instead).
    let keep: Option<Vec<bool>> = (prune == Prune::Walk).then(|| {
        let mut keep = vec![false; work.len()];
        let mut stack = outputs.to_vec();
        for &id in &stack {
            keep[id as usize] = true;
        }
        while let Some(id) = stack.pop() {
            for edge in work.inputs(id) {
                let Some(src) = edge.src() else { continue };
                let src = if dead[src as usize] { marker.unwrap_or(src) } else { src };
                if !keep[src as usize] {
                    keep[src as usize] = true;
                    if !dead[src as usize] {
                        stack.push(src);
                    }
                }
            }
        }
        keep
    });
    let kept = |id: NodeId| keep.as_ref().is_none_or(|k| k[id as usize]);
    // Readers of dead nodes that stay read the marker instead.
    let readers = {
        let dead: &[bool] = dead;
        gather_sorted(dead_nodes.len(), |d, readers| {
            readers.extend(
                work.consumers(dead_nodes[d])
                    .map(|c| c.node)
                    .filter(|&c| !dead[c as usize] && kept(c)),
            );
        })
    };
    if let Some(marker) = marker {
        let mut plans = Plans::with_capacity(readers.len());
        let live = |n: NodeId| if dead[n as usize] { marker } else { n };
        for id in readers {
            plans.reader(
                work,
                id,
                |src, port| match dead[src as usize] {
                    true => Edge::new(Some(marker), Port::Data(0)),
                    false => Edge::new(Some(src), Port::Data(port)),
                },
                |src| Some(live(src)),
            );
        }
        plans.install(work, marker, &mut changes.seeds, false);
    }
    let doomed: Vec<NodeId> = match &keep {
        Some(keep) => (0..work.len() as NodeId)
            .filter(|&id| {
                work.is_alive(id)
                    && !work.is_phantom(id)
                    && (!keep[id as usize] || (dead[id as usize] && Some(id) != marker))
            })
            .collect(),
        None => dead_nodes,
    };
    for &id in &doomed {
        changes.inputs_left(work, id);
        work.remove(id);
    }
    changes.removed.extend(doomed);
    if prune == Prune::Orphans {
        while let Some(id) = changes.orphans.pop() {
            if !work.is_alive(id) || work.is_phantom(id) || is_output(id) || work.is_read(id) {
                continue;
            }
            changes.inputs_left(work, id);
            work.remove(id);
            changes.removed.push(id);
        }
    }
    Ok(())
}

/// After a round: no node reads a removed one, and (when a replacement read
/// its own root) no new cycle.
fn check_round(
    work: &Work,
    changes: &Changes,
    cycle_risk: bool,
    cyclic_before: &mut Option<bool>,
    rules: &str,
) -> Result<(), ApplyError> {
    let dangling =
        !par_filter(&changes.removed, |id| work.consumers(id).next().is_some()).is_empty();
    // Written once, only when there may be something to find in it.
    let written = (dangling || cycle_risk).then(|| work.to_graph());
    let new_cycle = match &written {
        Some(graph) if cycle_risk => {
            let before = *cyclic_before
                .get_or_insert_with(|| !crate::validate::topological_order(work.source()).1);
            !before && !crate::validate::topological_order(graph).1
        }
        _ => false,
    };
    if let Some(graph) = written.filter(|_| dangling || new_cycle) {
        let problem = crate::validate::validate(&graph)
            .into_iter()
            .next()
            .map_or_else(|| "a new problem".to_string(), |p| p.to_string());
        return Err(ApplyError::Invalid { rules: rules.to_string(), problem });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::graph::NodeId;

    /// Unless set, the cap grows with the graph: ten rewrites a node, and
    /// a million at least.
    #[test]
    fn the_cap_on_rewrites_grows_with_the_graph_unless_set() {
        let default = super::Options::default();
        assert_eq!(default.cap(0), 1_000_000);
        assert_eq!(default.cap(100_000), 1_000_000);
        assert_eq!(default.cap(3_000_000), 30_000_000);
        assert_eq!(default.cap(usize::MAX), usize::MAX);
        let set = super::Options { max_rewrites: Some(10), ..super::Options::default() };
        assert_eq!(set.cap(3_000_000), 10);
    }

    /// Gathering on several threads gives what one thread gives: each node
    /// once, ascending.
    #[test]
    fn gathering_in_parallel_gives_each_node_once_in_order() {
        for len in [0, 1, 5000, 100_000] {
            // Each item adds a few nodes, many of them added by other items
            // (in other shares) too.
            let add = |i: usize, ids: &mut Vec<NodeId>| {
                ids.extend([(i * 7 % 1000) as NodeId, (i / 3) as NodeId, (len - i) as NodeId]);
            };
            let mut expected = Vec::new();
            for i in 0..len {
                add(i, &mut expected);
            }
            expected.sort_unstable();
            expected.dedup();
            assert_eq!(super::gather_sorted(len, add), expected, "{len} items");
        }
        assert_eq!(super::merge_distinct(vec![1, 3, 5, 9], vec![2, 3, 9, 10]), [1, 2, 3, 5, 9, 10]);
        assert_eq!(super::merge_distinct(vec![], vec![4]), [4]);
    }

    /// Filtering on several threads keeps what one thread keeps, in order.
    #[test]
    fn filtering_in_parallel_keeps_order() {
        for n in [0, 10, super::PARALLEL_MIN * 4, 100_003] {
            let ids: Vec<super::NodeId> = (0..n as u32).rev().collect();
            let keep = |id: super::NodeId| id % 3 == 1 || id == 7;
            let serial: Vec<_> = ids.iter().copied().filter(|&id| keep(id)).collect();
            assert_eq!(super::par_filter(&ids, keep), serial, "{n}");
        }
    }
}
