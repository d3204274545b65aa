//! Tensors the evaluator computes with: a shape and typed values.

use crate::npy::{self, Array as Npy};
use crate::proto::{DataType, TensorProto};

/// Typed element storage.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// float32 (also float16/bfloat16 constants, widened).
    F32(Vec<f32>),
    /// float64.
    F64(Vec<f64>),
    /// int32 (also int8/int16/uint8/uint16).
    I32(Vec<i32>),
    /// int64.
    I64(Vec<i64>),
    /// bool.
    Bool(Vec<bool>),
}

/// A dense tensor in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values.
    pub data: Data,
}

impl Tensor {
    /// A float32 tensor.
    pub fn f32(shape: Vec<usize>, values: Vec<f32>) -> Tensor {
        Tensor { shape, data: Data::F32(values) }
    }

    /// An int32 vector.
    pub fn i32_vec(values: Vec<i32>) -> Tensor {
        Tensor { shape: vec![values.len()], data: Data::I32(values) }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type's name.
    pub fn dtype_name(&self) -> &'static str {
        match self.data {
            Data::F32(_) => "float32",
            Data::F64(_) => "float64",
            Data::I32(_) => "int32",
            Data::I64(_) => "int64",
            Data::Bool(_) => "bool",
        }
    }

    /// Every element as f64.
    pub fn to_f64(&self) -> Vec<f64> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Data::F64(v) => v.clone(),
            Data::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Data::I64(v) => v.iter().map(|&x| x as f64).collect(),
            Data::Bool(v) => v.iter().map(|&x| f64::from(u8::from(x))).collect(),
        }
    }

    /// Integer elements (for shapes, axes, indices).
    pub fn to_i64(&self) -> Result<Vec<i64>, String> {
        match &self.data {
            Data::I32(v) => Ok(v.iter().map(|&x| i64::from(x)).collect()),
            Data::I64(v) => Ok(v.clone()),
            _ => Err(format!("expected an integer tensor, got {}", self.dtype_name())),
        }
    }

    /// A scalar bool (a Switch predicate).
    pub fn scalar_bool(&self) -> Result<bool, String> {
        match &self.data {
            Data::Bool(v) if v.len() == 1 => Ok(v[0]),
            _ => Err(format!("expected a bool scalar, got {} {:?}", self.dtype_name(), self.shape)),
        }
    }

    /// The values of a constant.
    pub fn from_proto(t: &TensorProto) -> Result<Tensor, String> {
        let array = crate::tensor::from_proto(t)?;
        let dtype =
            DataType::try_from(t.dtype).map_err(|_| format!("unknown dtype {}", t.dtype))?;
        let data = match dtype {
            DataType::DtFloat | DataType::DtHalf | DataType::DtBfloat16 => {
                Data::F32(array.data.iter().map(|&v| v as f32).collect())
            }
            DataType::DtDouble => Data::F64(array.data),
            DataType::DtInt32
            | DataType::DtInt16
            | DataType::DtInt8
            | DataType::DtUint8
            | DataType::DtUint16 => Data::I32(array.data.iter().map(|&v| v as i32).collect()),
            DataType::DtInt64 => Data::I64(array.data.iter().map(|&v| v as i64).collect()),
            DataType::DtBool => Data::Bool(array.data.iter().map(|&v| v != 0.0).collect()),
            other => return Err(format!("{} tensors are not supported", other.short_name())),
        };
        Ok(Tensor { shape: array.shape, data })
    }

    /// Reads a `.npy` array.
    pub fn from_npy(array: &Npy) -> Result<Tensor, String> {
        let values = array.to_f64();
        let data = match array.dtype {
            npy::Dtype::F16 | npy::Dtype::F32 => {
                Data::F32(values.iter().map(|&v| v as f32).collect())
            }
            npy::Dtype::F64 => Data::F64(values),
            npy::Dtype::I8
            | npy::Dtype::I16
            | npy::Dtype::I32
            | npy::Dtype::U8
            | npy::Dtype::U16 => Data::I32(values.iter().map(|&v| v as i32).collect()),
            npy::Dtype::I64 | npy::Dtype::U32 | npy::Dtype::U64 => {
                Data::I64(values.iter().map(|&v| v as i64).collect())
            }
            npy::Dtype::Bool => Data::Bool(values.iter().map(|&v| v != 0.0).collect()),
        };
        Ok(Tensor { shape: array.shape.clone(), data })
    }

    /// Writes as a `.npy` array.
    pub fn to_npy(&self) -> Npy {
        let (dtype, data): (npy::Dtype, Vec<u8>) = match &self.data {
            Data::F32(v) => (npy::Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Data::F64(v) => (npy::Dtype::F64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Data::I32(v) => (npy::Dtype::I32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Data::I64(v) => (npy::Dtype::I64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Data::Bool(v) => (npy::Dtype::Bool, v.iter().map(|&x| u8::from(x)).collect()),
        };
        Npy { dtype, shape: self.shape.clone(), data }
    }
}
