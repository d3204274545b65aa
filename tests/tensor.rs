//! Constant tensors: both encodings TensorFlow writes, the fill-last rule,
//! and writing back in each supported dtype.

use bytes::Bytes;
use graphrw::proto::{DataType, TensorProto, TensorShapeProto, tensor_shape_proto::Dim};
use graphrw::tensor::{Array, from_proto, to_proto};

fn shape(dims: &[i64]) -> Option<TensorShapeProto> {
    Some(TensorShapeProto {
        dim: dims.iter().map(|&size| Dim { size, name: String::new() }).collect(),
        unknown_rank: false,
    })
}

#[test]
fn typed_values_repeat_the_last_to_fill_the_shape() {
    let t = TensorProto {
        dtype: DataType::DtFloat as i32,
        tensor_shape: shape(&[2, 3]),
        float_val: vec![1.5, 2.0],
        ..Default::default()
    };
    assert_eq!(from_proto(&t).unwrap().data, vec![1.5, 2.0, 2.0, 2.0, 2.0, 2.0]);
    let t = TensorProto {
        dtype: DataType::DtInt32 as i32,
        tensor_shape: shape(&[3]),
        int_val: vec![7],
        ..Default::default()
    };
    assert_eq!(from_proto(&t).unwrap().data, vec![7.0; 3]);
    let t = TensorProto {
        dtype: DataType::DtBool as i32,
        tensor_shape: shape(&[]),
        bool_val: vec![true],
        ..Default::default()
    };
    assert_eq!(from_proto(&t).unwrap(), Array { shape: vec![], data: vec![1.0] });
    // No values at all: zeros.
    let t = TensorProto {
        dtype: DataType::DtInt64 as i32,
        tensor_shape: shape(&[2]),
        ..Default::default()
    };
    assert_eq!(from_proto(&t).unwrap().data, vec![0.0, 0.0]);
    // More values than the shape holds is an error, not a wrong tensor.
    let t = TensorProto {
        dtype: DataType::DtFloat as i32,
        tensor_shape: shape(&[1]),
        float_val: vec![1.0, 2.0],
        ..Default::default()
    };
    assert!(from_proto(&t).is_err());
}

#[test]
fn tensor_content_and_half_precision() {
    let content: Vec<u8> = [1.0f32, -2.0, 0.5].iter().flat_map(|v| v.to_le_bytes()).collect();
    let t = TensorProto {
        dtype: DataType::DtFloat as i32,
        tensor_shape: shape(&[3]),
        tensor_content: Bytes::from(content),
        ..Default::default()
    };
    assert_eq!(from_proto(&t).unwrap().data, vec![1.0, -2.0, 0.5]);
    let short = TensorProto { tensor_content: Bytes::from_static(&[0, 0, 128]), ..t };
    assert!(from_proto(&short).unwrap_err().contains("tensor_content has 3 bytes"));
    // half_val holds the 16-bit patterns: 0x3c00 is 1.0, 0xc000 is -2.0.
    let t = TensorProto {
        dtype: DataType::DtHalf as i32,
        tensor_shape: shape(&[2]),
        half_val: vec![0x3c00, 0xc000],
        ..Default::default()
    };
    assert_eq!(from_proto(&t).unwrap().data, vec![1.0, -2.0]);
}

#[test]
fn computed_values_store_in_each_dtype() {
    let array = Array { shape: vec![2, 2], data: vec![1.0, -0.5, 3.25, 1.0e-3] };
    for dtype in [DataType::DtFloat, DataType::DtDouble, DataType::DtHalf, DataType::DtBfloat16] {
        let back = from_proto(&to_proto(&array, dtype).unwrap()).unwrap();
        assert_eq!(back.shape, vec![2, 2]);
        let tolerance = match dtype {
            DataType::DtHalf => 1e-3,
            DataType::DtBfloat16 => 1e-2,
            _ => 1e-7,
        };
        for (a, b) in back.data.iter().zip(&array.data) {
            assert!((a - b).abs() <= tolerance * b.abs().max(1e-3), "{dtype:?}: {a} vs {b}");
        }
    }
    let ints = from_proto(
        &to_proto(&Array { shape: vec![2], data: vec![3.0, -4.0] }, DataType::DtInt32).unwrap(),
    )
    .unwrap();
    assert_eq!(ints.data, vec![3.0, -4.0]);
    assert!(to_proto(&array, DataType::DtString).is_err());
}

