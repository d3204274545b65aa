//! Lossless I/O on every graph TensorFlow wrote: binary and text round trips
//! give back the same message, no field of the file is unknown to our
//! protos, and output bytes are deterministic.

mod common;

use bytes::Bytes;
use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage, Value};

use graphrw::Graph;
use graphrw::io::{Format, decode_binary, encode, read_graph, write_graph};
use graphrw::proto::{FILE_DESCRIPTOR_SET, GraphDef};

/// A model read and decoded in full.
fn read_def(path: &std::path::Path) -> GraphDef {
    read_graph(path, None).unwrap().to_def().unwrap()
}

fn pool() -> DescriptorPool {
    DescriptorPool::decode(FILE_DESCRIPTOR_SET).unwrap()
}

fn bytes_of(graph: &GraphDef, format: Format) -> Vec<u8> {
    let mut out = Vec::new();
    encode(&Graph::from_def(graph), format, &mut out).unwrap();
    out
}

/// Counts unknown fields anywhere in a message.
fn unknown_fields(message: &DynamicMessage, path: &str, found: &mut Vec<String>) {
    for field in message.unknown_fields() {
        found.push(format!("{path}: field {}", field.number()));
    }
    for (field, value) in message.fields() {
        let path = format!("{path}.{}", field.name());
        let mut visit = |v: &Value| {
            if let Value::Message(m) = v {
                unknown_fields(m, &path, found);
            }
        };
        match value {
            Value::List(items) => items.iter().for_each(&mut visit),
            Value::Map(map) => map.values().for_each(&mut visit),
            other => visit(other),
        }
    }
}

#[test]
fn our_protos_know_every_field_tensorflow_wrote() {
    let desc = pool().get_message_by_name("tensorflow.GraphDef").unwrap();
    for (dir, meta) in common::fixtures() {
        let data = std::fs::read(dir.join("model.pb")).unwrap();
        let message = DynamicMessage::decode(desc.clone(), data.as_slice()).unwrap();
        assert_eq!(message.descriptor().full_name(), "tensorflow.GraphDef");
        let mut found = Vec::new();
        unknown_fields(&message, "GraphDef", &mut found);
        assert!(found.is_empty(), "{}: unknown fields {found:?}", meta.name);
    }
}

#[test]
fn binary_round_trip_is_the_same_message() {
    for (dir, meta) in common::fixtures() {
        let file = std::fs::read(dir.join("model.pb")).unwrap();
        let graph = read_graph(&dir.join("model.pb"), None).unwrap();
        assert_eq!(graph.len(), meta.graph.nodes, "{}", meta.name);
        let mut written = Vec::new();
        encode(&graph, Format::Binary, &mut written).unwrap();
        assert_eq!(written.len(), graph.encoded_len(), "{}", meta.name);
        // Untouched nodes are copied, not re-encoded: the same bytes come out.
        assert!(written == file, "{}: the round trip changed the bytes", meta.name);
        let original = graph.to_def().unwrap();
        let again = decode_binary(Bytes::from(written)).unwrap().to_def().unwrap();
        assert_eq!(again, original, "{}", meta.name);
        // A graph rebuilt from owned messages (prost's encoding) is the same message.
        assert_eq!(Graph::from_def(&original).to_def().unwrap(), original, "{}", meta.name);
    }
}

#[test]
fn text_round_trip_is_the_same_message() {
    for (dir, meta) in common::fixtures() {
        let original = read_def(&dir.join("model.pb"));
        let text = String::from_utf8(bytes_of(&original, Format::Text)).unwrap();
        assert!(text.starts_with("node {\n"), "{}", meta.name);
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("model.pbtxt");
        std::fs::write(&path, &text).unwrap();
        let again = read_def(&path);
        assert_eq!(again, original, "{}", meta.name);
    }
}

#[test]
fn function_library_and_versions_survive() {
    let dir = common::fixtures_dir().join("tf2_if");
    let graph = read_graph(&dir.join("model.pb"), None).unwrap();
    let original = graph.to_def().unwrap();
    let library = original.library.as_ref().expect("tf2_if has a function library");
    assert!(library.function.len() >= 2);
    let tmp = tempfile::tempdir().unwrap();
    for name in ["out.pb", "out.pbtxt"] {
        let path = tmp.path().join(name);
        write_graph(&path, &graph, None).unwrap();
        let again = read_def(&path);
        assert_eq!(again.library, original.library, "{name}");
        assert_eq!(again.versions, original.versions, "{name}");
        assert!(again.versions.as_ref().is_some_and(|v| v.producer > 0));
    }
}

