//! The reference evaluator: runs a GraphDef on the CPU with TensorFlow's
//! executor semantics (Switch/Merge with dead tensors, control edges), so
//! that graphrw can check a rewrite kept a model's outputs without
//! TensorFlow.

pub mod kernels;
pub mod value;
pub mod verify;

use std::collections::HashMap;
use std::sync::Arc;

use kernels::{Bin, Padding, binary, floats, unary};
pub use value::{Data, Tensor};

use crate::graph::{Graph, NodeId, Port};
use crate::input::parse_tensor_name;
use crate::proto::{AttrValue, DataType, attr_value};

/// Why a graph could not be run.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum EvalError {
    /// A Placeholder without a feed.
    #[error("placeholder `{0}` needs a feed (--feed {0}=FILE.npy)")]
    MissingFeed(String),
    /// A requested output or feed names no node.
    #[error("`{0}` names no node of the graph")]
    Unknown(String),
    /// An op the evaluator does not implement.
    #[error("node `{node}`: op {op} is not supported by graphrw's evaluator")]
    Unsupported {
        /// The node.
        node: String,
        /// Its op.
        op: String,
    },
    /// A kernel failed (bad shapes, types, attributes).
    #[error("node `{node}` ({op}): {reason}")]
    Kernel {
        /// The node.
        node: String,
        /// Its op.
        op: String,
        /// What went wrong.
        reason: String,
    },
    /// The graph has a cycle (loops are not supported).
    #[error("the graph has a cycle; while loops are not supported by the evaluator")]
    Cycle,
}

/// A computed value: a tensor, or dead (a branch that did not run).
pub type Value = Option<Arc<Tensor>>;

/// Runs the graph: `feeds` by tensor name (`x` or `x:0`); returns each
/// output (`node` or `node:N`), `None` when it is dead.
pub fn run(
    graph: &Graph,
    feeds: &HashMap<String, Tensor>,
    outputs: &[String],
) -> Result<Vec<(String, Value)>, EvalError> {
    let mut fed: HashMap<NodeId, Arc<Tensor>> = HashMap::new();
    for (name, tensor) in feeds {
        let node = parse_tensor_name(name).map_or(name.as_str(), |(n, _)| n);
        let id = graph.id(node).ok_or_else(|| EvalError::Unknown(name.clone()))?;
        fed.insert(id, Arc::new(tensor.clone()));
    }
    let mut targets = Vec::new();
    for output in outputs {
        let (node, port) =
            parse_tensor_name(output).map_err(|_| EvalError::Unknown(output.clone()))?;
        let id = graph.id(node).ok_or_else(|| EvalError::Unknown(output.clone()))?;
        targets.push((output.clone(), id, port));
    }
    let roots: Vec<NodeId> = targets.iter().map(|t| t.1).collect();
    let needed = crate::prune::reachable(graph, &roots);
    let (order, complete) = crate::validate::topological_order(graph);
    if !complete {
        return Err(EvalError::Cycle);
    }
    let mut values: HashMap<NodeId, Vec<Value>> = HashMap::new();
    for id in order {
        if !needed[id as usize] {
            continue;
        }
        let outs = if let Some(t) = fed.get(&id) {
            vec![Some(t.clone())]
        } else {
            evaluate(graph, id, &values)?
        };
        values.insert(id, outs);
    }
    Ok(targets
        .into_iter()
        .map(|(name, id, port)| {
            let value = values.get(&id).and_then(|v| v.get(port as usize).cloned()).flatten();
            (name, value)
        })
        .collect())
}

