//! Building a rule's replacement for one match: new nodes with their
//! attributes and inputs, copies of matched nodes, computed constants, and
//! the names they get. The result is a [`Patch`]; the engine applies it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write;

use bytes::Bytes;

use super::ast::*;
use super::compile::RuleSet;
use super::consts::{ConstValue, Consts, Floats, Inputs, Slots};
use super::matcher::{Bound, GValue, Match, Tensor, literal_value};
use super::work::{Body, Work};
use crate::graph::{NodeId, Port};
use crate::proto::{AttrValue, DataType, attr_value};
use crate::tensor::Array;
use smallvec::SmallVec;

/// One rule application, computed without touching the graph.
pub(super) struct Patch {
    pub(super) rule: u32,
    pub(super) root: NodeId,
    /// Replacement of each output port of the root (`None`: untouched).
    /// Most patches replace one or two ports and match a few nodes below
    /// their root: both are kept inline, so a patch is one allocation less
    /// (or two) in rounds that make hundreds of thousands.
    pub(super) ports: SmallVec<[Option<TRef>; 2]>,
    /// New nodes, inputs first; the one at `takes_name` gets the root's name.
    pub(super) nodes: Vec<NewNode>,
    pub(super) takes_name: Option<u32>,
    /// The nodes the pattern matched below the root.
    pub(super) interior: SmallVec<[NodeId; 4]>,
}

/// A tensor in a replacement.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum TRef {
    Old(Tensor),
    /// A new node of the same patch (its place among them), and its port.
    New(u32, u32),
    Dead,
}

pub(super) struct NewNode {
    /// Its base name (`const`, the op in lower case, a copied node's last
    /// name component) until the patch is built, then its whole name.
    pub(super) name: Cow<'static, str>,
    /// The [`crate::graph::name_hash`] of its whole name, once it has one.
    pub(super) hash: u64,
    /// Bytes left free at the start of an encoded constant's body, where
    /// its name goes once it has one (0: none).
    pub(super) room: usize,
    pub(super) op: Cow<'static, str>,
    pub(super) body: Body,
    pub(super) data: Vec<TRef>,
    /// Control inputs: the rule's, then those kept from a copied node.
    pub(super) control: Vec<NodeId>,
    /// Control inputs of a copied node that name no node, as written.
    pub(super) control_names: Vec<String>,
}

pub(super) struct Builder<'a> {
    pub(super) graph: &'a Work<'a>,
    pub(super) m: &'a Match<'a>,
    pub(super) rule: &'a Rule,
    pub(super) rules: &'a RuleSet,
    pub(super) root: NodeId,
    pub(super) nodes: Vec<NewNode>,
    /// The root's device, once read.
    pub(super) device: Option<String>,
    /// The rule's constant expressions, and the thread's room to compute
    /// them in.
    pub(super) consts: &'a Consts,
    pub(super) slots: &'a mut Slots,
}

