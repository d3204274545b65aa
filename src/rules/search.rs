//! Searching a round's graph for patches: which nodes are candidates (every
//! node some rule may be rooted at in the first round, then the nodes near
//! the last round's changes), trying the rules for each candidate's op in
//! priority order, and keeping the matches that one-by-one matching would
//! keep. Reads the graph only; the engine applies what it returns.

use super::ast::{Arg, Pattern, PatternKind};
use super::compile::RuleSet;
use super::consts::Slots;
use super::engine::{Report, Scratch, refill};
use super::matcher::{Guard, Match, Matcher};
use super::replace::{Builder, Patch};
use super::work::Work;
use crate::graph::{NodeId, Port};

/// How many edges upstream of its root a pattern reads: its nested op
/// patterns and the producers of the tensors it binds.
pub(super) fn pattern_depth(pattern: &Pattern) -> usize {
    match &pattern.kind {
        PatternKind::Node(node) => node
            .args
            .iter()
            .map(|a| match a {
                Arg::Pattern(p) => 1 + pattern_depth(p),
                _ => 1,
            })
            .max()
            .unwrap_or(0),
        _ => 0,
    }
}

/// The candidates of a round after the first.
pub(super) struct Near {
    /// Alive nodes at most the largest reach downstream of a change (every
    /// alive node after a round that changed many), in output order.
    pub(super) ids: Vec<NodeId>,
    /// Each node's distance downstream of the nearest change (`u8::MAX`
    /// beyond the reach; 0 for every node when all are candidates).
    pub(super) distance: Vec<u8>,
}

/// A round whose changed nodes are more than one alive node in this many
/// makes every node a candidate of the next.
const DENSE: usize = 8;

/// The candidates of the next round: alive nodes at most `reach` edges
/// downstream of a change, in output order, with their distances. Any
/// other node's match reads only what did not change, so it is what it
/// was, and it did not fire; a rule whose pattern reaches less far needs
/// only the nodes at most its own reach away. After a round that changed
/// more than one alive node in [`DENSE`], every alive node, at distance 0.
pub(super) fn near(work: &Work, seeds: &[NodeId], reach: u8, mut distance: Vec<u8>) -> Near {
    refill(&mut distance, work.len(), u8::MAX);
    let mut frontier: Vec<NodeId> = Vec::new();
    let mut out = Vec::new();
    // Seeds repeat (a node rewired twice, the producer of several removed
    // nodes): the distance, which turns a repeat away, is looked at first.
    for &id in seeds {
        if distance[id as usize] == u8::MAX && work.is_alive(id) && !work.is_phantom(id) {
            distance[id as usize] = 0;
            frontier.push(id);
        }
    }
    // Changes all over the graph (a round that rewrote every block): nearly
    // every node is near one, and finding which costs more than trying them
    // all. Every node is a candidate for every rule; the ones no change
    // reaches match as they did, which is not at all.
    if frontier.len() > work.alive() / DENSE {
        distance.fill(0);
        return Near { ids: work.order(), distance };
    }
    for level in 1..=reach {
        // Most nodes changed (a round that rewrote every block of the
        // graph): the next level is found by reading the inputs of the nodes
        // that did not, in id order and on several threads, rather than the
        // consumers of each that did (scattered reads).
        let by_inputs = frontier.len() > work.len() / 8;
        let next = next_level(work, &frontier, &mut distance, level, by_inputs);
        out.append(&mut frontier);
        frontier = next;
    }
    out.append(&mut frontier);
    let seen = |id: NodeId| distance[id as usize] != u8::MAX;
    // Many candidates: one walk over the graph in output order picks them
    // in order; few: their positions are sorted.
    let ids = if out.len() > work.len() / 16 {
        work.order_of(out.len(), seen)
    } else {
        let keys: Option<Vec<u128>> = out.iter().map(|&id| work.position(id)).collect();
        match keys {
            Some(keys) => {
                let mut keyed: Vec<(u128, NodeId)> = keys.into_iter().zip(out).collect();
                keyed.sort_unstable();
                keyed.into_iter().map(|(_, id)| id).collect()
            }
            None => {
                let rank = work.ranks();
                out.sort_unstable_by_key(|&id| rank[id as usize]);
                out
            }
        }
    };
    Near { ids, distance }
}

