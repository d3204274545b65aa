//! `cargo bench --bench engine`: the rule engine on synthetic training
//! graphs of 10k, 100k and 1M nodes, with the core of the inference pack
//! (lock the training flag, fold constant Identity, fold constant-predicate
//! Switch/Merge with dead tensors), then with the whole `inference` pack.
//! Reports rewrite time alone (the graph is already in memory) and time per
//! node.

use std::time::Instant;

use graphrw::rules::compile::compile;
use graphrw::rules::engine::{Options, apply};
use graphrw::rules::load::{Origin, load, load_text};

// The allocator the `graphrw` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RULES: &str = r#"
param flag = ["training", "is_training"]
rule lock: t = Placeholder{dtype: DT_BOOL}() where name(t) in flag => Const{dtype: DT_BOOL, value: false}()
rule identity_of_const: Identity(c: Const) => c
rule switch_false: Switch(x, Const{value: false}) => [x, dead]
rule switch_true: Switch(x, Const{value: true}) => [dead, x]
rule merge_first_live: Merge(x, dead) => [x, 0]
rule merge_second_live: Merge(dead, x) => [x, 1]
"#;

fn main() {
    // `GRAPHRW_BENCH_ONLY=core` or `=inference` runs one of the two.
    let only = std::env::var("GRAPHRW_BENCH_ONLY").unwrap_or_default();
    if only != "inference" {
        let core = compile(&load_text("bench.rules", RULES), &[]).expect("valid rules");
        println!("cond folding (the rules above):");
        bench(&core);
    }
    if only != "core" {
        let pack = load(&[Origin::Pack("inference".into())]);
        let inference = compile(&pack, &[]).expect("the inference pack compiles");
        println!("the whole inference pack:");
        bench(&inference);
    }
}

fn bench(rules: &graphrw::rules::compile::RuleSet) {
    let mut previous: Option<(usize, f64)> = None;
    for n in sizes() {
        let graph = graphrw::synth::synth(n);
        let runs = std::env::var("GRAPHRW_BENCH_RUNS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(if n >= 1_000_000 { 2 } else { 5 });
        let mut best = f64::MAX;
        let mut report = None;
        for _ in 0..runs {
            let start = Instant::now();
            let (out, r) = apply(&graph, rules, &Options::default()).expect("applies");
            best = best.min(start.elapsed().as_secs_f64());
            assert!(
                out.nodes_with_op("Switch").is_empty() && out.nodes_with_op("Merge").is_empty()
            );
            report = Some((r, out.len()));
        }
        let (r, after) = report.expect("ran");
        let rewrites: usize = r.fired.iter().map(|f| f.1).sum();
        let per_node = best / graph.len() as f64 * 1e9;
        let scaling = previous.map_or(String::new(), |(pn, pt)| {
            format!(
                "  ({:.1}x the nodes, {:.1}x the time)",
                graph.len() as f64 / pn as f64,
                best / pt
            )
        });
        println!(
            "{:>9} nodes -> {:>8}: {rewrites:>7} rewrites in {} rounds, {:>8.1} ms, {per_node:>6.0} ns/node{scaling}",
            graph.len(),
            after,
            r.rounds,
            best * 1e3
        );
        let p = &r.phases;
        println!(
            "          last run: matching {:.1} ms, applying {:.1}, dead + pruning {:.1}, checking {:.1}, setting up and writing out {:.1}, other {:.1}",
            p.find * 1e3,
            p.apply * 1e3,
            p.settle * 1e3,
            p.check * 1e3,
            p.write * 1e3,
            (r.seconds - p.index - p.find - p.apply - p.settle - p.check - p.write) * 1e3
        );
        previous = Some((graph.len(), best));
    }
}

/// Graph sizes: `GRAPHRW_BENCH_SIZES=10000,100000` overrides the default.
fn sizes() -> Vec<usize> {
    std::env::var("GRAPHRW_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000, 1_000_000])
}