impl<'a> Builder<'a> {
    pub(super) fn patch(&mut self, rule: u32) -> Result<Patch, String> {
        let ports = match &self.rule.replacement {
            // `Op(...):N => r` replaces output N alone; otherwise port 0.
            Replacement::Single(expr) => {
                let port = match &self.rule.pattern.kind {
                    PatternKind::Node(node) => node.port.map_or(0, |p| p.0),
                    _ => 0,
                };
                let mut ports = smallvec::smallvec![None; port as usize + 1];
                ports[port as usize] = Some(self.expr(expr, port)?);
                ports
            }
            // The function's outputs (see [`super::inline`]).
            Replacement::Inline { attr, .. } => self.inline(&attr.name)?,
            // Port 0 always (its replacement takes the root's name); another
            // port only when something reads it: what nothing reads is not
            // built (a Merge's `value_index` constant, mostly).
            Replacement::Ports(exprs, _) => exprs
                .iter()
                .zip(self.read_ports(exprs.len()))
                .enumerate()
                .map(|(port, (e, read))| match read {
                    true => self.expr(e, port as u32).map(Some),
                    false => Ok(None),
                })
                .collect::<Result<_, _>>()?,
        };
        // The node that replaces port 0 takes the root's name, so consumers
        // and outputs naming the root keep working.
        let takes_name = match ports.first() {
            Some(Some(TRef::New(i, 0))) => Some(*i),
            _ => None,
        };
        let root_name = self.graph.name(self.root);
        let rule_name = &self.rule.name.name;
        let mut taken: Vec<&str> = Vec::with_capacity(self.nodes.len());
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if Some(i as u32) == takes_name {
                node.name = Cow::Owned(root_name.to_string());
                node.hash = crate::graph::name_hash(root_name);
                continue;
            }
            let mut name = String::with_capacity(root_name.len() + rule_name.len() + 24);
            for part in [root_name, "/", rule_name, "/", &node.name] {
                name.push_str(part);
            }
            let base = name.len();
            let mut n = 1;
            let mut hash = crate::graph::name_hash(&name);
            // Names of different patches cannot clash (each starts with its
            // own root's name); within the patch, the earlier nodes' names.
            while self.graph.id_hashed(&name, hash).is_some() || taken.iter().any(|t| **t == name) {
                name.truncate(base);
                write!(name, "_{n}").expect("writing to a String");
                hash = crate::graph::name_hash(&name);
                n += 1;
            }
            node.name = Cow::Owned(name);
            node.hash = hash;
            taken.push(&node.name);
        }
        // A node without inputs (a constant) is encoded whole, under its
        // name, here on the matching threads: the written graph shares it.
        // A constant's name goes in the room left before its body when it
        // fits (it is copied otherwise).
        for node in &mut self.nodes {
            let Body::Encoded(body) = &mut node.body else { continue };
            let room = std::mem::take(&mut node.room);
            if node.data.is_empty() && node.control.is_empty() && node.control_names.is_empty() {
                node.body = Body::Whole(named(std::mem::take(body), room, &node.name));
            } else if room > 0 {
                *body = body.slice(room..);
            }
        }
        Ok(Patch {
            rule,
            root: self.root,
            ports,
            nodes: std::mem::take(&mut self.nodes),
            takes_name,
            interior: SmallVec::from_slice(&self.m.nodes[1..]),
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
                let (device, dtype) = (self.root_device(), self.port_dtype(port));
                let room = self.const_room();
                let body = encode_const(&device, &Array::scalar(*value), dtype, room)?;
                Ok(self.push_const(body, room))
            }
            RExpr::Const(_, span) => {
                let device = self.root_device();
                let bindings =
                    Bindings { graph: self.graph, m: self.m, params: &self.rules.params };
                let room = self.const_room();
                let body = match self.consts.value(span.start, &bindings, self.slots)? {
                    ConstValue::Array(value, dtype) => encode_const(&device, value, dtype, room)?,
                    ConstValue::Scaled { shape, big, small } => {
                        encode_const_with(&device, &shape, DataType::DtFloat, room, |out| {
                            crate::tensor::write_scaled_f32(big, &small.data, out);
                            Ok(())
                        })?
                    }
                };
                Ok(self.push_const(body, room))
            }
            RExpr::NewNode { op, attrs, inputs, port: p, .. } => {
                let device = self.root_device();
                let mut values = Vec::with_capacity(attrs.len());
                for (name, value) in attrs {
                    values
                        .push((name.name.as_str(), self.attr(&op.name, &name.name, value, attrs)?));
                }
                let body = encode_node(&op.name, &device, values);
                let (data, control) = self.inputs(inputs)?;
                self.nodes.push(NewNode {
                    name: Cow::Owned(op.name.to_lowercase()),
                    op: Cow::Owned(op.name.clone()),
                    body: Body::Encoded(body),
                    data,
                    control,
                    control_names: vec![],
                    hash: 0,
                    room: 0,
                });
                Ok(TRef::New(self.nodes.len() as u32 - 1, p.unwrap_or(0)))
            }
            RExpr::Copy { of, inputs, port: p, .. } => {
                let node =
                    self.m.node(&of.name).ok_or_else(|| format!("`{}` is not a node", of.name))?;
                let graph = self.graph;
                let (mut kept, mut control_names) = (Vec::new(), Vec::new());
                for (slot, e) in graph.inputs(node).iter().enumerate() {
                    match e.src() {
                        Some(src) if e.port() == Port::Control => kept.push(src),
                        None => control_names.extend(
                            graph
                                .source_input_text(node, slot as u32)
                                .filter(|t| t.starts_with('^'))
                                .map(str::to_string),
                        ),
                        Some(_) => {}
                    }
                }
                let name = graph.name(node).rsplit('/').next().unwrap_or("copy").to_string().into();
                let (data, mut control) = self.inputs(inputs)?;
                control.extend(kept);
                self.nodes.push(NewNode {
                    name,
                    op: Cow::Owned(graph.op(node).to_string()),
                    body: graph.copy_body(node),
                    data,
                    control,
                    control_names,
                    hash: 0,
                    room: 0,
                });
                Ok(TRef::New(self.nodes.len() as u32 - 1, p.unwrap_or(0)))
            }
        }
    }

    /// Which of the root's first `ports` output ports get a replacement:
    /// port 0 always (its replacement takes the root's name), another only
    /// when something reads it. A port read beyond them gets none, and the
    /// match is refused for it.
    pub(super) fn read_ports(&self, ports: usize) -> SmallVec<[bool; 8]> {
        let mut read: SmallVec<[bool; 8]> = smallvec::smallvec![false; ports];
        if let Some(first) = read.first_mut() {
            *first = true;
        }
        for c in self.graph.consumers(self.root) {
            if let Port::Data(p) = c.port {
                if let Some(r) = read.get_mut(p as usize) {
                    *r = true;
                }
            }
        }
        read
    }

    /// The root's device (new nodes run where the root did).
    pub(super) fn root_device(&mut self) -> String {
        let (graph, root) = (self.graph, self.root);
        self.device.get_or_insert_with(|| graph.device(root)).clone()
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

    /// How many bytes a new constant's body leaves free in front, where its
    /// name goes when the patch is built (a large constant is then not
    /// copied to be written whole): room for the root's name, or the
    /// root's, the rule's and `const` with a number when that is taken.
    fn const_room(&self) -> usize {
        self.graph.name(self.root).len() + self.rule.name.name.len() + 32
    }

    /// A new constant, its body encoded with `room` bytes free in front.
    fn push_const(&mut self, body: Bytes, room: usize) -> TRef {
        self.nodes.push(NewNode {
            name: Cow::Borrowed("const"),
            op: Cow::Borrowed("Const"),
            body: Body::Encoded(body),
            data: vec![],
            control: vec![],
            control_names: vec![],
            hash: 0,
            room,
        });
        TRef::New(self.nodes.len() as u32 - 1, 0)
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
    ) -> Result<AttrOut<'a>, String> {
        use attr_value::Value as V;
        let v = match &value.kind {
            ValueKind::AttrRef { var, attr } => {
                let node = self
                    .m
                    .node(&var.name)
                    .ok_or_else(|| format!("`{}` is not a node", var.name))?;
                let graph: &'a Work<'a> = self.graph;
                return match graph.attr_raw(node, &attr.name).map_err(|e| e.to_string())? {
                    Some(raw) => Ok(AttrOut::Raw(raw)),
                    None => {
                        Err(format!("`{}` has no attribute `{}`", self.graph.name(node), attr.name))
                    }
                };
            }
            ValueKind::Var(var) => match self.m.vars.get(&var.name) {
                Some(Bound::Attr(a)) => return Ok(AttrOut::Value(a.clone())),
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
                    let array = Array::scalar(number);
                    V::Tensor(crate::tensor::to_proto(&array, dtype)?)
                } else {
                    lit_attr(lit)?
                }
            }
            ValueKind::Call { .. } => {
                return Err("a function call is not an attribute value".into());
            }
        };
        Ok(AttrOut::Value(Box::new(AttrValue { value: Some(v) })))
    }
}