/// The nodes one edge downstream of `frontier` (the nodes at distance
/// `level - 1`) not seen yet, now at distance `level`: found from the
/// frontier's consumers, or `by_inputs`, from every other node's inputs.
fn next_level(
    work: &Work,
    frontier: &[NodeId],
    distance: &mut [u8],
    level: u8,
    by_inputs: bool,
) -> Vec<NodeId> {
    if by_inputs {
        let (previous, seen) = (level - 1, &*distance);
        let next = crate::par::ranges(work.len(), 1 << 16, |ids| {
            (ids.start as NodeId..ids.end as NodeId)
                .filter(|&id| {
                    seen[id as usize] == u8::MAX
                        && work.is_alive(id)
                        && work
                            .inputs(id)
                            .iter()
                            .any(|e| e.src().is_some_and(|src| seen[src as usize] == previous))
                })
                .collect::<Vec<NodeId>>()
        })
        .concat();
        for &id in &next {
            distance[id as usize] = level;
        }
        return next;
    }
    let mut next = Vec::new();
    for &id in frontier {
        for c in work.consumers(id) {
            if distance[c.node as usize] == u8::MAX {
                distance[c.node as usize] = level;
                next.push(c.node);
            }
        }
    }
    next
}

/// What trying one rule at one candidate gave: nothing, a patch (which
/// holds the nodes the pattern matched below the root), or why the match
/// is not applied, with those nodes.
type Tried = Option<Result<Patch, Refused>>;

/// A match that is not applied: the nodes matched below the root, and why.
type Refused = (Vec<NodeId>, String);

/// What a rule's root needs of its direct data inputs, checked by op
/// number before the matcher runs (most candidates fail here): how many
/// there are, and the ops their producers may have. Never rejects a node
/// the matcher would accept.
struct Quick {
    want: usize,
    open: bool,
    /// Input position and the op numbers its producer may have.
    slots: Vec<(usize, OpSet)>,
}

/// A set of op numbers, one bit each (a test per rule per candidate).
struct OpSet(smallvec::SmallVec<[u64; 4]>);

impl OpSet {
    fn of(ops: &[u32]) -> OpSet {
        let words = ops.iter().map(|&op| op as usize / 64 + 1).max().unwrap_or(0);
        let mut bits = smallvec::smallvec![0u64; words];
        for &op in ops {
            bits[op as usize / 64] |= 1 << (op % 64);
        }
        OpSet(bits)
    }

    fn contains(&self, op: u32) -> bool {
        self.0.get(op as usize / 64).is_some_and(|w| w >> (op % 64) & 1 == 1)
    }
}

impl Quick {
    /// `None` when the pattern needs an op no node has: nothing matches.
    fn of(pattern: &Pattern, work: &Work) -> Option<Quick> {
        let PatternKind::Node(node) = &pattern.kind else {
            return Some(Quick { want: 0, open: true, slots: vec![] });
        };
        let mut quick = Quick {
            want: 0,
            open: node.args.iter().any(|a| matches!(a, Arg::Rest(_))),
            slots: vec![],
        };
        for arg in &node.args {
            let Arg::Pattern(p) = arg else { continue };
            let ops = match &p.kind {
                PatternKind::Node(n) => Some(&n.ops),
                PatternKind::Var { producer: Some(producer), .. } => Some(&producer.ops),
                _ => None,
            };
            if let Some(ops) = ops {
                let ids: Vec<u32> = ops.iter().filter_map(|op| work.op_number(&op.name)).collect();
                if ids.is_empty() {
                    return None;
                }
                quick.slots.push((quick.want, OpSet::of(&ids)));
            }
            quick.want += 1;
        }
        Some(quick)
    }

