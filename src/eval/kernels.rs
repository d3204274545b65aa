//! CPU kernels of the ops the evaluator knows. Each takes its inputs and
//! the node's attributes and returns its outputs; a shape or type it does not
//! handle is an error, never a wrong answer.

use super::value::{Data, Tensor};

/// Elementwise binary operations.
#[derive(Clone, Copy, Debug)]
pub enum Bin {
    /// a + b
    Add,
    /// a - b
    Sub,
    /// a * b
    Mul,
    /// a / b
    Div,
    /// max(a, b)
    Max,
    /// min(a, b)
    Min,
    /// (a - b)^2
    SqDiff,
    /// a > b
    Greater,
    /// a >= b
    GreaterEqual,
    /// a < b
    Less,
    /// a <= b
    LessEqual,
    /// a == b
    Equal,
}

/// The shape two shapes broadcast to.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let x = if i + a.len() >= rank { a[i + a.len() - rank] } else { 1 };
        let y = if i + b.len() >= rank { b[i + b.len() - rank] } else { 1 };
        out[i] = match (x, y) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        };
    }
    Ok(out)
}

/// For each output element of `shape`, the index into an operand of shape
/// `from` (broadcast).
fn broadcast_index(shape: &[usize], from: &[usize]) -> Vec<usize> {
    let rank = shape.len();
    let total: usize = shape.iter().product();
    if from == shape {
        return (0..total).collect();
    }
    let mut strides = vec![0; rank];
    let mut acc = 1;
    for i in (0..from.len()).rev() {
        let dim = rank - from.len() + i;
        strides[dim] = if from[i] == 1 { 0 } else { acc };
        acc *= from[i];
    }
    let mut index = vec![0usize; rank];
    let mut out = Vec::with_capacity(total);
    for _ in 0..total {
        out.push(index.iter().zip(&strides).map(|(i, s)| i * s).sum());
        for d in (0..rank).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    out
}

fn zip<T: Copy, U>(
    shape: &[usize],
    a: (&[usize], &[T]),
    b: (&[usize], &[T]),
    f: impl Fn(T, T) -> U,
) -> Vec<U> {
    if a.0 == b.0 {
        return a.1.iter().zip(b.1).map(|(&x, &y)| f(x, y)).collect();
    }
    if b.1.len() == 1 {
        return a.1.iter().map(|&x| f(x, b.1[0])).collect();
    }
    let ia = broadcast_index(shape, a.0);
    let ib = broadcast_index(shape, b.0);
    ia.iter().zip(&ib).map(|(&i, &j)| f(a.1[i], b.1[j])).collect()
}

macro_rules! arith {
    ($op:expr, $shape:expr, $a:expr, $b:expr, $x:ident) => {{
        let f = |x: $x, y: $x| -> $x {
            match $op {
                Bin::Add => x + y,
                Bin::Sub => x - y,
                Bin::Mul => x * y,
                Bin::Div => x / y,
                Bin::Max => {
                    if x >= y {
                        x
                    } else {
                        y
                    }
                }
                Bin::Min => {
                    if x <= y {
                        x
                    } else {
                        y
                    }
                }
                Bin::SqDiff => (x - y) * (x - y),
                _ => unreachable!("comparisons are handled apart"),
            }
        };
        zip($shape, $a, $b, f)
    }};
}

/// An elementwise binary op with numpy broadcasting.
pub fn binary(op: Bin, a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    let shape = broadcast_shape(&a.shape, &b.shape)?;
    let compare =
        matches!(op, Bin::Greater | Bin::GreaterEqual | Bin::Less | Bin::LessEqual | Bin::Equal);
    if compare {
        let (x, y) = (a.to_f64(), b.to_f64());
        let f = |x: f64, y: f64| match op {
            Bin::Greater => x > y,
            Bin::GreaterEqual => x >= y,
            Bin::Less => x < y,
            Bin::LessEqual => x <= y,
            _ => x == y,
        };
        let values = zip(&shape, (&a.shape, &x), (&b.shape, &y), f);
        return Ok(Tensor { shape, data: Data::Bool(values) });
    }
    let data = match (&a.data, &b.data) {
        (Data::F32(x), Data::F32(y)) => {
            Data::F32(arith!(op, &shape, (&a.shape, x), (&b.shape, y), f32))
        }
        (Data::F64(x), Data::F64(y)) => {
            Data::F64(arith!(op, &shape, (&a.shape, x), (&b.shape, y), f64))
        }
        (Data::I32(x), Data::I32(y)) if !matches!(op, Bin::Div) => {
            Data::I32(arith!(op, &shape, (&a.shape, x), (&b.shape, y), i32))
        }
        (Data::I64(x), Data::I64(y)) if !matches!(op, Bin::Div) => {
            Data::I64(arith!(op, &shape, (&a.shape, x), (&b.shape, y), i64))
        }
        _ => return Err(format!("{op:?} of {} and {}", a.dtype_name(), b.dtype_name())),
    };
    Ok(Tensor { shape, data })
}

/// An elementwise unary float op.
pub fn unary(t: &Tensor, f: impl Fn(f64) -> f64) -> Result<Tensor, String> {
    let data = match &t.data {
        Data::F32(v) => Data::F32(v.iter().map(|&x| f(f64::from(x)) as f32).collect()),
        Data::F64(v) => Data::F64(v.iter().map(|&x| f(x)).collect()),
        _ => return Err(format!("expected a float tensor, got {}", t.dtype_name())),
    };
    Ok(Tensor { shape: t.shape.clone(), data })
}

/// f32 values, or an error naming what they are.
pub fn floats(t: &Tensor) -> Result<&[f32], String> {
    match &t.data {
        Data::F32(v) => Ok(v),
        _ => Err(format!("expected float32, got {}", t.dtype_name())),
    }
}

/// `C = A(m x k) * B(k x n)` with row/column strides, into a new vector.
#[allow(clippy::too_many_arguments)]
fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    rsa: isize,
    csa: isize,
    b: &[f32],
    rsb: isize,
    csb: isize,
) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    // SAFETY: the strides and sizes describe `a` (m x k), `b` (k x n) and
    // `c` (m x n, row major) within their lengths, checked by the callers.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    c
}

