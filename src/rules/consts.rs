//! A rule's constant expressions (`const(...)`), compiled once per rule.
//!
//! Every distinct subexpression of the rule's constant expressions is one
//! step that reads earlier steps' values, so what two expressions share (a
//! constant both read, `gamma * rsqrt(var + eps)` in a batch norm fold) is
//! read or computed once per match, and variables are found by index, not
//! by walking the syntax tree. Values live in [`Slots`] a thread keeps from
//! match to match: once their buffers have grown, a fold allocates nothing
//! for its arithmetic.
//!
//! The values, the order of their operations (a product is multiplied
//! smallest first, as before compiling), the dtype of the result and the
//! first error are those of evaluating the expression as written, left to
//! right.

use super::ast::{BinOp, Ident, RExpr, RInput, Replacement, TExpr, TExprKind};
use crate::proto::DataType;
use crate::tensor::Array;

/// The functions a constant expression may call.
#[derive(Clone, Debug, PartialEq)]
enum Func {
    Sqrt,
    Rsqrt,
    Neg,
    Abs,
    Square,
    Reshape,
    Shape,
    Dim,
    Unknown(String),
}

/// One subexpression; the numbers are earlier steps.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    Num(f64),
    /// A variable: a bound attribute's number, a bound constant's value,
    /// or a parameter.
    Var(String),
    /// `node.attr`, a number.
    Attr(String, String),
    Neg(usize),
    Bin(BinOp, usize, usize),
    /// A chain of `*`, its factors in the order written.
    Product(Vec<usize>),
    /// `[a, b]`: each item's first value.
    List(Vec<usize>),
    Call(Func, Vec<usize>),
}

/// One `const(...)` of the rule.
#[derive(Clone, Debug)]
struct Output {
    /// Where the expression starts in the rule's file (its key).
    at: usize,
    /// Its value's step.
    step: usize,
    /// The variable steps whose constant gives the result's dtype: the
    /// first of them bound to a tensor, in the order evaluation reads them
    /// (shapes, dimensions and list items do not count).
    dtype_from: Vec<usize>,
}

/// A rule's constant expressions, compiled.
#[derive(Clone, Debug, Default)]
pub struct Consts {
    steps: Vec<Step>,
    outputs: Vec<Output>,
}

/// Where the values of variables come from: the match being built.
pub(super) trait Inputs {
    /// Writes the value of `var` into `out`; `Some(dtype)` when it is a
    /// constant tensor's (attributes and parameters are plain numbers).
    fn var(&self, var: &str, out: &mut Array) -> Result<Option<DataType>, String>;
    /// The number `node.attr`.
    fn attr(&self, node: &str, attr: &str) -> Result<f64, String>;
    /// When `var` is a float constant whose values [`Inputs::var`] reads
    /// from its `tensor_content`: its shape and those bytes, unconverted.
    fn floats(&self, _var: &str) -> Option<Floats<'_>> {
        None
    }
}

/// A float constant's shape and little-endian f32 values.
pub(super) type Floats<'a> = (smallvec::SmallVec<[usize; 6]>, &'a [u8]);

/// The value of a `const(...)`, to be encoded.
pub(super) enum ConstValue<'a> {
    /// Computed, with its dtype.
    Array(&'a Array, DataType),
    /// A float constant's values (`big`, shaped `shape`) times `small`'s,
    /// which repeat along its end, each rounded to f32 as it is written:
    /// `w * gamma * rsqrt(var + eps)`, the weights never copied to f64.
    Scaled { shape: smallvec::SmallVec<[usize; 6]>, big: &'a [u8], small: &'a Array },
}

/// The values of one match's steps, in buffers kept across matches.
#[derive(Debug, Default)]
pub(super) struct Slots {
    values: Vec<Array>,
    dtypes: Vec<Option<DataType>>,
    done: Vec<bool>,
    /// Room for the partial products of a chain of `*`.
    spare: [Array; 2],
}

