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

use super::ast::*;
use super::compile::RuleSet;
use super::matcher::{Bound, GValue, Guard, Match, Matcher, Tensor, literal_value};
use crate::graph::{Graph, NodeId, NodeSource, Port};
use crate::input::{InputRef, parse_input};
use crate::proto::{AttrValue, DataType, NodeDef, TensorProto, attr_value};

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

/// One rule application, computed without touching the graph.
struct Patch {
    rule: usize,
    root: NodeId,
    /// Replacement of each output port of the root (`None`: untouched).
    ports: Vec<Option<TRef>>,
    /// New nodes, inputs first; the one at `takes_name` gets the root's name.
    nodes: Vec<NewNode>,
    takes_name: Option<usize>,
}

/// A tensor in a replacement.
#[derive(Clone, Copy, Debug, PartialEq)]
enum TRef {
    Old(Tensor),
    /// A new node of the same patch, and its port.
    New(usize, u32),
    Dead,
}

struct NewNode {
    def: NodeDef,
    data: Vec<TRef>,
    /// Control inputs: nodes of the old graph.
    control: Vec<NodeId>,
    /// Control inputs kept from a copied node, as written.
    control_names: Vec<String>,
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
    let baseline = problem_count(graph);
    // A copy of the nodes without the input's indexes (they are rebuilt).
    let mut current = graph.rebuilt(graph.ids().map(NodeSource::Existing)).expect("existing nodes");
    let mut total = 0usize;
    let mut recent: HashMap<usize, Vec<String>> = HashMap::new();
    loop {
        let patches = find_patches(&current, rules, &protected, &mut report);
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
        let patched = apply_patches(&current, patches);
        current = settle(patched, &outputs, &protected, options.prune, &rule_names)?;
        let after = problem_count(&current);
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
    report.nodes_after = current.len();
    report.ops_after = histogram(&current);
    report.seconds = start.elapsed().as_secs_f64();
    Ok((current, report))
}

fn histogram(graph: &Graph) -> BTreeMap<String, usize> {
    graph.ops().map(|(op, ids)| (op.to_string(), ids.len())).collect()
}

/// Duplicates, unresolved inputs, and whether there is a cycle.
fn problem_count(graph: &Graph) -> (usize, usize, bool) {
    let (_, complete) = crate::validate::topological_order(graph);
    (graph.duplicates().len(), graph.bad_inputs().len(), !complete)
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
            if let Some(guard) = &rule.rule.guard {
                let g = Guard { graph, m: &m, params: &rules.params };
                match g.holds(guard) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(reason) => {
                        report.warnings.push(format!(
                            "rule `{}` at `{}`: guard not evaluated: {reason}",
                            rule.rule.name.name,
                            graph.name(root)
                        ));
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
                    report.warnings.push(format!(
                        "rule `{}` at `{}` not applied: {reason}",
                        rule.rule.name.name,
                        graph.name(root)
                    ));
                    continue;
                }
            };
            // Every consumed port of the root needs a replacement.
            let uncovered = graph.consumers(root).iter().find_map(|c| match c.port {
                Port::Data(p) if patch.ports.get(p as usize).is_none_or(|r| r.is_none()) => Some(p),
                _ => None,
            });
            if let Some(port) = uncovered {
                report.warnings.push(format!(
                    "rule `{}` at `{}` not applied: output port {port} is read, and the rule gives no replacement for it",
                    rule.rule.name.name,
                    graph.name(root)
                ));
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

struct Builder<'a> {
    graph: &'a Graph,
    m: &'a Match,
    rule: &'a Rule,
    rules: &'a RuleSet,
    root: NodeId,
    nodes: Vec<NewNode>,
    taken: &'a mut HashSet<String>,
}

impl Builder<'_> {
    fn patch(&mut self, rule: usize) -> Result<Patch, String> {
        let ports = match &self.rule.replacement {
            // `Op(...):N => r` replaces output N alone; otherwise port 0.
            Replacement::Single(expr) => {
                let port = match &self.rule.pattern.kind {
                    PatternKind::Node(node) => node.port.map_or(0, |p| p.0),
                    _ => 0,
                };
                let mut ports = vec![None; port as usize + 1];
                ports[port as usize] = Some(self.expr(expr, port)?);
                ports
            }
            Replacement::Ports(exprs, _) => exprs
                .iter()
                .enumerate()
                .map(|(port, e)| self.expr(e, port as u32).map(Some))
                .collect::<Result<_, _>>()?,
        };
        // The node that replaces port 0 takes the root's name, so consumers
        // and outputs naming the root keep working.
        let takes_name = match ports.first() {
            Some(Some(TRef::New(i, 0))) => Some(*i),
            _ => None,
        };
        let root_name = self.graph.name(self.root).to_string();
        let rule_name = self.rule.name.name.clone();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if Some(i) == takes_name {
                node.def.name = root_name.clone();
                continue;
            }
            let base = format!("{root_name}/{rule_name}/{}", node.def.name);
            let mut name = base.clone();
            let mut n = 1;
            while self.graph.id(&name).is_some() || self.taken.contains(&name) {
                name = format!("{base}_{n}");
                n += 1;
            }
            self.taken.insert(name.clone());
            node.def.name = name;
        }
        Ok(Patch {
            rule,
            root: self.root,
            ports,
            nodes: std::mem::take(&mut self.nodes),
            takes_name,
        })
    }

