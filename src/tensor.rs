//! Constant tensors as f64 arrays: reading a `TensorProto` (tensor_content
//! or the typed value fields, with TensorFlow's fill-last rule), numpy-style
//! broadcasting arithmetic, and writing back in a given dtype.

use bytes::Bytes;

use crate::npy::f16_to_f64;
use crate::proto::{DataType, TensorProto, TensorShapeProto, tensor_shape_proto::Dim};

/// A dense array of f64 in row-major order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Array {
    /// Dimensions; empty for a scalar.
    pub shape: Vec<usize>,
    /// `shape.product()` values.
    pub data: Vec<f64>,
}

impl Array {
    /// A scalar.
    pub fn scalar(value: f64) -> Array {
        Array { shape: vec![], data: vec![value] }
    }

    /// `f(a, b)` elementwise with numpy broadcasting, into `out`'s buffers
    /// (kept from one use to the next, so `big * small` allocates nothing
    /// once they have grown).
    pub fn zip_into(
        &self,
        other: &Array,
        out: &mut Array,
        f: impl Fn(f64, f64) -> f64,
    ) -> Result<(), String> {
        // `other`'s values repeat with a period of its size (equal shapes
        // included), or the general loop.
        if !repeats_along(&self.shape, other) {
            *out = self.zip(other, f)?;
            return Ok(());
        }
        out.shape.clone_from(&self.shape);
        emptied(&mut out.data, self.data.len());
        match other.data[..] {
            [y] => out.data.extend(self.data.iter().map(|&x| f(x, y))),
            _ => {
                for chunk in self.data.chunks(other.data.len()) {
                    out.data.extend(chunk.iter().zip(&other.data).map(|(&x, &y)| f(x, y)));
                }
            }
        }
        Ok(())
    }

    /// `f` of every element, into `out`'s buffers.
    pub fn map_into(&self, out: &mut Array, f: impl Fn(f64) -> f64) {
        out.shape.clone_from(&self.shape);
        emptied(&mut out.data, self.data.len());
        out.data.extend(self.data.iter().map(|&v| f(v)));
    }

    /// Makes this array the scalar `value`, in its own buffers.
    pub fn set_scalar(&mut self, value: f64) {
        self.shape.clear();
        self.data.clear();
        self.data.push(value);
    }

