//! The `graphrw` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use miette::{IntoDiagnostic, Result, miette};

use graphrw::eval::verify::Difference;
use graphrw::inspect::summarize;
use graphrw::io::{Format, read_graph, write_graph, write_with};
use graphrw::prune::{outputs_or_default, prune, tensors_or_default};
use graphrw::rules::check::check;
use graphrw::rules::compile::{RuleSet, compile};
use graphrw::rules::engine::{Options, Report, rewrite};
use graphrw::rules::load::{Origin, PACKS, load};
use graphrw::validate::validate;

/// A rewrite makes and frees millions of small blocks (new nodes, match
/// bindings, computed constants); mimalloc keeps that off the critical path
/// where glibc's allocator spent a third of the time consolidating and
/// zeroing fresh pages.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// graphrw: declarative surgery on TensorFlow GraphDefs.
#[derive(Parser)]
#[command(name = "graphrw", version, about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply rule files or built-in packs to a model, until no rule matches.
    Apply {
        /// Rule files (`.rules`) or built-in pack names, then the model.
        #[arg(required = true, num_args = 2.., value_name = "RULES|PACK... MODEL")]
        args: Vec<String>,
        /// Where to write (default: `<stem>.rewritten.<ext>` beside the model; `-` is stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Override a rule parameter: `--set flag=is_training`.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        sets: Vec<String>,
        /// Graph outputs, comma separated (default: the nodes nothing consumes).
        #[arg(long, value_delimiter = ',')]
        outputs: Vec<String>,
        /// Keep nodes the outputs do not reach.
        #[arg(long)]
        no_prune: bool,
        /// Stop with an error after this many rewrites [default: ten per node
        /// of the model, and at least 1000000].
        #[arg(long, value_name = "N")]
        max_rewrites: Option<usize>,
        /// Rewrite and report, but write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report (rules fired, op histograms, time) in this form.
        #[arg(long, value_name = "FORMAT", value_parser = ["json", "text"])]
        report: Option<String>,
        /// The model's format, when its extension does not say.
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// The output's format, when its extension does not say.
        #[arg(long, value_enum)]
        to: Option<Format>,
        /// Check the rewrite kept the outputs (random inputs unless fed) and write nothing if not.
        #[arg(long)]
        verify: bool,
        /// Inputs for --verify (`NAME=FILE.npy`, `training=false`).
        #[arg(long = "feed", value_name = "NAME=FILE.npy")]
        feeds: Vec<String>,
    },
    /// Run a model on the CPU and write each output as .npy.
    Run {
        /// The model.
        model: PathBuf,
        /// An input: `NAME=FILE.npy`, or a scalar `NAME=false`, `NAME=0.5`.
        #[arg(long = "feed", value_name = "NAME=FILE.npy")]
        feeds: Vec<String>,
        /// Tensors to compute, comma separated: `node` (its port 0) or `node:N` (default: the
        /// nodes nothing consumes).
        #[arg(long, value_delimiter = ',')]
        outputs: Vec<String>,
        /// Directory for the .npy files (default: the current one).
        #[arg(short, long, default_value = ".")]
        output: PathBuf,
        /// The model's format, when its extension does not say.
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// Run two models on the same inputs and compare every common output.
    Verify {
        /// The original model.
        original: PathBuf,
        /// The rewritten model (optional with `--expect`).
        #[arg(required_unless_present = "expect")]
        rewritten: Option<PathBuf>,
        /// A stored output to compare the last model given with
        /// (`NAME=FILE.npy`, e.g. TensorFlow's own output).
        #[arg(long = "expect", value_name = "NAME=FILE.npy")]
        expect: Vec<String>,
        /// An input (`NAME=FILE.npy` or `NAME=false`); a feed goes to each model that has the node.
        #[arg(long = "feed", value_name = "NAME=FILE.npy")]
        feeds: Vec<String>,
        /// Tensors to compare, `node` or `node:N` (default: the original's nodes nothing
        /// consumes).
        #[arg(long, value_delimiter = ',')]
        outputs: Vec<String>,
        /// Seed of the random inputs made for placeholders not fed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Size of unknown dimensions of random inputs.
        #[arg(long, default_value_t = 1)]
        dim: usize,
        /// Relative tolerance.
        #[arg(long, default_value_t = 1e-4)]
        rtol: f64,
        /// Absolute tolerance.
        #[arg(long, default_value_t = 1e-5)]
        atol: f64,
    },
    /// Check rule files: exit 0 when clean, 1 with every problem otherwise.
    Check {
        /// Rule files or built-in pack names.
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// List the built-in packs with their descriptions and rules.
    Packs,
    /// Summarise a model: nodes, ops, inputs, outputs, constants, problems.
    Inspect {
        /// The model (`.pb` or `.pbtxt`; `-` reads standard input).
        model: PathBuf,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        /// The model's format, when its extension does not say.
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// Check a model: unique names, inputs that resolve, ports that exist, no cycles.
    Validate {
        /// The model.
        model: PathBuf,
        /// The model's format, when its extension does not say.
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// Convert a model between binary (.pb) and text (.pbtxt) form, losslessly.
    Convert {
        /// The model to read.
        input: PathBuf,
        /// Where to write it (`-` is standard output).
        output: PathBuf,
        /// The input's format, when its extension does not say.
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// The output's format, when its extension does not say.
        #[arg(long, value_enum)]
        to: Option<Format>,
    },
    /// Keep only the nodes the outputs reach through data and control edges.
    Prune {
        /// The model.
        model: PathBuf,
        /// Output nodes, comma separated (default: the nodes nothing consumes).
        #[arg(long, value_delimiter = ',')]
        outputs: Vec<String>,
        /// Where to write (default: `<stem>.pruned.<ext>` beside the model; `-` is stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// The input's format, when its extension does not say.
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// The output's format, when its extension does not say.
        #[arg(long, value_enum)]
        to: Option<Format>,
    },
}

/// Console output that a closed pipe (`graphrw packs | head -1`) does not
/// turn into a panic: what no one reads any more is dropped and the command
/// goes on, so the files it writes are still written. Data written to
/// standard output as a file (`-o -`) goes through the writers instead,
/// whose errors are errors.
macro_rules! console {
    ($stream:ident, $write:ident, $($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = $write!(std::io::$stream().lock(), $($arg)*);
    }};
}
macro_rules! outln { ($($arg:tt)*) => { console!(stdout, writeln, $($arg)*) }; }
macro_rules! out { ($($arg:tt)*) => { console!(stdout, write, $($arg)*) }; }
macro_rules! errln { ($($arg:tt)*) => { console!(stderr, writeln, $($arg)*) }; }
macro_rules! err { ($($arg:tt)*) => { console!(stderr, write, $($arg)*) }; }

fn main() -> ExitCode {
    graphrw::memory::small_pages();
    miette::set_hook(Box::new(|_| Box::new(miette::MietteHandlerOpts::new().width(100).build())))
        .ok();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(report) => {
            errln!("{report:?}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Apply {
            args,
            output,
            sets,
            outputs,
            no_prune,
            max_rewrites,
            dry_run,
            report,
            format,
            to,
            verify: check_outputs,
            feeds,
        } => {
            let (model, rule_args) = args.split_last().expect("clap requires two arguments");
            let model = PathBuf::from(model);
            let rules = load_rules(rule_args, &sets)?;
            let graph = read_graph(&model, format)?;
            let options = Options { outputs, prune: !no_prune, max_rewrites };
            let (rewritten, summary) = rewrite(&graph, &rules, &options)?;
            for warning in &summary.warnings {
                errln!("warning: {warning}");
            }
            match report.as_deref() {
                Some("json") => {
                    errln!("{}", serde_json::to_string_pretty(&summary).into_diagnostic()?)
                }
                Some(_) => err!("{}", text_report(&summary)),
                None => {
                    let fired: usize = summary.fired.iter().map(|f| f.1).sum();
                    errln!(
                        "{fired} rewrites in {} rounds: {} -> {} nodes ({:.3} s)",
                        summary.rounds,
                        summary.nodes_before,
                        summary.nodes_after,
                        summary.seconds
                    );
                }
            }
            // The result built as a graph, once something needs it.
            let mut built = None;
            if check_outputs {
                let names = output_names(&graph, &options.outputs)?;
                let after = built.insert(rewritten.to_graph());
                let verdict = compare(&graph, after, &names, &feeds, 0, 1, 1e-4, 1e-5)?;
                if let Some(m) = verdict.mismatch {
                    let what = match m.difference {
                        Difference::Value { index, original, rewritten } => {
                            format!("element {index}: {original} before, {rewritten} after")
                        }
                        _ => m.reason("the original", "the rewrite").unwrap_or_default(),
                    };
                    return Err(miette!(
                        "the rewrite changed output `{}` ({what}); nothing written",
                        m.output
                    ));
                }
                errln!(
                    "verified {} outputs: worst relative difference {:.2e}",
                    verdict.compared.len(),
                    verdict.worst_relative
                );
            }
            if dry_run {
                return Ok(ExitCode::SUCCESS);
            }
            let target = output.unwrap_or_else(|| sibling(&model, "rewritten", to));
            // A binary file is written straight from the engine's copy of
            // the graph; the text format is printed from the graph built.
            match to.unwrap_or_else(|| Format::from_path(&target)) {
                Format::Binary => write_with(&target, |out| rewritten.encode(out))?,
                Format::Text => {
                    let graph = built.unwrap_or_else(|| rewritten.to_graph());
                    write_graph(&target, &graph, Some(Format::Text))?
                }
            }
            if target != Path::new("-") {
                outln!("{}", target.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { model, feeds, outputs, output, format } => {
            let graph = read_graph(&model, format)?;
            let feeds = parse_feeds(&feeds)?;
            let names = output_names(&graph, &outputs)?;
            let results = graphrw::eval::run(&graph, &feeds, &names)?;
            std::fs::create_dir_all(&output).into_diagnostic()?;
            for (name, value) in results {
                let value = value.ok_or_else(|| {
                    miette!("output `{name}` is dead: it comes from a branch that did not run")
                })?;
                let file = output.join(format!("{}.npy", name.replace(['/', ':'], "_")));
                value.to_npy().write(&file).into_diagnostic()?;
                outln!("{name} {} {:?} -> {}", value.dtype_name(), value.shape, file.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { original, rewritten, expect, feeds, outputs, seed, dim, rtol, atol } => {
            let a = read_graph(&original, None)?;
            let mut lines = Vec::new();
            let last = match &rewritten {
                Some(path) => {
                    let b = read_graph(path, None)?;
                    let names = output_names(&a, &outputs)?;
                    let verdict = compare(&a, &b, &names, &feeds, seed, dim, rtol, atol)?;
                    verdict_line(&verdict, (&original, path), (rtol, atol), &mut lines)?;
                    Some((b, path))
                }
                None => None,
            };
            if !expect.is_empty() {
                let (graph, path) = last.as_ref().map_or((&a, &original), |(b, p)| (b, *p));
                let expected = expect
                    .iter()
                    .map(|e| {
                        graphrw::eval::verify::parse_feed(e)
                            .map_err(|err| miette!("{}", err.replacen("--feed", "--expect", 1)))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let feeds = parse_feeds(&feeds)?;
                let verdict =
                    graphrw::eval::verify::verify_expected(graph, &expected, &feeds, rtol, atol)?;
                let stored = PathBuf::from("the stored outputs");
                verdict_line(&verdict, (&stored, path), (rtol, atol), &mut lines)?;
            }
            for line in lines {
                outln!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { files } => {
            // Each file is a pack of its own (with its imports): two files
            // may well define the same rule names.
            let (mut errors, mut warnings) = (0, 0);
            let mut lines = Vec::new();
            for file in &files {
                let loaded = load(&[Origin::from_arg(file)]);
                let mut diags = loaded.diagnostics.clone();
                diags.extend(check(&loaded));
                for diag in &diags {
                    err!("{}", diag.render(100));
                }
                let e = diags.iter().filter(|d| d.is_error()).count();
                let w = diags.len() - e;
                errors += e;
                warnings += w;
                if e == 0 {
                    lines.push(format!(
                        "{file}: {} rules, {w} warning{}",
                        loaded.rules.len(),
                        plural(w)
                    ));
                }
            }
            for line in lines {
                outln!("{line}");
            }
            if errors > 0 {
                return Err(miette!(
                    "{errors} error{}, {warnings} warning{}",
                    plural(errors),
                    plural(warnings)
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Packs => {
            for (name, _) in PACKS {
                let loaded = load(&[Origin::Pack(name.to_string())]);
                let doc = loaded.files.first().and_then(|f| f.1.clone()).unwrap_or_default();
                outln!("{name}");
                for line in doc.lines() {
                    outln!("    {line}");
                }
                for rule in &loaded.rules {
                    let about = rule.rule.doc.as_deref().unwrap_or("").lines().next().unwrap_or("");
                    outln!("  - {}: {about}", rule.rule.name);
                }
                outln!();
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect { model, json, format } => {
            let graph = read_graph(&model, format)?;
            let summary = summarize(&graph);
            if json {
                outln!("{}", serde_json::to_string_pretty(&summary).into_diagnostic()?);
            } else {
                outln!("{}", model.display());
                out!("{summary}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { model, format } => {
            let graph = read_graph(&model, format)?;
            let problems = validate(&graph);
            if problems.is_empty() {
                outln!("{}: valid, {} nodes", model.display(), graph.len());
                return Ok(ExitCode::SUCCESS);
            }
            for problem in &problems {
                errln!("{}: {problem}", model.display());
            }
            Err(miette!(
                "{}: {} validation problem{}",
                model.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            ))
        }
        Command::Convert { input, output, format, to } => {
            let graph = read_graph(&input, format)?;
            write_graph(&output, &graph, to)?;
            if output != Path::new("-") {
                errln!("wrote {}", output.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Prune { model, outputs, output, format, to } => {
            let graph = read_graph(&model, format)?;
            let roots = outputs_or_default(&graph, &outputs)?;
            let before = graph.len();
            let pruned = prune(&graph, &roots);
            let target = output.unwrap_or_else(|| sibling(&model, "pruned", to));
            write_graph(&target, &pruned, to)?;
            errln!("kept {} of {before} nodes", pruned.len());
            if target != Path::new("-") {
                outln!("{}", target.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn parse_feeds(
    feeds: &[String],
) -> Result<std::collections::HashMap<String, graphrw::eval::Tensor>> {
    feeds.iter().map(|f| graphrw::eval::verify::parse_feed(f).map_err(|e| miette!("{e}"))).collect()
}

/// The tensors named (port 0 unless one is given), or port 0 of the nodes
/// nothing consumes, as tensor names; a NoOp has no tensor.
fn output_names(graph: &graphrw::Graph, outputs: &[String]) -> Result<Vec<String>> {
    Ok(tensors_or_default(graph, outputs)?
        .into_iter()
        .filter(|&(id, _)| graph.op(id) != "NoOp")
        .map(|(id, port)| format!("{}:{port}", graph.name(id)))
        .collect())
}

/// Runs both graphs on the given feeds plus random ones and compares.
#[allow(clippy::too_many_arguments)]
fn compare(
    a: &graphrw::Graph,
    b: &graphrw::Graph,
    names: &[String],
    feeds: &[String],
    seed: u64,
    dim: usize,
    rtol: f64,
    atol: f64,
) -> Result<graphrw::eval::verify::Verdict> {
    let mut feeds = parse_feeds(feeds)?;
    let random =
        graphrw::eval::verify::random_feeds(a, &feeds, seed, dim).map_err(|e| miette!("{e}"))?;
    feeds.extend(random);
    Ok(graphrw::eval::verify::verify(a, b, names, &feeds, rtol, atol)?)
}

/// The line `verify` prints for a verdict, or the error naming the worst
/// element of the first output that differs.
fn verdict_line(
    verdict: &graphrw::eval::verify::Verdict,
    (a, b): (&std::path::Path, &std::path::Path),
    (rtol, atol): (f64, f64),
    lines: &mut Vec<String>,
) -> Result<()> {
    match &verdict.mismatch {
        None => {
            lines.push(format!(
                "{} outputs match {} (worst relative difference {:.2e}): {}",
                verdict.compared.len(),
                a.display(),
                verdict.worst_relative,
                verdict.compared.join(", ")
            ));
            Ok(())
        }
        Some(m) => {
            let (a, b) = (a.display().to_string(), b.display().to_string());
            Err(match m.difference {
                Difference::Value { index, original, rewritten } => miette!(
                    "output `{}` differs: element {index} is {original} in {a} and {rewritten} in {b} (rtol {rtol}, atol {atol})",
                    m.output
                ),
                _ => miette!(
                    "output `{}` differs: {}",
                    m.output,
                    m.reason(&a, &b).unwrap_or_default()
                ),
            })
        }
    }
}

/// Loads, checks and compiles rules; errors come back rendered, all of them.
fn load_rules(args: &[String], sets: &[String]) -> Result<RuleSet> {
    let origins: Vec<Origin> = args.iter().map(|a| Origin::from_arg(a)).collect();
    let loaded = load(&origins);
    let sets: Vec<(String, String)> = sets
        .iter()
        .map(|s| {
            s.split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| miette!("--set {s}: expected NAME=VALUE"))
        })
        .collect::<Result<_>>()?;
    match compile(&loaded, &sets) {
        Ok(rules) => {
            for warning in &rules.warnings {
                err!("{}", warning.render(100));
            }
            Ok(rules)
        }
        Err(diags) => {
            for diag in &diags {
                err!("{}", diag.render(100));
            }
            let errors = diags.iter().filter(|d| d.is_error()).count();
            Err(miette!("the rules have {errors} error{}", plural(errors)))
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Rounds the text report shows at each end of a longer cascade.
const ROUNDS_SHOWN: usize = 10;

fn text_report(report: &Report) -> String {
    let mut out = String::new();
    out.push_str("rule                                 fired\n");
    for (rule, count) in &report.fired {
        out.push_str(&format!("{rule:<36} {count:>5}\n"));
    }
    out.push_str(&format!(
        "nodes: {} -> {} in {} rounds, {:.3} s (indexing the input {:.3}, setting up and writing out {:.3}, matching {:.3}, applying {:.3}, pruning {:.3}, checking {:.3})\n",
        report.nodes_before,
        report.nodes_after,
        report.rounds,
        report.seconds,
        report.phases.index,
        report.phases.write,
        report.phases.find,
        report.phases.apply,
        report.phases.settle,
        report.phases.check
    ));
    if !report.per_round.is_empty() {
        out.push_str("round candidates nodes after  seconds  rules fired\n");
    }
    // A long cascade (a chain folded a link a round) shows its ends.
    let rounds = report.per_round.len();
    for (i, round) in report.per_round.iter().enumerate() {
        if rounds > 2 * ROUNDS_SHOWN && i >= ROUNDS_SHOWN && i < rounds - ROUNDS_SHOWN {
            if i == ROUNDS_SHOWN {
                out.push_str(&format!("  ... {} more rounds\n", rounds - 2 * ROUNDS_SHOWN));
            }
            continue;
        }
        let fired: Vec<String> = round.fired.iter().map(|(r, n)| format!("{r} {n}")).collect();
        out.push_str(&format!(
            "{:>5} {:>10} {:>11} {:>8.3}  {}\n",
            i + 1,
            round.candidates,
            round.nodes_after,
            round.find + round.apply + round.settle + round.check,
            fired.join(", ")
        ));
    }
    out.push_str("op                               before  after\n");
    let ops: std::collections::BTreeSet<&String> =
        report.ops_before.keys().chain(report.ops_after.keys()).collect();
    for op in ops {
        let before = report.ops_before.get(op).copied().unwrap_or(0);
        let after = report.ops_after.get(op).copied().unwrap_or(0);
        out.push_str(&format!("{op:<32} {before:>6} {after:>6}\n"));
    }
    out
}

/// `dir/model.pb` -> `dir/model.<tag>.pb` (the extension of `to`, if given).
fn sibling(model: &Path, tag: &str, to: Option<Format>) -> PathBuf {
    let stem = model.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
    let ext = match to {
        Some(format) => format.extension().to_string(),
        None => model.extension().and_then(|e| e.to_str()).unwrap_or("pb").to_string(),
    };
    model.with_file_name(format!("{stem}.{tag}.{ext}"))
}
