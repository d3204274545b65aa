//! The protobuf wire format, read directly: just enough to walk a message's
//! fields without decoding them. The graph index uses it to find a node's
//! name, op and inputs inside the file's bytes, with no copies.

/// Wire type of varint fields.
pub const VARINT: u8 = 0;
/// Wire type of 8-byte fields.
pub const FIXED64: u8 = 1;
/// Wire type of length-delimited fields (strings, bytes, messages, packed).
pub const LEN: u8 = 2;
/// Wire type of 4-byte fields.
pub const FIXED32: u8 = 5;

/// One field of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// The field number.
    pub number: u32,
    /// The wire type.
    pub wire: u8,
    /// Offset of the field's key in the buffer.
    pub start: usize,
    /// The whole field, key included, ends here.
    pub end: usize,
    /// For LEN fields, where the payload starts; for varints, the value.
    pub value: u64,
}

impl Field {
    /// The payload of a LEN field as a range of the buffer.
    pub fn payload(&self) -> std::ops::Range<usize> {
        self.value as usize..self.end
    }
}

/// Reads a varint at `*at`, advancing past it.
#[inline]
pub fn read_varint(data: &[u8], at: &mut usize) -> Option<u64> {
    // Keys and short lengths are one byte.
    if let Some(&byte) = data.get(*at) {
        if byte < 0x80 {
            *at += 1;
            return Some(u64::from(byte));
        }
    }
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *data.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Appends `value` as a varint.
pub fn write_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// What is wrong with a field, and where its key starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireError {
    /// Offset of the field's key.
    pub at: usize,
    /// The field number, when the key could be read.
    pub number: u32,
    /// What is wrong.
    pub kind: WireErrorKind,
}

/// The ways a field can be malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireErrorKind {
    /// The key is cut off.
    TruncatedKey,
    /// Field number 0.
    ZeroField,
    /// The value is cut off.
    Truncated,
    /// The length runs past the end: (claimed, remaining).
    TooLong(u64, u64),
    /// A wire type protobuf does not use (3, 4: groups; 6, 7).
    BadWireType(u8),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (at, n) = (self.at, self.number);
        match self.kind {
            WireErrorKind::TruncatedKey => write!(f, "byte {at}: truncated field key"),
            WireErrorKind::ZeroField => write!(f, "byte {at}: field number 0 is invalid"),
            WireErrorKind::Truncated => write!(f, "byte {at}: field {n} is truncated"),
            WireErrorKind::TooLong(len, remaining) => {
                write!(f, "byte {at}: field {n} claims {len} bytes but only {remaining} remain")
            }
            WireErrorKind::BadWireType(w) => {
                write!(f, "byte {at}: field {n} has wire type {w}, which is not used")
            }
        }
    }
}

impl From<WireError> for String {
    fn from(e: WireError) -> String {
        e.to_string()
    }
}

/// Iterates the fields of one message. Yields an error (and stops) at the
/// first field that is malformed or runs past the end.
pub struct Fields<'a> {
    data: &'a [u8],
    at: usize,
    failed: bool,
}

/// A field read by [`plain_field`].
#[derive(Debug, PartialEq)]
pub enum Plain<'a> {
    /// A varint's value.
    Varint(u64),
    /// A length-delimited field's payload.
    Len(&'a [u8]),
}

/// The field at `*at` (moved past it) of a message written as TensorFlow
/// and prost write them: its one-byte key and its varint value or
/// length-delimited payload; `None` for any other field (a longer key,
/// field 0, another wire type, a cut one), which the general walk
/// [`fields`] then reads. A few comparisons per field, for the lookups run
/// at every match.
#[inline]
pub fn plain_field<'a>(raw: &'a [u8], at: &mut usize) -> Option<(u8, Plain<'a>)> {
    let key = *raw.get(*at)?;
    *at += 1;
    if !(8..0x80).contains(&key) {
        return None;
    }
    match key & 7 {
        VARINT => Some((key, Plain::Varint(read_varint(raw, at)?))),
        LEN => {
            let len = usize::try_from(read_varint(raw, at)?).ok()?;
            let payload = raw.get(*at..at.checked_add(len)?)?;
            *at += len;
            Some((key, Plain::Len(payload)))
        }
        _ => None,
    }
}