    /// Elementwise `f(a, b)` with numpy broadcasting.
    pub fn zip(&self, other: &Array, f: impl Fn(f64, f64) -> f64) -> Result<Array, String> {
        // Equal shapes, or `other` a single value of no larger rank: the
        // result has `self`'s shape (the common cases, without the padding).
        let single = other.shape.len() <= self.shape.len() && other.shape.iter().all(|&d| d == 1);
        if self.shape == other.shape || single {
            let data = match single {
                true => self.data.iter().map(|&x| f(x, other.data[0])).collect(),
                false => self.data.iter().zip(&other.data).map(|(&x, &y)| f(x, y)).collect(),
            };
            return Ok(Array { shape: self.shape.clone(), data });
        }
        let rank = self.shape.len().max(other.shape.len());
        let pad = |s: &[usize]| {
            let mut v = vec![1; rank - s.len()];
            v.extend_from_slice(s);
            v
        };
        let (a, b) = (pad(&self.shape), pad(&other.shape));
        let mut shape = Vec::with_capacity(rank);
        for (x, y) in a.iter().zip(&b) {
            shape.push(match (x, y) {
                (x, y) if x == y => *x,
                (1, y) => *y,
                (x, 1) => *x,
                _ => {
                    return Err(format!(
                        "shapes {:?} and {:?} do not broadcast",
                        self.shape, other.shape
                    ));
                }
            });
        }
        let count: usize = shape.iter().product();
        if count == 0 {
            return Ok(Array { shape, data: Vec::new() });
        }
        // Fast paths: equal shapes, or one side a single value.
        if self.data.len() == count && other.data.len() == count {
            let data = self.data.iter().zip(&other.data).map(|(&x, &y)| f(x, y)).collect();
            return Ok(Array { shape, data });
        }
        if other.data.len() == 1 && self.data.len() == count {
            let y = other.data[0];
            return Ok(Array { shape, data: self.data.iter().map(|&x| f(x, y)).collect() });
        }
        if self.data.len() == 1 && other.data.len() == count {
            let x = self.data[0];
            return Ok(Array { shape, data: other.data.iter().map(|&y| f(x, y)).collect() });
        }
        let strides = |dims: &[usize]| {
            let mut strides = vec![0; rank];
            let mut acc = 1;
            for i in (0..rank).rev() {
                strides[i] = if dims[i] == 1 { 0 } else { acc };
                acc *= dims[i];
            }
            strides
        };
        let (sa, sb) = (strides(&a), strides(&b));
        // The last dimension is a run with fixed steps; the outer index
        // moves the two bases.
        let inner = shape[rank - 1];
        let (step_a, step_b) = (sa[rank - 1], sb[rank - 1]);
        let mut data = Vec::with_capacity(count);
        let mut index = vec![0usize; rank - 1];
        let (mut base_a, mut base_b) = (0usize, 0usize);
        for _ in 0..count / inner {
            data.extend(
                (0..inner)
                    .map(|k| f(self.data[base_a + k * step_a], other.data[base_b + k * step_b])),
            );
            for d in (0..rank - 1).rev() {
                index[d] += 1;
                base_a += sa[d];
                base_b += sb[d];
                if index[d] < shape[d] {
                    break;
                }
                base_a -= sa[d] * shape[d];
                base_b -= sb[d] * shape[d];
                index[d] = 0;
            }
        }
        Ok(Array { shape, data })
    }

    /// The same values in another shape; one dimension may be -1.
    pub fn reshape(&self, dims: &[i64]) -> Result<Array, String> {
        let mut out = Array { shape: vec![], data: vec![] };
        self.reshape_into(dims, &mut out)?;
        Ok(out)
    }

    /// [`Array::reshape`] into `out`'s buffers.
    pub fn reshape_into(&self, dims: &[i64], out: &mut Array) -> Result<(), String> {
        let Some(inferred) = reshape_inferred(self.data.len(), dims) else {
            return Err(format!(
                "cannot reshape {:?} ({} values) to {dims:?}",
                self.shape,
                self.data.len()
            ));
        };
        out.shape.clear();
        out.shape.extend(dims.iter().map(|&d| if d == -1 { inferred } else { d as usize }));
        out.data.clone_from(&self.data);
        Ok(())
    }
}

/// The values of tensor_content: `count` values of `dtype`.
fn content_values(dtype: DataType, c: &[u8], count: usize) -> Result<Vec<f64>, String> {
    let mut values = Vec::new();
    content_values_into(dtype, c, count, &mut values)?;
    Ok(values)
}

/// `v` emptied, with room for `n` values: a buffer too small is replaced,
/// not grown (growing would copy what it held, and a buffer filled a piece
/// at a time would be copied each time it doubled).
fn emptied(v: &mut Vec<f64>, n: usize) {
    v.clear();
    if v.capacity() < n {
        *v = Vec::with_capacity(n);
    }
}