impl Slots {
    /// Forgets the previous match's values (keeping their buffers).
    pub(super) fn start(&mut self, steps: usize) {
        if self.values.len() < steps {
            self.values.resize_with(steps, Array::default);
            self.dtypes.resize(steps, None);
        }
        self.done.clear();
        self.done.resize(steps, false);
    }
}

impl Consts {
    /// Compiles the constant expressions of a replacement.
    pub fn of(replacement: &Replacement) -> Consts {
        let mut consts = Consts::default();
        match replacement {
            Replacement::Single(e) => consts.rexpr(e),
            Replacement::Ports(es, _) => es.iter().for_each(|e| consts.rexpr(e)),
            Replacement::Inline { .. } => {}
        }
        consts
    }

    /// How many distinct subexpressions there are.
    pub fn steps(&self) -> usize {
        self.steps.len()
    }

    fn rexpr(&mut self, expr: &RExpr) {
        match expr {
            RExpr::Const(t, span) => {
                let mut dtype_from = Vec::new();
                let step = self.texpr(t, Some(&mut dtype_from));
                self.outputs.push(Output { at: span.start, step, dtype_from });
            }
            RExpr::NewNode { inputs, .. } | RExpr::Copy { inputs, .. } => {
                for input in inputs {
                    if let RInput::Data(e) = input {
                        self.rexpr(e);
                    }
                }
            }
            RExpr::Dead(_) | RExpr::Var { .. } | RExpr::Number(..) => {}
        }
    }

    /// The step of `step`, added unless an equal one is there already.
    fn add(&mut self, step: Step) -> usize {
        match self.steps.iter().position(|s| *s == step) {
            Some(at) => at,
            None => {
                self.steps.push(step);
                self.steps.len() - 1
            }
        }
    }

    /// Compiles `t`, in evaluation order; `dtype`, where the context gives
    /// the result its dtype, collects the variables that may.
    fn texpr(&mut self, t: &TExpr, mut dtype: Option<&mut Vec<usize>>) -> usize {
        let step = match &t.kind {
            TExprKind::Num(n) => Step::Num(*n),
            TExprKind::Var(var) => {
                let at = self.add(Step::Var(var.name.clone()));
                if let Some(from) = dtype {
                    from.push(at);
                }
                return at;
            }
            TExprKind::Attr(node, attr) => Step::Attr(node.name.clone(), attr.name.clone()),
            TExprKind::Neg(inner) => Step::Neg(self.texpr(inner, dtype)),
            TExprKind::Bin(..) if matches!(t.kind, TExprKind::Bin(_, BinOp::Mul, _)) => {
                let mut factors = Vec::new();
                product_factors(t, &mut factors);
                let factors =
                    factors.into_iter().map(|f| self.texpr(f, dtype.as_deref_mut())).collect();
                Step::Product(factors)
            }
            TExprKind::Bin(a, op, b) => {
                let a = self.texpr(a, dtype.as_deref_mut());
                Step::Bin(*op, a, self.texpr(b, dtype))
            }
            TExprKind::List(items) => {
                Step::List(items.iter().map(|i| self.texpr(i, None)).collect())
            }
            TExprKind::Call(func, args) => self.call(func, args, dtype),
        };
        self.add(step)
    }

    fn call(&mut self, func: &Ident, written: &[TExpr], dtype: Option<&mut Vec<usize>>) -> Step {
        let func = match func.name.as_str() {
            "sqrt" => Func::Sqrt,
            "rsqrt" => Func::Rsqrt,
            "neg" => Func::Neg,
            "abs" => Func::Abs,
            "square" => Func::Square,
            "reshape" => Func::Reshape,
            "shape" => Func::Shape,
            "dim" => Func::Dim,
            other => Func::Unknown(other.to_string()),
        };
        // The arguments in the order evaluation reads them (`reshape(x,
        // dims)` its dims first); which gives the dtype: the argument of an
        // elementwise function, the reshaped tensor, never a shape or a
        // dimension.
        let mut dtype = dtype;
        let mut args: Vec<Option<usize>> = vec![None; written.len()];
        let order: &[usize] = match func {
            Func::Reshape => &[1, 0],
            _ => &[0, 1],
        };
        let gives_dtype = !matches!(func, Func::Shape | Func::Dim | Func::Unknown(_));
        for i in order.iter().copied().chain(2..written.len()) {
            let Some(arg) = written.get(i) else { continue };
            let from = if gives_dtype && i == 0 { dtype.as_deref_mut() } else { None };
            args[i] = Some(self.texpr(arg, from));
        }
        let args = args.into_iter().flatten().collect();
        Step::Call(func, args)
    }

