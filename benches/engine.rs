//! `cargo bench --bench engine`: the rule engine on synthetic training
//! graphs of 10k, 100k and 1M nodes, with the core of the inference pack
//! (lock the training flag, fold constant Identity, fold constant-predicate
//! Switch/Merge with dead tensors), then with the whole `inference` pack,
//! then folding the Identities of one constant read by half the graph (the
//! work per reader a shared node loses must not grow with its readers).
//! Reports rewrite time alone (the graph is already in memory, and the
//! result is not written out: `graphrw apply` writes it straight from the
//! engine's copy), best and median of `GRAPHRW_BENCH_RUNS` runs (5 unless
//! set), time per node; for the best run, what encoding the result (the
//! bytes a file gets, through a buffer, to nowhere) and building it as a
//! graph (what `apply` returns) take on top; and
//! (runs of 0.1 s or more, on Linux) the best run's CPU time on all threads,
//! and how much of it the system took (most of it touching fresh memory,
//! whose cost on this machine swings from one process to the next).
//! The runs go round the sizes in turn, so each ratio compares times taken
//! in the same minutes.

use std::time::Instant;

use graphrw::rules::compile::compile;
use graphrw::rules::engine::{Options, Report, rewrite};
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

/// Folding the Identities of one shared constant, with a guard that counts
/// its readers (see `graphrw::synth::shared`).
const SHARED_RULES: &str = r#"
rule fold_shared_identity: Identity(c: Const) where consumers(c) > 1 => c
"#;

fn main() {
    // And the pages it takes memory in.
    graphrw::memory::small_pages();
    // `GRAPHRW_BENCH_ONLY=core`, `=inference` or `=shared` runs one of the
    // three.
    let only = std::env::var("GRAPHRW_BENCH_ONLY").unwrap_or_default();
    let run = |name: &str| only.is_empty() || only == name;
    if run("core") {
        let core = compile(&load_text("bench.rules", RULES), &[]).expect("valid rules");
        println!("cond folding (the rules above):");
        bench(&core, graphrw::synth::synth, |r| {
            !r.ops_after.contains_key("Switch") && !r.ops_after.contains_key("Merge")
        });
    }
    if run("inference") {
        let pack = load(&[Origin::Pack("inference".into())]);
        let inference = compile(&pack, &[]).expect("the inference pack compiles");
        println!("the whole inference pack:");
        bench(&inference, graphrw::synth::synth, |r| {
            !r.ops_after.contains_key("Switch") && !r.ops_after.contains_key("Merge")
        });
    }
    if run("shared") {
        let shared = compile(&load_text("shared.rules", SHARED_RULES), &[]).expect("valid rules");
        println!("one constant read by half the graph (its Identities folded):");
        bench(&shared, graphrw::synth::shared, |r| !r.ops_after.contains_key("Identity"));
    }
}

