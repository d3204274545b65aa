//! The interpreter: applies a rule set to a graph until no rule matches.
//!
//! Each round reads the current graph only. For every rule in priority
//! order, candidates come from the op index; a match whose guard holds and
//! whose root is not already part of another patch of the round becomes a
//! patch. The round's patches are then applied together, in file order of their roots,
//! into a new graph: roots give way to their replacements, consumers are
//! rewired (through chains of replacements), control edges move to the
//! producer of the replacement. Dead tensors then propagate as TensorFlow's
//! executor defines them, unreachable nodes are collected, and the graph is
//! checked before the next round. A cap on rewrites stops rule sets that
//! never end.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use bytes::Bytes;
use prost::Message;

use super::compile::RuleSet;
use super::matcher::{Guard, Matcher, Tensor};
use super::replace::{Builder, Patch, TRef};
use crate::graph::{Graph, NodeId, NodeSource, Port};
use crate::input::{InputRef, parse_input};
use crate::proto::{NodeDef, attr_value};

/// The op of the marker node that dead tensors come from while rewriting.
pub const DEAD_OP: &str = "_GraphrwDead";

/// How to apply.
#[derive(Clone, Debug)]
pub struct Options {
    /// Graph outputs (`node` or `node:N`); empty means the nodes nothing consumes.
    pub outputs: Vec<String>,
    /// Remove what the outputs do not reach.
    pub prune: bool,
    /// Stop (with an error) after this many rewrites.
    pub max_rewrites: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { outputs: vec![], prune: true, max_rewrites: 1_000_000 }
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
}

/// Seconds per phase of rewriting, summed over rounds.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Phases {
    /// Finding matches and building their patches (constants computed here).
    pub find: f64,
    /// Writing the patches into a new graph.
    pub apply: f64,
    /// Dead-tensor propagation and pruning.
    pub settle: f64,
    /// Validity checks after each round.
    pub check: f64,
}

/// Why a rule set could not be applied.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ApplyError {
    /// An output named on the command line is not in the graph.
    #[error("output `{0}` names no node of the graph")]
    UnknownOutput(String),
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