/// [`content_values`] into `out` (cleared first).
fn content_values_into(
    dtype: DataType,
    c: &[u8],
    count: usize,
    out: &mut Vec<f64>,
) -> Result<(), String> {
    let size = dtype
        .byte_size()
        .ok_or_else(|| format!("{} constants are not numeric", dtype.short_name()))?;
    if count.checked_mul(size) != Some(c.len()) {
        return Err(format!(
            "tensor_content has {} bytes, the shape needs {count} values of {size}",
            c.len()
        ));
    }
    // One loop per type, so each is a tight conversion loop.
    fn each<const N: usize>(c: &[u8], out: &mut Vec<f64>, f: impl Fn([u8; N]) -> f64) {
        emptied(out, c.len() / N);
        out.extend(c.chunks_exact(N).map(|b| f(b.try_into().expect("N bytes"))));
    }
    match dtype {
        DataType::DtFloat => each(c, out, |b| f64::from(f32::from_le_bytes(b))),
        DataType::DtDouble => each(c, out, f64::from_le_bytes),
        DataType::DtHalf => each(c, out, |b| f16_to_f64(u16::from_le_bytes(b))),
        DataType::DtBfloat16 => each(c, out, |b: [u8; 2]| {
            f64::from(f32::from_bits(u32::from(u16::from_le_bytes(b)) << 16))
        }),
        DataType::DtInt32 => each(c, out, |b| f64::from(i32::from_le_bytes(b))),
        DataType::DtInt64 => each(c, out, |b| i64::from_le_bytes(b) as f64),
        DataType::DtBool | DataType::DtUint8 => each(c, out, |b: [u8; 1]| f64::from(b[0])),
        DataType::DtInt8 => each(c, out, |b: [u8; 1]| f64::from(b[0] as i8)),
        other => return Err(format!("{} constants are not supported", other.short_name())),
    }
    Ok(())
}

/// The values and dtype of an encoded TensorProto whose values are in
/// `tensor_content` (how TensorFlow writes any constant of more than one
/// value), read from the wire; `None` for any other form, which
/// [`from_proto`] reads once decoded.
pub fn from_raw(raw: &[u8]) -> Option<Result<(Array, DataType), String>> {
    let mut array = Array { shape: Vec::with_capacity(4), data: vec![] };
    Some(from_raw_into(raw, &mut array)?.map(|dtype| (array, dtype)))
}

/// What the -1 of `dims` stands for when `len` values take that shape (0
/// when there is none); `None` when they cannot: a dimension below -1, more
/// than one -1, or another number of values.
pub fn reshape_inferred(len: usize, dims: &[i64]) -> Option<usize> {
    if dims.iter().filter(|&&d| d == -1).count() > 1 {
        return None;
    }
    let known = dims
        .iter()
        .filter(|&&d| d != -1)
        .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))?;
    match dims.contains(&-1) {
        false => (known == len).then_some(0),
        true => (known > 0 && len.is_multiple_of(known)).then(|| len / known),
    }
}

/// The element count of `shape` when graphrw may fill that many in itself
/// (see [`MAX_FILLED`]).
pub fn fillable(shape: &[usize]) -> Option<usize> {
    element_count(shape).ok().filter(|&n| n <= MAX_FILLED)
}

/// How many elements a tensor of `shape` holds; an error when the count
/// does not fit in memory's addresses (a shape from a file may say
/// anything).
pub fn element_count(shape: &[usize]) -> Result<usize, String> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| format!("a shape of {shape:?} holds too many elements"))
}

/// The most elements graphrw fills in itself (the repeated last value of a
/// constant written with fewer values than its shape holds, a placeholder's
/// made-up feed): a shape asking for more is refused rather than memory
/// the machine may not have.
pub const MAX_FILLED: usize = 1 << 28;

/// [`from_raw`] into `out`'s buffers (a thread reads the constants of
/// every batch norm it folds into the same few).
pub fn from_raw_into(raw: &[u8], out: &mut Array) -> Option<Result<DataType, String>> {
    let (dtype, dims, content) = tensor_fields_plain(raw).or_else(|| tensor_fields(raw))?;
    let content = content.filter(|c| !c.is_empty())?;
    out.shape.clear();
    let mut unknown = false;
    dims_from_raw(dims.unwrap_or(&[]), |d| match usize::try_from(d) {
        Ok(d) => out.shape.push(d),
        Err(_) => unknown = true,
    })?;
    let Ok(dtype) = DataType::try_from(dtype) else {
        return Some(Err(format!("unknown dtype {dtype}")));
    };
    if unknown {
        return Some(Err("the tensor has an unknown dimension".into()));
    }
    let count = match element_count(&out.shape) {
        Ok(count) => count,
        Err(e) => return Some(Err(e)),
    };
    Some(content_values_into(dtype, content, count, &mut out.data).map(|()| dtype))
}