fn bench(
    rules: &graphrw::rules::compile::RuleSet,
    make: fn(usize) -> graphrw::graph::Graph,
    done: fn(&Report) -> bool,
) {
    // Each graph is indexed before the runs (`nodes_with_op` builds the
    // index): what is timed is the rewrite alone.
    let graphs: Vec<graphrw::graph::Graph> = sizes()
        .into_iter()
        .map(|n| {
            let graph = make(n);
            graph.nodes_with_op("Switch");
            graph
        })
        .collect();
    let runs = std::env::var("GRAPHRW_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5usize)
        .max(1);
    // Rounds over all sizes, so that every size sees the same minutes of
    // this machine (its speed drifts by 30% from one minute to the next):
    // the ratios compare like with like.
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); graphs.len()];
    let mut best: Vec<Option<Best>> = graphs.iter().map(|_| None).collect();
    for _ in 0..runs {
        for (i, graph) in graphs.iter().enumerate() {
            let cpu_before = cpu_seconds();
            let start = Instant::now();
            let (out, r) = rewrite(graph, rules, &Options::default()).expect("applies");
            let t = start.elapsed().as_secs_f64();
            let cpu = cpu_before.zip(cpu_seconds()).map(|(before, after)| Cpu {
                all: after.all - before.all,
                system: after.system - before.system,
            });
            assert!(done(&r), "the rules did not finish their job");
            times[i].push(t);
            if best[i].as_ref().is_none_or(|b| t < b.seconds) {
                // What encoding it (through a buffer, as a file is written,
                // to nowhere) and building it take, for the best run.
                let start = Instant::now();
                let mut sink = std::io::BufWriter::with_capacity(1 << 20, std::io::sink());
                out.encode(&mut sink).expect("writing to nowhere");
                let encoded = start.elapsed().as_secs_f64();
                let start = Instant::now();
                let built = out.to_graph();
                let building = start.elapsed().as_secs_f64();
                assert_eq!(built.len(), out.len());
                let (after, report) = (out.len(), r);
                best[i] = Some(Best { seconds: t, report, after, cpu, encoded, building });
            }
        }
    }
    let mut previous: Option<(usize, f64, f64)> = None;
    for (i, graph) in graphs.iter().enumerate() {
        let Best { seconds: fastest, report: r, after, cpu, encoded, building } =
            best[i].take().expect("ran");
        let median = median(&mut times[i]);
        let rewrites: usize = r.fired.iter().map(|f| f.1).sum();
        let per_node = fastest / graph.len() as f64 * 1e9;
        let scaling = previous.map_or(String::new(), |(pn, pb, pm)| {
            format!(
                "  ({:.1}x the nodes, {:.1}x the time; medians {:.1}x)",
                graph.len() as f64 / pn as f64,
                fastest / pb,
                median / pm
            )
        });
        println!(
            "{:>9} nodes -> {:>8}: {rewrites:>7} rewrites in {} rounds, best {:>7.1} ms, median {:>7.1} ms, {per_node:>5.0} ns/node{scaling}",
            graph.len(),
            after,
            r.rounds,
            fastest * 1e3,
            median * 1e3
        );
        let p = &r.phases;
        println!(
            "          best run: matching {:.1} ms, applying {:.1}, dead + pruning {:.1}, checking {:.1}, setting up and ordering the result {:.1}, other {:.1}",
            p.find * 1e3,
            p.apply * 1e3,
            p.settle * 1e3,
            p.check * 1e3,
            p.write * 1e3,
            (r.seconds - p.index - p.find - p.apply - p.settle - p.check - p.write) * 1e3
        );
        println!(
            "          then encoding it {:.1} ms (as `apply` writes a file), or building it as a graph {:.1} ms",
            encoded * 1e3,
            building * 1e3
        );
        // CPU time is counted in ticks of 10 ms: shown where that is fine.
        if let Some(cpu) = cpu.filter(|_| fastest >= 0.1) {
            println!(
                "          its CPU time, all threads: {:.0} ms ({:.2} cores busy on average), of which the system's {:.0} ms",
                cpu.all * 1e3,
                cpu.all / fastest,
                cpu.system * 1e3
            );
        }
        previous = Some((graph.len(), fastest, median));
    }
}

/// A size's fastest run: its time, report, nodes after, and CPU time.
struct Best {
    seconds: f64,
    report: Report,
    after: usize,
    cpu: Option<Cpu>,
    /// Seconds to encode the result, and to build it as a graph.
    encoded: f64,
    building: f64,
}

/// CPU time of the process so far, in seconds: in all, and in the system.
#[derive(Clone, Copy)]
struct Cpu {
    all: f64,
    system: f64,
}

/// User and system time of the whole process so far (all its threads), in
/// seconds, from `/proc/self/stat` (in ticks of 1/100 s); `None` elsewhere.
fn cpu_seconds() -> Option<Cpu> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses: utime
    // and stime are the 14th and 15th fields of the line.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    let (user, system) = (ticks(11)? / 100.0, ticks(12)? / 100.0);
    Some(Cpu { all: user + system, system })
}

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    let n = times.len();
    if n % 2 == 1 { times[n / 2] } else { (times[n / 2 - 1] + times[n / 2]) / 2.0 }
}

/// Graph sizes: `GRAPHRW_BENCH_SIZES=10000,100000` overrides the default.
fn sizes() -> Vec<usize> {
    std::env::var("GRAPHRW_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000, 1_000_000])
}