/// The values a rule's constant expressions read: the match's bindings,
/// its nodes' attributes, the rules' parameters.
struct Bindings<'a> {
    graph: &'a Work<'a>,
    m: &'a Match<'a>,
    params: &'a HashMap<String, Literal>,
}

impl Inputs for Bindings<'_> {
    fn var(&self, var: &str, out: &mut Array) -> Result<Option<DataType>, String> {
        match self.m.vars.get(var) {
            Some(Bound::Attr(a)) => match super::matcher::attr_value_of(a) {
                GValue::Num(n) => out.set_scalar(n),
                other => return Err(format!("`{var}` is {other:?}, not a number")),
            },
            Some(Bound::Tensor(Tensor { node, .. }) | Bound::Node(node)) => {
                return self.const_value(*node, out).map(Some);
            }
            None => match self.params.get(var).map(literal_value) {
                Some(GValue::Num(n)) => out.set_scalar(n),
                _ => return Err(format!("`{var}` is not a number")),
            },
        }
        Ok(None)
    }

    fn floats(&self, var: &str) -> Option<Floats<'_>> {
        let (Bound::Tensor(Tensor { node, .. }) | Bound::Node(node)) = self.m.vars.get(var)? else {
            return None;
        };
        let node = self.constant(*node).ok()?;
        crate::tensor::float_content(super::matcher::const_tensor_raw(self.graph, node)?)
    }

    fn attr(&self, var: &str, attr: &str) -> Result<f64, String> {
        let node = self.m.node(var).ok_or("not a node")?;
        match self
            .graph
            .attr(node, attr)
            .map_err(|e| e.to_string())?
            .map(|a| super::matcher::attr_value_of(&a))
        {
            Some(GValue::Num(n)) => Ok(n),
            other => Err(format!("`{var}.{attr}` is {other:?}, not a number")),
        }
    }
}

