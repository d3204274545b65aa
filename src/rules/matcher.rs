//! Matching a rule's pattern at a node, and evaluating its guard. Matching
//! reads the graph only; what matched is returned as bindings.

use std::collections::HashMap;

use super::ast::*;
use super::work::Work;
use crate::graph::{NodeId, Port};
use crate::proto::{AttrValue, DataType, attr_value};
use crate::wire::same;
use prost::Message;

/// A tensor: an output port of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tensor {
    /// The producer.
    pub node: NodeId,
    /// Its output port.
    pub port: u32,
}

/// What a variable is bound to.
#[derive(Clone, Debug, PartialEq)]
pub enum Bound {
    /// A tensor (`x`).
    Tensor(Tensor),
    /// A node (`bn = ...`, `^c`).
    Node(NodeId),
    /// An attribute value (`{epsilon: eps}`).
    Attr(Box<AttrValue>),
}

/// The result of a successful match.
#[derive(Clone, Debug, Default)]
pub struct Match<'r> {
    /// Variable bindings, by the names the rule gives them.
    pub vars: Vars<'r>,
    /// Every node an op pattern matched, root first.
    pub nodes: Vec<NodeId>,
    /// Attribute values decoded by earlier tries with this match (kept
    /// across tries, never across changes of the graph).
    pub decoded: Decoded,
    /// Counts of readers of nodes many read, by node and port (`u32::MAX`:
    /// every port), kept as `decoded` is: a guard on how many read a node
    /// that thousands read, tried at each of them, counts them once.
    pub counts: std::cell::RefCell<Vec<(NodeId, u32, usize)>>,
}

/// Reader lists at least this long have their counts kept (see
/// [`Match::counts`]); shorter ones are counted again, which is cheaper.
const COUNT_KEPT_FROM: usize = 64;

/// How many counts a match keeps (the latest).
const COUNTS_KEPT: usize = 8;

/// Attribute values that needed decoding (tensors, lists...), by where
/// their bytes are. The graph does not change while a round matches, so
/// the same bytes are the same value: a Const predicate that thousands of
/// Switches read is decoded once per thread, not once per Switch.
#[derive(Clone, Debug, Default)]
pub struct Decoded {
    entries: Vec<(usize, usize, Option<GValue>)>,
    next: usize,
    /// Outcomes of attribute patterns with a literal (`Const{value:
    /// false}`) at a node: the node, the pattern's address, whether it held.
    /// The thousands of Switches that read one predicate check it once.
    checks: Vec<(NodeId, usize, bool)>,
    next_check: usize,
}

impl Decoded {
    const SIZE: usize = 16;
    const CHECKS: usize = 8;

    /// Whether `pattern` held at `node`, when that was checked before.
    fn checked(&self, node: NodeId, pattern: &AttrPattern) -> Option<bool> {
        let at = pattern as *const AttrPattern as usize;
        self.checks.iter().find(|c| c.0 == node && c.1 == at).map(|c| c.2)
    }

    fn remember(&mut self, node: NodeId, pattern: &AttrPattern, held: bool) {
        let check = (node, pattern as *const AttrPattern as usize, held);
        if self.checks.len() < Self::CHECKS {
            self.checks.push(check);
        } else {
            self.checks[self.next_check] = check;
            self.next_check = (self.next_check + 1) % Self::CHECKS;
        }
    }

    /// The guard value of the encoded attribute `raw` (see
    /// [`raw_attr_value`]).
    pub fn value(&mut self, raw: &[u8]) -> Option<GValue> {
        if let Some(v) = scalar_attr_value(raw) {
            return Some(v);
        }
        let key = (raw.as_ptr() as usize, raw.len());
        if let Some(e) = self.entries.iter().find(|e| (e.0, e.1) == key) {
            return e.2.clone();
        }
        let value = AttrValue::decode(raw).ok().map(|a| attr_value_of(&a));
        if self.entries.len() < Self::SIZE {
            self.entries.push((key.0, key.1, value.clone()));
        } else {
            self.entries[self.next] = (key.0, key.1, value.clone());
            self.next = (self.next + 1) % Self::SIZE;
        }
        value
    }
}