#[test]
fn output_bytes_are_deterministic() {
    for (dir, meta) in common::fixtures() {
        let graph = read_def(&dir.join("model.pb"));
        for format in [Format::Binary, Format::Text] {
            let first = bytes_of(&graph, format);
            // A fresh decode (new maps, new buffers) must print identically.
            let again = read_def(&dir.join("model.pb"));
            assert_eq!(first, bytes_of(&again, format), "{} {format:?}", meta.name);
        }
    }
}

#[test]
fn nodes_and_tensor_content_share_the_input_buffer() {
    let path = common::fixtures_dir().join("seed/model.pb");
    let data = Bytes::from(std::fs::read(&path).unwrap());
    let range = data.as_ptr() as usize..data.as_ptr() as usize + data.len();
    let graph = decode_binary(data.clone()).unwrap();
    let mut checked = 0;
    for id in graph.ids() {
        let node = graph.node_bytes(id);
        assert!(range.contains(&(node.as_ptr() as usize)), "{} was copied", graph.name(id));
        if let Some(graphrw::proto::AttrValue {
            value: Some(graphrw::proto::attr_value::Value::Tensor(t)),
        }) = graph.attr(id, "value").unwrap()
        {
            if !t.tensor_content.is_empty() {
                let at = t.tensor_content.as_ptr() as usize;
                assert!(range.contains(&at), "{}'s tensor was copied", graph.name(id));
                checked += 1;
            }
        }
    }
    assert!(checked > 5, "expected the seed's weights in tensor_content, found {checked}");
}