    /// Whether a node whose data inputs are `inputs` may match.
    fn admits(&self, inputs: &InputOps) -> bool {
        // An input that names no node is left to the matcher (it skips it).
        inputs.unnamed
            || (inputs.ops.len() >= self.want
                && (self.open || inputs.ops.len() == self.want)
                && self.slots.iter().all(|(at, ops)| ops.contains(inputs.ops[*at])))
    }
}

/// A candidate's data inputs as [`Quick`] tests them: the op number of
/// each one's producer, read once for all the rules of the candidate's op.
struct InputOps {
    ops: smallvec::SmallVec<[u32; 8]>,
    /// Whether an input names no node.
    unnamed: bool,
}

impl InputOps {
    fn of(work: &Work, id: NodeId) -> InputOps {
        let mut inputs = InputOps { ops: smallvec::SmallVec::new(), unnamed: false };
        for e in work.inputs(id) {
            match (e.port(), e.src()) {
                (Port::Control, _) => {}
                (_, Some(src)) => inputs.ops.push(work.op_of(src)),
                (_, None) => {
                    inputs.unnamed = true;
                    inputs.ops.push(u32::MAX);
                }
            }
        }
        inputs
    }
}

/// Candidates a rule is tried at on one thread before the work is split.
pub(super) const PARALLEL_MIN: usize = 4096;