/// Applies `rules` to `graph` until no rule matches.
pub fn apply(
    graph: &Graph,
    rules: &RuleSet,
    options: &Options,
) -> Result<(Graph, Report), ApplyError> {
    let start = Instant::now();
    let mut report = Report {
        fired: rules.rules.iter().map(|r| (r.rule.name.name.clone(), 0)).collect(),
        nodes_before: graph.len(),
        ops_before: histogram(graph),
        ..Report::default()
    };
    let outputs: Vec<String> = if options.outputs.is_empty() {
        crate::prune::default_outputs(graph)
            .into_iter()
            .map(|id| graph.name(id).to_string())
            .collect()
    } else {
        options
            .outputs
            .iter()
            .map(|o| {
                let node = crate::input::parse_tensor_name(o).map_or(o.as_str(), |(n, _)| n);
                graph
                    .id(node)
                    .map(|_| node.to_string())
                    .ok_or_else(|| ApplyError::UnknownOutput(o.clone()))
            })
            .collect::<Result<_, _>>()?
    };
    let protected: HashSet<String> = outputs.iter().cloned().collect();
    let baseline = problem_count(graph, true);
    // A copy of the nodes without the input's indexes (they are rebuilt).
    let mut current = graph.rebuilt(graph.ids().map(NodeSource::Existing)).expect("existing nodes");
    let mut total = 0usize;
    let mut recent: HashMap<usize, Vec<String>> = HashMap::new();
    loop {
        let t = Instant::now();
        let patches = find_patches(&current, rules, &protected, &mut report);
        report.phases.find += t.elapsed().as_secs_f64();
        if patches.is_empty() {
            break;
        }
        report.rounds += 1;
        total += patches.len();
        for patch in &patches {
            report.fired[patch.rule].1 += 1;
            let nodes = recent.entry(patch.rule).or_default();
            if nodes.len() < 5 {
                nodes.push(current.name(patch.root).to_string());
            }
        }
        let fired: Vec<usize> = {
            let mut f: Vec<usize> = patches.iter().map(|p| p.rule).collect();
            f.sort_unstable();
            f.dedup();
            f
        };
        let rule_names = fired
            .iter()
            .map(|&r| format!("`{}`", rules.rules[r].rule.name.name))
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
        let patched = apply_patches(&current, patches);
        report.phases.apply += t.elapsed().as_secs_f64();
        let t = Instant::now();
        current = settle(patched, &outputs, &protected, options.prune, &rule_names)?;
        report.phases.settle += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let after = problem_count(&current, cycle_risk || baseline.2);
        report.phases.check += t.elapsed().as_secs_f64();
        if after.0 > baseline.0 || after.1 > baseline.1 || (after.2 && !baseline.2) {
            let problem = crate::validate::validate(&current)
                .into_iter()
                .next()
                .map_or_else(|| "a new problem".to_string(), |p| p.to_string());
            return Err(ApplyError::Invalid { rules: rule_names, problem });
        }
        if total > options.max_rewrites {
            let mut lines: Vec<(usize, String)> = recent
                .iter()
                .map(|(&r, nodes)| {
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
        recent.clear();
    }
    // A dead marker nothing reaches is gone; one that is still read means a
    // node reads a branch that never runs, which must not be written.
    if let Some(marker) = dead_marker(&current) {
        if let Some(reader) = current.consumers(marker).first() {
            return Err(ApplyError::DeadLeft { node: current.name(reader.node).to_string() });
        }
        let nodes = current.ids().filter(|&id| id != marker).map(NodeSource::Existing);
        current = current.rebuilt(nodes).expect("existing nodes are not read again");
    }
    current = drop_dangling_colocation(current);
    report.nodes_after = current.len();
    report.ops_after = histogram(&current);
    report.seconds = start.elapsed().as_secs_f64();
    Ok((current, report))
}

/// Colocation entries (`_class: "loc:@name"`) naming a node the rewrite
/// removed are dropped (and `_class` with them when none is left):
/// TensorFlow refuses to import a graph that colocates with a missing node.
/// Only nodes whose bytes hold `loc:@` are decoded.
fn drop_dangling_colocation(graph: Graph) -> Graph {
    let finder = memchr::memmem::Finder::new(b"loc:@");
    let mut changed = Vec::new();
    for id in graph.ids() {
        if finder.find(&graph.node_bytes(id)).is_none() {
            continue;
        }
        let Ok(mut def) = graph.node_def(id) else { continue };
        let dangling = crate::validate::colocated_with(&def).any(|w| graph.id(w).is_none());
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
                    .is_none_or(|w| graph.id(w).is_some())
            });
            if list.s.is_empty() {
                def.attr.remove("_class");
            }
        }
        changed.push((id, Bytes::from(def.encode_to_vec())));
    }
    if changed.is_empty() {
        return graph;
    }
    let mut changed = changed.into_iter().peekable();
    let nodes: Vec<NodeSource> = graph
        .ids()
        .map(|id| match changed.next_if(|(c, _)| *c == id) {
            Some((_, bytes)) => NodeSource::Encoded(bytes),
            None => NodeSource::Existing(id),
        })
        .collect();
    graph.rebuilt(nodes).expect("re-encoded nodes are well formed")
}

fn histogram(graph: &Graph) -> BTreeMap<String, usize> {
    graph.ops().map(|(op, ids)| (op.to_string(), ids.len())).collect()
}

/// Duplicates, unresolved inputs, and whether there is a cycle.
/// Duplicates, unresolved inputs, and (when `cycles`) whether there is a
/// cycle.
fn problem_count(graph: &Graph, cycles: bool) -> (usize, usize, bool) {
    let cyclic = cycles && !crate::validate::topological_order(graph).1;
    (graph.duplicates().len(), graph.bad_inputs().len(), cyclic)
}

fn dead_marker(graph: &Graph) -> Option<NodeId> {
    graph.nodes_with_op(DEAD_OP).first().copied()
}