#[test]
fn broadcasting_and_reshape() {
    let a = Array { shape: vec![2, 1], data: vec![1.0, 2.0] };
    let b = Array { shape: vec![3], data: vec![10.0, 20.0, 30.0] };
    let sum = a.zip(&b, |x, y| x + y).unwrap();
    assert_eq!(sum.shape, vec![2, 3]);
    assert_eq!(sum.data, vec![11.0, 21.0, 31.0, 12.0, 22.0, 32.0]);
    assert!(
        sum.zip(&Array { shape: vec![2], data: vec![0.0; 2] }, |x, y| x + y)
            .unwrap_err()
            .contains("do not broadcast")
    );
    assert_eq!(sum.reshape(&[3, -1]).unwrap().shape, vec![3, 2]);
    assert!(sum.reshape(&[4, -1]).is_err());
}

/// `zip_into` (into a buffer kept from one use to the next, without the
/// general loop when `self` has the result's shape) gives what the general
/// broadcasting loop gives, for every kind of operand.
#[test]
fn broadcasting_into_a_kept_buffer_equals_the_general_loop() {
    let array = |shape: &[usize]| {
        let n: usize = shape.iter().product();
        Array { shape: shape.to_vec(), data: (0..n).map(|i| i as f64 * 0.5 - 3.0).collect() }
    };
    let pairs: &[(&[usize], &[usize])] = &[
        (&[2, 3, 4], &[4]),
        (&[2, 3, 4], &[3, 1]),
        (&[2, 3, 4], &[1, 3, 4]),
        (&[2, 3, 4], &[2, 3, 4]),
        (&[2, 3, 4], &[]),
        (&[2, 3, 4], &[1]),
        (&[3, 4], &[2, 3, 4]), // the result is larger than self: not in place
        (&[1, 4], &[3, 1]),
        (&[2, 6], &[3, 4]), // does not broadcast
        (&[0, 3], &[3]),
        (&[2, 0], &[1]),
        (&[], &[1]),
        (&[], &[]),
        (&[4], &[1, 1]),
    ];
    // Broadcasting by its definition: each output index read back in both.
    let naive = |x: &Array, y: &Array| -> Option<Array> {
        let rank = x.shape.len().max(y.shape.len());
        let pad = |s: &[usize]| [vec![1; rank - s.len()], s.to_vec()].concat();
        let (sx, sy) = (pad(&x.shape), pad(&y.shape));
        let mut shape = vec![];
        for (p, q) in sx.iter().zip(&sy) {
            shape.push(match (p, q) {
                (p, q) if p == q => *p,
                (1, q) => *q,
                (p, 1) => *p,
                _ => return None,
            });
        }
        let at = |dims: &[usize], index: &[usize]| {
            dims.iter().zip(index).fold(0, |acc, (&d, &i)| acc * d + if d == 1 { 0 } else { i })
        };
        let count: usize = shape.iter().product();
        let mut data = vec![];
        for flat in 0..count {
            let mut index = vec![0; rank];
            let mut rest = flat;
            for k in (0..rank).rev() {
                index[k] = rest % shape[k];
                rest /= shape[k];
            }
            data.push(x.data[at(&sx, &index)] * 10.0 - y.data[at(&sy, &index)]);
        }
        Some(Array { shape, data })
    };
    // One buffer for every pair, as a rule's constants use theirs.
    let mut out = Array { shape: vec![7], data: vec![f64::NAN; 7] };
    for (a, b) in pairs {
        let general = array(a).zip(&array(b), |x, y| x * 10.0 - y);
        let into = array(a).zip_into(&array(b), &mut out, |x, y| x * 10.0 - y);
        assert_eq!(general, into.map(|()| out.clone()), "{a:?} with {b:?}");
        assert_eq!(general.ok(), naive(&array(a), &array(b)), "{a:?} with {b:?}");
        let swapped = array(b).zip(&array(a), |x, y| x * 10.0 - y);
        assert_eq!(swapped.ok(), naive(&array(b), &array(a)), "{b:?} with {a:?}");
    }
}

#[test]
fn a_reshape_infers_its_minus_one_or_is_refused() {
    use graphrw::tensor::reshape_inferred;
    assert_eq!(reshape_inferred(12, &[3, -1]), Some(4));
    assert_eq!(reshape_inferred(12, &[3, 4]), Some(0));
    assert_eq!(reshape_inferred(0, &[0, 5]), Some(0));
    assert_eq!(reshape_inferred(12, &[5, -1]), None, "12 values are not rows of 5");
    assert_eq!(reshape_inferred(12, &[-1, -1]), None, "two unknowns");
    assert_eq!(reshape_inferred(12, &[-3, -4]), None, "negative sizes");
    assert_eq!(reshape_inferred(0, &[0, -1]), None, "nothing to infer from");
    assert_eq!(reshape_inferred(12, &[1 << 40, 1 << 40, -1]), None, "too many elements");
}