    /// The `const(...)` starting at `at`.
    fn output(&self, at: usize) -> Result<&Output, String> {
        let output = self.outputs.iter().find(|o| o.at == at);
        output.ok_or_else(|| "a constant expression that was not compiled".into())
    }

    /// The value and dtype (float when no constant gives one) of a
    /// `const(...)`, computed from `inputs` into `slots` (which
    /// [`Slots::start`] readied for this match).
    fn eval_output<'s>(
        &self,
        output: &Output,
        inputs: &impl Inputs,
        slots: &'s mut Slots,
    ) -> Result<(&'s Array, DataType), String> {
        self.step(output.step, inputs, slots)?;
        let dtype = output.dtype_from.iter().find_map(|&s| slots.dtypes[s]);
        Ok((&slots.values[output.step], dtype.unwrap_or(DataType::DtFloat)))
    }

    /// The value of the `const(...)` starting at `at`, computed from
    /// `inputs` into `slots` (which [`Slots::start`] readied for this
    /// match): with its dtype, or, for a product whose largest factor is a
    /// float constant (a batch norm folded into weights) and whose result is
    /// float, [`ConstValue::Scaled`]: the same values, the weights read once
    /// and written once, with no f64 copy of them.
    pub(super) fn value<'s>(
        &self,
        at: usize,
        inputs: &'s impl Inputs,
        slots: &'s mut Slots,
    ) -> Result<ConstValue<'s>, String> {
        let output = self.output(at)?;
        match self.scaled(output, inputs, slots)? {
            Some(((shape, big), single)) => {
                // The one small factor, or their product.
                let small = match single {
                    Some(single) => &slots.values[single],
                    None => &slots.spare[1],
                };
                Ok(ConstValue::Scaled { shape, big, small })
            }
            None => {
                let (value, dtype) = self.eval_output(output, inputs, slots)?;
                Ok(ConstValue::Array(value, dtype))
            }
        }
    }

    /// The weights and shape of a [`ConstValue::Scaled`] output, with the
    /// step of its one small factor, or `None` when there are several and
    /// [`rest_product`] left their product in the slots; `None` when
    /// the output is anything else (nothing of it is then computed beyond
    /// its factors, which the plain evaluation then reuses).
    fn scaled<'i>(
        &self,
        output: &Output,
        inputs: &'i impl Inputs,
        slots: &mut Slots,
    ) -> Result<Option<(Floats<'i>, Option<usize>)>, String> {
        let Step::Product(factors) = &self.steps[output.step] else { return Ok(None) };
        if slots.done[output.step] || factors.len() < 2 {
            return Ok(None);
        }
        // The factors in order, float constants by their size alone (what
        // evaluating them would read), the others computed.
        let mut floats: smallvec::SmallVec<[Option<Floats<'i>>; 4]> = smallvec::SmallVec::new();
        for &f in factors {
            let float = match &self.steps[f] {
                Step::Var(var) if !slots.done[f] => inputs.floats(var),
                _ => None,
            };
            if float.is_none() {
                self.step(f, inputs, slots)?;
            }
            floats.push(float);
        }
        let size = |f: usize| {
            let at = factors.iter().position(|&g| g == f);
            match at.and_then(|i| floats[i].as_ref()) {
                Some((_, bytes)) => bytes.len() / 4,
                None => slots.values[f].data.len(),
            }
        };
        let mut order = largest_last(factors, size);
        let largest = order.pop().expect("two factors or more");
        let Some(i) = factors.iter().position(|&g| g == largest) else { return Ok(None) };
        let Some((shape, big)) = floats[i].take() else { return Ok(None) };
        // The other factors' float constants take their values from the
        // bytes already found (this one, if it is repeated, is read).
        for &f in &order {
            let at = factors.iter().position(|&g| g == f);
            match at.and_then(|i| floats[i].take()) {
                Some((shape, bytes)) if !slots.done[f] => {
                    crate::tensor::floats_into(&shape, bytes, &mut slots.values[f]);
                    slots.dtypes[f] = Some(DataType::DtFloat);
                    slots.done[f] = true;
                }
                _ => self.step(f, inputs, slots)?,
            }
        }
        // The result's dtype: the first constant's that evaluation reads
        // (every other step it reads is done), this one's when it is first.
        let dtype = output.dtype_from.iter().find_map(|&s| match s == largest {
            true => Some(DataType::DtFloat),
            false => slots.dtypes[s],
        });
        if dtype.is_some_and(|d| d != DataType::DtFloat) {
            return Ok(None);
        }
        let (single, small) = match order[..] {
            [only] => (Some(only), &slots.values[only]),
            _ => (None, rest_product(&order, &slots.values, &mut slots.spare)?),
        };
        Ok(crate::tensor::repeats_along(&shape, small).then_some(((shape, big), single)))
    }

    /// Computes step `at` (and what it reads) unless it is done.
    fn step(&self, at: usize, inputs: &impl Inputs, slots: &mut Slots) -> Result<(), String> {
        if slots.done[at] {
            return Ok(());
        }
        // What the step reads, in the order evaluation reads it.
        let reads: &[usize] = match &self.steps[at] {
            Step::Num(_) | Step::Var(_) | Step::Attr(..) => &[],
            Step::Neg(a) => std::slice::from_ref(a),
            Step::Bin(_, a, b) => &[*a, *b],
            Step::Product(items) | Step::List(items) => items,
            // A function reads the arguments it uses; `reshape(x, dims)`
            // its dims first.
            Step::Call(func, args) => {
                let used: &[usize] = match func {
                    Func::Unknown(_) => &[],
                    Func::Reshape => &[1, 0],
                    Func::Dim => &[0, 1],
                    _ => &[0],
                };
                for &i in used {
                    if let Some(&arg) = args.get(i) {
                        self.step(arg, inputs, slots)?;
                    }
                }
                &[]
            }
        };
        for &r in reads {
            self.step(r, inputs, slots)?;
        }
        let (before, rest) = slots.values.split_at_mut(at);
        let out = &mut rest[0];
        slots.dtypes[at] = None;
        match &self.steps[at] {
            Step::Num(n) => out.set_scalar(*n),
            Step::Var(var) => slots.dtypes[at] = inputs.var(var, out)?,
            Step::Attr(node, attr) => out.set_scalar(inputs.attr(node, attr)?),
            Step::Neg(a) => before[*a].map_into(out, |v| -v),
            Step::Bin(op, a, b) => {
                let (a, b) = (&before[*a], &before[*b]);
                match op {
                    BinOp::Add => a.zip_into(b, out, |x, y| x + y)?,
                    BinOp::Sub => a.zip_into(b, out, |x, y| x - y)?,
                    BinOp::Mul => a.zip_into(b, out, |x, y| x * y)?,
                    BinOp::Div => a.zip_into(b, out, |x, y| x / y)?,
                }
            }
            Step::Product(factors) => product(factors, before, out, &mut slots.spare)?,
            Step::List(items) => {
                out.shape.clear();
                out.shape.push(items.len());
                out.data.clear();
                for &i in items {
                    out.data.push(*before[i].data.first().ok_or("an empty list item")?);
                }
            }
            Step::Call(func, args) => call(func, args, before, out)?,
        }
        slots.done[at] = true;
        Ok(())
    }
}