/// A rule's few variables with what they are bound to (a list: matching
/// binds them without allocating a map per attempt).
#[derive(Clone, Debug, Default)]
pub struct Vars<'r>(Vec<(&'r str, Bound)>);

impl<'r> Vars<'r> {
    /// What `var` is bound to.
    pub fn get(&self, var: &str) -> Option<&Bound> {
        self.0.iter().find(|(v, _)| same(v.as_bytes(), var.as_bytes())).map(|(_, b)| b)
    }

    /// Binds `var` (again: the new binding wins).
    pub fn insert(&mut self, var: &'r str, bound: Bound) {
        match self.0.iter_mut().find(|(v, _)| same(v.as_bytes(), var.as_bytes())) {
            Some(slot) => slot.1 = bound,
            None => self.0.push((var, bound)),
        }
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

impl Match<'_> {
    /// The tensor a variable names (a node variable names its port 0).
    pub fn tensor(&self, var: &str) -> Option<Tensor> {
        match self.vars.get(var)? {
            Bound::Tensor(t) => Some(*t),
            Bound::Node(n) => Some(Tensor { node: *n, port: 0 }),
            Bound::Attr(_) => None,
        }
    }

    /// The node a variable names (a tensor variable names its producer).
    pub fn node(&self, var: &str) -> Option<NodeId> {
        match self.vars.get(var)? {
            Bound::Tensor(t) => Some(t.node),
            Bound::Node(n) => Some(*n),
            Bound::Attr(_) => None,
        }
    }
}

/// Reads the graph for matching; `dead` is the id of the dead-tensor
/// marker node, if the graph has one.
pub struct Matcher<'g> {
    /// The graph.
    pub graph: &'g Work<'g>,
    /// The marker of dead tensors.
    pub dead: Option<NodeId>,
}