/// MatMul with optional transposes.
pub fn matmul(a: &Tensor, b: &Tensor, ta: bool, tb: bool) -> Result<Tensor, String> {
    if a.shape.len() != 2 || b.shape.len() != 2 {
        return Err(format!("MatMul of shapes {:?} and {:?}", a.shape, b.shape));
    }
    let (x, y) = (floats(a)?, floats(b)?);
    let (m, k) = if ta { (a.shape[1], a.shape[0]) } else { (a.shape[0], a.shape[1]) };
    let (k2, n) = if tb { (b.shape[1], b.shape[0]) } else { (b.shape[0], b.shape[1]) };
    if k != k2 {
        return Err(format!("MatMul inner dimensions {k} and {k2} differ"));
    }
    let (rsa, csa) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
    Ok(Tensor::f32(vec![m, n], sgemm(m, k, n, x, rsa, csa, y, rsb, csb)))
}

/// Spatial geometry of a window op on one axis: output size and padding before.
pub fn window(
    input: usize,
    k: usize,
    stride: usize,
    dilation: usize,
    padding: &Padding,
    axis: usize,
) -> Result<(usize, usize), String> {
    if k == 0 || stride == 0 || dilation == 0 {
        return Err(format!("window {k}, stride {stride}, dilation {dilation}: none may be 0"));
    }
    let effective = (k - 1)
        .checked_mul(dilation)
        .and_then(|e| e.checked_add(1))
        .ok_or_else(|| format!("window {k} dilated by {dilation} is too large"))?;
    Ok(match padding {
        Padding::Valid => {
            if input < effective {
                return Err(format!("window {effective} larger than input {input}"));
            }
            ((input - effective) / stride + 1, 0)
        }
        Padding::Same => {
            let out = input.div_ceil(stride);
            let total = (out.saturating_sub(1).saturating_mul(stride))
                .saturating_add(effective)
                .saturating_sub(input);
            (out, total / 2)
        }
        Padding::Explicit(pads) => {
            let (before, after) = pads[axis];
            let padded = input
                .checked_add(before)
                .and_then(|p| p.checked_add(after))
                .ok_or_else(|| format!("padding {before} and {after} is too large"))?;
            if padded < effective {
                return Err(format!("window {effective} larger than padded input {padded}"));
            }
            ((padded - effective) / stride + 1, before)
        }
    })
}

/// A window op's padding.
#[derive(Clone, Debug)]
pub enum Padding {
    /// No padding.
    Valid,
    /// Pad so that output = ceil(input / stride).
    Same,
    /// (before, after) for H and W.
    Explicit([(usize, usize); 2]),
}

