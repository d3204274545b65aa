//! The `graphrw` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use miette::{IntoDiagnostic, Result, miette};

use graphrw::inspect::summarize;
use graphrw::io::{Format, read_graph, write_graph};
use graphrw::prune::{outputs_or_default, prune};
use graphrw::validate::validate;

/// graphrw: declarative surgery on TensorFlow GraphDefs.
#[derive(Parser)]
#[command(name = "graphrw", version, about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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

fn main() -> ExitCode {
    miette::set_hook(Box::new(|_| {
        Box::new(miette::MietteHandlerOpts::new().width(100).build())
    }))
    .ok();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Inspect {
            model,
            json,
            format,
        } => {
            let graph = read_graph(&model, format)?;
            let summary = summarize(&graph);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&summary).into_diagnostic()?
                );
            } else {
                println!("{}", model.display());
                print!("{summary}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { model, format } => {
            let graph = read_graph(&model, format)?;
            let problems = validate(&graph);
            if problems.is_empty() {
                println!("{}: valid, {} nodes", model.display(), graph.len());
                return Ok(ExitCode::SUCCESS);
            }
            for problem in &problems {
                eprintln!("{}: {problem}", model.display());
            }
            Err(miette!(
                "{}: {} validation problem{}",
                model.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            ))
        }
        Command::Convert {
            input,
            output,
            format,
            to,
        } => {
            let graph = read_graph(&input, format)?;
            write_graph(&output, &graph, to)?;
            if output != Path::new("-") {
                eprintln!("wrote {}", output.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Prune {
            model,
            outputs,
            output,
            format,
            to,
        } => {
            let graph = read_graph(&model, format)?;
            let roots = outputs_or_default(&graph, &outputs)?;
            let before = graph.len();
            let pruned = prune(&graph, &roots);
            let target = output.unwrap_or_else(|| sibling(&model, "pruned", to));
            write_graph(&target, &pruned, to)?;
            eprintln!("kept {} of {before} nodes", pruned.len());
            if target != Path::new("-") {
                println!("{}", target.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `dir/model.pb` -> `dir/model.<tag>.pb` (the extension of `to`, if given).
fn sibling(model: &Path, tag: &str, to: Option<Format>) -> PathBuf {
    let stem = model
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("model");
    let ext = match to {
        Some(format) => format.extension().to_string(),
        None => model
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("pb")
            .to_string(),
    };
    model.with_file_name(format!("{stem}.{tag}.{ext}"))
}