impl Matcher<'_> {
    /// Matches `pattern` (whose root is an op pattern) at node `root`,
    /// into `m` (cleared first, so one match can be reused for every try).
    pub fn match_root<'r>(&self, pattern: &'r Pattern, root: NodeId, m: &mut Match<'r>) -> bool {
        m.vars.clear();
        m.nodes.clear();
        let PatternKind::Node(node) = &pattern.kind else {
            return false;
        };
        if let Some(binding) = &pattern.binding {
            m.vars.insert(&binding.name, Bound::Node(root));
        }
        self.node(node, root, m)
    }

    fn node<'r>(&self, pattern: &'r NodePattern, id: NodeId, m: &mut Match<'r>) -> bool {
        let graph = self.graph;
        let op = graph.op(id).as_bytes();
        if Some(id) == self.dead || !pattern.ops.iter().any(|o| same(o.name.as_bytes(), op)) {
            return false;
        }
        // Structure first (cheap: ops of inputs), attributes after (they are
        // decoded from the node's bytes).
        let inputs = graph.inputs(id);
        let data = || {
            inputs.iter().filter_map(|e| match e.port() {
                Port::Data(port) => e.src().map(|node| Tensor { node, port }),
                Port::Control => None,
            })
        };
        let wanted = || {
            pattern.args.iter().filter_map(|a| match a {
                Arg::Pattern(p) => Some(p),
                _ => None,
            })
        };
        let (have, want) = (data().count(), wanted().count());
        let open = pattern.args.iter().any(|a| matches!(a, Arg::Rest(_)));
        if have < want || (!open && have != want) {
            return false;
        }
        m.nodes.push(id);
        for (p, t) in wanted().zip(data()) {
            if !self.tensor(p, t, m) {
                return false;
            }
        }
        if !self.attrs(&pattern.attrs, id, m) {
            return false;
        }
        for arg in &pattern.args {
            if let Arg::Control(var) = arg {
                let controls: Vec<NodeId> = graph.control_inputs(id).collect();
                let bound = m.vars.get(&var.name).cloned();
                let pick = match bound {
                    Some(Bound::Node(n)) => controls.contains(&n).then_some(n),
                    Some(_) => None,
                    None => controls.first().copied(),
                };
                match pick {
                    Some(n) => {
                        m.vars.insert(&var.name, Bound::Node(n));
                    }
                    None => return false,
                }
            }
        }
        true
    }

    fn tensor<'r>(&self, pattern: &'r Pattern, t: Tensor, m: &mut Match<'r>) -> bool {
        let ok = match &pattern.kind {
            PatternKind::Node(node) => {
                let port = node.port.map_or(0, |p| p.0);
                t.port == port && self.node(node, t.node, m)
            }
            PatternKind::Var { var, producer } => {
                if let Some(producer) = producer {
                    let ops_ok = producer.ops.iter().any(|op| op.name == self.graph.op(t.node));
                    if Some(t.node) == self.dead
                        || !ops_ok
                        || !self.attrs(&producer.attrs, t.node, m)
                    {
                        return false;
                    }
                }
                match m.vars.get(&var.name) {
                    Some(Bound::Tensor(bound)) => *bound == t,
                    Some(_) => false,
                    None => {
                        m.vars.insert(&var.name, Bound::Tensor(t));
                        true
                    }
                }
            }
            PatternKind::Wildcard => true,
            PatternKind::Dead => Some(t.node) == self.dead,
        };
        if ok {
            if let (Some(binding), PatternKind::Node(_)) = (&pattern.binding, &pattern.kind) {
                m.vars.insert(&binding.name, Bound::Node(t.node));
            } else if let Some(binding) = &pattern.binding {
                m.vars.insert(&binding.name, Bound::Tensor(t));
            }
        }
        ok
    }

    fn attrs<'r>(&self, attrs: &'r [AttrPattern], id: NodeId, m: &mut Match<'r>) -> bool {
        for attr in attrs {
            let held = match &attr.value {
                // A literal's outcome at a node is the same for every try
                // of the round: checked once.
                AttrPatternValue::Literal(lit) => match m.decoded.checked(id, attr) {
                    Some(held) => held,
                    None => {
                        let held = match self.graph.attr_raw(id, &attr.name.name) {
                            Ok(Some(raw)) => m
                                .decoded
                                .value(raw)
                                .is_some_and(|value| literal_value(lit).equals(&value)),
                            _ => false,
                        };
                        m.decoded.remember(id, attr, held);
                        held
                    }
                },
                AttrPatternValue::Bind(var) => {
                    let Ok(Some(raw)) = self.graph.attr_raw(id, &attr.name.name) else {
                        return false;
                    };
                    let Ok(value) = AttrValue::decode(raw) else { return false };
                    match m.vars.get(&var.name) {
                        Some(Bound::Attr(bound)) => **bound == value,
                        Some(_) => false,
                        None => {
                            m.vars.insert(&var.name, Bound::Attr(Box::new(value)));
                            true
                        }
                    }
                }
            };
            if !held {
                return false;
            }
        }
        true
    }
}

/// The guard value of an encoded `AttrValue`: a single scalar field is read
/// from the wire, anything else decoded; `None` when it does not decode.
pub fn raw_attr_value(raw: &[u8]) -> Option<GValue> {
    scalar_attr_value(raw).or_else(|| AttrValue::decode(raw).ok().map(|a| attr_value_of(&a)))
}

/// The guard value of an encoded `AttrValue` that is a single scalar field,
/// read from the wire; `None` for anything else.
fn scalar_attr_value(raw: &[u8]) -> Option<GValue> {
    use crate::wire::{FIXED32, LEN, VARINT};
    let mut fields = crate::wire::fields(raw);
    let (Some(Ok(f)), None) = (fields.next(), fields.next()) else { return None };
    match (f.number, f.wire) {
        (2, LEN) => Some(GValue::Str(String::from_utf8_lossy(&raw[f.payload()]).into_owned())),
        (3, VARINT) => Some(GValue::Num(f.value as i64 as f64)),
        (4, FIXED32) => {
            let bytes: [u8; 4] = raw[f.end - 4..f.end].try_into().ok()?;
            Some(GValue::Num(f64::from(f32::from_le_bytes(bytes))))
        }
        (5, VARINT) => Some(GValue::Bool(f.value != 0)),
        (6, VARINT) => Some(GValue::DType(f.value as i32)),
        _ => None,
    }
}

