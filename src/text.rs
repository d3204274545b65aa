//! The protobuf text format, printed the way TensorFlow users see it.
//!
//! prost-reflect parses the text format, but its printer keeps map entries
//! in hash order and writes repeated messages as `[...]` lists. This printer
//! matches protobuf's Python `text_format.MessageToString`: fields in
//! field-number order, one line per repeated element, map entries sorted by
//! key, bytes escaped with octal, floats as Python prints them. The output
//! is deterministic and parses back to the same message.

use std::fmt::Write;

use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, ReflectMessage, Value};

/// Prints `message` in text format, two spaces per nesting level.
pub fn print(message: &DynamicMessage) -> String {
    let mut out = String::new();
    print_fields(message, 0, &mut out);
    out
}

/// Appends `name { ... }` for the message field `message`, at the top
/// level: what [`print`] writes for each item of a repeated message field
/// of the message it prints, so a large message's items can be printed
/// apart (on several cores) and joined.
pub fn print_item(name: &str, message: &DynamicMessage, out: &mut String) {
    print_message_field(name, message, 0, out);
}

fn print_message_field(name: &str, message: &DynamicMessage, depth: usize, out: &mut String) {
    indent(depth, out);
    out.push_str(name);
    out.push_str(" {\n");
    print_fields(message, depth + 1, out);
    indent(depth, out);
    out.push_str("}\n");
}

fn print_fields(message: &DynamicMessage, depth: usize, out: &mut String) {
    let mut fields: Vec<FieldDescriptor> = message.descriptor().fields().collect();
    fields.sort_by_key(FieldDescriptor::number);
    for field in fields {
        if !message.has_field(&field) {
            continue;
        }
        let value = message.get_field(&field);
        match &*value {
            Value::List(items) => {
                for item in items {
                    print_field(field.name(), item, &field.kind(), depth, out);
                }
            }
            Value::Map(map) => {
                let Kind::Message(entry) = field.kind() else {
                    continue;
                };
                let key_field = entry.map_entry_key_field();
                let value_field = entry.map_entry_value_field();
                let mut entries: Vec<(&MapKey, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                for (key, value) in entries {
                    indent(depth, out);
                    out.push_str(field.name());
                    out.push_str(" {\n");
                    // An entry is a message of its own: a scalar key or value
                    // equal to its default is not printed, a message value is.
                    let key = Value::from(key.clone());
                    if !key.is_default(&key_field.kind()) {
                        print_field(key_field.name(), &key, &key_field.kind(), depth + 1, out);
                    }
                    let kind = value_field.kind();
                    if matches!(value, Value::Message(_)) || !value.is_default(&kind) {
                        print_field(value_field.name(), value, &kind, depth + 1, out);
                    }
                    indent(depth, out);
                    out.push_str("}\n");
                }
            }
            single => print_field(field.name(), single, &field.kind(), depth, out),
        }
    }
}

fn indent(depth: usize, out: &mut String) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn print_field(name: &str, value: &Value, kind: &Kind, depth: usize, out: &mut String) {
    if let Value::Message(message) = value {
        print_message_field(name, message, depth, out);
        return;
    }
    indent(depth, out);
    out.push_str(name);
    out.push_str(": ");
    match value {
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::I32(v) => write!(out, "{v}").unwrap(),
        Value::I64(v) => write!(out, "{v}").unwrap(),
        Value::U32(v) => write!(out, "{v}").unwrap(),
        Value::U64(v) => write!(out, "{v}").unwrap(),
        Value::F32(v) => push_python_float(shortest_f32(*v), out),
        Value::F64(v) => push_python_float(*v, out),
        Value::String(s) => push_escaped(s.as_bytes(), out),
        Value::Bytes(b) => push_escaped(b, out),
        Value::EnumNumber(n) => match kind {
            Kind::Enum(e) => match e.get_value(*n) {
                Some(v) => out.push_str(v.name()),
                None => write!(out, "{n}").unwrap(),
            },
            _ => write!(out, "{n}").unwrap(),
        },
        Value::Message(_) | Value::List(_) | Value::Map(_) => unreachable!("handled above"),
    }
    out.push('\n');
}

/// The double that Python's text_format prints for a float field: the value
/// rounded to the fewest significant digits (at least 6) that still read
/// back as the same f32.
fn shortest_f32(value: f32) -> f64 {
    if !value.is_finite() {
        return f64::from(value);
    }
    for digits in 6..=9 {
        let rounded: f64 = format!("{:.*e}", digits - 1, value).parse().unwrap_or(f64::NAN);
        if rounded as f32 == value {
            return rounded;
        }
    }
    f64::from(value)
}

/// Writes a double as Python's `repr` does: the shortest digits that read
/// back, positional when the exponent is in [-4, 16), `1e-05` otherwise,
/// always with a `.0` or an exponent; `inf`, `-inf`, `nan`.
fn push_python_float(value: f64, out: &mut String) {
    if value.is_nan() {
        out.push_str("nan");
        return;
    }
    if value.is_infinite() {
        out.push_str(if value > 0.0 { "inf" } else { "-inf" });
        return;
    }
    // `{:e}` gives the shortest round-trip digits: `-1.2345e-5`.
    let sci = format!("{value:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    out.push_str(sign);
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        if point <= 0 {
            out.push_str("0.");
            out.push_str(&"0".repeat((-point) as usize));
            out.push_str(&digits);
        } else if point as usize >= digits.len() {
            out.push_str(&digits);
            out.push_str(&"0".repeat(point as usize - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..point as usize]);
            out.push('.');
            out.push_str(&digits[point as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs()).unwrap();
    }
}

fn push_escaped(bytes: &[u8], out: &mut String) {
    out.push('"');
    for &b in bytes {
        match b {
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b'"' => out.push_str("\\\""),
            b'\'' => out.push_str("\\'"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => write!(out, "\\{b:03o}").unwrap(),
        }
    }
    out.push('"');
}