/// NCHW to NHWC, or back with `inverse`.
pub fn transpose_nchw(t: &Tensor, inverse: bool) -> Result<Tensor, String> {
    let v = floats(t)?;
    if t.shape.len() != 4 {
        return Err(format!("expected a 4-D tensor, got {:?}", t.shape));
    }
    let (n, a, b, c) = (t.shape[0], t.shape[1], t.shape[2], t.shape[3]);
    let mut out = vec![0f32; v.len()];
    // From [n, a, b, c] to [n, b, c, a] (NCHW -> NHWC) or [n, c, a, b] (inverse).
    for i in 0..n {
        for x in 0..a {
            for y in 0..b {
                for z in 0..c {
                    let src = ((i * a + x) * b + y) * c + z;
                    let dst = if inverse {
                        ((i * c + z) * a + x) * b + y
                    } else {
                        ((i * b + y) * c + z) * a + x
                    };
                    out[dst] = v[src];
                }
            }
        }
    }
    let shape = if inverse { vec![n, c, a, b] } else { vec![n, b, c, a] };
    Ok(Tensor::f32(shape, out))
}

/// The geometry of a 2-D window op over NHWC input.
struct Geometry {
    h: usize,
    w: usize,
    c: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    pad: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
}

impl Geometry {
    fn new(
        input: &[usize],
        kernel: [usize; 2],
        strides: [usize; 2],
        dilations: [usize; 2],
        padding: &Padding,
    ) -> Result<Geometry, String> {
        let (h, w, c) = (input[1], input[2], input[3]);
        let (oh, ph) = window(h, kernel[0], strides[0], dilations[0], padding, 0)?;
        let (ow, pw) = window(w, kernel[1], strides[1], dilations[1], padding, 1)?;
        Ok(Geometry {
            h,
            w,
            c,
            kh: kernel[0],
            kw: kernel[1],
            oh,
            ow,
            pad: [ph, pw],
            strides,
            dilations,
        })
    }

    /// Calls `f(i, j, src)` for each kernel tap (i, j) of output pixel
    /// (b, y, x) that falls inside the input; `src` is the offset of the
    /// tap's first channel in the input.
    fn taps(&self, b: usize, y: usize, x: usize, mut f: impl FnMut(usize, usize, usize)) {
        for i in 0..self.kh {
            let iy = (y * self.strides[0] + i * self.dilations[0]) as isize - self.pad[0] as isize;
            if iy < 0 || iy >= self.h as isize {
                continue;
            }
            for j in 0..self.kw {
                let ix =
                    (x * self.strides[1] + j * self.dilations[1]) as isize - self.pad[1] as isize;
                if ix < 0 || ix >= self.w as isize {
                    continue;
                }
                f(i, j, ((b * self.h + iy as usize) * self.w + ix as usize) * self.c);
            }
        }
    }
}

/// Conv2D on NHWC input and an HWIO filter, through im2col and sgemm.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    strides: [usize; 2],
    dilations: [usize; 2],
    padding: &Padding,
) -> Result<Tensor, String> {
    let (xv, wv) = (floats(x)?, floats(w)?);
    if x.shape.len() != 4 || w.shape.len() != 4 || x.shape[3] != w.shape[2] {
        return Err(format!("Conv2D of input {:?} and filter {:?}", x.shape, w.shape));
    }
    let (n, o) = (x.shape[0], w.shape[3]);
    let g = Geometry::new(&x.shape, [w.shape[0], w.shape[1]], strides, dilations, padding)?;
    let (oh, ow, c, kw) = (g.oh, g.ow, g.c, g.kw);
    let k = g.kh * kw * c;
    let mut out = Vec::with_capacity(n * oh * ow * o);
    let mut cols = vec![0f32; oh * ow * k];
    for b in 0..n {
        cols.iter_mut().for_each(|v| *v = 0.0);
        for y in 0..oh {
            for xx in 0..ow {
                let row = (y * ow + xx) * k;
                g.taps(b, y, xx, |i, j, src| {
                    let dst = row + (i * kw + j) * c;
                    cols[dst..dst + c].copy_from_slice(&xv[src..src + c]);
                });
            }
        }
        out.extend(sgemm(oh * ow, k, o, &cols, k as isize, 1, wv, o as isize, 1));
    }
    Ok(Tensor::f32(vec![n, oh, ow, o], out))
}