fn find_patches(
    graph: &Graph,
    rules: &RuleSet,
    protected: &HashSet<String>,
    report: &mut Report,
) -> Vec<Patch> {
    let matcher = Matcher { graph, dead: dead_marker(graph) };
    // Roots are exclusive in a round. Interior nodes (matched by a nested op
    // pattern) may be shared between patches, like the Const predicate of
    // many Switches, but may not be a root of another patch of the round.
    let mut is_root = vec![false; graph.len()];
    let mut is_interior = vec![false; graph.len()];
    let mut patches = Vec::new();
    let mut taken_names: HashSet<String> = HashSet::new();
    for (index, rule) in rules.rules.iter().enumerate() {
        let mut candidates: Vec<NodeId> =
            rule.root_ops.iter().flat_map(|op| graph.nodes_with_op(op).iter().copied()).collect();
        candidates.sort_unstable();
        for root in candidates {
            if is_root[root as usize] || is_interior[root as usize] {
                continue;
            }
            let Some(m) = matcher.match_root(&rule.rule.pattern, root) else {
                continue;
            };
            if m.nodes[1..].iter().any(|&n| is_root[n as usize]) {
                continue;
            }
            // Warnings about this match: "rule `r` at `node`" and what happened.
            let at = |what: &str| {
                format!("rule `{}` at `{}`{what}", rule.rule.name.name, graph.name(root))
            };
            if let Some(guard) = &rule.rule.guard {
                let g = Guard { graph, m: &m, params: &rules.params };
                match g.holds(guard) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(reason) => {
                        report.warnings.push(at(&format!(": guard not evaluated: {reason}")));
                        continue;
                    }
                }
            }
            let mut builder = Builder {
                graph,
                m: &m,
                rule: &rule.rule,
                rules,
                root,
                nodes: Vec::new(),
                taken: &mut taken_names,
            };
            let patch = match builder.patch(index) {
                Ok(patch) => patch,
                Err(reason) => {
                    report.warnings.push(at(&format!(" not applied: {reason}")));
                    continue;
                }
            };
            // Every consumed port of the root needs a replacement.
            let uncovered = graph.consumers(root).iter().find_map(|c| match c.port {
                Port::Data(p) if patch.ports.get(p as usize).is_none_or(|r| r.is_none()) => Some(p),
                _ => None,
            });
            if let Some(port) = uncovered {
                report.warnings.push(at(&format!(
                    " not applied: output port {port} is read, and the rule gives no replacement for it"
                )));
                continue;
            }
            if protected.contains(graph.name(root)) && patch.takes_name.is_none() {
                report.warnings.push(format!(
                    "rule `{}` not applied to `{}`: it is a graph output, and the rule would remove it",
                    rule.rule.name.name,
                    graph.name(root)
                ));
                continue;
            }
            is_root[root as usize] = true;
            for &n in &m.nodes[1..] {
                is_interior[n as usize] = true;
            }
            patches.push(patch);
        }
    }
    patches.sort_by_key(|p| p.root);
    patches
}

/// Where a tensor of the old graph ends up, through the round's replacements.
struct Resolver<'a> {
    graph: &'a Graph,
    patches: &'a [Patch],
    /// Root id to its patch.
    /// Per node of the old graph: the index of the patch it is the root of.
    by_root: Vec<u32>,
    dead_name: String,
}

impl Resolver<'_> {
    fn patch_of(&self, node: NodeId) -> Option<usize> {
        let p = self.by_root[node as usize];
        (p != u32::MAX).then_some(p as usize)
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

    /// The producer's name and the port of a resolved tensor (`None` for
    /// the dead marker).
    fn producer(&self, (r, patch): (TRef, usize)) -> Option<(&str, u32)> {
        match r {
            TRef::Old(t) => Some((self.graph.name(t.node), t.port)),
            TRef::New(i, port) => Some((&self.patches[patch].nodes[i].def.name, port)),
            TRef::Dead => None,
        }
    }

    /// The input string for a tensor: `node`, `node:N`, or the dead marker.
    fn tensor(&self, t: Tensor) -> String {
        self.tref(TRef::Old(t), 0)
    }

    fn tref(&self, r: TRef, patch: usize) -> String {
        match self.producer(self.resolve(r, patch)) {
            Some((name, port)) => tensor_string(name, port),
            None => self.dead_name.clone(),
        }
    }

    /// The control input replacing `^node`: moved to the producer of what
    /// replaced `node`, or dropped when that is a Const with no inputs (it is
    /// always ready, so an edge to it orders nothing; frozen TF2 graphs tie
    /// every weight to the output this way, which would keep the folded
    /// weights' originals alive).
    fn control(&self, node: NodeId) -> Option<String> {
        let Some(p) = self.patch_of(node).filter(|&p| self.patches[p].takes_name.is_none()) else {
            return Some(format!("^{}", self.graph.name(node)));
        };
        let Some(first) = self.patches[p].ports.first().copied().flatten() else {
            return Some(format!("^{}", self.dead_name));
        };
        let (target, patch) = self.resolve(first, p);
        let source_const = match target {
            TRef::Old(t) => {
                self.graph.op(t.node) == "Const" && self.graph.inputs(t.node).is_empty()
            }
            TRef::New(i, _) => {
                let new = &self.patches[patch].nodes[i];
                new.def.op == "Const"
                    && new.data.is_empty()
                    && new.control.is_empty()
                    && new.control_names.is_empty()
            }
            TRef::Dead => false,
        };
        if source_const {
            return None;
        }
        let producer = self.producer((target, patch)).map_or(self.dead_name.as_str(), |(n, _)| n);
        Some(format!("^{producer}"))
    }
}