fn evaluate(
    graph: &Graph,
    id: NodeId,
    values: &HashMap<NodeId, Vec<Value>>,
) -> Result<Vec<Value>, EvalError> {
    let op = graph.op(id);
    if op == "Placeholder" {
        return Err(EvalError::MissingFeed(graph.name(id).to_string()));
    }
    let mut inputs: Vec<Value> = Vec::new();
    let mut control_dead = false;
    for edge in graph.inputs(id) {
        let src = edge.src().ok_or_else(|| EvalError::Kernel {
            node: graph.name(id).into(),
            op: op.into(),
            reason: "an input names no node".into(),
        })?;
        let outs = values.get(&src).ok_or(EvalError::Cycle)?;
        match edge.port() {
            Port::Data(p) => inputs.push(outs.get(p as usize).cloned().flatten()),
            Port::Control => control_dead |= outs.iter().all(Option::is_none) && !outs.is_empty(),
        }
    }
    let n_out = crate::ops::num_outputs(graph, id).unwrap_or(1).max(1) as usize;
    if op == "Merge" {
        if control_dead {
            return Ok(vec![None; 2]);
        }
        return Ok(match inputs.iter().position(Option::is_some) {
            Some(i) => vec![
                inputs[i].clone(),
                Some(Arc::new(Tensor { shape: vec![], data: Data::I32(vec![i as i32]) })),
            ],
            None => vec![None, None],
        });
    }
    if control_dead || inputs.iter().any(Option::is_none) {
        return Ok(vec![None; n_out]);
    }
    let inputs: Vec<Arc<Tensor>> = inputs.into_iter().map(|v| v.expect("checked live")).collect();
    let err =
        |reason: String| EvalError::Kernel { node: graph.name(id).into(), op: op.into(), reason };
    let attr = |key: &str| graph.attr(id, key).ok().flatten().and_then(|a| a.value);
    if matches!(op, "If" | "StatelessIf") {
        let branch = if truthy(&inputs[0]) { "then_branch" } else { "else_branch" };
        let Some(attr_value::Value::Func(func)) = attr(branch) else {
            return Err(err(format!("no {branch} function")));
        };
        let args: Vec<Tensor> = inputs[1..].iter().map(|t| (**t).clone()).collect();
        // The outputs something reads (all of them when nothing does: the
        // If is what is asked for); a Keras cond also returns optional
        // values for its gradient, which no frozen graph reads.
        let read: Vec<u32> = graph
            .consumers(id)
            .iter()
            .filter_map(|c| match c.port {
                Port::Data(p) => Some(p),
                Port::Control => None,
            })
            .chain([0])
            .collect();
        let wanted = |port: usize| read.len() == 1 || read.contains(&(port as u32));
        let outs =
            call_function(graph, &func.name, &args, wanted).map_err(|e| err(e.to_string()))?;
        return Ok(outs.into_iter().map(|t| t.map(Arc::new)).collect());
    }
    if op == "Switch" {
        let pred = inputs
            .get(1)
            .ok_or_else(|| err("Switch needs 2 inputs".into()))?
            .scalar_bool()
            .map_err(err)?;
        let data = Some(inputs[0].clone());
        return Ok(if pred { vec![None, data] } else { vec![data, None] });
    }
    let outputs = kernel(op, &inputs, &attr).map_err(|reason| match reason {
        KernelError::Unsupported => {
            EvalError::Unsupported { node: graph.name(id).into(), op: op.into() }
        }
        KernelError::Failed(reason) => err(reason),
    })?;
    Ok(outputs.into_iter().map(|t| Some(Arc::new(t))).collect())
}

/// TensorFlow's truth of an If condition: a non-zero (or non-empty) scalar.
fn truthy(t: &Tensor) -> bool {
    match &t.data {
        Data::Bool(v) if v.len() == 1 => v[0],
        _ if t.len() == 1 => t.to_f64()[0] != 0.0,
        _ => !t.is_empty(),
    }
}

/// Output port of output argument `arg` (element `index`) of `op`, for the
/// `node:arg:index` inputs of function bodies: the op table's, or for an op
/// it does not know, `index` (an op with one output argument).
fn output_port(op: &str, arg: &str, index: u32) -> u32 {
    crate::ops::output_port(op, arg, index).unwrap_or(index)
}

