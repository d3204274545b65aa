//! The one parser of `NodeDef.input` strings.
//!
//! TensorFlow's node_def.proto: "Each input is `node:src_output` with `node`
//! being a string name and `src_output` indicating which output tensor to use
//! from `node`. If `src_output` is 0 the `:0` suffix can be omitted. Regular
//! inputs may optionally be followed by control inputs that have the format
//! `^node`." Every other module goes through [`parse_input`].

use std::fmt;

/// One parsed entry of `NodeDef.input`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InputRef<'a> {
    /// `node` or `node:port`: output `port` of `node`.
    Data {
        /// The producer's name.
        node: &'a str,
        /// The producer's output port.
        port: u32,
    },
    /// `^node`: run after `node`, read nothing from it.
    Control {
        /// The node waited for.
        node: &'a str,
    },
}

impl<'a> InputRef<'a> {
    /// The name of the node this input refers to.
    pub fn node(&self) -> &'a str {
        match *self {
            InputRef::Data { node, .. } | InputRef::Control { node } => node,
        }
    }

    /// True for a `^node` control input.
    pub fn is_control(&self) -> bool {
        matches!(self, InputRef::Control { .. })
    }

    /// The length of the canonical form (what `Display` writes).
    pub fn text_len(&self) -> usize {
        match *self {
            InputRef::Data { node, port: 0 } => node.len(),
            InputRef::Data { node, port } => node.len() + 1 + port.ilog10() as usize + 1,
            InputRef::Control { node } => 1 + node.len(),
        }
    }

    /// Appends the canonical form (what `Display` writes) to `out`, without
    /// the formatting machinery: every input of every rewritten node is
    /// written this way.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match *self {
            InputRef::Data { node, port: 0 } => out.extend_from_slice(node.as_bytes()),
            InputRef::Data { node, port } => {
                out.extend_from_slice(node.as_bytes());
                out.push(b':');
                let mut digits = [0u8; 10];
                let mut n = port;
                let mut at = digits.len();
                while n > 0 {
                    at -= 1;
                    digits[at] = b'0' + (n % 10) as u8;
                    n /= 10;
                }
                out.extend_from_slice(&digits[at..]);
            }
            InputRef::Control { node } => {
                out.push(b'^');
                out.extend_from_slice(node.as_bytes());
            }
        }
    }
}

impl fmt::Display for InputRef<'_> {
    /// Writes the canonical form: `node` for port 0, `node:N`, `^node`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            InputRef::Data { node, port: 0 } => f.write_str(node),
            InputRef::Data { node, port } => write!(f, "{node}:{port}"),
            InputRef::Control { node } => write!(f, "^{node}"),
        }
    }
}

/// Why an input string is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputSyntaxError {
    /// The string is empty, or is `^` alone.
    #[error("empty input name")]
    Empty,
    /// The text after the last `:` is not a port number.
    #[error("`{0}` is not a port number")]
    BadPort(String),
    /// `^node:N`: a control input names a node, not a tensor.
    #[error("a control input cannot name a port")]
    ControlWithPort,
}

/// Parses one `NodeDef.input` entry.
///
/// Node names never contain `:` (their regexp is `[A-Za-z0-9.][A-Za-z0-9_./]*`),
/// so the last `:` separates the port.
pub fn parse_input(s: &str) -> Result<InputRef<'_>, InputSyntaxError> {
    if let Some(node) = s.strip_prefix('^') {
        if node.is_empty() {
            return Err(InputSyntaxError::Empty);
        }
        if node.contains(':') {
            return Err(InputSyntaxError::ControlWithPort);
        }
        return Ok(InputRef::Control { node });
    }
    let (node, port) = match s.rsplit_once(':') {
        None => (s, 0),
        Some((node, digits)) => {
            let valid = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
            match digits.parse::<u32>() {
                Ok(port) if valid => (node, port),
                _ => return Err(InputSyntaxError::BadPort(digits.to_string())),
            }
        }
    };
    if node.is_empty() {
        return Err(InputSyntaxError::Empty);
    }
    Ok(InputRef::Data { node, port })
}

/// A tensor as a function body names it (the inputs of a `FunctionDef`'s
/// nodes, its `ret` values): `node:output:index`, the `index`th tensor of
/// the node's output argument `output` (`node:output`: its first). `None`
/// for anything else: an argument's name, a control input `^node`, an index
/// that is not a number.
pub fn parse_body_output(s: &str) -> Option<(&str, &str, u32)> {
    if s.starts_with('^') {
        return None;
    }
    let mut parts = s.splitn(3, ':');
    let (node, output) = (parts.next()?, parts.next()?);
    let index = match parts.next() {
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            digits.parse().ok()?
        }
        Some(_) => return None,
        None => 0,
    };
    Some((node, output, index))
}

/// Splits a user-given tensor name (`node` or `node:N`) into node and port.
pub fn parse_tensor_name(s: &str) -> Result<(&str, u32), InputSyntaxError> {
    match parse_input(s)? {
        InputRef::Data { node, port } => Ok((node, port)),
        InputRef::Control { .. } => Err(InputSyntaxError::BadPort(s.to_string())),
    }
}