impl Bindings<'_> {
    /// The value of a Const, looking through Identity-like nodes.
    /// Into `out`, with its dtype.
    fn const_value(&self, node: NodeId, out: &mut Array) -> Result<DataType, String> {
        let node = self.constant(node)?;
        // Most constants are read from the wire; others decoded.
        if let Some(read) = super::matcher::const_tensor_raw(self.graph, node)
            .and_then(|raw| crate::tensor::from_raw_into(raw, out))
        {
            return read;
        }
        let Some(AttrValue { value: Some(attr_value::Value::Tensor(t)) }) =
            self.graph.attr(node, "value").map_err(|e| e.to_string())?
        else {
            return Err(format!("Const `{}` has no value", self.graph.name(node)));
        };
        *out = crate::tensor::from_proto(&t)?;
        Ok(DataType::try_from(t.dtype).unwrap_or(DataType::DtFloat))
    }

    /// The Const `node` is, or reads through Identity-like nodes.
    fn constant(&self, mut node: NodeId) -> Result<NodeId, String> {
        for _ in 0..16 {
            match self.graph.op(node) {
                "Const" => return Ok(node),
                "Identity" | "Snapshot" | "StopGradient" => {
                    node = self
                        .graph
                        .inputs(node)
                        .iter()
                        .find(|e| matches!(e.port(), Port::Data(_)))
                        .and_then(|e| e.src())
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

/// A body encoded after `room` free bytes, whole: under `name` (field 1),
/// written into that room when it fits and no one else holds the bytes,
/// copied after it otherwise.
fn named(body: Bytes, room: usize, name: &str) -> Bytes {
    let mut field = Vec::with_capacity(name.len() + 6);
    crate::wire::write_bytes_field(1, name.as_bytes(), &mut field);
    let body = match body.try_into_mut() {
        Ok(mut bytes) if field.len() <= room => {
            let start = room - field.len();
            bytes[start..room].copy_from_slice(&field);
            return bytes.freeze().slice(start..);
        }
        Ok(bytes) => bytes.freeze(),
        Err(bytes) => bytes,
    };
    field.extend_from_slice(&body[room..]);
    Bytes::from(field)
}

/// A Const node without name or inputs holding `array` as `dtype`, encoded
/// as prost encodes the `NodeDef` that `to_proto` would give (op, device,
/// then the `dtype` and `value` attributes), without building either, after
/// `room` bytes left free (zero).
fn encode_const(
    device: &str,
    array: &Array,
    dtype: DataType,
    room: usize,
) -> Result<Bytes, String> {
    encode_const_with(device, &array.shape, dtype, room, |out| {
        crate::tensor::write_content(&array.data, dtype, out)
    })
}

/// [`encode_const`] for a value of `shape`, its content written by
/// `content` (that many values of `dtype`).
fn encode_const_with(
    device: &str,
    shape: &[usize],
    dtype: DataType,
    room: usize,
    content: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
) -> Result<Bytes, String> {
    use crate::wire::{write_bytes_field, write_varint};
    use prost::Message;
    use prost::encoding::encoded_len_varint as varint_len;
    let count = crate::tensor::element_count(shape)?;
    let content_len = count * crate::tensor::stored_size(dtype)?;
    let code = dtype as i32 as u64;
    // TensorShapeProto: a `dim` (field 2) per dimension, each a Dim whose
    // `size` (field 1) is left out when 0.
    let dim_len = |d: usize| if d == 0 { 0 } else { 1 + varint_len(d as u64) };
    let shape_len: usize =
        shape.iter().map(|&d| 1 + varint_len(dim_len(d) as u64) + dim_len(d)).sum();
    // TensorProto: dtype (1), tensor_shape (2), tensor_content (4) unless empty.
    let content_field =
        if content_len == 0 { 0 } else { 1 + varint_len(content_len as u64) + content_len };
    let tensor_len =
        1 + varint_len(code) + 1 + varint_len(shape_len as u64) + shape_len + content_field;
    let dtype_attr = AttrValue { value: Some(attr_value::Value::Type(dtype as i32)) };
    // AttrValue { tensor }: field 8, then the tensor.
    let value_len = 1 + varint_len(tensor_len as u64) + tensor_len;
    let entries =
        attr_entry_len("dtype", dtype_attr.encoded_len()) + attr_entry_len("value", value_len);
    let device_len =
        if device.is_empty() { 0 } else { 1 + varint_len(device.len() as u64) + device.len() };
    // Exactly its length: a `Bytes` made of a full vector takes it as it is.
    let len = room + 2 + "Const".len() + device_len + entries;
    let mut out = Vec::with_capacity(len);
    out.resize(room, 0);
    write_bytes_field(2, b"Const", &mut out);
    if !device.is_empty() {
        write_bytes_field(4, device.as_bytes(), &mut out);
    }
    // attr (field 5): map entries, keys in order.
    attr_entry_header(&mut out, "dtype", dtype_attr.encoded_len());
    dtype_attr.encode_raw(&mut out);
    attr_entry_header(&mut out, "value", value_len);
    out.push(0x42); // AttrValue.tensor
    write_varint(tensor_len as u64, &mut out);
    out.push(0x08); // TensorProto.dtype
    write_varint(code, &mut out);
    out.push(0x12); // TensorProto.tensor_shape
    write_varint(shape_len as u64, &mut out);
    for &d in shape {
        out.push(0x12);
        write_varint(dim_len(d) as u64, &mut out);
        if d != 0 {
            out.push(0x08);
            write_varint(d as u64, &mut out);
        }
    }
    if content_len != 0 {
        out.push(0x22); // TensorProto.tensor_content
        write_varint(content_len as u64, &mut out);
        content(&mut out)?;
    }
    debug_assert_eq!(out.len(), len);
    Ok(Bytes::from(out))
}

/// An attribute of a new node: a value, or the encoded `AttrValue` of a
/// matched node's attribute, copied as it is (not decoded and encoded again).
#[derive(Clone, Debug)]
enum AttrOut<'a> {
    Value(Box<AttrValue>),
    Raw(&'a [u8]),
}

impl AttrOut<'_> {
    /// The length of its encoding (0: an empty value, left out).
    fn encoded_len(&self) -> usize {
        use prost::Message;
        match self {
            AttrOut::Value(v) => v.encoded_len(),
            AttrOut::Raw(raw) => raw.len(),
        }
    }
}

/// A node without name or inputs, encoded as prost encodes the `NodeDef`
/// with this op, device and attributes (a map: by key, the last value of a
/// repeated key; an empty value left out), without building one.
fn encode_node(op: &str, device: &str, mut attrs: Vec<(&str, AttrOut)>) -> Bytes {
    use crate::wire::write_bytes_field;
    use prost::Message;
    use prost::encoding::encoded_len_varint as varint_len;
    attrs.sort_by_key(|a| a.0); // stable: a repeated key's values in order
    let field_len = |s: &str| 1 + varint_len(s.len() as u64) + s.len();
    let last = |i: usize, key: &str| attrs.get(i + 1).is_none_or(|next| next.0 != key);
    // Exactly its length: a `Bytes` made of a full vector takes it as it is.
    let len = field_len(op)
        + if device.is_empty() { 0 } else { field_len(device) }
        + attrs
            .iter()
            .enumerate()
            .filter(|(i, (key, _))| last(*i, key))
            .map(|(_, (key, value))| attr_entry_len(key, value.encoded_len()))
            .sum::<usize>();
    let mut out = Vec::with_capacity(len);
    write_bytes_field(2, op.as_bytes(), &mut out);
    if !device.is_empty() {
        write_bytes_field(4, device.as_bytes(), &mut out);
    }
    for (i, (key, value)) in attrs.iter().enumerate() {
        if !last(i, key) {
            continue;
        }
        // An empty value writes nothing after its entry's header.
        attr_entry_header(&mut out, key, value.encoded_len());
        match value {
            AttrOut::Value(v) => v.encode_raw(&mut out),
            AttrOut::Raw(raw) => out.extend_from_slice(raw),
        }
    }
    debug_assert_eq!(out.len(), len);
    Bytes::from(out)
}

/// The length of an `attr` map entry's body: its key and value fields, each
/// left out when empty.
fn attr_entry_body_len(key: &str, value_len: usize) -> usize {
    use prost::encoding::encoded_len_varint as varint_len;
    let field = |len: usize| if len == 0 { 0 } else { 1 + varint_len(len as u64) + len };
    field(key.len()) + field(value_len)
}

/// The length of a whole `attr` map entry, with its own key and length.
fn attr_entry_len(key: &str, value_len: usize) -> usize {
    use prost::encoding::encoded_len_varint as varint_len;
    let body = attr_entry_body_len(key, value_len);
    1 + varint_len(body as u64) + body
}

/// Writes the start of one `attr` map entry of a NodeDef (field 5): the
/// entry's length, its key (left out when empty) and, unless `value_len` is
/// 0 (an empty value, left out), the header of its value, whose `value_len`
/// bytes the caller writes next.
fn attr_entry_header(out: &mut Vec<u8>, key: &str, value_len: usize) {
    use crate::wire::{write_bytes_field, write_varint};
    out.push(0x2a);
    write_varint(attr_entry_body_len(key, value_len) as u64, out);
    if !key.is_empty() {
        write_bytes_field(1, key.as_bytes(), out);
    }
    if value_len > 0 {
        out.push(0x12);
        write_varint(value_len as u64, out);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::NodeDef;
    use prost::Message;

    /// The Const nodes written by hand are the bytes prost writes for the
    /// tensor `to_proto` gives: scalars, empty tensors and zero-sized
    /// dimensions included.
    #[test]
    fn constants_are_encoded_as_prost_encodes_them() {
        use crate::tensor::Array;
        let arrays = [
            Array { shape: vec![2, 3], data: vec![0.5; 6] },
            Array::scalar(-2.0),
            Array { shape: vec![0, 3], data: vec![] },
            Array { shape: vec![200, 1], data: (0..200).map(f64::from).collect() },
        ];
        for array in &arrays {
            for (device, dtype) in [
                ("", DataType::DtFloat),
                ("/device:CPU:0", DataType::DtHalf),
                ("", DataType::DtInt32),
                ("", DataType::DtBool),
                ("", DataType::DtDouble),
            ] {
                let tensor = crate::tensor::to_proto(array, dtype).unwrap();
                let mut def =
                    NodeDef { op: "Const".into(), device: device.into(), ..Default::default() };
                def.attr.insert(
                    "dtype".into(),
                    AttrValue { value: Some(attr_value::Value::Type(tensor.dtype)) },
                );
                def.attr.insert(
                    "value".into(),
                    AttrValue { value: Some(attr_value::Value::Tensor(tensor.clone())) },
                );
                assert_eq!(
                    encode_const(device, array, dtype, 0).unwrap(),
                    def.encode_to_vec(),
                    "{:?} {device} {dtype:?}",
                    array.shape
                );
            }
        }
        assert!(encode_const("", &arrays[0], DataType::DtString, 0).is_err());
        // With room in front: zeros, then the same bytes.
        let roomy = encode_const("", &arrays[0], DataType::DtFloat, 40).unwrap();
        assert_eq!(&roomy[..40], &[0; 40]);
        assert_eq!(roomy[40..], encode_const("", &arrays[0], DataType::DtFloat, 0).unwrap());
    }

    /// A constant named into the room before its body, or (the room too
    /// small, or the bytes held elsewhere) copied after its name: the same
    /// bytes, a `NodeDef` under that name.
    #[test]
    fn constants_are_named_in_their_room_or_copied() {
        let array = Array { shape: vec![3], data: vec![1.0, 2.0, 3.0] };
        let bare = encode_const("", &array, DataType::DtFloat, 0).unwrap();
        let mut expected = Vec::new();
        crate::wire::write_bytes_field(1, b"a/rule/const", &mut expected);
        expected.extend_from_slice(&bare);
        for room in [0, 5, 13, 14, 40] {
            let body = encode_const("", &array, DataType::DtFloat, room).unwrap();
            let start = body.as_ptr() as usize;
            let whole = named(body, room, "a/rule/const");
            assert_eq!(whole, expected, "room {room}");
            // Written in place exactly when the field (14 bytes) fits.
            let in_place = whole.as_ptr() as usize == start + room.saturating_sub(14);
            assert_eq!(in_place, room >= 14, "room {room}");
            let def = NodeDef::decode(whole).unwrap();
            assert_eq!((def.name.as_str(), def.op.as_str()), ("a/rule/const", "Const"));
        }
        // Held elsewhere too: copied, the other holder's bytes untouched.
        let body = encode_const("", &array, DataType::DtFloat, 40).unwrap();
        let other = body.clone();
        assert_eq!(named(body, 40, "a/rule/const"), expected);
        assert_eq!(&other[..40], &[0; 40]);
    }

    /// New nodes written by hand are the bytes prost writes for the same
    /// `NodeDef`: attributes by key, a repeated key's last value, an empty
    /// value, with and without a device.
    #[test]
    fn new_nodes_are_encoded_as_prost_encodes_them() {
        use attr_value::Value as V;
        let t = |v: V| AttrValue { value: Some(v) };
        let attrs = [
            ("T", t(V::Type(DataType::DtFloat as i32))),
            ("data_format", t(V::S(Bytes::from_static(b"NHWC")))),
            ("alpha", t(V::F(0.5))),
            ("T", t(V::Type(DataType::DtHalf as i32))),
            ("empty", AttrValue::default()),
            (
                "strides",
                t(V::List(attr_value::ListValue { i: vec![1, 2, 2, 1], ..Default::default() })),
            ),
        ];
        for device in ["", "/device:CPU:0"] {
            for n in 0..=attrs.len() {
                let mut def =
                    NodeDef { op: "BiasAdd".into(), device: device.into(), ..Default::default() };
                for (k, v) in &attrs[..n] {
                    def.attr.insert(k.to_string(), v.clone());
                }
                let values =
                    attrs[..n].iter().map(|(k, v)| (*k, AttrOut::Value(Box::new(v.clone()))));
                assert_eq!(
                    encode_node("BiasAdd", device, values.collect()),
                    def.encode_to_vec(),
                    "{device} {n}"
                );
                // The same values copied encoded, as a matched node's are.
                let encoded: Vec<Vec<u8>> =
                    attrs[..n].iter().map(|(_, v)| v.encode_to_vec()).collect();
                let raw = attrs[..n].iter().zip(&encoded).map(|((k, _), e)| (*k, AttrOut::Raw(e)));
                assert_eq!(
                    encode_node("BiasAdd", device, raw.collect()),
                    def.encode_to_vec(),
                    "{device} {n} raw"
                );
            }
        }
    }
}