    fn expr(&mut self, expr: &RExpr, port: u32) -> Result<TRef, String> {
        match expr {
            RExpr::Dead(_) => Ok(TRef::Dead),
            RExpr::Var { var, port: p } => match self.m.vars.get(&var.name) {
                Some(Bound::Tensor(t)) => Ok(TRef::Old(*t)),
                Some(Bound::Node(n)) => Ok(TRef::Old(Tensor { node: *n, port: p.unwrap_or(0) })),
                _ => Err(format!("`{}` is not a tensor", var.name)),
            },
            RExpr::Number(value, _) => {
                let dtype = self.port_dtype(port);
                let tensor = crate::tensor::to_proto(&crate::tensor::Array::scalar(*value), dtype)?;
                Ok(self.constant("const", tensor))
            }
            RExpr::Const(texpr, _) => {
                let mut dtype = None;
                let value = self.texpr(texpr, &mut dtype)?;
                let tensor = crate::tensor::to_proto(&value, dtype.unwrap_or(DataType::DtFloat))?;
                Ok(self.constant("const", tensor))
            }
            RExpr::NewNode { op, attrs, inputs, port: p, .. } => {
                let mut def = NodeDef {
                    name: op.name.to_lowercase(),
                    op: op.name.clone(),
                    device: self.root_def_device(),
                    ..Default::default()
                };
                for (name, value) in attrs {
                    let value = self.attr(&op.name, &name.name, value, attrs)?;
                    def.attr.insert(name.name.clone(), value);
                }
                let (data, control) = self.inputs(inputs)?;
                self.nodes.push(NewNode { def, data, control, control_names: vec![] });
                Ok(TRef::New(self.nodes.len() - 1, p.unwrap_or(0)))
            }
            RExpr::Copy { of, inputs, port: p, .. } => {
                let node =
                    self.m.node(&of.name).ok_or_else(|| format!("`{}` is not a node", of.name))?;
                let mut def = self.graph.node_def(node).map_err(|e| e.to_string())?;
                let control_names: Vec<String> =
                    def.input.iter().filter(|i| i.starts_with('^')).cloned().collect();
                def.input.clear();
                def.name = self.graph.name(node).rsplit('/').next().unwrap_or("copy").to_string();
                let (data, control) = self.inputs(inputs)?;
                self.nodes.push(NewNode { def, data, control, control_names });
                Ok(TRef::New(self.nodes.len() - 1, p.unwrap_or(0)))
            }
        }
    }

    fn root_def_device(&self) -> String {
        self.graph.node_def(self.root).map(|d| d.device).unwrap_or_default()
    }