/// The payload of the first length-delimited field with the one-byte key
/// `key`, read by [`plain_field`]; `None` for a message it does not read.
pub fn first_len_field_plain(raw: &[u8], key: u8) -> Option<Option<&[u8]>> {
    let mut at = 0;
    while at < raw.len() {
        if let (k, Plain::Len(payload)) = plain_field(raw, &mut at)? {
            if k == key {
                return Some(Some(payload));
            }
        }
    }
    Some(None)
}

/// Whether two short byte strings (names, attribute keys) are equal,
/// compared inline with a few overlapping loads instead of a call to
/// `memcmp`, which dominates comparing strings of a few bytes.
#[inline]
pub fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let u32_at = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=8 => u32_at(a, 0) == u32_at(b, 0) && u32_at(a, n - 4) == u32_at(b, n - 4),
        9..=16 => u64_at(a, 0) == u64_at(b, 0) && u64_at(a, n - 8) == u64_at(b, n - 8),
        _ => a == b,
    }
}

/// The fields of the message encoded in `data`.
pub fn fields(data: &[u8]) -> Fields<'_> {
    Fields { data, at: 0, failed: false }
}

impl Iterator for Fields<'_> {
    type Item = Result<Field, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.data.len() {
            return None;
        }
        let result = self.step();
        self.failed = result.is_err();
        Some(result)
    }
}

impl Fields<'_> {
    #[inline]
    fn step(&mut self) -> Result<Field, WireError> {
        let data = self.data;
        let start = self.at;
        let fail = |number, kind| WireError { at: start, number, kind };
        let key = read_varint(data, &mut self.at).ok_or(fail(0, WireErrorKind::TruncatedKey))?;
        let number = u32::try_from(key >> 3).unwrap_or(0);
        let wire = (key & 7) as u8;
        if number == 0 {
            return Err(fail(0, WireErrorKind::ZeroField));
        }
        let value = match wire {
            VARINT => {
                read_varint(data, &mut self.at).ok_or(fail(number, WireErrorKind::Truncated))?
            }
            FIXED64 | FIXED32 => {
                let size = if wire == FIXED64 { 8 } else { 4 };
                if data.len() - self.at < size {
                    return Err(fail(number, WireErrorKind::Truncated));
                }
                self.at += size;
                0
            }
            LEN => {
                let len = read_varint(data, &mut self.at)
                    .ok_or(fail(number, WireErrorKind::Truncated))?;
                let remaining = (data.len() - self.at) as u64;
                if len > remaining {
                    return Err(fail(number, WireErrorKind::TooLong(len, remaining)));
                }
                let payload = self.at as u64;
                self.at += len as usize;
                payload
            }
            other => return Err(fail(number, WireErrorKind::BadWireType(other))),
        };
        Ok(Field { number, wire, start, end: self.at, value })
    }
}

/// A copy of an encoded `NodeDef` with its `input` list (field 3) replaced,
/// every other field copied byte for byte. The new inputs stand where the
/// old ones did (or after the name and op, if there were none).
pub fn replace_inputs(node: &[u8], inputs: &[String]) -> Result<Vec<u8>, WireError> {
    let extra: usize = inputs.iter().map(|i| i.len() + 6).sum();
    let mut out = Vec::with_capacity(node.len() + extra);
    write_with_name_and_inputs(&mut out, node, None, |out| {
        for input in inputs {
            write_bytes_field(3, input.as_bytes(), out);
        }
    })?;
    Ok(out)
}

