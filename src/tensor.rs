//! Constant tensors as f64 arrays: reading a `TensorProto` (tensor_content
//! or the typed value fields, with TensorFlow's fill-last rule), numpy-style
//! broadcasting arithmetic, and writing back in a given dtype.

use bytes::Bytes;

use crate::npy::f16_to_f64;
use crate::proto::{DataType, TensorProto, TensorShapeProto, tensor_shape_proto::Dim};

/// A dense array of f64 in row-major order.
#[derive(Clone, Debug, PartialEq)]
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

    /// Applies `f` to every element.
    pub fn map(&self, f: impl Fn(f64) -> f64) -> Array {
        Array { shape: self.shape.clone(), data: self.data.iter().map(|&v| f(v)).collect() }
    }

    /// Elementwise `f(a, b)` with numpy broadcasting.
    pub fn zip(&self, other: &Array, f: impl Fn(f64, f64) -> f64) -> Result<Array, String> {
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
        let mut data = Vec::with_capacity(count);
        let mut index = vec![0usize; rank];
        for _ in 0..count {
            let ia: usize = index.iter().zip(&sa).map(|(i, s)| i * s).sum();
            let ib: usize = index.iter().zip(&sb).map(|(i, s)| i * s).sum();
            data.push(f(self.data[ia], other.data[ib]));
            for d in (0..rank).rev() {
                index[d] += 1;
                if index[d] < shape[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        Ok(Array { shape, data })
    }

    /// The same values in another shape; one dimension may be -1.
    pub fn reshape(&self, dims: &[i64]) -> Result<Array, String> {
        let known: i64 = dims.iter().filter(|&&d| d != -1).product();
        let unknown = dims.iter().filter(|&&d| d == -1).count();
        let total = self.data.len() as i64;
        let shape: Vec<usize> = match unknown {
            0 if known == total => dims.iter().map(|&d| d as usize).collect(),
            1 if known > 0 && total % known == 0 => dims
                .iter()
                .map(|&d| if d == -1 { (total / known) as usize } else { d as usize })
                .collect(),
            _ => {
                return Err(format!(
                    "cannot reshape {:?} ({total} values) to {dims:?}",
                    self.shape
                ));
            }
        };
        if dims.iter().any(|&d| d < -1) {
            return Err(format!("bad dimension in {dims:?}"));
        }
        Ok(Array { shape, data: self.data.clone() })
    }
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
    let count: usize = shape.iter().product();
    let data: Vec<f64> = if !t.tensor_content.is_empty() {
        let c = &t.tensor_content;
        let size =
            dtype.byte_size().ok_or(format!("{} constants are not numeric", dtype.short_name()))?;
        if c.len() != count * size {
            return Err(format!(
                "tensor_content has {} bytes, the shape needs {}",
                c.len(),
                count * size
            ));
        }
        c.chunks_exact(size)
            .map(|b| match dtype {
                DataType::DtFloat => Ok(f64::from(f32::from_le_bytes(b.try_into().unwrap()))),
                DataType::DtDouble => Ok(f64::from_le_bytes(b.try_into().unwrap())),
                DataType::DtHalf => Ok(f16_to_f64(u16::from_le_bytes([b[0], b[1]]))),
                DataType::DtBfloat16 => {
                    Ok(f64::from(f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)))
                }
                DataType::DtInt32 => Ok(f64::from(i32::from_le_bytes(b.try_into().unwrap()))),
                DataType::DtInt64 => Ok(i64::from_le_bytes(b.try_into().unwrap()) as f64),
                DataType::DtBool | DataType::DtUint8 => Ok(f64::from(b[0])),
                DataType::DtInt8 => Ok(f64::from(b[0] as i8)),
                other => Err(format!("{} constants are not supported", other.short_name())),
            })
            .collect::<Result<_, _>>()?
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
    let mut content = Vec::with_capacity(array.data.len() * dtype.byte_size().unwrap_or(4));
    for &v in &array.data {
        match dtype {
            DataType::DtFloat => content.extend_from_slice(&(v as f32).to_le_bytes()),
            DataType::DtDouble => content.extend_from_slice(&v.to_le_bytes()),
            DataType::DtHalf => content.extend_from_slice(&f64_to_f16(v).to_le_bytes()),
            DataType::DtBfloat16 => content.extend_from_slice(&f32_to_bf16(v as f32).to_le_bytes()),
            DataType::DtInt32 => content.extend_from_slice(&(v as i32).to_le_bytes()),
            DataType::DtInt64 => content.extend_from_slice(&(v as i64).to_le_bytes()),
            DataType::DtBool => content.push(u8::from(v != 0.0)),
            other => {
                return Err(format!("cannot store a computed constant as {}", other.short_name()));
            }
        }
    }
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
