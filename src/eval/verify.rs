//! `graphrw verify`: run two graphs on the same inputs and compare every
//! common output, or run one and compare with stored outputs.

use std::collections::HashMap;

use super::{Data, EvalError, Tensor, Value, run};
use crate::graph::Graph;
use crate::proto::{DataType, attr_value};

/// A feed from the command line: `NAME=FILE.npy`, `NAME=false`, `NAME=0.5`.
pub fn parse_feed(arg: &str) -> Result<(String, Tensor), String> {
    let (name, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("--feed {arg}: expected NAME=FILE.npy or NAME=VALUE"))?;
    let tensor = match value {
        "true" | "false" => Tensor { shape: vec![], data: Data::Bool(vec![value == "true"]) },
        v if v.ends_with(".npy") || std::path::Path::new(v).is_file() => {
            let array =
                crate::npy::Array::read(std::path::Path::new(v)).map_err(|e| e.to_string())?;
            Tensor::from_npy(&array)?
        }
        v => match v.parse::<f64>() {
            Ok(n) => Tensor::f32(vec![], vec![n as f32]),
            Err(_) => {
                return Err(format!(
                    "--feed {arg}: `{v}` is neither a .npy file, a number nor true/false"
                ));
            }
        },
    };
    Ok((name.to_string(), tensor))
}

/// Random inputs for the Placeholders of `graph` not in `feeds`: floats
/// uniform in [-1, 1), ints in [0, 10), bools false; unknown dimensions
/// are `dim`.
pub fn random_feeds(
    graph: &Graph,
    feeds: &HashMap<String, Tensor>,
    seed: u64,
    dim: usize,
) -> Result<HashMap<String, Tensor>, String> {
    let fed: Vec<&str> = feeds.keys().map(|k| k.split(':').next().unwrap_or(k)).collect();
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut out = HashMap::new();
    for &id in graph.nodes_with_op("Placeholder") {
        let name = graph.name(id);
        if fed.contains(&name) {
            continue;
        }
        let attr = |k: &str| graph.attr(id, k).ok().flatten().and_then(|a| a.value);
        let shape: Vec<usize> = match attr("shape") {
            Some(attr_value::Value::Shape(s)) => match s.dims() {
                Some(dims) => dims.iter().map(|d| d.map_or(dim, |d| d as usize)).collect(),
                None => {
                    return Err(format!(
                        "placeholder `{name}` has an unknown rank: feed it with --feed"
                    ));
                }
            },
            _ => return Err(format!("placeholder `{name}` has no shape: feed it with --feed")),
        };
        let Some(count) = crate::tensor::fillable(&shape) else {
            return Err(format!(
                "placeholder `{name}` of shape {shape:?} is too large to make up: feed it with --feed"
            ));
        };
        let dtype = match attr("dtype") {
            Some(attr_value::Value::Type(t)) => t,
            _ => DataType::DtFloat as i32,
        };
        let data = match DataType::try_from(dtype) {
            Ok(DataType::DtFloat) | Ok(DataType::DtHalf) => {
                Data::F32((0..count).map(|_| (next() * 2.0 - 1.0) as f32).collect())
            }
            Ok(DataType::DtDouble) => Data::F64((0..count).map(|_| next() * 2.0 - 1.0).collect()),
            Ok(DataType::DtInt32) => {
                Data::I32((0..count).map(|_| (next() * 10.0) as i32).collect())
            }
            Ok(DataType::DtInt64) => {
                Data::I64((0..count).map(|_| (next() * 10.0) as i64).collect())
            }
            Ok(DataType::DtBool) => Data::Bool(vec![false; count]),
            _ => {
                return Err(format!(
                    "placeholder `{name}`: cannot make random {}",
                    crate::proto::dtype_name(dtype)
                ));
            }
        };
        out.insert(format!("{name}:0"), Tensor { shape, data });
    }
    Ok(out)
}

/// The worst mismatch of one output.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Mismatch {
    /// The output.
    pub output: String,
    /// How it differs.
    pub difference: Difference,
}

/// How an output of the rewritten graph differs from the original's.
#[derive(Clone, Debug, serde::Serialize)]
pub enum Difference {
    /// An element out of tolerance: the worst one.
    Value {
        /// Its flat index.
        index: usize,
        /// The original graph's value.
        original: f64,
        /// The rewritten graph's value.
        rewritten: f64,
    },
    /// One side is dead (comes from a branch that did not run).
    Dead {
        /// Whether the original's is the dead one.
        in_original: bool,
    },
    /// The shapes differ.
    Shape {
        /// The original's shape.
        original: Vec<usize>,
        /// The rewritten's shape.
        rewritten: Vec<usize>,
    },
}