/// A product of `factors`, multiplied smallest first (in the order written
/// among equal sizes) and the largest last, so `w * gamma * rsqrt(var +
/// eps)` makes one pass over the weights; the shape is the same in any
/// order, only the last bits of an f64 might differ.
fn product(
    factors: &[usize],
    values: &[Array],
    out: &mut Array,
    spare: &mut [Array; 2],
) -> Result<(), String> {
    let mut order = largest_last(factors, |f| values[f].data.len());
    let Some(largest) = order.pop() else {
        return Err("an empty product".into());
    };
    let largest = &values[largest];
    match order[..] {
        [] => {
            out.shape.clone_from(&largest.shape);
            out.data.clone_from(&largest.data);
        }
        [small] => largest.zip_into(&values[small], out, |x, y| x * y)?,
        _ => largest.zip_into(rest_product(&order, values, spare)?, out, |x, y| x * y)?,
    }
    Ok(())
}

/// The factors of a product in the order they are multiplied: by size,
/// smallest first, in the order written among equal sizes.
fn largest_last(
    factors: &[usize],
    size: impl Fn(usize) -> usize,
) -> smallvec::SmallVec<[usize; 8]> {
    let mut order: smallvec::SmallVec<[usize; 8]> = factors.iter().copied().collect();
    order.sort_by_key(|&f| size(f));
    order
}