pub(super) fn find_patches(
    work: &Work,
    rules: &RuleSet,
    candidates: Option<&Near>,
    reaches: &[u8],
    outputs: &[NodeId],
    scratch: &mut Scratch,
    report: &mut Report,
) -> Patches {
    // Roots are exclusive in a round. Interior nodes (matched by a nested op
    // pattern) may be shared between patches, like the Const predicate of
    // many Switches, but may not be a root of another patch of the round.
    let Scratch { is_root, is_interior, warned, .. } = scratch;
    // The outputs' nodes in this round's graph (sorted).
    let protected = outputs;
    refill(is_root, work.len(), false);
    refill(is_interior, work.len(), false);
    // The rules that may match at a node of each op, in rule order, and
    // what each needs of its root's inputs.
    let quick: Vec<Option<Quick>> =
        rules.rules.iter().map(|r| Quick::of(&r.rule.pattern, work)).collect();
    let mut rules_of: Vec<Vec<usize>> = vec![Vec::new(); work.op_count()];
    for (index, rule) in rules.rules.iter().enumerate() {
        if quick[index].is_none() {
            continue;
        }
        for op in rule.root_ops.iter().filter_map(|op| work.op_number(op)) {
            let of = &mut rules_of[op as usize];
            if of.last() != Some(&index) {
                of.push(index);
            }
        }
    }
    // The round's candidates in order (the first round: every node some
    // rule may be rooted at, by id, which is its place in the input).
    let first: Vec<NodeId>;
    let ids: &[NodeId] = match candidates {
        Some(near) => &near.ids,
        None => {
            first = (0..work.len() as NodeId)
                .filter(|&id| work.is_alive(id) && !rules_of[work.op_of(id) as usize].is_empty())
                .collect();
            &first
        }
    };
    // Every candidate is tried against the round's graph alone (on several
    // threads when there are many), with each rule for its op in turn, so
    // its inputs are read once. A rule is not tried where an earlier rule
    // matched: that match is almost always kept, and when it is not, the
    // rule is tried there when its outcomes are weighed.
    let try_all = |_: usize, ids: &[NodeId]| -> Found {
        // Sized for a patch per candidate (the pages of what is not used are
        // never touched): growing would copy the patches into fresh memory.
        let mut found = Found { patches: Vec::with_capacity(ids.len()), ..Found::default() };
        let (mut m, mut slots) = (Match::default(), Slots::default());
        for (i, &root) in ids.iter().enumerate() {
            // The records of a candidate a few ahead are fetched while this
            // one is tried, unless no rule is rooted at its op (after a
            // round that changed much, half the candidates).
            if let Some(&ahead) = ids.get(i + 6)
                && !rules_of[work.op_of(ahead) as usize].is_empty()
            {
                work.prefetch(ahead);
            }
            let mut matched = false;
            let mut inputs = None;
            for &index in &rules_of[work.op_of(root) as usize] {
                if candidates.is_some_and(|near| near.distance[root as usize] > reaches[index]) {
                    continue;
                }
                let inputs = inputs.get_or_insert_with(|| InputOps::of(work, root));
                if !quick[index].as_ref().is_some_and(|q| q.admits(inputs)) {
                    continue;
                }
                if matched {
                    found.other(index, root, None);
                    continue;
                }
                match try_rule(work, rules, index, root, protected, &mut m, &mut slots) {
                    None => {}
                    Some(Ok(patch)) => {
                        matched = true;
                        found.order.push((index as u32, found.patches.len() as u32));
                        found.patches.push(patch);
                    }
                    Some(Err(refused)) => found.other(index, root, Some(refused)),
                }
            }
        }
        found.grouped = Grouped::of(&found.order, rules.rules.len());
        found.kept = vec![false; found.patches.len()];
        found
    };
    // Each share's outcomes, in candidate order (the shares are in order).
    let mut parts = crate::par::shares(ids, PARALLEL_MIN, try_all);
    // Then, rule by rule, in candidate order, a match is kept unless an
    // earlier rule, or an earlier match of this one, took its root or one of
    // its nodes: what trying them one by one would keep.
    let (mut m, mut slots) = (Match::default(), Slots::default());
    for index in 0..rules.rules.len() {
        for part in &mut parts {
            for &at in part.grouped.of_rule(index) {
                let at = part.order[at as usize].1;
                let root = match at & OTHER {
                    0 => part.patches[at as usize].root,
                    _ => part.others[(at & !OTHER) as usize].0,
                };
                if is_root[root as usize] || is_interior[root as usize] {
                    continue;
                }
                if at & OTHER != 0 {
                    // A rule not tried where an earlier rule's match was
                    // then refused, or a match refused with a warning.
                    let other = &mut part.others[(at & !OTHER) as usize];
                    let outcome = match other.1.take() {
                        Some(refused) => Err(*refused),
                        None => {
                            match try_rule(work, rules, index, root, protected, &mut m, &mut slots)
                            {
                                Some(tried) => tried,
                                None => continue,
                            }
                        }
                    };
                    let interior: &[NodeId] = match &outcome {
                        Ok(patch) => &patch.interior,
                        Err((interior, _)) => interior,
                    };
                    if interior.iter().any(|&n| is_root[n as usize]) {
                        continue;
                    }
                    match outcome {
                        Err((_, warning)) => {
                            if warned.insert(warning.clone()) {
                                report.warnings.push(warning);
                            }
                        }
                        Ok(patch) => {
                            keep(is_root, is_interior, &patch);
                            part.late.push((at & !OTHER, patch));
                        }
                    }
                    continue;
                }
                let patch = &part.patches[at as usize];
                if patch.interior.iter().any(|&n| is_root[n as usize]) {
                    continue;
                }
                keep(is_root, is_interior, patch);
                part.kept[at as usize] = true;
            }
        }
    }
    // The kept patches in the order of their roots, in their shares (joining
    // them would copy every patch into fresh memory).
    let mut patches = Patches::of(parts.into_iter().map(Found::kept).collect());
    patches.candidates = ids.len();
    patches
}

/// A round's kept patches in order, in the shares the search found them in.
#[derive(Default)]
pub(super) struct Patches {
    parts: Vec<Vec<Patch>>,
    /// Where each part starts in the order.
    starts: Vec<usize>,
    /// How many candidates the round tried rules at.
    pub(super) candidates: usize,
}

impl Patches {
    fn of(parts: Vec<Vec<Patch>>) -> Patches {
        let mut starts = Vec::with_capacity(parts.len());
        let mut at = 0;
        for part in &parts {
            starts.push(at);
            at += part.len();
        }
        Patches { parts, starts, candidates: 0 }
    }