fn tensor_string(name: &str, port: u32) -> String {
    InputRef::Data { node: name, port }.to_string()
}

fn apply_patches(graph: &Graph, patches: Vec<Patch>) -> Graph {
    let dead_name = match dead_marker(graph) {
        Some(id) => graph.name(id).to_string(),
        None => {
            let mut name = "graphrw_dead".to_string();
            while graph.id(&name).is_some() {
                name.push('_');
            }
            name
        }
    };
    let mut by_root = vec![u32::MAX; graph.len()];
    for (i, p) in patches.iter().enumerate() {
        by_root[p.root as usize] = i as u32;
    }
    let resolver = Resolver { graph, patches: &patches, by_root, dead_name: dead_name.clone() };
    let mut uses_dead = false;
    let mut out = Vec::with_capacity(graph.len() + 8);
    for id in graph.ids() {
        if let Some(p) = resolver.patch_of(id) {
            for node in &patches[p].nodes {
                let mut def = node.def.clone();
                def.input = node.data.iter().map(|r| resolver.tref(*r, p)).collect();
                let mut controls: Vec<String> =
                    node.control.iter().filter_map(|&c| resolver.control(c)).collect();
                for name in &node.control_names {
                    let old = graph.id(&name[1..]);
                    controls
                        .extend(old.map_or_else(|| Some(name.clone()), |c| resolver.control(c)));
                }
                finish_inputs(&mut def, controls);
                uses_dead |=
                    def.input.iter().any(|i| parse_input(i).is_ok_and(|r| r.node() == dead_name));
                out.push(NodeSource::Encoded(Bytes::from(def.encode_to_vec())));
            }
            continue;
        }
        let touched = graph
            .inputs(id)
            .iter()
            .any(|e| e.src.is_some_and(|s| resolver.by_root[s as usize] != u32::MAX));
        if !touched {
            out.push(NodeSource::Existing(id));
            continue;
        }
        let mut data = Vec::new();
        let mut controls = Vec::new();
        for (edge, text) in graph.inputs(id).iter().zip(graph.input_strs(id)) {
            match (edge.src, edge.port) {
                (Some(src), Port::Data(port)) => {
                    data.push(resolver.tensor(Tensor { node: src, port }))
                }
                (Some(src), Port::Control) => controls.extend(resolver.control(src)),
                (None, _) if text.starts_with('^') => controls.push(text.to_string()),
                (None, _) => data.push(text.to_string()),
            }
        }
        let inputs = with_controls(graph.name(id), data, controls);
        uses_dead |= inputs.iter().any(|i| parse_input(i).is_ok_and(|r| r.node() == dead_name));
        out.push(edited(graph, id, &inputs));
    }
    if uses_dead && dead_marker(graph).is_none() {
        let marker = NodeDef { name: dead_name, op: DEAD_OP.into(), ..Default::default() };
        out.push(NodeSource::Encoded(Bytes::from(marker.encode_to_vec())));
    }
    graph.rebuilt(out).expect("rewritten nodes are well formed")
}

/// Data inputs, then the control inputs without repeats or self-edges.
fn with_controls(name: &str, mut data: Vec<String>, controls: Vec<String>) -> Vec<String> {
    let mut seen: HashSet<String> = HashSet::new();
    for c in controls {
        if c[1..] != *name && seen.insert(c.clone()) {
            data.push(c);
        }
    }
    data
}

/// Node `id` with new inputs: its other fields are copied as they are, not
/// decoded and encoded again.
fn edited(graph: &Graph, id: NodeId, inputs: &[String]) -> NodeSource {
    let raw = graph.node_bytes(id);
    match crate::wire::replace_inputs(&raw, inputs) {
        Ok(bytes) => NodeSource::Encoded(Bytes::from(bytes)),
        Err(_) => NodeSource::Existing(id), // unreachable: the node was indexed
    }
}

