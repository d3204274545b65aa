//! The protobuf text format, printed the way TensorFlow prints it.
//!
//! prost-reflect parses the text format, but its printer keeps map entries
//! in hash order and writes repeated messages as `[...]` lists. This printer
//! follows TensorFlow's (C++ `TextFormat`): fields in field-number order, one
//! line per repeated element, map entries sorted by key, bytes escaped with
//! octal. The output is deterministic and parses back to the same message.

use std::fmt::Write;

use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, ReflectMessage, Value};

/// Prints `message` in text format, two spaces per nesting level.
pub fn print(message: &DynamicMessage) -> String {
    let mut out = String::new();
    print_fields(message, 0, &mut out);
    out
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
                    let key = Value::from(key.clone());
                    print_field(key_field.name(), &key, &key_field.kind(), depth + 1, out);
                    print_field(
                        value_field.name(),
                        value,
                        &value_field.kind(),
                        depth + 1,
                        out,
                    );
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
    indent(depth, out);
    out.push_str(name);
    if let Value::Message(message) = value {
        out.push_str(" {\n");
        print_fields(message, depth + 1, out);
        indent(depth, out);
        out.push_str("}\n");
        return;
    }
    out.push_str(": ");
    match value {
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::I32(v) => write!(out, "{v}").unwrap(),
        Value::I64(v) => write!(out, "{v}").unwrap(),
        Value::U32(v) => write!(out, "{v}").unwrap(),
        Value::U64(v) => write!(out, "{v}").unwrap(),
        Value::F32(v) => push_float(f64::from(*v), v.to_string(), out),
        Value::F64(v) => push_float(*v, v.to_string(), out),
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

/// Rust's `Display` of a float is the shortest text that reads back as the
/// same value; the text format spells the non-finite ones `inf` and `nan`.
fn push_float(value: f64, shortest: String, out: &mut String) {
    if value.is_nan() {
        out.push_str("nan");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "inf" } else { "-inf" });
    } else {
        out.push_str(&shortest);
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
