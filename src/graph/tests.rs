//! Unit tests of the indexed graph's private parts: attribute readers,
//! carried-over indexes, rebuilt and assembled graphs, name collisions.

use super::*;

thread_local! {
    pub(super) static COLLIDE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The plain reading of attributes finds what the general walk finds,
/// on every node TensorFlow wrote in the fixtures (where it always
/// applies) and on hand-made encodings, where it gives way to the walk
/// on anything unusual.
#[test]
fn attributes_read_plainly_are_the_walked_ones() {
    use crate::wire::{write_bytes_field, write_varint};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path().join("model.pb");
        let Ok(bytes) = std::fs::read(&path) else { continue };
        let graph = Graph::from_bytes(Bytes::from(bytes)).unwrap();
        for id in graph.ids() {
            let raw = graph.node_raw(id);
            let def = NodeDef::decode(raw).unwrap();
            let keys = def.attr.keys().map(String::as_str).chain(["missing", "", "valu"]);
            for key in keys {
                let plain = attr_raw_plain(raw, key.as_bytes());
                assert_eq!(plain, Some(attr_raw_walk(raw, key).unwrap()), "{path:?} {key}");
                checked += 1;
            }
        }
    }
    assert!(checked > 1000, "{checked}");
    // Hand-made entries: (entry bytes, what the plain reading gives).
    let entry = |parts: &[(u32, &[u8])]| {
        let mut e = Vec::new();
        for (n, p) in parts {
            write_bytes_field(*n, p, &mut e);
        }
        e
    };
    let cases: Vec<(Vec<u8>, bool)> = vec![
        (entry(&[(1, b"T"), (2, b"\x30\x01")]), true),
        (entry(&[(1, b"T")]), true),
        (entry(&[(2, b"\x30\x01"), (1, b"T")]), false), // value first
        (entry(&[(1, b"T"), (2, b"\x30\x01"), (2, b"\x30\x02")]), false), // two values
        (entry(&[(1, b"T"), (3, b"x")]), false),        // an unknown part
        (vec![], false),
    ];
    for (e, plain) in cases {
        for repeat in [1, 2] {
            let mut node = Vec::new();
            write_bytes_field(2, b"Op", &mut node);
            for _ in 0..repeat {
                write_bytes_field(5, &e, &mut node);
            }
            // A varint field and a field numbered past 15 (two-byte key).
            node.extend_from_slice(&[0x38, 0x05]);
            let walked = attr_raw_walk(&node, "T").unwrap();
            assert_eq!(attr_raw(&node, "T").unwrap(), walked);
            assert_eq!(attr_raw_plain(&node, b"T").is_some(), plain, "{e:?}");
            let mut far = node.clone();
            write_varint(16 << 3 | 2, &mut far);
            far.push(0);
            assert_eq!(attr_raw_plain(&far, b"T"), None);
            assert_eq!(attr_raw(&far, "T").unwrap(), walked);
        }
    }
    // Malformed: the walk's error, not a panic.
    assert!(attr_raw(&[0x2a, 0x05, 0x0a], "T").is_err());
}

/// The seed fixture, indexed (a parent whose index is carried over).
fn indexed_seed() -> Graph {
    let data = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/seed/model.pb"))
        .unwrap();
    let g = Graph::from_bytes(Bytes::from(data)).unwrap();
    g.id("training").unwrap();
    g
}

/// The indexes a rebuilt graph derives from its parent's equal those
/// built from scratch.
#[test]
fn indexes_carried_over_from_the_parent_are_exact() {
    let g = indexed_seed();
    // Drop every third node, replace the Merges by new nodes of the same
    // name reading other inputs, and add a node reading a dropped one.
    let mut nodes = Vec::new();
    for id in g.ids() {
        if g.op(id) == "Merge" {
            let mut def = g.node_def(id).unwrap();
            def.input.reverse();
            nodes.push(NodeSource::Encoded(Bytes::from(def.encode_to_vec())));
        } else if id % 3 != 1 {
            nodes.push(NodeSource::Existing(id));
        }
    }
    let extra = NodeDef {
        name: "extra".into(),
        op: "Identity".into(),
        input: vec![g.name(1).into()],
        ..Default::default()
    };
    nodes.push(NodeSource::Encoded(Bytes::from(extra.encode_to_vec())));
    let rebuilt = g.rebuilt(nodes).unwrap();
    assert!(rebuilt.seed.is_some());
    let carried = Index::build_from(&rebuilt, rebuilt.seed.as_ref().unwrap());
    let fresh = Index::build(&rebuilt);
    assert_eq!(carried.edges, fresh.edges);
    assert_eq!(carried.edge_start, fresh.edge_start);
    assert_eq!(carried.consumers, fresh.consumers);
    assert_eq!(carried.bad_inputs, fresh.bad_inputs);
    assert!(!fresh.bad_inputs.is_empty(), "the test should drop some producers");
    assert_eq!(carried.by_op, fresh.by_op);
    for id in rebuilt.ids() {
        let name = rebuilt.name(id);
        let find = |index: &Index| {
            lookup(&rebuilt, &index.by_name, &index.collisions, name, name_hash(name))
        };
        assert_eq!(find(&carried), Some(id), "{name}");
        assert_eq!(find(&fresh), Some(id), "{name}");
    }
}