/// A value in a guard.
#[derive(Clone, Debug, PartialEq)]
pub enum GValue {
    /// Text.
    Str(String),
    /// A number.
    Num(f64),
    /// A boolean.
    Bool(bool),
    /// A data type.
    DType(i32),
    /// A list.
    List(Vec<GValue>),
    /// No value (an attribute the node does not have).
    Missing,
}

impl GValue {
    fn equals(&self, other: &GValue) -> bool {
        match (self, other) {
            (GValue::DType(a), GValue::Str(s)) | (GValue::Str(s), GValue::DType(a)) => {
                crate::proto::dtype_name(*a) == *s
                    || DataType::try_from(*a).is_ok_and(|d| d.as_str_name() == s)
            }
            (GValue::Num(a), GValue::Bool(b)) | (GValue::Bool(b), GValue::Num(a)) => {
                *a == f64::from(u8::from(*b))
            }
            (a, b) => a == b,
        }
    }
}

/// The guard value of a literal.
pub fn literal_value(lit: &Literal) -> GValue {
    match &lit.kind {
        LiteralKind::Str(s) => GValue::Str(s.clone()),
        LiteralKind::Num { value, .. } => GValue::Num(*value),
        LiteralKind::Bool(b) => GValue::Bool(*b),
        LiteralKind::List(items) => GValue::List(items.iter().map(literal_value).collect()),
        LiteralKind::DType(name) => DataType::from_str_name(name)
            .map_or(GValue::Str(name.clone()), |d| GValue::DType(d as i32)),
    }
}

/// The guard value of an attribute.
pub fn attr_value_of(value: &AttrValue) -> GValue {
    use attr_value::Value as V;
    match &value.value {
        None => GValue::Missing,
        Some(V::S(s)) => GValue::Str(String::from_utf8_lossy(s).into_owned()),
        Some(V::I(i)) => GValue::Num(*i as f64),
        Some(V::F(f)) => GValue::Num(f64::from(*f)),
        Some(V::B(b)) => GValue::Bool(*b),
        Some(V::Type(t)) => GValue::DType(*t),
        Some(V::Shape(s)) => GValue::Str(s.display()),
        Some(V::Tensor(t)) => match crate::tensor::from_proto(t) {
            Ok(a) if a.data.len() == 1 => GValue::Num(a.data[0]),
            _ => GValue::Missing,
        },
        Some(V::List(l)) => {
            let mut items: Vec<GValue> =
                l.s.iter().map(|s| GValue::Str(String::from_utf8_lossy(s).into_owned())).collect();
            items.extend(l.i.iter().map(|&i| GValue::Num(i as f64)));
            items.extend(l.f.iter().map(|&f| GValue::Num(f64::from(f))));
            items.extend(l.b.iter().map(|&b| GValue::Bool(b)));
            items.extend(l.r#type.iter().map(|&t| GValue::DType(t)));
            GValue::List(items)
        }
        Some(V::Func(f)) => GValue::Str(f.name.clone()),
        Some(V::Placeholder(p)) => GValue::Str(p.clone()),
    }
}

/// Evaluates guards for one match.
pub struct Guard<'a> {
    /// The graph.
    pub graph: &'a Work<'a>,
    /// The match.
    pub m: &'a Match<'a>,
    /// Parameter values.
    pub params: &'a HashMap<String, Literal>,
}

