//! `inline(r.else_branch)`: the body of a function of the graph's library
//! in place of the node that calls it (an `If` whose predicate is known).
//!
//! The function's arguments are the root's last data inputs, as many as it
//! takes (an If's come after its predicate). Of its body, the nodes the
//! root's read outputs need are added, named under the root like any new
//! node; the node giving output 0 takes the root's name. A body node reads
//! an argument as the tensor the root read, another body node's output
//! `node:name:index` as that node's port, which the op table (or, for a
//! call, the called function's signature) gives. A body node reading
//! nothing of the body waits on the root's control inputs. Colocation
//! (`_class`), which names nodes of the function, is dropped.
//!
//! What is not inlined, with the reason (the rule is then not applied
//! there): a function that is not in the library, or is generic (attribute
//! placeholders, list arguments), or has side effects it declares
//! (`control_ret`), or control edges inside its body; an output of an op
//! the table does not name.

use std::borrow::Cow;

use prost::Message;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use super::matcher::Tensor;
use super::replace::{Builder, NewNode, TRef};
use super::work::Body;
use crate::graph::Port;
use crate::proto::{AttrValue, FunctionDef, attr_value};

impl Builder<'_> {
    /// The ports of the root, replaced by the outputs of the function its
    /// attribute `attr` names; the function's nodes are added to the patch.
    pub(super) fn inline(&mut self, attr: &str) -> Result<SmallVec<[Option<TRef>; 2]>, String> {
        let (graph, root) = (self.graph, self.root);
        let name = match graph.attr(root, attr).map_err(|e| e.to_string())? {
            Some(AttrValue { value: Some(attr_value::Value::Func(f)) }) if f.attr.is_empty() => {
                f.name
            }
            Some(AttrValue { value: Some(attr_value::Value::Func(f)) }) => {
                return Err(format!("`{}` is instantiated with attributes", f.name));
            }
            Some(_) => return Err(format!("`{attr}` does not name a function")),
            None => return Err(format!("it has no attribute `{attr}`")),
        };
        let function = graph
            .function(&name)?
            .ok_or_else(|| format!("the graph's library has no function `{name}`"))?;
        let signature = function.signature.as_ref().ok_or("a function without signature")?;
        let generic = signature
            .input_arg
            .iter()
            .chain(&signature.output_arg)
            .any(|a| !a.number_attr.is_empty() || !a.type_list_attr.is_empty());
        if generic || !signature.attr.is_empty() {
            return Err(format!("`{name}` is generic (attributes or list arguments)"));
        }
        if !function.control_ret.is_empty() {
            return Err(format!("`{name}` has side effects (control outputs)"));
        }
        // Its arguments: the root's last data inputs.
        let data: Vec<Tensor> = graph
            .inputs(root)
            .iter()
            .filter_map(|e| match (e.src(), e.port()) {
                (Some(node), Port::Data(port)) => Some(Tensor { node, port }),
                _ => None,
            })
            .collect();
        let takes = signature.input_arg.len();
        if data.len() < takes || data.len() > takes + 1 {
            return Err(format!(
                "`{name}` takes {takes} arguments, the node has {} data inputs",
                data.len()
            ));
        }
        let args: FxHashMap<&str, Tensor> = signature
            .input_arg
            .iter()
            .map(|a| a.name.as_str())
            .zip(data[data.len() - takes..].iter().copied())
            .collect();
        let control: Vec<_> = graph.control_inputs(root).collect();
        // Output 0, and every other output something reads.
        let read = self.read_ports(signature.output_arg.len());
        let first = self.nodes.len();
        let mut body = Inlining::new(function, &args);
        let mut ports = SmallVec::with_capacity(read.len());
        for (arg, read) in signature.output_arg.iter().zip(read) {
            if !read {
                ports.push(None);
                continue;
            }
            let tensor = function.ret.get(&arg.name).ok_or_else(|| {
                format!("`{name}` does not say what its output `{}` is", arg.name)
            })?;
            ports.push(Some(body.tensor(self, tensor)?));
        }
        // What waits on the root waits on the nodes that read nothing of
        // the body.
        for i in first..self.nodes.len() {
            if !self.nodes[i].data.iter().any(|t| matches!(t, TRef::New(..))) {
                self.nodes[i].control.extend_from_slice(&control);
            }
        }
        Ok(ports)
    }
}

