//! NumPy `.npy` arrays: the format of feeds and fetched outputs, since it is
//! what TensorFlow users already have. Versions 1.0 to 3.0, C order,
//! little-endian (or byte-sized) numeric and bool element types.

use std::path::Path;

use crate::proto::DataType;

/// Element types graphrw reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// `<f2`
    F16,
    /// `<f4`
    F32,
    /// `<f8`
    F64,
    /// `|i1`
    I8,
    /// `<i2`
    I16,
    /// `<i4`
    I32,
    /// `<i8`
    I64,
    /// `|u1`
    U8,
    /// `<u2`
    U16,
    /// `<u4`
    U32,
    /// `<u8`
    U64,
    /// `|b1`
    Bool,
}

impl Dtype {
    const ALL: [(Dtype, &'static str, usize); 12] = [
        (Dtype::F16, "f2", 2),
        (Dtype::F32, "f4", 4),
        (Dtype::F64, "f8", 8),
        (Dtype::I8, "i1", 1),
        (Dtype::I16, "i2", 2),
        (Dtype::I32, "i4", 4),
        (Dtype::I64, "i8", 8),
        (Dtype::U8, "u1", 1),
        (Dtype::U16, "u2", 2),
        (Dtype::U32, "u4", 4),
        (Dtype::U64, "u8", 8),
        (Dtype::Bool, "b1", 1),
    ];

    /// Bytes per element.
    pub fn size(self) -> usize {
        Self::ALL.iter().find(|(d, _, _)| *d == self).map_or(1, |e| e.2)
    }

    fn code(self) -> &'static str {
        Self::ALL.iter().find(|(d, _, _)| *d == self).map_or("b1", |e| e.1)
    }

    /// The TensorFlow type with the same element layout.
    pub fn to_tf(self) -> DataType {
        match self {
            Dtype::F16 => DataType::DtHalf,
            Dtype::F32 => DataType::DtFloat,
            Dtype::F64 => DataType::DtDouble,
            Dtype::I8 => DataType::DtInt8,
            Dtype::I16 => DataType::DtInt16,
            Dtype::I32 => DataType::DtInt32,
            Dtype::I64 => DataType::DtInt64,
            Dtype::U8 => DataType::DtUint8,
            Dtype::U16 => DataType::DtUint16,
            Dtype::U32 => DataType::DtUint32,
            Dtype::U64 => DataType::DtUint64,
            Dtype::Bool => DataType::DtBool,
        }
    }
}

/// An n-dimensional array in row-major order, elements little-endian.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions; empty for a scalar.
    pub shape: Vec<usize>,
    /// `shape.product() * dtype.size()` bytes.
    pub data: Vec<u8>,
}