impl Guard<'_> {
    /// Whether the condition holds; `Err` with a reason when it cannot be
    /// evaluated (the match then fails with that reason).
    pub fn holds(&self, cond: &Cond) -> Result<bool, String> {
        Ok(match cond {
            Cond::Or(parts) => {
                for part in parts {
                    if self.holds(part)? {
                        return Ok(true);
                    }
                }
                false
            }
            Cond::And(parts) => {
                for part in parts {
                    if !self.holds(part)? {
                        return Ok(false);
                    }
                }
                true
            }
            Cond::Not(inner) => !self.holds(inner)?,
            Cond::Compare { lhs, rhs: None } => matches!(self.value(lhs)?, GValue::Bool(true)),
            Cond::Compare { lhs, rhs: Some((op, rhs)) } => {
                let (a, b) = (self.value(lhs)?, self.value(rhs)?);
                match op {
                    CompareOp::Eq => a.equals(&b),
                    CompareOp::Ne => !a.equals(&b),
                    CompareOp::Lt | CompareOp::Le | CompareOp::Gt | CompareOp::Ge => match (a, b) {
                        (GValue::Num(x), GValue::Num(y)) => match op {
                            CompareOp::Lt => x < y,
                            CompareOp::Le => x <= y,
                            CompareOp::Gt => x > y,
                            _ => x >= y,
                        },
                        (a, b) => return Err(format!("cannot order {a:?} and {b:?}")),
                    },
                    CompareOp::Match => match (a, b) {
                        (GValue::Str(text), GValue::Str(pattern)) => text_matches(&text, &pattern)?,
                        (a, b) => {
                            return Err(format!(
                                "`~` needs text on both sides, not {a:?} and {b:?}"
                            ));
                        }
                    },
                    CompareOp::In => match b {
                        GValue::List(items) => items.iter().any(|item| a.equals(item)),
                        single => a.equals(&single),
                    },
                }
            }
        })
    }

    fn value(&self, value: &Value) -> Result<GValue, String> {
        let graph = self.graph;
        Ok(match &value.kind {
            ValueKind::Literal(lit) => literal_value(lit),
            ValueKind::Var(var) => match self.m.vars.get(&var.name) {
                Some(Bound::Attr(a)) => attr_value_of(a),
                Some(_) => return Err(format!("`{}` is not a value", var.name)),
                None => match self.params.get(&var.name) {
                    Some(lit) => literal_value(lit),
                    None => return Err(format!("`{}` is unbound", var.name)),
                },
            },
            ValueKind::AttrRef { var, attr } => {
                let node = self
                    .m
                    .node(&var.name)
                    .ok_or_else(|| format!("`{}` is not a node", var.name))?;
                match graph.attr_raw(node, &attr.name).map_err(|e| e.to_string())? {
                    Some(raw) => raw_attr_value(raw).ok_or_else(|| {
                        format!(
                            "attribute `{}` of `{}` does not decode",
                            attr.name,
                            graph.name(node)
                        )
                    })?,
                    None => GValue::Missing,
                }
            }
            ValueKind::Call { func, args } => {
                let arg = args.first().ok_or("missing argument")?;
                let ValueKind::Var(var) = &arg.kind else {
                    return Err(format!("`{}` takes a variable", func.name));
                };
                let t = self
                    .m
                    .tensor(&var.name)
                    .ok_or_else(|| format!("`{}` is not a tensor", var.name))?;
                let node_var = matches!(self.m.vars.get(&var.name), Some(Bound::Node(_)));
                match func.name.as_str() {
                    "name" => GValue::Str(graph.name(t.node).to_string()),
                    "op" => GValue::Str(graph.op(t.node).to_string()),
                    "port" => GValue::Num(f64::from(t.port)),
                    "consumers" => {
                        let port = if node_var { u32::MAX } else { t.port };
                        let kept = self.m.counts.borrow().iter().find_map(|&(node, p, count)| {
                            (node == t.node && p == port).then_some(count)
                        });
                        let count = kept.unwrap_or_else(|| {
                            let (mut count, mut seen) = (0, 0);
                            for c in graph.consumers(t.node) {
                                seen += 1;
                                count += usize::from(match c.port {
                                    Port::Data(p) => node_var || p == t.port,
                                    Port::Control => false,
                                });
                            }
                            if seen >= COUNT_KEPT_FROM {
                                let mut counts = self.m.counts.borrow_mut();
                                if counts.len() == COUNTS_KEPT {
                                    counts.remove(0);
                                }
                                counts.push((t.node, port, count));
                            }
                            count
                        });
                        GValue::Num(count as f64)
                    }
                    "dtype" => {
                        let mut found = GValue::Missing;
                        for key in ["T", "dtype", "out_type", "DstT"] {
                            if let Ok(Some(raw)) = graph.attr_raw(t.node, key) {
                                found = raw_attr_value(raw).unwrap_or(GValue::Missing);
                                break;
                            }
                        }
                        found
                    }
                    "dim" => {
                        let index = match args.get(1).map(|a| self.value(a)).transpose()? {
                            Some(GValue::Num(i)) if i.fract() == 0.0 => i as i64,
                            _ => return Err("`dim` takes a tensor and a whole number".into()),
                        };
                        match static_shape(graph, t) {
                            Some(dims) => {
                                let i = if index < 0 { index + dims.len() as i64 } else { index };
                                match usize::try_from(i).ok().and_then(|i| dims.get(i)) {
                                    Some(d) => GValue::Num(*d as f64),
                                    None => GValue::Missing,
                                }
                            }
                            None => GValue::Missing,
                        }
                    }
                    "shape" | "rank" => match static_shape(graph, t) {
                        Some(dims) if func.name == "rank" => GValue::Num(dims.len() as f64),
                        Some(dims) => {
                            GValue::List(dims.into_iter().map(|d| GValue::Num(d as f64)).collect())
                        }
                        None => GValue::Missing,
                    },
                    other => return Err(format!("unknown function `{other}`")),
                }
            }
        })
    }
}