/// A float tensor's shape and values as `tensor_content` holds them
/// (little-endian f32), read from an encoded TensorProto without
/// converting them; `None` for any other dtype or form, or content that is
/// not the shape's values.
pub fn float_content(raw: &[u8]) -> Option<(smallvec::SmallVec<[usize; 6]>, &[u8])> {
    let (dtype, dims, content) = tensor_fields_plain(raw).or_else(|| tensor_fields(raw))?;
    if dtype != DataType::DtFloat as i32 {
        return None;
    }
    let content = content.filter(|c| !c.is_empty())?;
    let mut shape = smallvec::SmallVec::new();
    let mut unknown = false;
    dims_from_raw(dims.unwrap_or(&[]), |d| match usize::try_from(d) {
        Ok(d) => shape.push(d),
        Err(_) => unknown = true,
    })?;
    let count = element_count(&shape).ok()?;
    (!unknown && count.checked_mul(4) == Some(content.len())).then_some((shape, content))
}

/// The values of a float constant (see [`float_content`]) into `out`, as
/// [`from_raw_into`] reads them.
pub fn floats_into(shape: &[usize], bytes: &[u8], out: &mut Array) {
    out.shape.clear();
    out.shape.extend_from_slice(shape);
    content_values_into(DataType::DtFloat, bytes, bytes.len() / 4, &mut out.data)
        .expect("a float constant's content is whole f32 values");
}

/// Whether `small`'s values repeat along the end of an array of `shape`
/// (numpy broadcasting that keeps `shape`): a single value, or `small`'s
/// dims, once its leading 1s are dropped, are `shape`'s last ones.
pub fn repeats_along(shape: &[usize], small: &Array) -> bool {
    let fits = shape.len() >= small.shape.len()
        && small.shape.iter().rev().zip(shape.iter().rev()).all(|(o, s)| o == s || *o == 1);
    let lead = small.shape.iter().take_while(|&&d| d == 1).count();
    let periodic = !small.data.is_empty() && shape.ends_with(&small.shape[lead..]);
    fits && (small.data.len() == 1 || periodic)
}

/// Appends `big * small` stored as f32: `big` the little-endian f32 values
/// of an array, `small` values that repeat along its end (see
/// [`repeats_along`]), each product taken in f64 and rounded once, as
/// [`Array::zip_into`] then [`write_content`] give it, without the f64
/// copies of `big` and of the product.
pub fn write_scaled_f32(big: &[u8], small: &[f64], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + big.len(), 0);
    let period = small.len().max(1) * 4;
    for (to, from) in out[start..].chunks_mut(period).zip(big.chunks(period)) {
        for ((to, from), &y) in to.chunks_exact_mut(4).zip(from.chunks_exact(4)).zip(small) {
            let x = f64::from(f32::from_le_bytes(from.try_into().expect("4 bytes")));
            to.copy_from_slice(&((x * y) as f32).to_le_bytes());
        }
    }
}

/// The dtype, shape and content fields of an encoded TensorProto holding
/// only those (and a zero version number); `None` for anything else.
fn tensor_fields(raw: &[u8]) -> Option<TensorFields<'_>> {
    use crate::wire::{LEN, VARINT, fields};
    let (mut dtype, mut dims, mut content) = (0i32, None, None);
    for f in fields(raw) {
        let f = f.ok()?;
        match (f.number, f.wire) {
            (1, VARINT) => dtype = f.value as i32,
            (2, LEN) if dims.is_none() => dims = Some(&raw[f.payload()]),
            (4, LEN) => content = Some(&raw[f.payload()]),
            (3, VARINT) if f.value == 0 => {}
            _ => return None,
        }
    }
    Some((dtype, dims, content))
}