    fn inputs(&mut self, inputs: &[RInput]) -> Result<(Vec<TRef>, Vec<NodeId>), String> {
        let mut data = Vec::new();
        let mut control = Vec::new();
        for input in inputs {
            match input {
                RInput::Data(expr) => data.push(self.expr(expr, 0)?),
                RInput::Control(var) => control.push(
                    self.m
                        .node(&var.name)
                        .ok_or_else(|| format!("`{}` is not a node", var.name))?,
                ),
            }
        }
        Ok((data, control))
    }

    fn constant(&mut self, name: &str, tensor: TensorProto) -> TRef {
        let mut def = NodeDef {
            name: name.to_string(),
            op: "Const".into(),
            device: self.root_def_device(),
            ..Default::default()
        };
        def.attr.insert(
            "dtype".into(),
            AttrValue { value: Some(attr_value::Value::Type(tensor.dtype)) },
        );
        def.attr
            .insert("value".into(), AttrValue { value: Some(attr_value::Value::Tensor(tensor)) });
        self.nodes.push(NewNode { def, data: vec![], control: vec![], control_names: vec![] });
        TRef::New(self.nodes.len() - 1, 0)
    }

    /// The element type of output `port` of the root.
    fn port_dtype(&self, port: u32) -> DataType {
        let op = self.graph.op(self.root);
        if op == "Merge" && port == 1 {
            return DataType::DtInt32;
        }
        for key in ["T", "dtype"] {
            if let Ok(Some(AttrValue { value: Some(attr_value::Value::Type(t)) })) =
                self.graph.attr(self.root, key)
            {
                return DataType::try_from(t).unwrap_or(DataType::DtFloat);
            }
        }
        DataType::DtFloat
    }

    fn attr(
        &self,
        op: &str,
        name: &str,
        value: &Value,
        all: &[(Ident, Value)],
    ) -> Result<AttrValue, String> {
        use attr_value::Value as V;
        let v = match &value.kind {
            ValueKind::AttrRef { var, attr } => {
                let node = self
                    .m
                    .node(&var.name)
                    .ok_or_else(|| format!("`{}` is not a node", var.name))?;
                return self.graph.attr(node, &attr.name).map_err(|e| e.to_string())?.ok_or_else(
                    || format!("`{}` has no attribute `{}`", self.graph.name(node), attr.name),
                );
            }
            ValueKind::Var(var) => match self.m.vars.get(&var.name) {
                Some(Bound::Attr(a)) => return Ok((**a).clone()),
                _ => match self.rules.params.get(&var.name) {
                    Some(lit) => lit_attr(lit)?,
                    None => return Err(format!("`{}` is not a value", var.name)),
                },
            },
            ValueKind::Literal(lit) => {
                // A Const's `value` written as a scalar: a tensor of its dtype.
                if op == "Const" && name == "value" {
                    let dtype = all
                        .iter()
                        .find(|(n, _)| n.name == "dtype")
                        .and_then(|(_, v)| match &v.kind {
                            ValueKind::Literal(Literal { kind: LiteralKind::DType(d), .. }) => {
                                DataType::from_str_name(d)
                            }
                            _ => None,
                        })
                        .unwrap_or(DataType::DtFloat);
                    let number = match literal_value(lit) {
                        GValue::Num(n) => n,
                        GValue::Bool(b) => f64::from(u8::from(b)),
                        other => {
                            return Err(format!("a Const value must be a number, not {other:?}"));
                        }
                    };
                    let array = crate::tensor::Array::scalar(number);
                    V::Tensor(crate::tensor::to_proto(&array, dtype)?)
                } else {
                    lit_attr(lit)?
                }
            }
            ValueKind::Call { .. } => {
                return Err("a function call is not an attribute value".into());
            }
        };
        Ok(AttrValue { value: Some(v) })
    }