/// The product of two factors or more (not the largest), left to right,
/// in `spare[1]`.
fn rest_product<'s>(
    order: &[usize],
    values: &[Array],
    spare: &'s mut [Array; 2],
) -> Result<&'s Array, String> {
    let mul = |x: f64, y: f64| x * y;
    let [first, second, rest @ ..] = order else {
        return Err("a product of the small factors needs two".into());
    };
    let [next, acc] = spare;
    values[*first].zip_into(&values[*second], acc, mul)?;
    for &f in rest {
        acc.zip_into(&values[f], next, mul)?;
        std::mem::swap(acc, next);
    }
    Ok(acc)
}

/// A function's value from its arguments' values.
fn call(func: &Func, args: &[usize], values: &[Array], out: &mut Array) -> Result<(), String> {
    let arg = |i: usize| -> Result<&Array, String> {
        args.get(i)
            .map(|&a| &values[a])
            .ok_or_else(|| format!("{func:?} needs {} arguments", i + 1))
    };
    match func {
        Func::Sqrt => arg(0)?.map_into(out, f64::sqrt),
        Func::Rsqrt => arg(0)?.map_into(out, |v| 1.0 / v.sqrt()),
        Func::Neg => arg(0)?.map_into(out, |v| -v),
        Func::Abs => arg(0)?.map_into(out, f64::abs),
        Func::Square => arg(0)?.map_into(out, |v| v * v),
        Func::Reshape => {
            let dims: smallvec::SmallVec<[i64; 4]> =
                arg(1)?.data.iter().map(|&d| d as i64).collect();
            arg(0)?.reshape_into(&dims, out)?;
        }
        Func::Shape => {
            let a = arg(0)?;
            out.data.clear();
            out.data.extend(a.shape.iter().map(|&d| d as f64));
            out.shape.clear();
            out.shape.push(a.shape.len());
        }
        Func::Dim => {
            let a = arg(0)?;
            let i = arg(1)?.data.first().copied().unwrap_or(0.0) as i64;
            let rank = a.shape.len() as i64;
            let at = if i < 0 { rank + i } else { i };
            let d = a
                .shape
                .get(at as usize)
                .ok_or_else(|| format!("dimension {i} of a rank-{rank} tensor"))?;
            out.set_scalar(*d as f64);
        }
        Func::Unknown(name) => return Err(format!("unknown function `{name}`")),
    }
    Ok(())
}