/// A graph large enough to be indexed on several cores resolves every
/// input as a plain reading of the names does (a repeated name, the first
/// node of that name), lists each op's nodes as one pass would, reports
/// the repeated names and the inputs that name no node or are not input
/// strings in order, and a graph rebuilt from it (producers dropped)
/// carries the same edges over as it builds.
#[test]
fn inputs_resolved_on_several_cores_are_the_named_nodes() {
    let synth = crate::synth::synth(100_000);
    // Every 1000th node reads a name no node has, every 777th a string
    // that is not an input, and every 3001st takes the name of the node
    // 2000 before it.
    let make = |repeat_names: bool| {
        let mut nodes = Vec::new();
        for id in synth.ids() {
            let mut def = synth.node_def(id).unwrap();
            if id == 90_000 {
                def.op = "SeenLate".into(); // an op first seen in a later share
            }
            if repeat_names && id % 3001 == 2500 {
                def.name = synth.name(id - 2000).to_string();
            }
            if id % 1000 == 5 {
                def.input.insert(0, format!("nowhere_{id}"));
            }
            if id % 777 == 6 {
                def.input.push("bad:port".into());
            }
            nodes.push(NodeSource::Encoded(Bytes::from(def.encode_to_vec())));
        }
        synth.rebuilt(nodes).unwrap()
    };
    let g = make(true);
    assert!(g.len() >= 2 * INDEX_PARALLEL_MIN, "large enough to be split: {}", g.len());
    // What the inputs name, read plainly.
    let expected = |g: &Graph| {
        let mut by_name: std::collections::HashMap<&str, NodeId> = Default::default();
        for id in g.ids() {
            by_name.entry(g.name(id)).or_insert(id);
        }
        let (mut edges, mut bad) = (Vec::new(), Vec::new());
        for id in g.ids() {
            for (slot, text) in g.input_strs(id).enumerate() {
                match parse_input(text) {
                    Ok(input) => {
                        let src = by_name.get(input.node()).copied();
                        if src.is_none() {
                            bad.push((id, slot as u32, BadInput::Missing));
                        }
                        let port = match input {
                            InputRef::Data { port, .. } => Port::Data(port),
                            InputRef::Control { .. } => Port::Control,
                        };
                        edges.push(Edge::new(src, port));
                    }
                    Err(e) => {
                        bad.push((id, slot as u32, BadInput::Syntax(e)));
                        edges.push(Edge::new(None, Port::Control));
                    }
                }
            }
        }
        (edges, bad)
    };
    let index = Index::build(&g);
    let (edges, bad) = expected(&g);
    let repeated: Vec<NodeId> = g.ids().filter(|id| id % 3001 == 2500).collect();
    assert_eq!(index.duplicates, repeated);
    for &id in &repeated {
        let name = g.name(id);
        assert_eq!(
            lookup(&g, &index.by_name, &index.collisions, name, name_hash(name)),
            Some(id - 2000)
        );
    }
    assert_eq!(index.edges, edges);
    assert_eq!(index.bad_inputs, bad);
    // Each op's nodes in order, the ops in order of first appearance.
    let mut by_op: Map<Box<str>, Vec<NodeId>> = Map::default();
    for id in g.ids() {
        by_op.entry(g.op(id).into()).or_default().push(id);
    }
    assert!(by_op.len() > 10);
    assert!(index.by_op.iter().eq(by_op.iter()));
    assert!(bad.len() > 100 + 129, "the readers of renamed nodes too: {}", bad.len());
    for id in g.ids() {
        let mine = &index.edges[index.edge_start[id as usize] as usize..][..g.input_strs(id).len()];
        assert_eq!(mine.len(), g.input_strs(id).len());
    }
    // Without repeated names, drop every seventh node: their readers'
    // inputs name no node.
    let g = make(false);
    let kept = g.ids().filter(|id| id % 7 != 3).map(NodeSource::Existing);
    g.nodes_with_op("Const");
    let rebuilt = g.rebuilt(kept).unwrap();
    let carried = Index::build_from(&rebuilt, rebuilt.seed.as_ref().unwrap());
    let (edges, bad) = expected(&rebuilt);
    assert_eq!(carried.edges, edges);
    assert_eq!(carried.bad_inputs, bad);
    assert_eq!(carried.consumers, Index::build(&rebuilt).consumers);
}