/// DepthwiseConv2dNative on NHWC input and a [H, W, C, M] filter.
pub fn depthwise(
    x: &Tensor,
    w: &Tensor,
    strides: [usize; 2],
    dilations: [usize; 2],
    padding: &Padding,
) -> Result<Tensor, String> {
    let (xv, wv) = (floats(x)?, floats(w)?);
    if x.shape.len() != 4 || w.shape.len() != 4 || x.shape[3] != w.shape[2] {
        return Err(format!(
            "DepthwiseConv2dNative of input {:?} and filter {:?}",
            x.shape, w.shape
        ));
    }
    let (n, m) = (x.shape[0], w.shape[3]);
    let g = Geometry::new(&x.shape, [w.shape[0], w.shape[1]], strides, dilations, padding)?;
    let (oh, ow, c, kw) = (g.oh, g.ow, g.c, g.kw);
    let mut out = vec![0f32; n * oh * ow * c * m];
    for b in 0..n {
        for y in 0..oh {
            for xx in 0..ow {
                let base = ((b * oh + y) * ow + xx) * c * m;
                g.taps(b, y, xx, |i, j, src| {
                    for ch in 0..c {
                        for q in 0..m {
                            out[base + ch * m + q] +=
                                xv[src + ch] * wv[((i * kw + j) * c + ch) * m + q];
                        }
                    }
                });
            }
        }
    }
    Ok(Tensor::f32(vec![n, oh, ow, c * m], out))
}

/// MaxPool or AvgPool on NHWC input (TensorFlow's AvgPool divides by the
/// number of real, unpadded elements).
pub fn pool(
    x: &Tensor,
    ksize: [usize; 2],
    strides: [usize; 2],
    padding: &Padding,
    max: bool,
) -> Result<Tensor, String> {
    let xv = floats(x)?;
    if x.shape.len() != 4 {
        return Err(format!("pooling a {:?} tensor", x.shape));
    }
    let n = x.shape[0];
    let g = Geometry::new(&x.shape, ksize, strides, [1, 1], padding)?;
    let (oh, ow, c) = (g.oh, g.ow, g.c);
    let mut out = Vec::with_capacity(n * oh * ow * c);
    for b in 0..n {
        for y in 0..oh {
            for xx in 0..ow {
                for ch in 0..c {
                    let mut acc = if max { f32::NEG_INFINITY } else { 0.0 };
                    let mut count = 0;
                    g.taps(b, y, xx, |_, _, src| {
                        let v = xv[src + ch];
                        acc = if max { acc.max(v) } else { acc + v };
                        count += 1;
                    });
                    out.push(if max { acc } else { acc / count.max(1) as f32 });
                }
            }
        }
    }
    Ok(Tensor::f32(vec![n, oh, ow, c], out))
}

/// Sum or mean over `axes` (negative counts from the end).
pub fn reduce(x: &Tensor, axes: &[i64], keep_dims: bool, mean: bool) -> Result<Tensor, String> {
    let rank = x.shape.len() as i64;
    let mut reduce = vec![false; x.shape.len()];
    for &a in axes {
        let a = if a < 0 { a + rank } else { a };
        if a < 0 || a >= rank {
            return Err(format!("axis {a} out of range for rank {rank}"));
        }
        reduce[a as usize] = true;
    }
    let out_shape: Vec<usize> =
        x.shape.iter().zip(&reduce).map(|(&d, &r)| if r { 1 } else { d }).collect();
    let total: usize = out_shape.iter().product();
    let values = x.to_f64();
    let mut acc = vec![0f64; total];
    let mut index = vec![0usize; x.shape.len()];
    for &v in &values {
        let mut at = 0;
        for (d, &i) in index.iter().enumerate() {
            at = at * out_shape[d] + if reduce[d] { 0 } else { i };
        }
        acc[at] += v;
        for d in (0..x.shape.len()).rev() {
            index[d] += 1;
            if index[d] < x.shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    if mean {
        let count = (values.len() / total.max(1)).max(1) as f64;
        acc.iter_mut().for_each(|v| *v /= count);
    }
    let shape = if keep_dims {
        out_shape
    } else {
        x.shape.iter().zip(&reduce).filter(|(_, r)| !**r).map(|(d, _)| *d).collect()
    };
    let data = match x.data {
        Data::F32(_) => Data::F32(acc.iter().map(|&v| v as f32).collect()),
        Data::F64(_) => Data::F64(acc),
        Data::I32(_) => Data::I32(acc.iter().map(|&v| v as i32).collect()),
        Data::I64(_) => Data::I64(acc.iter().map(|&v| v as i64).collect()),
        Data::Bool(_) => return Err("reducing a bool tensor".into()),
    };
    Ok(Tensor { shape, data })
}