/// A tensor's shape when the graph says it statically: a Const's value, a
/// placeholder's `shape`, or the producer's `_output_shapes`. Unknown
/// dimensions are -1.
pub fn static_shape(graph: &Work, t: Tensor) -> Option<Vec<i64>> {
    let dims = |s: &crate::proto::TensorShapeProto| -> Option<Vec<i64>> {
        (!s.unknown_rank).then(|| s.dim.iter().map(|d| d.size).collect())
    };
    match graph.op(t.node) {
        "Const" => match const_tensor_raw(graph, t.node) {
            // Only the tensor's shape is read, not its values.
            Some(tensor) => {
                let mut shape = None;
                for f in crate::wire::fields(tensor) {
                    let f = f.ok()?;
                    if f.number == 2 && f.wire == crate::wire::LEN {
                        shape = Some(&tensor[f.payload()]);
                    }
                }
                match shape {
                    None => Some(vec![]),
                    Some(s) => crate::tensor::shape_from_raw(s)
                        .or_else(|| dims(&crate::proto::TensorShapeProto::decode(s).ok()?)),
                }
            }
            None => match graph.attr(t.node, "value").ok()??.value? {
                attr_value::Value::Tensor(tp) => {
                    Some(tp.tensor_shape.as_ref().map_or(Some(vec![]), dims)?)
                }
                _ => None,
            },
        },
        "Placeholder" | "PlaceholderWithDefault" => match graph.attr(t.node, "shape").ok()??.value?
        {
            attr_value::Value::Shape(s) => dims(&s),
            _ => None,
        },
        _ => match graph.attr(t.node, "_output_shapes").ok()??.value? {
            attr_value::Value::List(l) => dims(l.shape.get(t.port as usize)?),
            _ => None,
        },
    }
}

/// The encoded TensorProto of a Const whose `value` attribute is that
/// tensor alone (how every encoder writes it); `None` otherwise, for the
/// caller to decode the attribute.
pub(super) fn const_tensor_raw<'w>(graph: &'w Work, id: NodeId) -> Option<&'w [u8]> {
    use crate::wire::{LEN, fields};
    let raw = graph.attr_raw(id, "value").ok()??;
    let mut fields = fields(raw);
    let (Some(Ok(f)), None) = (fields.next(), fields.next()) else { return None };
    ((f.number, f.wire) == (8, LEN)).then(|| &raw[f.payload()])
}

/// `~`: a glob (`*` any run of characters, `?` one), or a regular
/// expression when written `/.../`.
pub fn text_matches(text: &str, pattern: &str) -> Result<bool, String> {
    if let Some(re) = pattern.strip_prefix('/').and_then(|p| p.strip_suffix('/')) {
        let re = regex::Regex::new(&format!("^(?:{re})$")).map_err(|e| e.to_string())?;
        return Ok(re.is_match(text));
    }
    Ok(glob(text.as_bytes(), pattern.as_bytes()))
}