/// A TensorProto's dtype, encoded shape and content.
type TensorFields<'a> = (i32, Option<&'a [u8]>, Option<&'a [u8]>);

/// [`tensor_fields`] for a tensor written as TensorFlow and prost write
/// one (one-byte keys), read with a comparison per field; `None` for
/// anything else, which the general walk then reads. Constants are read
/// for every batch norm a rule folds.
fn tensor_fields_plain(raw: &[u8]) -> Option<TensorFields<'_>> {
    use crate::wire::{Plain, plain_field};
    let (mut dtype, mut dims, mut content) = (0i32, None, None);
    let mut at = 0;
    while at < raw.len() {
        match plain_field(raw, &mut at)? {
            (0x08, Plain::Varint(v)) => dtype = v as i32,
            (0x18, Plain::Varint(0)) => {}
            (0x12, Plain::Len(payload)) if dims.is_none() => dims = Some(payload),
            (0x22, Plain::Len(payload)) => content = Some(payload),
            _ => return None,
        }
    }
    Some((dtype, dims, content))
}

/// The dimensions of an encoded TensorShapeProto read from the wire
/// (unknown ones are -1); `None` for an unknown rank or anything unusual.
pub fn shape_from_raw(shape: &[u8]) -> Option<Vec<i64>> {
    let mut dims = Vec::with_capacity(4);
    dims_from_raw(shape, |d| dims.push(d))?;
    Some(dims)
}

/// Each dimension of an encoded TensorShapeProto, in order, to `dim`;
/// `None` for an unknown rank or anything unusual.
fn dims_from_raw(shape: &[u8], mut dim: impl FnMut(i64)) -> Option<()> {
    use crate::wire::{LEN, VARINT, fields};
    if let Some(dims) = dims_plain(shape) {
        dims.into_iter().for_each(dim);
        return Some(());
    }
    for f in fields(shape) {
        let f = f.ok()?;
        if (f.number, f.wire) != (2, LEN) {
            return None; // unknown rank, or anything else: decode it
        }
        let raw = &shape[f.payload()];
        let mut size = 0i64;
        for d in fields(raw) {
            let d = d.ok()?;
            match (d.number, d.wire) {
                (1, VARINT) => size = d.value as i64,
                (2, LEN) => {}
                _ => return None,
            }
        }
        dim(size);
    }
    Some(())
}

/// [`dims_from_raw`]'s dimensions for a shape written as TensorFlow and
/// prost write one (each dimension a size alone, one-byte keys); `None`
/// for anything else.
fn dims_plain(shape: &[u8]) -> Option<smallvec::SmallVec<[i64; 6]>> {
    use crate::wire::{Plain, plain_field};
    let mut dims = smallvec::SmallVec::new();
    let mut at = 0;
    while at < shape.len() {
        let (0x12, Plain::Len(dim)) = plain_field(shape, &mut at)? else { return None };
        let mut p = 0;
        let size = match dim {
            [] => 0,
            _ => match plain_field(dim, &mut p)? {
                (0x08, Plain::Varint(size)) if p == dim.len() => size as i64,
                _ => return None,
            },
        };
        dims.push(size);
    }
    Some(dims)
}