/// Runs function `name` of the graph's library on `args`; its outputs in
/// signature order (`None` when dead, or not `wanted`: not computed).
fn call_function(
    graph: &Graph,
    name: &str,
    args: &[Tensor],
    wanted: impl Fn(usize) -> bool,
) -> Result<Vec<Option<Tensor>>, EvalError> {
    use crate::proto::{GraphDef, NodeDef};
    let header =
        graph.header().map_err(|e| EvalError::Unknown(format!("function library: {e}")))?;
    let library = header.library.unwrap_or_default();
    let func =
        library.function.iter().find(|f| f.signature.as_ref().is_some_and(|s| s.name == name));
    let func = func.ok_or_else(|| EvalError::Unknown(format!("function {name}")))?;
    let signature = func.signature.clone().unwrap_or_default();
    let ops: HashMap<&str, &str> =
        func.node_def.iter().map(|n| (n.name.as_str(), n.op.as_str())).collect();
    // Body inputs are `arg`, `node:out_arg:i` or `^node`; graph inputs `node:port`.
    let convert = |input: &str| -> String {
        match crate::input::parse_body_output(input) {
            Some((node, arg, index)) => {
                let port = output_port(ops.get(node).copied().unwrap_or(""), arg, index);
                crate::input::InputRef::Data { node, port }.to_string()
            }
            None => input.to_string(),
        }
    };
    let mut nodes: Vec<NodeDef> = signature
        .input_arg
        .iter()
        .map(|a| NodeDef { name: a.name.clone(), op: "Placeholder".into(), ..Default::default() })
        .collect();
    for node in &func.node_def {
        let mut node = node.clone();
        node.input = node.input.iter().map(|i| convert(i)).collect();
        nodes.push(node);
    }
    let body = Graph::from_def(&GraphDef {
        node: nodes,
        library: Some(library.clone()),
        ..Default::default()
    });
    let feeds: HashMap<String, Tensor> =
        signature.input_arg.iter().zip(args).map(|(a, t)| (a.name.clone(), t.clone())).collect();
    let outputs: Vec<String> = signature
        .output_arg
        .iter()
        .enumerate()
        .filter(|&(i, _)| wanted(i))
        .map(|(_, a)| func.ret.get(&a.name).map_or_else(|| a.name.clone(), |r| convert(r)))
        .collect();
    let mut results = run(&body, &feeds, &outputs)?.into_iter();
    // What is not wanted is not computed: None, as nothing reads it.
    Ok((0..signature.output_arg.len())
        .map(|i| match wanted(i) {
            true => results.next().and_then(|(_, v)| v.map(|t| (*t).clone())),
            false => None,
        })
        .collect())
}

enum KernelError {
    Unsupported,
    Failed(String),
}

impl From<String> for KernelError {
    fn from(s: String) -> Self {
        KernelError::Failed(s)
    }
}

fn ints(v: Option<attr_value::Value>) -> Vec<i64> {
    match v {
        Some(attr_value::Value::List(l)) => l.i,
        _ => vec![],
    }
}

fn text(v: Option<attr_value::Value>) -> String {
    match v {
        Some(attr_value::Value::S(s)) => String::from_utf8_lossy(&s).into_owned(),
        _ => String::new(),
    }
}

fn padding(
    attr: &dyn Fn(&str) -> Option<attr_value::Value>,
    nchw: bool,
) -> Result<Padding, String> {
    Ok(match text(attr("padding")).as_str() {
        "SAME" => Padding::Same,
        "VALID" => Padding::Valid,
        "EXPLICIT" => {
            let p = ints(attr("explicit_paddings"));
            if p.len() != 8 {
                return Err("EXPLICIT padding needs 8 explicit_paddings".into());
            }
            let (h, w) = if nchw { (4, 6) } else { (2, 4) };
            let at = |i: usize| {
                usize::try_from(p[i]).map_err(|_| format!("negative explicit padding {}", p[i]))
            };
            Padding::Explicit([(at(h)?, at(h + 1)?), (at(w)?, at(w + 1)?)])
        }
        other => return Err(format!("padding `{other}` is not supported")),
    })
}

/// The spatial pair of a 4-long list attribute `name` (strides, dilations,
/// ksize), each at least 1; `[1, 1]` when the attribute is not 4 long.
fn spatial(list: &[i64], nchw: bool, name: &str) -> Result<[usize; 2], String> {
    if list.len() != 4 {
        return Ok([1, 1]);
    }
    let pair = if nchw { [list[2], list[3]] } else { [list[1], list[2]] };
    match pair.map(|v| usize::try_from(v).ok().filter(|&v| v >= 1)) {
        [Some(a), Some(b)] => Ok([a, b]),
        _ => Err(format!("{name} {list:?}: each must be at least 1")),
    }
}

type Attr<'a> = dyn Fn(&str) -> Option<attr_value::Value> + 'a;