fn glob(text: &[u8], pattern: &[u8]) -> bool {
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            t += 1;
            p += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{TensorShapeProto, attr_value::ListValue, attr_value::Value as V};

    /// One match reused for every try (as a round's search reuses it) finds
    /// what a fresh one finds: a literal's remembered outcome belongs to its
    /// node and its pattern, and more of them than are kept is fine.
    #[test]
    fn remembered_literal_checks_belong_to_node_and_pattern() {
        use crate::proto::{GraphDef, NodeDef};
        let tensor = |v: bool| {
            let t = crate::tensor::to_proto(
                &crate::tensor::Array::scalar(f64::from(u8::from(v))),
                DataType::DtBool,
            )
            .unwrap();
            AttrValue { value: Some(V::Tensor(t)) }
        };
        let mut nodes =
            vec![NodeDef { name: "x".into(), op: "Placeholder".into(), ..Default::default() }];
        // Ten predicates, true every third, each read by three Switches.
        for p in 0..10 {
            nodes.push(NodeDef {
                name: format!("p{p}"),
                op: "Const".into(),
                attr: [("value".to_string(), tensor(p % 3 == 0))].into(),
                ..Default::default()
            });
        }
        for i in 0..30 {
            nodes.push(NodeDef {
                name: format!("s{i}"),
                op: "Switch".into(),
                input: vec!["x".into(), format!("p{}", i % 10)],
                ..Default::default()
            });
        }
        let graph = crate::Graph::from_def(&GraphDef { node: nodes, ..Default::default() });
        let work = Work::new(&graph);
        let text = "rule f: Switch(x, Const{value: false}) => x
            rule t: Switch(x, Const{value: true}) => x";
        let rules =
            crate::rules::compile::compile(&crate::rules::load::load_text("t.rules", text), &[])
                .expect("compiles");
        let matcher = Matcher { graph: &work, dead: None };
        let mut reused = Match::default();
        let mut matched = [0, 0];
        for id in 11..41 {
            for (r, rule) in rules.rules.iter().enumerate() {
                let fresh = matcher.match_root(&rule.rule.pattern, id, &mut Match::default());
                assert_eq!(matcher.match_root(&rule.rule.pattern, id, &mut reused), fresh);
                matched[r] += usize::from(fresh);
            }
        }
        assert_eq!(matched, [18, 12]);
    }

    /// Reading an attribute from the wire gives what decoding it gives.
    #[test]
    fn raw_attribute_values_are_the_decoded_ones() {
        let values = [
            V::S("NHWC".into()),
            V::S(bytes::Bytes::from_static(b"\xff\xfe")),
            V::I(-3),
            V::I(1 << 40),
            V::F(0.001),
            V::F(-2.5),
            V::B(true),
            V::B(false),
            V::Type(DataType::DtHalf as i32),
            V::Type(0),
            V::Shape(TensorShapeProto::default()),
            V::List(ListValue { i: vec![1, 2, 2, 1], ..Default::default() }),
        ];
        for v in values {
            let a = AttrValue { value: Some(v) };
            let raw = a.encode_to_vec();
            assert_eq!(raw_attr_value(&raw), Some(attr_value_of(&a)), "{a:?}");
        }
        assert_eq!(raw_attr_value(&[]), Some(GValue::Missing));
        // Decoded values are remembered by where their bytes are.
        let tensor = crate::tensor::to_proto(
            &crate::tensor::Array::scalar(1.0),
            crate::proto::DataType::DtBool,
        )
        .unwrap();
        let raw = AttrValue { value: Some(V::Tensor(tensor)) }.encode_to_vec();
        let mut decoded = Decoded::default();
        for _ in 0..3 {
            assert_eq!(decoded.value(&raw), Some(GValue::Num(1.0)));
        }
        assert_eq!(decoded.entries.len(), 1);
        let others: Vec<Vec<u8>> = (0..40)
            .map(|i| {
                AttrValue { value: Some(V::List(ListValue { i: vec![i], ..Default::default() })) }
                    .encode_to_vec()
            })
            .collect();
        for (i, raw) in others.iter().enumerate() {
            assert_eq!(decoded.value(raw), Some(GValue::List(vec![GValue::Num(i as f64)])));
        }
        assert_eq!(decoded.entries.len(), Decoded::SIZE);
        assert_eq!(raw_attr_value(&[0x2a, 0x05, 0x01]), None, "a cut-off field does not decode");
    }
}