    fn texpr(
        &self,
        expr: &TExpr,
        dtype: &mut Option<DataType>,
    ) -> Result<crate::tensor::Array, String> {
        use crate::tensor::Array;
        Ok(match &expr.kind {
            TExprKind::Num(n) => Array::scalar(*n),
            TExprKind::Var(var) => match self.m.vars.get(&var.name) {
                Some(Bound::Attr(a)) => match super::matcher::attr_value_of(a) {
                    GValue::Num(n) => Array::scalar(n),
                    other => return Err(format!("`{}` is {other:?}, not a number", var.name)),
                },
                Some(_) => {
                    let t = self.m.tensor(&var.name).ok_or("not a tensor")?;
                    let (array, dt) = self.const_value(t.node)?;
                    dtype.get_or_insert(dt);
                    array
                }
                None => match self.rules.params.get(&var.name).map(literal_value) {
                    Some(GValue::Num(n)) => Array::scalar(n),
                    _ => return Err(format!("`{}` is not a number", var.name)),
                },
            },
            TExprKind::Attr(var, attr) => {
                let node = self.m.node(&var.name).ok_or("not a node")?;
                match self
                    .graph
                    .attr(node, &attr.name)
                    .map_err(|e| e.to_string())?
                    .map(|a| super::matcher::attr_value_of(&a))
                {
                    Some(GValue::Num(n)) => Array::scalar(n),
                    other => {
                        return Err(format!(
                            "`{}.{}` is {other:?}, not a number",
                            var.name, attr.name
                        ));
                    }
                }
            }
            TExprKind::Neg(inner) => self.texpr(inner, dtype)?.map(|v| -v),
            TExprKind::Bin(a, op, b) => {
                let (a, b) = (self.texpr(a, dtype)?, self.texpr(b, dtype)?);
                match op {
                    BinOp::Add => a.zip(&b, |x, y| x + y)?,
                    BinOp::Sub => a.zip(&b, |x, y| x - y)?,
                    BinOp::Mul => a.zip(&b, |x, y| x * y)?,
                    BinOp::Div => a.zip(&b, |x, y| x / y)?,
                }
            }
            TExprKind::List(items) => {
                let values = items
                    .iter()
                    .map(|i| self.texpr(i, &mut None).map(|a| a.data[0]))
                    .collect::<Result<Vec<_>, _>>()?;
                Array { shape: vec![values.len()], data: values }
            }
            TExprKind::Call(func, args) => {
                let arg = |i: usize, dtype: &mut Option<DataType>| self.texpr(&args[i], dtype);
                match func.name.as_str() {
                    "sqrt" => arg(0, dtype)?.map(f64::sqrt),
                    "rsqrt" => arg(0, dtype)?.map(|v| 1.0 / v.sqrt()),
                    "neg" => arg(0, dtype)?.map(|v| -v),
                    "abs" => arg(0, dtype)?.map(f64::abs),
                    "square" => arg(0, dtype)?.map(|v| v * v),
                    "reshape" => {
                        let dims: Vec<i64> =
                            arg(1, &mut None)?.data.iter().map(|&d| d as i64).collect();
                        arg(0, dtype)?.reshape(&dims)?
                    }
                    "shape" => {
                        let a = arg(0, &mut None)?;
                        Array {
                            shape: vec![a.shape.len()],
                            data: a.shape.iter().map(|&d| d as f64).collect(),
                        }
                    }
                    "dim" => {
                        let a = arg(0, &mut None)?;
                        let i = arg(1, &mut None)?.data.first().copied().unwrap_or(0.0) as i64;
                        let rank = a.shape.len() as i64;
                        let at = if i < 0 { rank + i } else { i };
                        let d = a
                            .shape
                            .get(at as usize)
                            .ok_or_else(|| format!("dimension {i} of a rank-{rank} tensor"))?;
                        Array::scalar(*d as f64)
                    }
                    other => return Err(format!("unknown function `{other}`")),
                }
            }
        })
    }