    pub(super) fn len(&self) -> usize {
        self.parts.iter().map(Vec::len).sum()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.parts.iter().all(Vec::is_empty)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Patch> {
        self.parts.iter().flatten()
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Patch> {
        self.parts.iter_mut().flatten()
    }
}

impl std::ops::Index<usize> for Patches {
    type Output = Patch;

    fn index(&self, at: usize) -> &Patch {
        let part = self.starts.partition_point(|&s| s <= at) - 1;
        &self.parts[part][at - self.starts[part]]
    }
}

/// `patch` is kept: its root and interior nodes are taken for the round.
fn keep(is_root: &mut [bool], is_interior: &mut [bool], patch: &Patch) {
    is_root[patch.root as usize] = true;
    for &n in &patch.interior {
        is_interior[n as usize] = true;
    }
}

/// Marks an outcome that is not a patch in [`Found::order`].
const OTHER: u32 = 1 << 31;

/// What a share of a round's candidates gave.
#[derive(Default)]
struct Found {
    /// Each outcome's rule and where it is, in candidate order: a patch's
    /// place in `patches`, or (with [`OTHER`]) another's in `others`.
    order: Vec<(u32, u32)>,
    patches: Vec<Patch>,
    /// A root where an earlier rule matched (`None`: not tried yet) or
    /// whose match is refused, with the nodes matched and why (boxed: most
    /// are not, and a round may have hundreds of thousands).
    others: Vec<(NodeId, Option<Box<Refused>>)>,
    /// Positions in `order` grouped by rule, once the share is searched.
    grouped: Grouped,
    /// Which patches are kept.
    kept: Vec<bool>,
    /// Patches of rules tried only while weighing, by their place in
    /// `others`.
    late: Vec<(u32, Patch)>,
}

impl Found {
    fn other(&mut self, rule: usize, root: NodeId, refused: Option<Refused>) {
        self.order.push((rule as u32, OTHER | self.others.len() as u32));
        self.others.push((root, refused.map(Box::new)));
    }

    /// The kept patches, late ones included, in candidate order (which is
    /// the order of the outcomes: a root has at most one); kept where they
    /// are when no rule was tried late.
    fn kept(mut self) -> Vec<Patch> {
        if self.late.is_empty() {
            let mut kept = self.kept.iter();
            self.patches.retain(|_| *kept.next().expect("a flag per patch"));
            return self.patches;
        }
        let mut patches = self.patches.into_iter().zip(self.kept);
        self.late.sort_unstable_by_key(|l| l.0);
        let mut late = self.late.into_iter().peekable();
        self.order
            .into_iter()
            .filter_map(move |(_, at)| match at & OTHER {
                0 => patches.next().and_then(|(p, kept)| kept.then_some(p)),
                _ => late.next_if(|l| l.0 == at & !OTHER).map(|l| l.1),
            })
            .collect()
    }
}

/// The positions of a share's outcomes grouped by rule, each rule's in
/// candidate order (a counting sort).
#[derive(Default)]
struct Grouped {
    /// Rule `r`'s positions are `positions[start[r]..start[r + 1]]`.
    start: Vec<usize>,
    positions: Vec<u32>,
}

impl Grouped {
    fn of(order: &[(u32, u32)], rules: usize) -> Grouped {
        let mut start = vec![0; rules + 1];
        for &(rule, _) in order {
            start[rule as usize + 1] += 1;
        }
        for r in 0..rules {
            start[r + 1] += start[r];
        }
        let mut next = start.clone();
        let mut positions = vec![0; order.len()];
        for (at, &(rule, _)) in order.iter().enumerate() {
            positions[next[rule as usize]] = at as u32;
            next[rule as usize] += 1;
        }
        Grouped { start, positions }
    }

    fn of_rule(&self, rule: usize) -> &[u32] {
        &self.positions[self.start[rule]..self.start[rule + 1]]
    }
}

/// Tries rule `index` at `root` against the round's graph.
fn try_rule<'r>(
    work: &Work,
    rules: &'r RuleSet,
    index: usize,
    root: NodeId,
    protected: &[NodeId],
    m: &mut Match<'r>,
    slots: &mut Slots,
) -> Tried {
    let rule = &rules.rules[index];
    let matcher = Matcher { graph: work, dead: work.live_marker() };
    if !matcher.match_root(&rule.rule.pattern, root, m) {
        return None;
    }
    // Warnings about this match, with the nodes it matched below its root:
    // "rule `r` at `node`" and what happened.
    let warn = |m: &Match, what: String| Some(Err((m.nodes[1..].to_vec(), what)));
    let at = |what: &str| format!("rule `{}` at `{}`{what}", rule.rule.name.name, work.name(root));
    if let Some(guard) = &rule.rule.guard {
        let g = Guard { graph: work, m, params: &rules.params };
        match g.holds(guard) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(reason) => return warn(m, at(&format!(": guard not evaluated: {reason}"))),
        }
    }
    slots.start(rule.consts.steps());
    let mut builder = Builder {
        graph: work,
        m,
        rule: &rule.rule,
        rules,
        root,
        nodes: Vec::with_capacity(rule.new_nodes),
        device: None,
        consts: &rule.consts,
        slots,
    };
    let patch = match builder.patch(index as u32) {
        Ok(patch) => patch,
        Err(reason) => return warn(m, at(&format!(" not applied: {reason}"))),
    };
    // Every consumed port of the root needs a replacement.
    let uncovered = work.consumers(root).find_map(|c| match c.port {
        Port::Data(p) if patch.ports.get(p as usize).is_none_or(|r| r.is_none()) => Some(p),
        _ => None,
    });
    if let Some(port) = uncovered {
        return warn(
            m,
            at(&format!(
                " not applied: output port {port} is read, and the rule gives no replacement for it"
            )),
        );
    }
    if patch.takes_name.is_none() && protected.binary_search(&root).is_ok() {
        return warn(
            m,
            format!(
                "rule `{}` not applied to `{}`: it is a graph output, and the rule would remove it",
                rule.rule.name.name,
                work.name(root)
            ),
        );
    }
    Some(Ok(patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A level found from the inputs of the other nodes is the level found
    /// from the consumers of the frontier, whatever the frontier's size.
    #[test]
    fn next_levels_from_inputs_and_from_consumers_agree() {
        let graph = crate::synth::synth(150_000);
        let mut work = Work::new(&graph);
        // Nodes removed (not alive) and a rewired one, so that both ways
        // read the current edges.
        for id in (5..work.len() as NodeId).step_by(101) {
            work.remove(id);
        }
        let producer = work.inputs(7)[0];
        work.set_inputs(9, &[producer]);
        let n = work.len();
        for step in [1, 3, 40, 2000] {
            let seeds: Vec<NodeId> =
                (0..n as NodeId).step_by(step).filter(|&id| work.is_alive(id)).collect();
            let mut found = [vec![u8::MAX; n], vec![u8::MAX; n]];
            let mut frontiers = [seeds.clone(), seeds.clone()];
            for (distance, frontier) in found.iter_mut().zip(&frontiers) {
                frontier.iter().for_each(|&id| distance[id as usize] = 0);
            }
            for level in 1..=4 {
                for (way, by_inputs) in [false, true].into_iter().enumerate() {
                    let next =
                        next_level(&work, &frontiers[way], &mut found[way], level, by_inputs);
                    frontiers[way] = next;
                }
                let sorted = |f: &[NodeId]| {
                    let mut f = f.to_vec();
                    f.sort_unstable();
                    f
                };
                assert_eq!(
                    sorted(&frontiers[0]),
                    sorted(&frontiers[1]),
                    "step {step}, level {level}"
                );
                assert!(
                    step == 1 || level > 1 || !frontiers[0].is_empty(),
                    "step {step}: none found"
                );
            }
            assert!(found[0] == found[1], "step {step}");
        }
    }

    /// An op set holds the op numbers it was made of, in any word of its
    /// bits, and no other (nor one beyond its last word).
    #[test]
    fn op_sets_hold_their_ops_alone() {
        let ops = [0, 5, 63, 64, 130];
        let set = OpSet::of(&ops);
        for op in 0..200 {
            assert_eq!(set.contains(op), ops.contains(&op), "op {op}");
        }
        assert!(!set.contains(u32::MAX));
        assert!(!OpSet::of(&[]).contains(0));
    }

    /// The quick test of a candidate's inputs never rejects a node the
    /// matcher accepts, whatever its inputs (control inputs between data
    /// ones, one that names no node, fewer or more than the pattern has,
    /// `...`), and rejects those whose producers cannot fit.
    #[test]
    fn the_quick_test_never_rejects_a_match() {
        use crate::proto::{GraphDef, NodeDef};
        let node = |name: &str, op: &str, inputs: &[&str]| NodeDef {
            name: name.into(),
            op: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let graph = crate::Graph::from_def(&GraphDef {
            node: vec![
                node("c", "Const", &[]),
                node("p", "Placeholder", &[]),
                node("i", "Identity", &["p"]),
                node("a1", "Add", &["c", "p"]),
                node("a2", "Add", &["p", "c"]),
                node("a3", "Add", &["^i", "c", "^p", "c"]),
                node("a4", "Add", &["c", "missing"]),
                node("a5", "Add", &["missing", "p"]),
                node("a6", "Add", &["c"]),
                node("a7", "Add", &["c", "i", "p"]),
                node("a8", "Add", &["i", "c"]),
                node("a9", "Add", &["missing", "c", "p"]),
            ],
            ..Default::default()
        });
        let text = "rule r1: Add(c: Const, x) => x
            rule r2: Add(x, c: Const) => x
            rule r3: Add(a: Const, b: Const) => b
            rule r4: Add(c: Const, ...) => c
            rule r5: Add(Identity(y), z) => z
            rule r6: Add(_, _) => dead";
        let loaded = crate::rules::load::load_text("t.rules", text);
        let rules = crate::rules::compile::compile(&loaded, &[]).expect("compiles");
        let work = Work::new(&graph);
        let matcher = Matcher { graph: &work, dead: None };
        let mut m = Match::default();
        let (mut tried, mut rejected) = (0, 0);
        for rule in &rules.rules {
            let quick = Quick::of(&rule.rule.pattern, &work).expect("every op is in the graph");
            for id in (3..graph.len() as NodeId).filter(|&id| work.op(id) == "Add") {
                let admits = quick.admits(&InputOps::of(&work, id));
                let matches = matcher.match_root(&rule.rule.pattern, id, &mut m);
                assert!(admits || !matches, "{} at {}", rule.rule.name.name, work.name(id));
                tried += 1;
                rejected += usize::from(!admits);
            }
        }
        assert_eq!(tried, 6 * 9);
        assert!(rejected >= 20, "only {rejected} rejected");
    }

    /// A round's patches read by position are those its iteration gives,
    /// whichever shares (empty ones included) they were found in.
    #[test]
    fn patches_in_shares_are_read_in_order() {
        let patch = |root: NodeId| Patch {
            rule: 0,
            root,
            ports: Default::default(),
            nodes: vec![],
            takes_name: None,
            interior: Default::default(),
        };
        let share = |roots: std::ops::Range<NodeId>| roots.map(patch).collect::<Vec<_>>();
        let mut patches = Patches::of(vec![share(0..0), share(0..3), share(3..3), share(3..5)]);
        assert_eq!(patches.len(), 5);
        assert!(!patches.is_empty());
        let roots: Vec<NodeId> = patches.iter().map(|p| p.root).collect();
        assert_eq!(roots, [0, 1, 2, 3, 4]);
        assert_eq!((0..5).map(|at| patches[at].root).collect::<Vec<_>>(), roots);
        patches.iter_mut().for_each(|p| p.root += 10);
        assert_eq!(patches[4].root, 14);
        assert!(Patches::of(vec![share(0..0), share(0..0)]).is_empty());
    }
}