/// A function's body being inlined: its nodes by name, and which of them
/// are added already (their place in the patch).
struct Inlining<'f> {
    function: &'f FunctionDef,
    args: &'f FxHashMap<&'f str, Tensor>,
    by_name: FxHashMap<&'f str, usize>,
    /// Each body node's place among the patch's new nodes, once added;
    /// `usize::MAX` while its inputs are being added (a cycle).
    added: FxHashMap<usize, usize>,
}

impl<'f> Inlining<'f> {
    fn new(function: &'f FunctionDef, args: &'f FxHashMap<&'f str, Tensor>) -> Inlining<'f> {
        let by_name =
            function.node_def.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
        Inlining { function, args, by_name, added: FxHashMap::default() }
    }

    /// The function's name.
    fn name(&self) -> &'f str {
        self.function.signature.as_ref().map_or("", |s| s.name.as_str())
    }

    /// The tensor a body names: an argument, or `node:output:index`.
    fn tensor(&mut self, b: &mut Builder, text: &str) -> Result<TRef, String> {
        if let Some(&t) = self.args.get(text) {
            return Ok(TRef::Old(t));
        }
        let Some((node, output, index)) = crate::input::parse_body_output(text) else {
            let f = self.name();
            return Err(format!("`{text}` names no argument or node output of `{f}`"));
        };
        let &i = self
            .by_name
            .get(node)
            .ok_or_else(|| format!("`{text}` names no node of `{}`", self.name()))?;
        let at = self.node(b, i)?;
        let op = &self.function.node_def[i].op;
        let port = match b.graph.function(op)? {
            Some(called) => called
                .signature
                .as_ref()
                .and_then(|s| s.output_arg.iter().position(|a| a.name == output))
                .filter(|_| index == 0)
                .map(|p| p as u32),
            None => crate::ops::output_port(op, output, index),
        };
        let port = port.ok_or_else(|| {
            format!(
                "{op} has no output `{output}:{index}` the op table knows (in `{}`)",
                self.name()
            )
        })?;
        Ok(TRef::New(at as u32, port))
    }

    /// Adds body node `i` after the nodes it reads; its place in the patch.
    fn node(&mut self, b: &mut Builder, i: usize) -> Result<usize, String> {
        match self.added.get(&i) {
            Some(&usize::MAX) => return Err(format!("the body of `{}` has a cycle", self.name())),
            Some(&at) => return Ok(at),
            None => {}
        }
        self.added.insert(i, usize::MAX);
        let def = &self.function.node_def[i];
        let mut data = Vec::with_capacity(def.input.len());
        for input in &def.input {
            if input.starts_with('^') {
                return Err(format!("`{}` of `{}` has control inputs", def.name, self.name()));
            }
            data.push(self.tensor(b, input)?);
        }
        let placeholder =
            def.attr.values().any(|a| matches!(a.value, Some(attr_value::Value::Placeholder(_))));
        if placeholder {
            let f = self.name();
            return Err(format!("`{}` of `{f}` has attribute placeholders", def.name));
        }
        let mut encoded = def.clone();
        encoded.name.clear();
        encoded.input.clear();
        // Colocation with nodes of the function, whose names the graph
        // does not have (a hint to the placer, which the engine drops when
        // it names no node anyway).
        encoded.attr.remove("_class");
        if encoded.device.is_empty() {
            encoded.device = b.root_device();
        }
        b.nodes.push(NewNode {
            name: Cow::Owned(def.name.clone()),
            op: Cow::Owned(def.op.clone()),
            body: Body::Encoded(encoded.encode_to_vec().into()),
            data,
            control: vec![],
            control_names: vec![],
            hash: 0,
            room: 0,
        });
        let at = b.nodes.len() - 1;
        self.added.insert(i, at);
        Ok(at)
    }
}