#[allow(clippy::too_many_lines)]
fn kernel(op: &str, x: &[Arc<Tensor>], attr: &Attr) -> Result<Vec<Tensor>, KernelError> {
    let arg = |i: usize| -> Result<&Tensor, String> {
        x.get(i).map(|t| &**t).ok_or_else(|| format!("missing input {i}"))
    };
    let one = |t: Tensor| Ok(vec![t]);
    let nchw = text(attr("data_format")) == "NCHW";
    match op {
        "Identity" | "StopGradient" | "Snapshot" | "PreventGradient" | "CheckNumerics" => {
            one(arg(0)?.clone())
        }
        "IdentityN" => Ok(x.iter().map(|t| (**t).clone()).collect()),
        "NoOp" => Ok(vec![]),
        "Const" => match attr("value") {
            Some(attr_value::Value::Tensor(t)) => one(Tensor::from_proto(&t)?),
            _ => Err("a Const without a value".to_string().into()),
        },
        "PlaceholderWithDefault" => one(arg(0)?.clone()),
        "Add" | "AddV2" => one(binary(Bin::Add, arg(0)?, arg(1)?)?),
        "Sub" => one(binary(Bin::Sub, arg(0)?, arg(1)?)?),
        "Mul" => one(binary(Bin::Mul, arg(0)?, arg(1)?)?),
        "RealDiv" | "Div" => one(binary(Bin::Div, arg(0)?, arg(1)?)?),
        "Maximum" => one(binary(Bin::Max, arg(0)?, arg(1)?)?),
        "Minimum" => one(binary(Bin::Min, arg(0)?, arg(1)?)?),
        "SquaredDifference" => one(binary(Bin::SqDiff, arg(0)?, arg(1)?)?),
        "Greater" => one(binary(Bin::Greater, arg(0)?, arg(1)?)?),
        "GreaterEqual" => one(binary(Bin::GreaterEqual, arg(0)?, arg(1)?)?),
        "Less" => one(binary(Bin::Less, arg(0)?, arg(1)?)?),
        "LessEqual" => one(binary(Bin::LessEqual, arg(0)?, arg(1)?)?),
        "Equal" => one(binary(Bin::Equal, arg(0)?, arg(1)?)?),
        "Rsqrt" => one(unary(arg(0)?, |v| 1.0 / v.sqrt())?),
        "Sqrt" => one(unary(arg(0)?, f64::sqrt)?),
        "Relu" => one(unary(arg(0)?, |v| v.max(0.0))?),
        "Relu6" => one(unary(arg(0)?, |v| v.clamp(0.0, 6.0))?),
        "Sigmoid" => one(unary(arg(0)?, |v| 1.0 / (1.0 + (-v).exp()))?),
        "Tanh" => one(unary(arg(0)?, f64::tanh)?),
        "Floor" => one(unary(arg(0)?, f64::floor)?),
        "Neg" => one(unary(arg(0)?, |v| -v)?),
        "Abs" => one(unary(arg(0)?, f64::abs)?),
        "Exp" => one(unary(arg(0)?, f64::exp)?),
        "Square" => one(unary(arg(0)?, |v| v * v)?),
        "Softmax" => {
            let t = arg(0)?;
            let v = floats(t)?;
            let last = *t.shape.last().ok_or_else(|| "Softmax of a scalar".to_string())?;
            let mut out = Vec::with_capacity(v.len());
            for row in v.chunks(last.max(1)) {
                let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f64> = row.iter().map(|&z| f64::from(z - m).exp()).collect();
                let s: f64 = e.iter().sum();
                out.extend(e.iter().map(|&z| (z / s) as f32));
            }
            one(Tensor::f32(t.shape.clone(), out))
        }
        "BiasAdd" | "BiasAddV1" => {
            let (t, b) = (arg(0)?, arg(1)?);
            let (v, bv) = (floats(t)?, floats(b)?);
            let mut out = v.to_vec();
            if nchw && t.shape.len() >= 3 {
                let c = t.shape[1];
                if bv.len() != c {
                    return Err(
                        format!("bias of {} for shape {:?} (NCHW)", bv.len(), t.shape).into()
                    );
                }
                let inner: usize = t.shape[2..].iter().product();
                for (i, o) in out.iter_mut().enumerate() {
                    *o += bv[(i / inner) % c];
                }
            } else {
                let c = bv.len();
                if t.shape.last() != Some(&c) {
                    return Err(format!("bias of {c} for shape {:?}", t.shape).into());
                }
                for (i, o) in out.iter_mut().enumerate() {
                    *o += bv[i % c];
                }
            }
            one(Tensor::f32(t.shape.clone(), out))
        }
        "MatMul" => {
            let b = |k| matches!(attr(k), Some(attr_value::Value::B(true)));
            one(kernels::matmul(arg(0)?, arg(1)?, b("transpose_a"), b("transpose_b"))?)
        }
        "Conv2D" | "DepthwiseConv2dNative" => {
            let strides = spatial(&ints(attr("strides")), nchw, "strides")?;
            let dilations = spatial(&ints(attr("dilations")), nchw, "dilations")?;
            let pad = padding(attr, nchw)?;
            let filter = arg(1)?;
            one(in_nhwc(arg(0)?, nchw, |input| {
                if op == "Conv2D" {
                    kernels::conv2d(input, filter, strides, dilations, &pad)
                } else {
                    kernels::depthwise(input, filter, strides, dilations, &pad)
                }
            })?)
        }
        "MaxPool" | "AvgPool" => {
            let ksize = spatial(&ints(attr("ksize")), nchw, "ksize")?;
            let strides = spatial(&ints(attr("strides")), nchw, "strides")?;
            let pad = padding(attr, nchw)?;
            one(in_nhwc(arg(0)?, nchw, |input| {
                kernels::pool(input, ksize, strides, &pad, op == "MaxPool")
            })?)
        }
        "FusedBatchNorm" | "FusedBatchNormV2" | "FusedBatchNormV3" => {
            if matches!(attr("is_training"), Some(attr_value::Value::B(true))) {
                return Err("training-mode batch norm is not supported (is_training: true)"
                    .to_string()
                    .into());
            }
            let eps = match attr("epsilon") {
                Some(attr_value::Value::F(e)) => f64::from(e),
                _ => 1e-4,
            };
            let t = arg(0)?;
            let v = floats(t)?;
            let (scale, offset, mean, var) =
                (arg(1)?.to_f64(), arg(2)?.to_f64(), arg(3)?.to_f64(), arg(4)?.to_f64());
            let c = scale.len();
            let channels = if nchw { t.shape.get(1) } else { t.shape.last() };
            if channels != Some(&c) || [&offset, &mean, &var].iter().any(|s| s.len() != c) {
                return Err(format!(
                    "batch norm of shape {:?} with statistics of {}, {}, {} and {}",
                    t.shape,
                    c,
                    offset.len(),
                    mean.len(),
                    var.len()
                )
                .into());
            }
            let inner: usize = if nchw { t.shape[2..].iter().product() } else { 1 };
            let mul: Vec<f64> = (0..c).map(|i| scale[i] / (var[i] + eps).sqrt()).collect();
            let out: Vec<f32> = v
                .iter()
                .enumerate()
                .map(|(i, &z)| {
                    let ch = if nchw { (i / inner) % c } else { i % c };
                    ((f64::from(z) - mean[ch]) * mul[ch] + offset[ch]) as f32
                })
                .collect();
            let stat = |s: &Tensor| s.clone();
            let mut outs = vec![
                Tensor::f32(t.shape.clone(), out),
                stat(arg(3)?),
                stat(arg(4)?),
                stat(arg(3)?),
                stat(arg(4)?),
            ];
            if op == "FusedBatchNormV3" {
                outs.push(Tensor::f32(vec![0], vec![]));
            }
            Ok(outs)
        }
        "Mean" | "Sum" => {
            let axes = arg(1)?.to_i64()?;
            let keep = matches!(attr("keep_dims"), Some(attr_value::Value::B(true)));
            one(kernels::reduce(arg(0)?, &axes, keep, op == "Mean")?)
        }
        "Shape" => {
            let dims: Vec<i64> = arg(0)?.shape.iter().map(|&d| d as i64).collect();
            let int64 = matches!(attr("out_type"), Some(attr_value::Value::Type(t)) if t == DataType::DtInt64 as i32);
            one(if int64 {
                Tensor { shape: vec![dims.len()], data: Data::I64(dims) }
            } else {
                Tensor::i32_vec(dims.iter().map(|&d| d as i32).collect())
            })
        }
        "Reshape" => {
            let t = arg(0)?;
            let dims = arg(1)?.to_i64()?;
            let Some(inferred) = crate::tensor::reshape_inferred(t.len(), &dims) else {
                return Err(format!("cannot reshape {:?} to {dims:?}", t.shape).into());
            };
            let shape = dims.iter().map(|&d| if d == -1 { inferred } else { d as usize }).collect();
            one(Tensor { shape, data: t.data.clone() })
        }
        "Squeeze" => {
            let t = arg(0)?;
            let dims = ints(attr("squeeze_dims"));
            let rank = t.shape.len() as i64;
            let drop: Vec<usize> =
                dims.iter().map(|&d| (if d < 0 { d + rank } else { d }) as usize).collect();
            let shape = t
                .shape
                .iter()
                .enumerate()
                .filter(|(i, d)| !(**d == 1 && (drop.is_empty() || drop.contains(i))))
                .map(|(_, d)| *d)
                .collect();
            one(Tensor { shape, data: t.data.clone() })
        }
        "ExpandDims" => {
            let t = arg(0)?;
            let d = arg(1)?.to_i64()?.first().copied().unwrap_or(0);
            let rank = t.shape.len() as i64 + 1;
            let at = (if d < 0 { d + rank } else { d }) as usize;
            let mut shape = t.shape.clone();
            shape.insert(at.min(shape.len()), 1);
            one(Tensor { shape, data: t.data.clone() })
        }
        "Cast" => {
            let t = arg(0)?;
            let v = t.to_f64();
            let data = match attr("DstT") {
                Some(attr_value::Value::Type(d)) if d == DataType::DtFloat as i32 => {
                    Data::F32(v.iter().map(|&z| z as f32).collect())
                }
                Some(attr_value::Value::Type(d)) if d == DataType::DtDouble as i32 => Data::F64(v),
                Some(attr_value::Value::Type(d)) if d == DataType::DtInt32 as i32 => {
                    Data::I32(v.iter().map(|&z| z as i32).collect())
                }
                Some(attr_value::Value::Type(d)) if d == DataType::DtInt64 as i32 => {
                    Data::I64(v.iter().map(|&z| z as i64).collect())
                }
                Some(attr_value::Value::Type(d)) if d == DataType::DtBool as i32 => {
                    Data::Bool(v.iter().map(|&z| z != 0.0).collect())
                }
                _ => return Err("Cast to this type is not supported".to_string().into()),
            };
            one(Tensor { shape: t.shape.clone(), data })
        }
        "Select" | "SelectV2" => {
            let (c, a, b) = (arg(0)?, arg(1)?, arg(2)?);
            // Select with a vector condition picks whole rows of a and b.
            let row_cond;
            let c = if op == "Select" && c.shape.len() == 1 && a.shape.len() > 1 {
                let mut shape = c.shape.clone();
                shape.extend(std::iter::repeat_n(1, a.shape.len() - 1));
                row_cond = Tensor { shape, data: c.data.clone() };
                &row_cond
            } else {
                c
            };
            let Data::Bool(cv) = &c.data else {
                return Err("Select needs a bool condition".to_string().into());
            };
            let shape =
                kernels::broadcast_shape(&kernels::broadcast_shape(&c.shape, &a.shape)?, &b.shape)?;
            let (av, bv) = (a.to_f64(), b.to_f64());
            let total: usize = shape.iter().product();
            let values: Vec<f64> = (0..total)
                .map(|i| match cv[index_for(i, &shape, &c.shape)] {
                    true => av[index_for(i, &shape, &a.shape)],
                    false => bv[index_for(i, &shape, &b.shape)],
                })
                .collect();
            one(like(a, shape, values))
        }
        "ConcatV2" | "Concat" => {
            let split = if op == "ConcatV2" { x.split_last() } else { x.split_first() };
            let Some((axis_input, parts)) = split else {
                return Err("nothing to concatenate".to_string().into());
            };
            let parts: Vec<&Tensor> = parts.iter().map(|t| &**t).collect();
            let first = parts.first().ok_or_else(|| "nothing to concatenate".to_string())?;
            let rank = first.shape.len() as i64;
            let axis = axis_input.to_i64()?.first().copied().unwrap_or(0);
            let axis = (if axis < 0 { axis + rank } else { axis }) as usize;
            if axis >= first.shape.len() {
                return Err(format!("axis {axis} out of range for rank {rank}").into());
            }
            let outer: usize = first.shape[..axis].iter().product();
            let mut shape = first.shape.clone();
            shape[axis] = parts.iter().map(|p| p.shape.get(axis).copied().unwrap_or(0)).sum();
            let values: Vec<Vec<f64>> = parts.iter().map(|p| p.to_f64()).collect();
            let mut out = Vec::with_capacity(shape.iter().product());
            // Every part has the first's shape but along the axis.
            let others = |s: &[usize]| (s[..axis].to_vec(), s[axis + 1..].to_vec());
            if let Some(p) = parts.iter().find(|p| {
                p.shape.len() != first.shape.len() || others(&p.shape) != others(&first.shape)
            }) {
                return Err(format!(
                    "concatenating shapes {:?} and {:?} on axis {axis}",
                    first.shape, p.shape
                )
                .into());
            }
            for o in 0..outer {
                for (p, v) in parts.iter().zip(&values) {
                    let chunk: usize = p.shape[axis..].iter().product();
                    out.extend_from_slice(&v[o * chunk..(o + 1) * chunk]);
                }
            }
            one(like(first, shape, out))
        }
        "Pack" => {
            let first = arg(0)?;
            let rank = first.shape.len() as i64 + 1;
            let axis = match attr("axis") {
                Some(attr_value::Value::I(a)) => a,
                _ => 0,
            };
            let axis = if axis < 0 { axis + rank } else { axis };
            let Some(axis) = usize::try_from(axis).ok().filter(|&a| a < rank as usize) else {
                return Err(format!("axis {axis} out of range for rank {rank}").into());
            };
            let outer: usize = first.shape[..axis.min(first.shape.len())].iter().product();
            let chunk: usize = first.shape[axis.min(first.shape.len())..].iter().product();
            let values: Vec<Vec<f64>> = x.iter().map(|t| t.to_f64()).collect();
            let mut out = Vec::with_capacity(outer * chunk * x.len());
            for o in 0..outer {
                for v in &values {
                    if v.len() != outer * chunk {
                        return Err("Pack of tensors of different shapes".to_string().into());
                    }
                    out.extend_from_slice(&v[o * chunk..(o + 1) * chunk]);
                }
            }
            let mut shape = first.shape.clone();
            shape.insert(axis, x.len());
            one(like(first, shape, out))
        }
        "Pad" | "PadV2" => {
            let t = arg(0)?;
            let pads = arg(1)?.to_i64()?;
            if pads.len() != 2 * t.shape.len() || pads.iter().any(|&p| p < 0) {
                return Err(format!("paddings {pads:?} for rank {}", t.shape.len()).into());
            }
            let fill =
                if op == "PadV2" { arg(2)?.to_f64().first().copied().unwrap_or(0.0) } else { 0.0 };
            let shape: Vec<usize> = t
                .shape
                .iter()
                .enumerate()
                .map(|(d, &n)| n + pads[2 * d] as usize + pads[2 * d + 1] as usize)
                .collect();
            let total: usize = shape.iter().product();
            let mut out = vec![fill; total];
            let v = t.to_f64();
            let rank = t.shape.len();
            let mut index = vec![0usize; rank];
            for &value in &v {
                let mut at = 0;
                for d in 0..rank {
                    at = at * shape[d] + index[d] + pads[2 * d] as usize;
                }
                out[at] = value;
                for d in (0..rank).rev() {
                    index[d] += 1;
                    if index[d] < t.shape[d] {
                        break;
                    }
                    index[d] = 0;
                }
            }
            one(like(t, shape, out))
        }
        "StridedSlice" => {
            let t = arg(0)?;
            let (begin, end, strides) = (arg(1)?.to_i64()?, arg(2)?.to_i64()?, arg(3)?.to_i64()?);
            let mask = |k: &str| match attr(k) {
                Some(attr_value::Value::I(m)) => m,
                _ => 0,
            };
            if mask("ellipsis_mask") != 0 || mask("new_axis_mask") != 0 {
                return Err("StridedSlice with ellipsis_mask or new_axis_mask is not supported"
                    .to_string()
                    .into());
            }
            let (bm, em, sm) = (mask("begin_mask"), mask("end_mask"), mask("shrink_axis_mask"));
            let rank = t.shape.len();
            if begin.len() != end.len() || begin.len() != strides.len() || begin.len() > rank {
                return Err(format!(
                    "StridedSlice of rank {rank} with begin {begin:?}, end {end:?}, strides {strides:?}"
                )
                .into());
            }
            let mut ranges = Vec::with_capacity(rank);
            let mut out_shape = Vec::new();
            for d in 0..rank {
                let n = t.shape[d] as i64;
                if d >= begin.len() {
                    ranges.push((0, n, 1));
                    out_shape.push(n as usize);
                    continue;
                }
                let s = strides[d];
                if s == 0 {
                    return Err("a stride of 0".to_string().into());
                }
                let clamp = |v: i64, lo: i64, hi: i64| v.max(lo).min(hi);
                let norm = |v: i64| if v < 0 { v + n } else { v };
                if sm & (1 << d) != 0 {
                    let b = norm(begin[d]);
                    if b < 0 || b >= n {
                        return Err(
                            format!("index {} out of range for dimension {n}", begin[d]).into()
                        );
                    }
                    ranges.push((b, b + 1, 1));
                    continue;
                }
                let (lo, hi) = if s > 0 { (0, n) } else { (-1, n - 1) };
                let b = if bm & (1 << d) != 0 {
                    if s > 0 { 0 } else { n - 1 }
                } else {
                    clamp(norm(begin[d]), lo, hi)
                };
                let e = if em & (1 << d) != 0 {
                    if s > 0 { n } else { -1 }
                } else {
                    clamp(norm(end[d]), lo, hi)
                };
                let count = if s > 0 {
                    ((e - b).max(0) + s - 1) / s
                } else {
                    ((b - e).max(0) + (-s) - 1) / (-s)
                };
                ranges.push((b, e, s));
                out_shape.push(count as usize);
            }
            let v = t.to_f64();
            let mut strides_in = vec![1usize; rank];
            for d in (0..rank.saturating_sub(1)).rev() {
                strides_in[d] = strides_in[d + 1] * t.shape[d + 1];
            }
            let mut out = Vec::new();
            fn walk(
                d: usize,
                at: usize,
                ranges: &[(i64, i64, i64)],
                strides: &[usize],
                v: &[f64],
                out: &mut Vec<f64>,
            ) {
                if d == ranges.len() {
                    out.push(v[at]);
                    return;
                }
                let (b, e, s) = ranges[d];
                let mut i = b;
                while (s > 0 && i < e) || (s < 0 && i > e) {
                    walk(d + 1, at + i as usize * strides[d], ranges, strides, v, out);
                    i += s;
                }
            }
            walk(0, 0, &ranges, &strides_in, &v, &mut out);
            one(like(t, out_shape, out))
        }
        "RandomUniform" => {
            let dims = arg(0)?.to_i64()?;
            let shape: Vec<usize> = dims.iter().filter_map(|&d| usize::try_from(d).ok()).collect();
            if shape.len() != dims.len() || crate::tensor::fillable(&shape).is_none() {
                return Err(format!("RandomUniform of shape {dims:?}").into());
            }
            let seed = match (attr("seed"), attr("seed2")) {
                (Some(attr_value::Value::I(a)), Some(attr_value::Value::I(b))) => {
                    (a as u64) << 32 ^ b as u64
                }
                _ => 0,
            };
            let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
            let count: usize = shape.iter().product();
            let values = (0..count)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 40) as f32 / (1u64 << 24) as f32
                })
                .collect();
            one(Tensor::f32(shape, values))
        }
        _ => Err(KernelError::Unsupported),
    }
}