/// Appends a LEN field.
pub fn write_bytes_field(number: u32, payload: &[u8], out: &mut Vec<u8>) {
    write_varint(u64::from(number) << 3 | u64::from(LEN), out);
    write_varint(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

/// Where [`write_with_name_and_inputs`] put a node's name and op (the
/// payloads of the last fields 1 and 2 it wrote, as positions in `out`;
/// empty at 0 when it wrote none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Located {
    /// The name's bytes.
    pub name: std::ops::Range<usize>,
    /// The op's bytes.
    pub op: std::ops::Range<usize>,
}

/// Appends an encoded NodeDef with its `input` list (field 3) replaced by
/// what `inputs` writes (called once, where the old inputs were or before
/// the first field numbered above 3) and, when given, its `name` (field 1)
/// by `name`; every other field is copied as it is. Returns where the name
/// and op went, so that what was just written need not be read again.
pub fn write_with_name_and_inputs(
    out: &mut Vec<u8>,
    node: &[u8],
    name: Option<&str>,
    inputs: impl FnOnce(&mut Vec<u8>),
) -> Result<Located, WireError> {
    let mut inputs = Some(inputs);
    let mut emit = |out: &mut Vec<u8>| {
        if let Some(write) = inputs.take() {
            write(out);
        }
    };
    let mut located = Located::default();
    // A name without a field to replace (prost leaves an empty one out)
    // goes first.
    let mut named = name.is_none();
    let write_name = |out: &mut Vec<u8>, named: &mut bool, located: &mut Located| {
        if let (Some(name), false) = (name, *named) {
            write_bytes_field(1, name.as_bytes(), out);
            located.name = out.len() - name.len()..out.len();
            *named = true;
        }
    };
    for field in fields(node) {
        let field = field?;
        write_name(out, &mut named, &mut located);
        if field.number == 1 && name.is_some() {
            continue;
        }
        if field.number == 3 {
            emit(out);
            continue;
        }
        if field.number > 3 {
            emit(out);
        }
        let at = out.len();
        out.extend_from_slice(&node[field.start..field.end]);
        if field.wire == LEN && (field.number == 1 || field.number == 2) {
            let payload = field.payload();
            let copied = at + (payload.start - field.start)..at + (payload.end - field.start);
            match field.number {
                1 => located.name = copied,
                _ => located.op = copied,
            }
        }
    }
    write_name(out, &mut named, &mut located);
    emit(out);
    Ok(located)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::NodeDef;
    use prost::Message;

    /// `same` agrees with `==` for every length it has a case for, on equal
    /// strings, strings differing in any one byte, and different lengths.
    #[test]
    fn same_is_equality() {
        for n in 0..40usize {
            let a: Vec<u8> = (0..n as u8).map(|i| b'a' + i % 26).collect();
            assert!(same(&a, &a.clone()), "length {n}");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!same(&a, &b), "length {n}, byte {at}");
            }
            let mut longer = a.clone();
            longer.push(b'a');
            assert!(!same(&a, &longer) && !same(&longer, &a), "length {n}");
        }
    }

    /// What `fields` finds first, the plain reader finds, where it reads.
    fn first_by_walk(raw: &[u8], number: u32) -> Option<&[u8]> {
        fields(raw)
            .flatten()
            .find(|f| f.number == number && f.wire == LEN)
            .map(|f| &raw[f.payload()])
    }

    #[test]
    fn plain_field_lookup_agrees_with_the_walk() {
        let mut node = NodeDef {
            name: "a/b".into(),
            op: "Conv2D".into(),
            input: vec!["x".into(), "^c".into()],
            ..Default::default()
        };
        let without = node.encode_to_vec();
        assert_eq!(first_len_field_plain(&without, 0x22), Some(None));
        node.device = "/device:CPU:0".into();
        let with = node.encode_to_vec();
        assert_eq!(first_len_field_plain(&with, 0x22), Some(first_by_walk(&with, 4)));
        assert_eq!(first_len_field_plain(&with, 0x22), Some(Some(&b"/device:CPU:0"[..])));
        assert_eq!(first_len_field_plain(&with, 0x1a), Some(Some(&b"x"[..])));
        // A varint field is stepped over.
        let mut varint = vec![0x08, 0x96, 0x01];
        varint.extend(&with);
        assert_eq!(first_len_field_plain(&varint, 0x22), Some(first_by_walk(&with, 4)));
        // A fixed-size field, a two-byte key, field 0 or a cut message:
        // left to the walk.
        for other in
            [&[0x0d, 0, 0, 0, 0][..], &[0x82, 0x01, 0x00], &[0x02, 0x00], &with[..with.len() - 1]]
        {
            assert_eq!(first_len_field_plain(other, 0x22), None, "{other:?}");
        }
    }
}