/// The values of a constant tensor.
pub fn from_proto(t: &TensorProto) -> Result<Array, String> {
    let dtype = DataType::try_from(t.dtype).map_err(|_| format!("unknown dtype {}", t.dtype))?;
    let shape: Vec<usize> = match &t.tensor_shape {
        None => vec![],
        Some(s) => s
            .dims()
            .ok_or("the tensor's rank is unknown")?
            .into_iter()
            .map(|d| d.map(|d| d as usize).ok_or("the tensor has an unknown dimension"))
            .collect::<Result<_, _>>()?,
    };
    let count = element_count(&shape)?;
    let data: Vec<f64> = if !t.tensor_content.is_empty() {
        content_values(dtype, &t.tensor_content, count)?
    } else {
        let values: Vec<f64> = match dtype {
            DataType::DtFloat => t.float_val.iter().map(|&v| f64::from(v)).collect(),
            DataType::DtDouble => t.double_val.clone(),
            DataType::DtHalf => t.half_val.iter().map(|&v| f16_to_f64(v as u16)).collect(),
            DataType::DtBfloat16 => t
                .half_val
                .iter()
                .map(|&v| f64::from(f32::from_bits((v as u32 & 0xffff) << 16)))
                .collect(),
            DataType::DtInt32
            | DataType::DtInt16
            | DataType::DtInt8
            | DataType::DtUint8
            | DataType::DtUint16 => t.int_val.iter().map(|&v| f64::from(v)).collect(),
            DataType::DtInt64 => t.int64_val.iter().map(|&v| v as f64).collect(),
            DataType::DtBool => t.bool_val.iter().map(|&v| f64::from(u8::from(v))).collect(),
            other => {
                return Err(format!("{} constants are not supported", other.short_name()));
            }
        };
        // TensorFlow's rule: fewer values than the shape holds repeat the last.
        if count > values.len().max(MAX_FILLED) {
            return Err(format!(
                "{} values for a shape of {count}: more than graphrw fills in ({MAX_FILLED})",
                values.len()
            ));
        }
        match values.last() {
            None if count == 0 => vec![],
            None => vec![0.0; count],
            Some(&last) if values.len() <= count => {
                let mut values = values;
                values.resize(count, last);
                values
            }
            Some(_) => return Err(format!("{} values for a shape of {count}", values.len())),
        }
    };
    Ok(Array { shape, data })
}

/// A TensorProto holding `array` in `dtype`, as `tensor_content`.
pub fn to_proto(array: &Array, dtype: DataType) -> Result<TensorProto, String> {
    let mut content = Vec::new();
    write_content(&array.data, dtype, &mut content)?;
    Ok(TensorProto {
        dtype: dtype as i32,
        tensor_shape: Some(TensorShapeProto {
            dim: array.shape.iter().map(|&d| Dim { size: d as i64, name: String::new() }).collect(),
            unknown_rank: false,
        }),
        tensor_content: Bytes::from(content),
        ..Default::default()
    })
}

/// Bytes per element of a type computed constants can be stored as.
pub fn stored_size(dtype: DataType) -> Result<usize, String> {
    Ok(match dtype {
        DataType::DtDouble | DataType::DtInt64 => 8,
        DataType::DtFloat | DataType::DtInt32 => 4,
        DataType::DtHalf | DataType::DtBfloat16 => 2,
        DataType::DtBool => 1,
        other => {
            return Err(format!("cannot store a computed constant as {}", other.short_name()));
        }
    })
}

/// Appends `data` stored as `dtype`, as `tensor_content` holds it
/// (little-endian, row-major).
pub fn write_content(data: &[f64], dtype: DataType, out: &mut Vec<u8>) -> Result<(), String> {
    // Written into place, one loop per type (no length kept per value).
    fn each<const N: usize>(data: &[f64], out: &mut Vec<u8>, f: impl Fn(f64) -> [u8; N]) {
        let start = out.len();
        out.resize(start + data.len() * N, 0);
        for (bytes, &v) in out[start..].chunks_exact_mut(N).zip(data) {
            bytes.copy_from_slice(&f(v));
        }
    }
    stored_size(dtype)?;
    match dtype {
        DataType::DtFloat => each(data, out, |v| (v as f32).to_le_bytes()),
        DataType::DtDouble => each(data, out, f64::to_le_bytes),
        DataType::DtHalf => each(data, out, |v| f64_to_f16(v).to_le_bytes()),
        DataType::DtBfloat16 => each(data, out, |v| f32_to_bf16(v as f32).to_le_bytes()),
        DataType::DtInt32 => each(data, out, |v| (v as i32).to_le_bytes()),
        DataType::DtInt64 => each(data, out, |v| (v as i64).to_le_bytes()),
        DataType::DtBool => each(data, out, |v| [u8::from(v != 0.0)]),
        _ => unreachable!("stored_size lists the same types"),
    }
    Ok(())
}