#[test]
fn text_format_escapes_bytes_and_keeps_special_floats() {
    use graphrw::proto::{AttrValue, NodeDef, attr_value::Value as V};
    let mut node = NodeDef { name: "n".into(), op: "Const".into(), ..Default::default() };
    node.attr.insert(
        "s".into(),
        AttrValue { value: Some(V::S(Bytes::from_static(b"a\"b\\\n\x00\xff'"))) },
    );
    node.attr.insert("inf".into(), AttrValue { value: Some(V::F(f32::INFINITY)) });
    node.attr.insert("ninf".into(), AttrValue { value: Some(V::F(f32::NEG_INFINITY)) });
    node.attr.insert("tiny".into(), AttrValue { value: Some(V::F(1.0e-45)) });
    node.attr.insert("pi".into(), AttrValue { value: Some(V::F(std::f32::consts::PI)) });
    let graph = GraphDef { node: vec![node], ..Default::default() };
    let text = String::from_utf8(bytes_of(&graph, Format::Text)).unwrap();
    assert!(text.contains(r#"s: "a\"b\\\n\000\377\'""#), "{text}");
    assert!(text.contains("f: inf") && text.contains("f: -inf"), "{text}");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("g.pbtxt");
    std::fs::write(&path, &text).unwrap();
    assert_eq!(read_def(&path), graph);
}

#[test]
fn a_failed_write_leaves_the_target_alone() {
    let graph = read_graph(&common::fixtures_dir().join("tf2_if/model.pb"), None).unwrap();
    let original = graph.to_def().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("out.pb");
    std::fs::write(&target, b"previous contents").unwrap();
    let result = graphrw::io::write_atomic(&target, |out| {
        std::io::Write::write_all(out, b"partial")?;
        Err(std::io::Error::other("simulated failure"))
    });
    assert!(result.is_err());
    assert_eq!(std::fs::read(&target).unwrap(), b"previous contents");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "the temporary file was not removed");
    write_graph(&target, &graph, None).unwrap();
    assert_eq!(read_def(&target), original);
}

#[test]
fn floats_print_as_python_text_format_prints_them() {
    use graphrw::proto::{AttrValue, NodeDef, attr_value::Value as V};
    // (f32 value, what protobuf's Python text_format prints)
    let cases: [(f32, &str); 10] = [
        (1.0, "1.0"),
        (0.1, "0.1"),
        (-0.5, "-0.5"),
        (1e-5, "1e-05"),
        (0.0001, "0.0001"),
        (1.001e-5, "1.001e-05"),
        (1e16, "1e+16"),
        (123456.79, "123456.79"),
        (3.4028235e38, "3.4028235e+38"),
        (0.0, "0.0"),
    ];
    for (value, expected) in cases {
        let mut node = NodeDef { name: "n".into(), op: "X".into(), ..Default::default() };
        node.attr.insert("v".into(), AttrValue { value: Some(V::F(value)) });
        let graph = GraphDef { node: vec![node], ..Default::default() };
        let text = String::from_utf8(bytes_of(&graph, Format::Text)).unwrap();
        // Zero is the proto3 default of the oneof's float: still printed, as set.
        assert!(text.contains(&format!("      f: {expected}\n")), "{value}: {text}");
    }
}

/// A regular file is mapped; a pipe (`<(cat model.pb)`), which cannot be,
/// is read: both give the file's graph, byte for byte.
#[test]
fn models_read_from_pipes_and_mapped_files_agree() {
    let (dir, _) = common::fixtures().into_iter().next().expect("a fixture");
    let path = dir.join("model.pb");
    let file = std::fs::read(&path).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("model.pb");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let writer = {
        let (fifo, file) = (fifo.clone(), file.clone());
        std::thread::spawn(move || std::fs::write(fifo, file).unwrap())
    };
    let piped = read_graph(&fifo, None).unwrap();
    writer.join().unwrap();
    let mapped = read_graph(&path, None).unwrap();
    for graph in [piped, mapped] {
        let mut written = Vec::new();
        encode(&graph, Format::Binary, &mut written).unwrap();
        assert!(written == file);
    }
}

/// A text file of several MB is parsed in pieces on every core: what it
/// reads is what the binary file holds, byte for byte (the graph's
/// `versions` after the last node included), and the pieces are cut only
/// before nodes.
#[test]
fn a_large_text_file_reads_as_its_binary_form() {
    let graph = graphrw::synth::synth(20_000);
    let mut binary = Vec::new();
    encode(&graph, Format::Binary, &mut binary).unwrap();
    let mut text = Vec::new();
    encode(&graph, Format::Text, &mut text).unwrap();
    assert!(text.len() > 4 << 20, "{} bytes: too small to be cut", text.len());
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("big.pbtxt");
    std::fs::write(&path, &text).unwrap();
    let read = read_graph(&path, None).unwrap();
    let mut again = Vec::new();
    encode(&read, Format::Binary, &mut again).unwrap();
    assert!(again == binary, "the text file read back differs from the binary");
}

/// A large graph's text, printed node by node on every core, is the text
/// of the whole GraphDef as one message.
#[test]
fn a_large_graph_prints_as_one_message() {
    let graph = graphrw::synth::synth(20_000);
    let mut binary = Vec::new();
    encode(&graph, Format::Binary, &mut binary).unwrap();
    let desc = pool().get_message_by_name("tensorflow.GraphDef").unwrap();
    let whole = graphrw::text::print(&DynamicMessage::decode(desc, binary.as_slice()).unwrap());
    let mut text = Vec::new();
    encode(&graph, Format::Text, &mut text).unwrap();
    assert!(text == whole.as_bytes(), "the text differs from the whole message's");
    assert!(whole.ends_with("versions {\n  producer: 2474\n  min_consumer: 12\n}\n"));
}

/// Where a large text file is wrong, the error says where in the file (not
/// in a piece of it); a field given twice in two pieces is an error as it
/// is in a small file.
#[test]
fn errors_in_a_large_text_file_point_into_the_file() {
    let graph = graphrw::synth::synth(20_000);
    let mut text = Vec::new();
    encode(&graph, Format::Text, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let error_at = |text: &str| {
        let path = tmp.path().join("bad.pbtxt");
        std::fs::write(&path, text).unwrap();
        match read_graph(&path, None) {
            Err(graphrw::io::ReadError::Text(e)) => (e.message, e.span.map(|s| s.offset())),
            Err(other) => panic!("not a text error: {other}"),
            Ok(_) => panic!("read"),
        }
    };
    // An unknown field in a node far into the file.
    let at = text.rfind("name: \"block_600/").unwrap();
    let bad = format!("{}bogus_field: 1\n  {}", &text[..at], &text[at..]);
    let (message, offset) = error_at(&bad);
    assert!(message.contains("bogus_field"), "{message}");
    assert_eq!(offset, Some(at), "{message}");
    // A file that ends in a string's escape.
    let cut = format!("{text}node {{ name: \"x\\");
    let (message, _) = error_at(&cut);
    assert!(!message.is_empty());
    // `versions` at the start and again at the end (pieces apart).
    let twice = format!("versions {{ producer: 1 }}\n{text}");
    let (message, offset) = error_at(&twice);
    assert!(message.contains("'versions' is already set"), "{message}");
    assert!(offset.is_some_and(|o| o > twice.len() - 200), "{message} at {offset:?}");
}