    /// The value of a Const, looking through Identity-like nodes.
    fn const_value(&self, mut node: NodeId) -> Result<(crate::tensor::Array, DataType), String> {
        for _ in 0..16 {
            match self.graph.op(node) {
                "Const" => {
                    let Some(AttrValue { value: Some(attr_value::Value::Tensor(t)) }) =
                        self.graph.attr(node, "value").map_err(|e| e.to_string())?
                    else {
                        return Err(format!("Const `{}` has no value", self.graph.name(node)));
                    };
                    let dtype = DataType::try_from(t.dtype).unwrap_or(DataType::DtFloat);
                    return Ok((crate::tensor::from_proto(&t)?, dtype));
                }
                "Identity" | "Snapshot" | "StopGradient" => {
                    node = self
                        .graph
                        .inputs(node)
                        .iter()
                        .find(|e| matches!(e.port, Port::Data(_)))
                        .and_then(|e| e.src)
                        .ok_or("an Identity without input")?;
                }
                op => {
                    return Err(format!("`{}` is a {op}, not a constant", self.graph.name(node)));
                }
            }
        }
        Err("too many Identity nodes before the constant".into())
    }
}

fn lit_attr(lit: &Literal) -> Result<attr_value::Value, String> {
    use attr_value::Value as V;
    Ok(match &lit.kind {
        LiteralKind::Str(s) => V::S(Bytes::from(s.clone().into_bytes())),
        LiteralKind::Num { value, is_int: true } => V::I(*value as i64),
        LiteralKind::Num { value, .. } => V::F(*value as f32),
        LiteralKind::Bool(b) => V::B(*b),
        LiteralKind::DType(d) => {
            V::Type(DataType::from_str_name(d).ok_or_else(|| format!("unknown dtype {d}"))? as i32)
        }
        LiteralKind::List(items) => {
            let mut list = attr_value::ListValue::default();
            for item in items {
                match lit_attr(item)? {
                    V::S(s) => list.s.push(s),
                    V::I(i) => list.i.push(i),
                    V::F(f) => list.f.push(f),
                    V::B(b) => list.b.push(b),
                    V::Type(t) => list.r#type.push(t),
                    _ => return Err("nested lists are not attributes".into()),
                }
            }
            V::List(list)
        }
    })
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

    /// The input string for a tensor: `node`, `node:N`, or the dead marker.
    fn tensor(&self, t: Tensor, depth: usize) -> String {
        if let Some(p) = self.patch_of(t.node) {
            if depth < 64 {
                if let Some(Some(r)) = self.patches[p].ports.get(t.port as usize) {
                    return self.tref(*r, p, depth + 1);
                }
            }
        }
        tensor_string(self.graph.name(t.node), t.port)
    }

    fn tref(&self, r: TRef, patch: usize, depth: usize) -> String {
        match r {
            TRef::Old(t) => self.tensor(t, depth),
            TRef::New(i, port) => tensor_string(&self.patches[patch].nodes[i].def.name, port),
            TRef::Dead => self.dead_name.clone(),
        }
    }

    /// The control input replacing `^node`.
    fn control(&self, node: NodeId) -> String {
        match self.patch_of(node) {
            Some(p) if self.patches[p].takes_name.is_none() => {
                let target = match self.patches[p].ports.first() {
                    Some(Some(r)) => self.tref(*r, p, 0),
                    _ => self.dead_name.clone(),
                };
                let producer = parse_input(&target).map(|i| i.node().to_string()).unwrap_or(target);
                format!("^{producer}")
            }
            _ => format!("^{}", self.graph.name(node)),
        }
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
                def.input = node.data.iter().map(|r| resolver.tref(*r, p, 0)).collect();
                let mut controls: Vec<String> =
                    node.control.iter().map(|&c| resolver.control(c)).collect();
                for name in &node.control_names {
                    let old = graph.id(&name[1..]);
                    controls.push(old.map_or_else(|| name.clone(), |c| resolver.control(c)));
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
                    data.push(resolver.tensor(Tensor { node: src, port }, 0))
                }
                (Some(src), Port::Control) => controls.push(resolver.control(src)),
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
    let mut seen: HashSet<String> = HashSet::new();
    for c in controls {
        if c != format!("^{}", def.name) && seen.insert(c.clone()) {
            def.input.push(c);
        }
    }
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
        let (order, _) = crate::validate::topological_order(&graph);
        for &id in &order {
            if id == marker {
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