/// Runs an NHWC kernel on `input`, transposing in and out when the node's
/// data format is NCHW.
fn in_nhwc(
    input: &Tensor,
    nchw: bool,
    kernel: impl FnOnce(&Tensor) -> Result<Tensor, String>,
) -> Result<Tensor, String> {
    if !nchw {
        return kernel(input);
    }
    let out = kernel(&kernels::transpose_nchw(input, false)?)?;
    kernels::transpose_nchw(&out, true)
}

/// A tensor of `t`'s element type with the given values.
fn like(t: &Tensor, shape: Vec<usize>, values: Vec<f64>) -> Tensor {
    let data = match t.data {
        Data::F32(_) => Data::F32(values.iter().map(|&v| v as f32).collect()),
        Data::F64(_) => Data::F64(values),
        Data::I32(_) => Data::I32(values.iter().map(|&v| v as i32).collect()),
        Data::I64(_) => Data::I64(values.iter().map(|&v| v as i64).collect()),
        Data::Bool(_) => Data::Bool(values.iter().map(|&v| v != 0.0).collect()),
    };
    Tensor { shape, data }
}

/// The flat index into an operand of shape `from` for output element `i`
/// of a broadcast to `shape`.
fn index_for(i: usize, shape: &[usize], from: &[usize]) -> usize {
    let mut rem = i;
    let mut idx = 0;
    let mut stride = 1;
    let offset = shape.len() - from.len();
    for d in (0..shape.len()).rev() {
        let coord = rem % shape[d];
        rem /= shape[d];
        if d >= offset {
            let fd = from[d - offset];
            if fd != 1 {
                idx += coord * stride;
            }
            stride *= fd;
        }
    }
    idx
}

/// An AttrValue's inner value, for callers outside this module.
pub fn attr_inner(value: Option<AttrValue>) -> Option<attr_value::Value> {
    value.and_then(|a| a.value)
}
