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
        let src = edge.src.ok_or_else(|| EvalError::Kernel {
            node: graph.name(id).into(),
            op: op.into(),
            reason: "an input names no node".into(),
        })?;
        let outs = values.get(&src).ok_or(EvalError::Cycle)?;
        match edge.port {
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
            Padding::Explicit([
                (p[h] as usize, p[h + 1] as usize),
                (p[w] as usize, p[w + 1] as usize),
            ])
        }
        other => return Err(format!("padding `{other}` is not supported")),
    })
}

/// The spatial pair of a 4-long list attribute (strides, dilations, ksize).
fn spatial(list: &[i64], nchw: bool) -> [usize; 2] {
    if list.len() != 4 {
        return [1, 1];
    }
    if nchw { [list[2] as usize, list[3] as usize] } else { [list[1] as usize, list[2] as usize] }
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
            let strides = spatial(&ints(attr("strides")), nchw);
            let dilations = spatial(&ints(attr("dilations")), nchw);
            let pad = padding(attr, nchw)?;
            let input =
                if nchw { kernels::transpose_nchw(arg(0)?, false)? } else { arg(0)?.clone() };
            let out = if op == "Conv2D" {
                kernels::conv2d(&input, arg(1)?, strides, dilations, &pad)?
            } else {
                kernels::depthwise(&input, arg(1)?, strides, dilations, &pad)?
            };
            one(if nchw { kernels::transpose_nchw(&out, true)? } else { out })
        }
        "MaxPool" | "AvgPool" => {
            let ksize = spatial(&ints(attr("ksize")), nchw);
            let strides = spatial(&ints(attr("strides")), nchw);
            let pad = padding(attr, nchw)?;
            let input =
                if nchw { kernels::transpose_nchw(arg(0)?, false)? } else { arg(0)?.clone() };
            let out = kernels::pool(&input, ksize, strides, &pad, op == "MaxPool")?;
            one(if nchw { kernels::transpose_nchw(&out, true)? } else { out })
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
            let known: i64 = dims.iter().filter(|&&d| d >= 0).product();
            let total = t.len() as i64;
            let shape: Vec<usize> = dims
                .iter()
                .map(|&d| {
                    if d == -1 {
                        if known == 0 { 0 } else { (total / known) as usize }
                    } else {
                        d as usize
                    }
                })
                .collect();
            if shape.iter().product::<usize>() != t.len() {
                return Err(format!("cannot reshape {:?} to {dims:?}", t.shape).into());
            }
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
            let Data::Bool(cv) = &c.data else {
                return Err("Select needs a bool condition".to_string().into());
            };
            let shape =
                kernels::broadcast_shape(&kernels::broadcast_shape(&c.shape, &a.shape)?, &b.shape)?;
            let pick = |i: usize, from: &Tensor| -> f64 {
                let idx = index_for(i, &shape, &from.shape);
                from.to_f64()[idx]
            };
            let total: usize = shape.iter().product();
            let values: Vec<f64> = (0..total)
                .map(|i| if cv[index_for(i, &shape, &c.shape)] { pick(i, a) } else { pick(i, b) })
                .collect();
            let data = match a.data {
                Data::F32(_) => Data::F32(values.iter().map(|&v| v as f32).collect()),
                Data::F64(_) => Data::F64(values),
                Data::I32(_) => Data::I32(values.iter().map(|&v| v as i32).collect()),
                Data::I64(_) => Data::I64(values.iter().map(|&v| v as i64).collect()),
                Data::Bool(_) => Data::Bool(values.iter().map(|&v| v != 0.0).collect()),
            };
            one(Tensor { shape, data })
        }
        "RandomUniform" => {
            let shape: Vec<usize> = arg(0)?.to_i64()?.iter().map(|&d| d as usize).collect();
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