impl Mismatch {
    /// Why the outputs cannot be compared element by element, naming the
    /// two sides as given; `None` for a difference of values.
    pub fn reason(&self, original: &str, rewritten: &str) -> Option<String> {
        match &self.difference {
            Difference::Value { .. } => None,
            Difference::Dead { in_original } => {
                let (dead, live) =
                    if *in_original { (original, rewritten) } else { (rewritten, original) };
                Some(format!(
                    "it is dead (from a branch that did not run) in {dead} and live in {live}"
                ))
            }
            Difference::Shape { original: a, rewritten: b } => {
                Some(format!("its shape is {a:?} in {original} and {b:?} in {rewritten}"))
            }
        }
    }
}

/// What verifying found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Verdict {
    /// Outputs compared.
    pub compared: Vec<String>,
    /// Worst relative error (|a - b| / max |a|) over all outputs.
    pub worst_relative: f64,
    /// The first output that does not match, if any.
    pub mismatch: Option<Mismatch>,
}

/// Runs both graphs on the same inputs and compares the outputs that both
/// have. A feed only goes to a graph that has the node; elements match when
/// `|a - b| <= atol + rtol * |a|`.
pub fn verify(
    original: &Graph,
    rewritten: &Graph,
    outputs: &[String],
    feeds: &HashMap<String, Tensor>,
    rtol: f64,
    atol: f64,
) -> Result<Verdict, EvalError> {
    let compared: Vec<String> = outputs
        .iter()
        .filter(|o| rewritten.id(o.split(':').next().unwrap_or(o)).is_some())
        .cloned()
        .collect();
    let a = run(original, &feeds_for(original, feeds), &compared)?;
    let b = run(rewritten, &feeds_for(rewritten, feeds), &compared)?;
    Ok(compare(compared, &a, &b, rtol, atol))
}

/// Runs `graph` and compares its outputs with stored values (TensorFlow's
/// own outputs, say): `expected` maps output names to their values.
pub fn verify_expected(
    graph: &Graph,
    expected: &[(String, Tensor)],
    feeds: &HashMap<String, Tensor>,
    rtol: f64,
    atol: f64,
) -> Result<Verdict, EvalError> {
    let names: Vec<String> = expected.iter().map(|(n, _)| n.clone()).collect();
    let want: Vec<(String, Value)> =
        expected.iter().map(|(n, t)| (n.clone(), Some(std::sync::Arc::new(t.clone())))).collect();
    let got = run(graph, &feeds_for(graph, feeds), &names)?;
    Ok(compare(names, &want, &got, rtol, atol))
}

/// The feeds whose node `graph` has.
fn feeds_for(graph: &Graph, feeds: &HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    feeds
        .iter()
        .filter(|(k, _)| graph.id(k.split(':').next().unwrap_or(k)).is_some())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Compares two runs' outputs, element by element, `a` the reference.
fn compare(
    compared: Vec<String>,
    a: &[(String, Value)],
    b: &[(String, Value)],
    rtol: f64,
    atol: f64,
) -> Verdict {
    let mut worst = 0f64;
    let mut mismatch = None;
    for ((name, x), (_, y)) in a.iter().zip(b) {
        let (Some(x), Some(y)) = (x, y) else {
            if mismatch.is_none() && x.is_some() != y.is_some() {
                mismatch = Some(Mismatch {
                    output: name.clone(),
                    difference: Difference::Dead { in_original: x.is_none() },
                });
            }
            continue;
        };
        let (xv, yv) = (x.to_f64(), y.to_f64());
        if x.shape != y.shape {
            mismatch.get_or_insert(Mismatch {
                output: name.clone(),
                difference: Difference::Shape {
                    original: x.shape.clone(),
                    rewritten: y.shape.clone(),
                },
            });
            continue;
        }
        let scale = xv.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
        let mut bad: Option<(usize, f64)> = None;
        for (i, (p, q)) in xv.iter().zip(&yv).enumerate() {
            let diff = (p - q).abs();
            worst = worst.max(diff / scale);
            let excess = diff - (atol + rtol * p.abs());
            if (excess > 0.0 || diff.is_nan()) && bad.is_none_or(|(_, e)| excess > e) {
                bad = Some((i, excess));
            }
        }
        if let (Some((index, _)), None) = (bad, &mismatch) {
            mismatch = Some(Mismatch {
                output: name.clone(),
                difference: Difference::Value { index, original: xv[index], rewritten: yv[index] },
            });
        }
    }
    Verdict { compared, worst_relative: worst, mismatch }
}
