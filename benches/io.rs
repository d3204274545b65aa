//! `cargo bench --bench io`: decoding (indexing) and re-encoding GraphDefs
//! in memory, with the file I/O left out.
//!
//! Graphs: a synthetic 1M-node training graph (made in memory) and, when
//! present, `bench-data/*.pb` (see `scripts/bench_io.py`, which generates a
//! Keras ResNet50 and compares with TensorFlow's own protobuf in one run).
//! Prints the best of several runs of each step.

use std::time::{Duration, Instant};

use bytes::Bytes;
use graphrw::Graph;

fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        let value = f();
        best = best.min(start.elapsed());
        last = Some(value);
    }
    (best, last.expect("at least one run"))
}

fn ms(d: Duration) -> String {
    format!("{:8.1} ms", d.as_secs_f64() * 1e3)
}

/// Best times in seconds: (decode, decode + index, encode), and the node count.
fn time_steps(label: &str, data: &Bytes) -> (f64, f64, f64, usize) {
    let (decode, graph) = best(5, || Graph::from_bytes(data.clone()).expect("a GraphDef"));
    let (index, _) = best(3, || {
        let fresh = Graph::from_bytes(data.clone()).expect("a GraphDef");
        fresh.id(fresh.name(0)).expect("indexed");
    });
    let mut out = Vec::with_capacity(data.len());
    let (encode, _) = best(5, || {
        out.clear();
        graph.encode(&mut out).expect("to memory");
    });
    assert!(out == data[..], "{label}: the round trip changed the bytes");
    let secs = Duration::as_secs_f64;
    (secs(&decode), secs(&index), secs(&encode), graph.len())
}

fn measure(label: &str, data: Bytes) {
    let mb = data.len() as f64 / 1e6;
    let (decode, index, encode, nodes) = time_steps(label, &data);
    let (decode, index, encode) = (
        Duration::from_secs_f64(decode),
        Duration::from_secs_f64(index),
        Duration::from_secs_f64(encode),
    );
    let gbps = |d: Duration| mb / 1e3 / d.as_secs_f64();
    println!(
        "{label:<28} {:>9} nodes {mb:>8.1} MB | decode {} ({:.1} GB/s) | decode+index {} | encode {} ({:.1} GB/s) | round trip {}",
        nodes,
        ms(decode),
        gbps(decode),
        ms(index),
        ms(encode),
        gbps(encode),
        ms(decode + encode),
    );
}

fn main() {
    // `--json FILE`: time one file and print the figures as JSON (used by
    // scripts/bench_io.py). Otherwise `cargo bench` passes `--bench`, and a
    // filter argument is ignored.
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--json") {
        let path = &args[at + 1];
        let data = Bytes::from(std::fs::read(path).expect("readable"));
        let (decode, index, encode, nodes) = time_steps(path, &data);
        println!(
            "{{\"decode\": {decode}, \"index\": {index}, \"encode\": {encode}, \"nodes\": {nodes}}}"
        );
        return;
    }
    let synth = graphrw::synth::synth(1_000_000);
    let mut data = Vec::with_capacity(synth.encoded_len());
    synth.encode(&mut data).expect("to memory");
    drop(synth);
    measure("synthetic 1M nodes", Bytes::from(data));

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-data");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "pb"));
    files.sort();
    for path in files {
        let data = Bytes::from(std::fs::read(&path).expect("readable"));
        measure(&path.file_name().unwrap().to_string_lossy(), data);
    }
}
