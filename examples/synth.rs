//! Writes a synthetic training-style GraphDef of about N nodes (see
//! `graphrw::synth`), for benchmarks.
//!
//! Usage: cargo run --release --example synth -- NODES OUT.pb

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: synth NODES OUT.pb");
        std::process::exit(2);
    }
    let target: usize = args[1].parse().expect("NODES is a number");
    let graph = graphrw::synth::synth(target);
    graphrw::io::write_graph(std::path::Path::new(&args[2]), &graph, None).expect("written");
    println!("{}: {} nodes", args[2], graph.len());
}