/// Why a `.npy` file could not be read.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum NpyError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The bytes are not a supported `.npy` array.
    #[error("{path}: not a supported .npy array: {reason}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl Array {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads a `.npy` file.
    pub fn read(path: &Path) -> Result<Array, NpyError> {
        let shown = path.display().to_string();
        let bytes =
            std::fs::read(path).map_err(|source| NpyError::Io { path: shown.clone(), source })?;
        Array::parse(&bytes).map_err(|reason| NpyError::Format { path: shown, reason })
    }

    /// Parses the bytes of a `.npy` file.
    pub fn parse(bytes: &[u8]) -> Result<Array, String> {
        if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
            return Err("missing the \\x93NUMPY magic".into());
        }
        let (header_len, start) = match bytes[6] {
            1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            2 | 3 if bytes.len() >= 12 => {
                (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
            }
            v => return Err(format!("unsupported format version {v}")),
        };
        let header = bytes.get(start..start + header_len).ok_or("the header is truncated")?;
        let header = std::str::from_utf8(header).map_err(|_| "the header is not text")?;
        let descr = dict_value(header, "descr").ok_or("the header has no descr")?;
        let descr = descr.trim_matches(|c| c == '\'' || c == '"');
        let (order, code) = descr.split_at(1.min(descr.len()));
        if order == ">" {
            return Err(format!("big-endian arrays ({descr}) are not supported"));
        }
        let dtype = Dtype::ALL
            .iter()
            .find(|(_, c, _)| *c == code)
            .map(|e| e.0)
            .ok_or_else(|| format!("element type {descr} is not supported"))?;
        if dict_value(header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
            return Err("Fortran-order arrays are not supported".into());
        }
        let shape_text = dict_value(header, "shape").ok_or("the header has no shape")?;
        let inner = shape_text
            .strip_prefix('(')
            .and_then(|s| s.split(')').next())
            .ok_or("the shape is not a tuple")?;
        let shape = inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<usize>().map_err(|_| format!("bad dimension `{s}`")))
            .collect::<Result<Vec<_>, _>>()?;
        let data = &bytes[start + header_len..];
        let expected = shape.iter().product::<usize>() * dtype.size();
        if data.len() != expected {
            return Err(format!("{} data bytes, the shape needs {expected}", data.len()));
        }
        Ok(Array { dtype, shape, data: data.to_vec() })
    }

    /// The `.npy` (version 1.0) encoding of the array.
    pub fn to_bytes(&self) -> Vec<u8> {
        let order = if self.dtype.size() == 1 { '|' } else { '<' };
        let shape = match self.shape.as_slice() {
            [one] => format!("({one},)"),
            dims => {
                format!("({})", dims.iter().map(usize::to_string).collect::<Vec<_>>().join(", "))
            }
        };
        let mut header = format!(
            "{{'descr': '{order}{}', 'fortran_order': False, 'shape': {shape}, }}",
            self.dtype.code()
        );
        // Pad so that the data starts on a 64-byte boundary; end with '\n'.
        let unpadded = 10 + header.len() + 1;
        header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
        header.push('\n');
        let mut out = Vec::with_capacity(10 + header.len() + self.data.len());
        out.extend_from_slice(b"\x93NUMPY\x01\x00");
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&self.data);
        out
    }

    /// Writes the array to `path` atomically.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let bytes = self.to_bytes();
        crate::io::write_atomic(path, |out| std::io::Write::write_all(out, &bytes))
    }

    /// The elements as f64 (bool as 0/1, f16 decoded).
    pub fn to_f64(&self) -> Vec<f64> {
        let size = self.dtype.size();
        self.data
            .chunks_exact(size)
            .map(|c| match self.dtype {
                Dtype::F16 => f16_to_f64(u16::from_le_bytes([c[0], c[1]])),
                Dtype::F32 => f64::from(f32::from_le_bytes(c.try_into().unwrap())),
                Dtype::F64 => f64::from_le_bytes(c.try_into().unwrap()),
                Dtype::I8 => f64::from(c[0] as i8),
                Dtype::I16 => f64::from(i16::from_le_bytes([c[0], c[1]])),
                Dtype::I32 => f64::from(i32::from_le_bytes(c.try_into().unwrap())),
                Dtype::I64 => i64::from_le_bytes(c.try_into().unwrap()) as f64,
                Dtype::U8 | Dtype::Bool => f64::from(c[0]),
                Dtype::U16 => f64::from(u16::from_le_bytes([c[0], c[1]])),
                Dtype::U32 => f64::from(u32::from_le_bytes(c.try_into().unwrap())),
                Dtype::U64 => u64::from_le_bytes(c.try_into().unwrap()) as f64,
            })
            .collect()
    }

    /// An f32 array.
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Array {
        Array {
            dtype: Dtype::F32,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

/// IEEE half precision to f64.
pub fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let frac = f64::from(bits & 0x3ff);
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
    }
}

/// The text after `'key':` in a Python dict literal, up to the next key.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'")).or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    if rest.starts_with('(') {
        return rest.find(')').map(|end| &rest[..=end]);
    }
    let end = rest.find(',').unwrap_or(rest.len());
    Some(rest[..end].trim())
}