/// Appends control inputs after the data inputs, without repeats.
fn finish_inputs(def: &mut NodeDef, controls: Vec<String>) {
    def.input = with_controls(&def.name, std::mem::take(&mut def.input), controls);
}

/// Ends a round: dead tensors propagate, as TensorFlow's executor defines
/// them (a node with a dead data or control input is dead, except Merge,
/// which is dead only when all its data inputs are; every use of a dead
/// node becomes a use of the marker), and, when pruning, what the outputs
/// no longer reach is dropped. One rebuild does both.
fn settle(
    graph: Graph,
    outputs: &[String],
    protected: &HashSet<String>,
    prune: bool,
    rules: &str,
) -> Result<Graph, ApplyError> {
    let marker = dead_marker(&graph);
    let mut dead = vec![false; graph.len()];
    let mut any_dead = false;
    if let Some(marker) = marker {
        dead[marker as usize] = true;
        // Deadness only spreads to readers: a worklist from the marker's
        // readers visits the dead region and its border, not the graph.
        let mut queue: Vec<NodeId> = graph.consumers(marker).iter().map(|c| c.node).collect();
        while let Some(id) = queue.pop() {
            if dead[id as usize] {
                continue;
            }
            let inputs = graph.inputs(id);
            let reads_dead = |e: &&crate::graph::Edge| e.src.is_some_and(|s| dead[s as usize]);
            let is_dead = if graph.op(id) == "Merge" {
                let data: Vec<_> =
                    inputs.iter().filter(|e| matches!(e.port, Port::Data(_))).collect();
                (!data.is_empty() && data.iter().all(reads_dead))
                    || inputs.iter().filter(|e| e.port == Port::Control).any(|e| reads_dead(&e))
            } else {
                inputs.iter().any(|e| reads_dead(&e))
            };
            if is_dead {
                if protected.contains(graph.name(id)) {
                    return Err(ApplyError::DeadOutput {
                        output: graph.name(id).to_string(),
                        rule: rules.to_string(),
                    });
                }
                dead[id as usize] = true;
                any_dead = true;
                queue.extend(graph.consumers(id).iter().map(|c| c.node));
            }
        }
    }
    // What the outputs reach, not walking into dead nodes (their readers
    // read the marker instead).
    let keep: Vec<bool> = if prune {
        let mut keep = vec![false; graph.len()];
        let mut stack: Vec<NodeId> = outputs.iter().filter_map(|o| graph.id(o)).collect();
        for &id in &stack {
            keep[id as usize] = true;
        }
        while let Some(id) = stack.pop() {
            for edge in graph.inputs(id) {
                let Some(src) = edge.src else { continue };
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
    } else {
        (0..graph.len()).map(|i| !dead[i] || Some(i as NodeId) == marker).collect()
    };
    if !any_dead && keep.iter().all(|&k| k) {
        return Ok(graph);
    }
    let marker_name = marker.map(|m| graph.name(m).to_string()).unwrap_or_default();
    let mut out = Vec::with_capacity(graph.len());
    for id in graph.ids() {
        let is_marker = Some(id) == marker;
        if !keep[id as usize] || (dead[id as usize] && !is_marker) {
            continue;
        }
        let reads_dead = graph
            .inputs(id)
            .iter()
            .any(|e| e.src.is_some_and(|s| dead[s as usize] && Some(s) != marker));
        if !reads_dead {
            out.push(NodeSource::Existing(id));
            continue;
        }
        let mut data = Vec::new();
        let mut controls = Vec::new();
        for (edge, text) in graph.inputs(id).iter().zip(graph.input_strs(id)) {
            let to_dead = edge.src.is_some_and(|s| dead[s as usize]);
            match (edge.port, to_dead) {
                (Port::Data(_), true) => data.push(marker_name.clone()),
                (Port::Control, true) => controls.push(format!("^{marker_name}")),
                (Port::Data(_), false) => data.push(text.to_string()),
                (Port::Control, false) => controls.push(text.to_string()),
            }
        }
        out.push(edited(&graph, id, &with_controls(graph.name(id), data, controls)));
    }
    Ok(graph.rebuilt(out).expect("rewired nodes are well formed"))
}