/// The factors of a chain of `*`, in order.
fn product_factors<'e>(expr: &'e TExpr, out: &mut Vec<&'e TExpr>) {
    match &expr.kind {
        TExprKind::Bin(a, BinOp::Mul, b) => {
            product_factors(a, out);
            product_factors(b, out);
        }
        _ => out.push(expr),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;
    use crate::rules::compile::compile;
    use crate::rules::load::load_text;

    /// Variables of a test: values, with a dtype for constants; every read
    /// is logged. Float constants also give their f32 bytes to
    /// [`Inputs::floats`] when `floats` is set.
    #[derive(Default)]
    struct Vars {
        values: HashMap<&'static str, (Array, Option<DataType>)>,
        reads: RefCell<Vec<String>>,
        floats: bool,
        bytes: HashMap<&'static str, Vec<u8>>,
    }

    impl Vars {
        fn with(
            mut self,
            var: &'static str,
            shape: &[usize],
            data: &[f64],
            dtype: Option<DataType>,
        ) -> Vars {
            let mut array = Array { shape: shape.to_vec(), data: data.to_vec() };
            if dtype == Some(DataType::DtFloat) {
                // What a float constant holds.
                array.data.iter_mut().for_each(|v| *v = f64::from(*v as f32));
                let bytes = data.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect();
                self.bytes.insert(var, bytes);
            }
            self.values.insert(var, (array, dtype));
            self
        }
    }

    impl Inputs for Vars {
        fn var(&self, var: &str, out: &mut Array) -> Result<Option<DataType>, String> {
            self.reads.borrow_mut().push(var.to_string());
            let (array, dtype) = self.values.get(var).ok_or(format!("`{var}` is not bound"))?;
            *out = array.clone();
            Ok(*dtype)
        }
        fn attr(&self, node: &str, attr: &str) -> Result<f64, String> {
            Err(format!("no attribute `{node}.{attr}`"))
        }
        fn floats(&self, var: &str) -> Option<Floats<'_>> {
            let bytes = self.bytes.get(var).filter(|_| self.floats)?;
            Some((self.values[var].0.shape.iter().copied().collect(), bytes))
        }
    }

    /// The compiled constants of a one-rule file whose replacement is
    /// `replacement`, and where each `const(` starts.
    fn compiled(replacement: &str) -> (Consts, Vec<usize>) {
        let text = format!(
            "rule r: n = Op{{eps: e}}(x, a: Const, b: Const, w: Const, g: Const, s: Const) => {replacement}"
        );
        let rules = compile(&load_text("t.rules", &text), &[]).expect("compiles");
        let starts = text.match_indices("const(").map(|(at, _)| at).collect();
        (rules.rules[0].consts.clone(), starts)
    }

    fn eval(
        consts: &Consts,
        at: usize,
        vars: &Vars,
        slots: &mut Slots,
    ) -> Result<(Array, DataType), String> {
        match consts.value(at, vars, slots)? {
            ConstValue::Array(a, d) => Ok((a.clone(), d)),
            ConstValue::Scaled { .. } => panic!("scaled, though no constant gave its bytes"),
        }
    }

    /// What two constant expressions of a rule share is one step: each
    /// variable is read once per match, and `rsqrt(b + e)` computed once.
    #[test]
    fn shared_subexpressions_are_computed_once_per_match() {
        let (consts, at) = compiled(
            "Pack(x, const(a * rsqrt(b + e)), const(reshape(a, [dim(b, 0)]) - rsqrt(b + e)))",
        );
        // a, b, e, b + e, rsqrt, the product, 0, dim, the list, reshape, -.
        assert_eq!(consts.steps(), 11);
        let vars = Vars::default()
            .with("a", &[3], &[1.0, 2.0, 3.0], Some(DataType::DtFloat))
            .with("b", &[3], &[3.0, 8.0, 15.0], Some(DataType::DtFloat))
            .with("e", &[], &[1.0], None);
        let mut slots = Slots::default();
        slots.start(consts.steps());
        let (first, _) = eval(&consts, at[0], &vars, &mut slots).expect("evaluates");
        let (second, _) = eval(&consts, at[1], &vars, &mut slots).expect("evaluates");
        assert_eq!(first.data, [0.5, 2.0 / 3.0, 0.75]);
        assert_eq!(second.data, [0.5, 2.0 - 1.0 / 3.0, 2.75]);
        let mut reads = vars.reads.borrow().clone();
        reads.sort();
        assert_eq!(reads, ["a", "b", "e"]);
        // A new match reads them again.
        slots.start(consts.steps());
        eval(&consts, at[0], &vars, &mut slots).expect("evaluates");
        assert_eq!(vars.reads.borrow().len(), 6);
    }

    /// A product whose largest factor is a float constant is that
    /// constant's f32 bytes and the product of the others, unless its
    /// result would not be float or the others do not repeat along it; its
    /// values, written as f32, are those of the product computed in f64 and
    /// then written, bit for bit. The constant itself is not read as values.
    #[test]
    fn a_float_constant_scaled_is_the_product_written() {
        let weights: Vec<f64> = (0..24).map(|i| (i as f64 * 0.37 - 4.1) / 3.0).collect();
        let vars = |floats| Vars {
            floats,
            ..Vars::default()
                .with("w", &[2, 3, 4], &weights, Some(DataType::DtFloat))
                .with("g", &[4], &[0.3, -1.7, 2.9, 0.01], Some(DataType::DtFloat))
                .with("a", &[3, 4], &[0.5; 12], Some(DataType::DtFloat))
                .with("b", &[2], &[1.0, 2.0], Some(DataType::DtFloat))
                .with("s", &[4], &[1.5, 2.5, 3.5, 4.5], Some(DataType::DtHalf))
                .with("e", &[], &[1e-3], None)
        };
        let cases = [
            ("Mul(x, const(w * g * rsqrt(a + e)))", true),
            ("Mul(x, const(g * w))", true),
            ("Mul(x, const(w * e))", true),
            ("Mul(x, const(w * g * g * e))", true),
            ("Mul(x, const(w * w))", true),
            // The others do not repeat along `w`'s end: broadcast in f64.
            ("Mul(x, const(w * reshape(b, [2, 1, 1])))", false),
            // The result is half, as `s` is read first.
            ("Mul(x, const(s * w))", false),
            ("Mul(x, const(g * e))", true),
            // The largest factor is computed.
            ("Mul(x, const(rsqrt(a + e) * g))", false),
            ("Mul(x, const(w * g + e))", false),
        ];
        for (replacement, scaled) in cases {
            let (consts, at) = compiled(replacement);
            let mut slots = Slots::default();
            slots.start(consts.steps());
            let (plain, plain_dtype) = eval(&consts, at[0], &vars(false), &mut slots).unwrap();
            let mut expected = Vec::new();
            crate::tensor::write_content(&plain.data, plain_dtype, &mut expected).unwrap();
            let floats = vars(true);
            let mut slots = Slots::default();
            slots.start(consts.steps());
            match consts.value(at[0], &floats, &mut slots).unwrap() {
                ConstValue::Scaled { shape, big, small } => {
                    assert!(scaled, "{replacement}: scaled");
                    assert_eq!((&shape[..], plain_dtype), (&plain.shape[..], DataType::DtFloat));
                    let mut written = Vec::new();
                    crate::tensor::write_scaled_f32(big, &small.data, &mut written);
                    assert_eq!(written, expected, "{replacement}");
                }
                ConstValue::Array(value, dtype) => {
                    assert!(!scaled, "{replacement}: not scaled");
                    assert_eq!((value, dtype), (&plain, plain_dtype), "{replacement}");
                }
            }
            // The largest constant is read as values only where the result
            // is not scaled (or where it is a small factor too).
            let largest = if replacement.contains('w') { "w" } else { "g" };
            let reads = floats.reads.borrow().iter().any(|r| r == largest);
            assert_eq!(reads, !scaled || replacement.contains("w * w"), "{replacement}");
        }
    }

    /// A product is multiplied smallest first: `w * g * s` with `w` the
    /// largest is `w * (g * s)`, which differs from `(w * g) * s` in the
    /// last bit for these values.
    #[test]
    fn a_product_multiplies_the_largest_factor_last() {
        let (consts, at) = compiled("Mul(x, const(w * g * s))");
        let vars = Vars::default()
            .with("w", &[2], &[0.1, 0.1], None)
            .with("g", &[], &[0.2], None)
            .with("s", &[], &[0.3], None);
        assert_ne!(0.1 * (0.2 * 0.3), (0.1 * 0.2) * 0.3);
        let mut slots = Slots::default();
        slots.start(consts.steps());
        let (value, _) = eval(&consts, at[0], &vars, &mut slots).expect("evaluates");
        assert_eq!(value.shape, [2]);
        assert_eq!(value.data, [0.1 * (0.2 * 0.3); 2]);
    }

    /// The result's dtype is the first constant's that evaluation reads
    /// where the value flows (not a shape, a dimension or a list item);
    /// float when none is.
    #[test]
    fn the_dtype_is_the_first_constant_whose_value_flows() {
        let (consts, at) = compiled(
            "Pack(x, const(reshape(w, shape(g))), const(shape(g)), const(e * a + dim(g, 0)), const(e * 2))",
        );
        let vars = Vars::default()
            .with("w", &[2, 2], &[1.0, 2.0, 3.0, 4.0], Some(DataType::DtHalf))
            .with("g", &[4], &[0.0; 4], Some(DataType::DtDouble))
            .with("a", &[1], &[1.0], Some(DataType::DtInt32))
            .with("e", &[], &[2.0], None);
        let mut slots = Slots::default();
        slots.start(consts.steps());
        let dtypes: Vec<DataType> = at
            .iter()
            .map(|&at| eval(&consts, at, &vars, &mut slots).expect("evaluates").1)
            .collect();
        use DataType::*;
        assert_eq!(dtypes, [DtHalf, DtFloat, DtInt32, DtFloat]);
        let (reshaped, _) = eval(&consts, at[0], &vars, &mut slots).expect("evaluates");
        assert_eq!((reshaped.shape, reshaped.data), (vec![4], vec![1.0, 2.0, 3.0, 4.0]));
    }

    /// Buffers kept from a larger match do not leak into a smaller one, and
    /// broadcasting gives numpy's shapes.
    #[test]
    fn values_of_an_earlier_match_do_not_leak() {
        let (consts, at) = compiled("Mul(x, const((a - b) * g + s))");
        let big = Vars::default()
            .with("a", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], None)
            .with("b", &[3], &[1.0, 1.0, 1.0], None)
            .with("g", &[2, 1], &[10.0, 100.0], None)
            .with("s", &[], &[0.5], None);
        let small = Vars::default()
            .with("a", &[2], &[1.0, 2.0], None)
            .with("b", &[2], &[0.0, 1.0], None)
            .with("g", &[], &[3.0], None)
            .with("s", &[1], &[1.0], None);
        let mut slots = Slots::default();
        slots.start(consts.steps());
        let (value, _) = eval(&consts, at[0], &big, &mut slots).expect("evaluates");
        assert_eq!(value.shape, [2, 3]);
        assert_eq!(value.data, [0.5, 10.5, 20.5, 300.5, 400.5, 500.5]);
        slots.start(consts.steps());
        let (value, _) = eval(&consts, at[0], &small, &mut slots).expect("evaluates");
        let mut fresh = Slots::default();
        fresh.start(consts.steps());
        assert_eq!(value, eval(&consts, at[0], &small, &mut fresh).expect("evaluates").0);
        assert_eq!((value.shape, value.data), (vec![2], vec![4.0, 4.0]));
    }

    /// Errors are those of the first failing step in evaluation order:
    /// `reshape` reads its shape before its tensor.
    #[test]
    fn errors_come_from_the_first_failing_step() {
        let (consts, at) = compiled(
            "Pack(x, const(reshape(a, [dim(b, 3)])), const(reshape(w, [5])), const(n.eps))",
        );
        let vars =
            Vars::default().with("b", &[2], &[1.0, 2.0], None).with("w", &[2, 2], &[0.0; 4], None);
        let mut slots = Slots::default();
        slots.start(consts.steps());
        let errors: Vec<String> =
            at.iter().map(|&at| eval(&consts, at, &vars, &mut slots).expect_err("fails")).collect();
        assert_eq!(errors[0], "dimension 3 of a rank-1 tensor");
        assert_eq!(errors[1], "cannot reshape [2, 2] (4 values) to [5]");
        assert_eq!(errors[2], "no attribute `n.eps`");
        assert!(vars.reads.borrow().iter().all(|r| r != "a"), "`a` is not read");
    }
}