/// Parts built apart and assembled give the graph `rebuilt` gives from
/// the same nodes: same bytes, strings and indexes (carried over from
/// the parent exactly); a malformed node is named by its place in the
/// whole graph.
#[test]
fn assembled_parts_are_the_rebuilt_graph() {
    let g = indexed_seed();
    // Every third node encoded anew with its inputs reversed, every
    // fifth dropped, the rest kept.
    let sources: Vec<NodeSource> = g
        .ids()
        .filter(|id| id % 5 != 2)
        .map(|id| match id % 3 {
            0 => {
                let mut def = g.node_def(id).unwrap();
                def.input.reverse();
                NodeSource::Encoded(Bytes::from(def.encode_to_vec()))
            }
            _ => NodeSource::Existing(id),
        })
        .collect();
    let assemble = |sources: &[NodeSource], cuts: &[usize]| {
        let mut parts = Vec::new();
        let mut start = 0;
        for &end in cuts.iter().chain([sources.len()].iter()) {
            let mut part = g.part(start, end - start, 0);
            for source in &sources[start..end] {
                match source {
                    NodeSource::Existing(id) => part.push_existing(*id),
                    NodeSource::Encoded(bytes) => {
                        let at = part.buffer.len();
                        part.buffer.extend_from_slice(bytes);
                        let end = part.buffer.len();
                        part.push_written(at..end)?;
                    }
                }
            }
            parts.push(part);
            start = end;
        }
        Ok::<_, FormatError>(g.assembled(parts))
    };
    let rebuilt = g.rebuilt(sources.clone()).unwrap();
    let assembled = assemble(&sources, &[7, 8, 20]).unwrap();
    assert_eq!(assembled.len(), rebuilt.len());
    for id in rebuilt.ids() {
        assert_eq!(assembled.node_raw(id), rebuilt.node_raw(id));
        assert_eq!(assembled.name(id), rebuilt.name(id));
        assert_eq!(assembled.op(id), rebuilt.op(id));
        assert!(assembled.input_strs(id).eq(rebuilt.input_strs(id)));
    }
    let carried = Index::build_from(&assembled, assembled.seed.as_ref().unwrap());
    let fresh = Index::build(&rebuilt);
    assert_eq!(carried.edges, fresh.edges);
    assert_eq!(carried.consumers, fresh.consumers);
    assert_eq!(carried.by_op, fresh.by_op);
    for id in rebuilt.ids() {
        assert_eq!(assembled.id(rebuilt.name(id)), Some(id));
    }
    // Field 1 (the name) with wire type 0: not a string.
    let mut broken = sources;
    broken[12] = NodeSource::Encoded(Bytes::from_static(&[0x08, 0x01]));
    let Err(err) = assemble(&broken, &[7, 8, 20]) else { panic!("a malformed node") };
    assert!(err.to_string().contains("node #12"), "{err}");
}

#[test]
fn names_whose_hashes_collide_still_resolve() {
    COLLIDE.with(|c| c.set(true));
    let node = |name: &str, inputs: &[&str]| NodeDef {
        name: name.into(),
        op: "Identity".into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let def = GraphDef {
        node: vec![node("a", &[]), node("b", &["a"]), node("c", &["b", "^a"]), node("b", &[])],
        ..Default::default()
    };
    let g = Graph::from_def(&def);
    assert_eq!((g.id("a"), g.id("b"), g.id("c"), g.id("d")), (Some(0), Some(1), Some(2), None));
    assert_eq!(g.duplicates(), &[3]);
    assert_eq!(
        g.inputs(2),
        &[Edge::new(Some(1), Port::Data(0)), Edge::new(Some(0), Port::Control)]
    );
    assert_eq!(g.consumers(0).len(), 2);
    COLLIDE.with(|c| c.set(false));
}

/// A needle is found wherever it is in a buffer searched in chunks on
/// several cores: inside a chunk, across a boundary between two, at either
/// end; and not found when one byte of it is missing.
#[test]
fn a_needle_across_chunks_is_found() {
    let finder = memchr::memmem::Finder::new(b"loc:@");
    let chunk = 16;
    for len in [0usize, 4, 5, 16, 17, 40, 160] {
        let clean = vec![b'.'; len];
        assert!(!holds(&clean, &finder, chunk), "len {len}");
        for at in 0..len.saturating_sub(4) {
            let mut buf = clean.clone();
            buf[at..at + 5].copy_from_slice(b"loc:@");
            assert!(holds(&buf, &finder, chunk), "len {len}, at {at}");
            buf[at + 2] = b'.';
            assert!(!holds(&buf, &finder, chunk), "len {len}, at {at}, broken");
        }
    }
}