/// Round to nearest even, as TensorFlow converts float to bfloat16.
fn f32_to_bf16(v: f32) -> u16 {
    if v.is_nan() {
        return 0x7fc0;
    }
    let bits = v.to_bits();
    let rounding = 0x7fff + ((bits >> 16) & 1);
    ((bits + rounding) >> 16) as u16
}

/// f64 to IEEE half, round to nearest even.
fn f64_to_f16(v: f64) -> u16 {
    let x = v as f32;
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    if x.is_nan() {
        return sign | 0x7e00;
    }
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    let mant = bits & 0x7f_ffff;
    if exp >= 31 {
        return sign | 0x7c00;
    }
    if exp <= 0 {
        if exp < -10 {
            return sign;
        }
        let m = mant | 0x80_0000;
        let shift = (14 - exp) as u32;
        let half = 1u32 << (shift - 1);
        let rounded = (m + half - 1 + ((m >> shift) & 1)) >> shift;
        return sign | rounded as u16;
    }
    let rounded = mant + 0xfff + ((mant >> 13) & 1);
    let (exp, mant) = if rounded & 0x80_0000 != 0 { (exp + 1, 0) } else { (exp, rounded >> 13) };
    if exp >= 31 {
        return sign | 0x7c00;
    }
    sign | ((exp as u16) << 10) | mant as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// A buffer emptied for `n` values has room for them; one that had room
    /// keeps its memory (the buffers of constant expressions are reused
    /// from match to match).
    #[test]
    fn an_emptied_buffer_has_room_and_keeps_memory_it_had() {
        let mut v = vec![1.0; 10];
        emptied(&mut v, 1000);
        assert!(v.is_empty() && v.capacity() >= 1000);
        v.extend([2.0; 1000]);
        let at = v.as_ptr();
        emptied(&mut v, 500);
        assert!(v.is_empty());
        assert_eq!(v.as_ptr(), at, "the same memory");
    }

    /// A float constant's bytes are read unconverted when its content
    /// holds its shape's values as f32, and not otherwise.
    #[test]
    fn float_content_is_read_only_from_float_tensors_that_hold_their_shape() {
        let array = Array { shape: vec![2, 1, 3], data: vec![0.5, -1.0, 2.25, 3.0, 0.0, 1e3] };
        let t = to_proto(&array, DataType::DtFloat).unwrap();
        let encoded = t.encode_to_vec();
        let (shape, bytes) = float_content(&encoded).unwrap();
        assert_eq!((&shape[..], bytes), (&[2, 1, 3][..], &t.tensor_content[..]));
        assert!(
            float_content(&to_proto(&array, DataType::DtDouble).unwrap().encode_to_vec()).is_none()
        );
        let mut short = t.clone();
        short.tensor_content = t.tensor_content.slice(4..);
        assert!(float_content(&short.encode_to_vec()).is_none());
        let mut unknown = t.clone();
        unknown.tensor_shape.as_mut().unwrap().dim[1].size = -1;
        assert!(float_content(&unknown.encode_to_vec()).is_none());
        let listed = TensorProto { tensor_content: Bytes::new(), float_val: vec![0.5; 6], ..t };
        assert!(float_content(&listed.encode_to_vec()).is_none());
    }

    /// Reading tensor_content from the wire gives what decoding gives, and
    /// other forms are left to decoding.
    #[test]
    fn tensors_read_from_the_wire_are_the_decoded_ones() {
        let array = Array { shape: vec![2, 1, 3], data: vec![0.5, -1.0, 2.25, 3.0, 0.0, 1e3] };
        for dtype in [DataType::DtFloat, DataType::DtHalf, DataType::DtDouble, DataType::DtInt32] {
            let t = to_proto(&array, dtype).unwrap();
            let (read, read_dtype) = from_raw(&t.encode_to_vec()).unwrap().unwrap();
            assert_eq!(read, from_proto(&t).unwrap());
            assert_eq!(read_dtype, dtype);
        }
        let mut short = to_proto(&array, DataType::DtFloat).unwrap();
        short.tensor_content = Bytes::from_static(&[0, 0, 0, 0]);
        assert_eq!(from_raw(&short.encode_to_vec()), Some(Err(from_proto(&short).unwrap_err())));
        let listed = TensorProto {
            dtype: DataType::DtFloat as i32,
            tensor_shape: Some(TensorShapeProto::default()),
            float_val: vec![0.5],
            ..Default::default()
        };
        assert_eq!(from_raw(&listed.encode_to_vec()), None);
    }

    /// The readers of the layout TensorFlow writes read what the general
    /// readers read, and leave anything else to them.
    #[test]
    fn plain_readers_agree_with_the_general_ones() {
        let array = Array { shape: vec![2, 1, 3], data: vec![0.5, -1.0, 2.25, 3.0, 0.0, 1e3] };
        for dtype in [DataType::DtFloat, DataType::DtHalf, DataType::DtDouble, DataType::DtInt32] {
            let t = to_proto(&array, dtype).unwrap();
            let raw = t.encode_to_vec();
            assert_eq!(tensor_fields_plain(&raw), tensor_fields(&raw));
            assert!(tensor_fields_plain(&raw).is_some());
            // Fields in another order are read alike.
            let mut shuffled =
                TensorProto { tensor_content: t.tensor_content.clone(), ..Default::default() }
                    .encode_to_vec();
            shuffled.extend(
                TensorProto {
                    dtype: t.dtype,
                    tensor_shape: t.tensor_shape.clone(),
                    ..Default::default()
                }
                .encode_to_vec(),
            );
            assert_eq!(tensor_fields_plain(&shuffled), tensor_fields(&raw));
            // A version number, or a value list, is not a plain tensor.
            for other in [
                TensorProto { version_number: 1, ..t.clone() },
                TensorProto { float_val: vec![1.0], ..t.clone() },
            ] {
                let raw = other.encode_to_vec();
                assert_eq!(tensor_fields_plain(&raw), None);
                assert_eq!(tensor_fields(&raw), None);
            }
        }
        for dims in [vec![], vec![3], vec![-1, 8, 8, 4], vec![0, 1]] {
            let shape = |name: &str| TensorShapeProto {
                dim: dims.iter().map(|&size| Dim { size, name: name.into() }).collect(),
                unknown_rank: false,
            };
            let plain = shape("").encode_to_vec();
            assert_eq!(dims_plain(&plain).map(|d| d.to_vec()), Some(dims.clone()));
            assert_eq!(shape_from_raw(&plain), Some(dims.clone()));
            if !dims.is_empty() {
                assert_eq!(dims_plain(&shape("d").encode_to_vec()), None);
            }
        }
        let unknown = TensorShapeProto { dim: vec![], unknown_rank: true }.encode_to_vec();
        assert_eq!(dims_plain(&unknown), None);
    }

    #[test]
    fn shapes_read_from_the_wire_are_the_decoded_ones() {
        for dims in [vec![], vec![3], vec![-1, 8, 8, 4], vec![0, 1]] {
            let shape = TensorShapeProto {
                dim: dims.iter().map(|&size| Dim { size, name: "d".into() }).collect(),
                unknown_rank: false,
            };
            assert_eq!(shape_from_raw(&shape.encode_to_vec()), Some(dims));
        }
        let unknown = TensorShapeProto { dim: vec![], unknown_rank: true };
        assert_eq!(shape_from_raw(&unknown.encode_to_vec()), None);
    }
}
