//! Loading rule files: parsing each file once, expanding imports in place
//! (relative paths, or built-in packs by name), and detecting import cycles.
//! The result is the rules in priority order, each with the file it came
//! from, and every diagnostic of every file.

use std::path::{Path, PathBuf};

use super::ast::{File, Item, Param, Rule, Span};
use super::diag::{Diagnostic, Source};
use super::syntax::parse;

/// The built-in packs: name and text, embedded in the binary.
pub const PACKS: &[(&str, &str)] = &[
    ("bn", include_str!("../../rules/bn.rules")),
    ("cond", include_str!("../../rules/cond.rules")),
    ("dropout", include_str!("../../rules/dropout.rules")),
    ("fold", include_str!("../../rules/fold.rules")),
    ("inference", include_str!("../../rules/inference.rules")),
    ("lock-training", include_str!("../../rules/lock-training.rules")),
    ("merge", include_str!("../../rules/merge.rules")),
    ("switch", include_str!("../../rules/switch.rules")),
];

/// A built-in pack's text.
pub fn pack(name: &str) -> Option<&'static str> {
    PACKS.iter().find(|(n, _)| *n == name).map(|(_, text)| *text)
}

/// Where rules come from: a file, or a built-in pack.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A `.rules` file.
    Path(PathBuf),
    /// A built-in pack.
    Pack(String),
}

impl Origin {
    /// A command-line argument: an existing path (or one ending in
    /// `.rules`), else a built-in pack name.
    pub fn from_arg(arg: &str) -> Origin {
        let path = Path::new(arg);
        if path.exists() || arg.ends_with(".rules") || pack(arg).is_none() {
            Origin::Path(path.to_path_buf())
        } else {
            Origin::Pack(arg.to_string())
        }
    }

    fn name(&self) -> String {
        match self {
            Origin::Path(p) => p.display().to_string(),
            Origin::Pack(n) => format!("pack:{n}"),
        }
    }
}

/// A rule with the file it was written in.
#[derive(Clone, Debug)]
pub struct LoadedRule {
    /// The rule.
    pub rule: Rule,
    /// Its file.
    pub source: Source,
}

/// A parameter with the file it was declared in.
#[derive(Clone, Debug)]
pub struct LoadedParam {
    /// The declaration.
    pub param: Param,
    /// Its file.
    pub source: Source,
}

/// Rules files loaded with their imports.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// Rules in priority order (imports expanded where they stand).
    pub rules: Vec<LoadedRule>,
    /// Parameters, in order of declaration.
    pub params: Vec<LoadedParam>,
    /// Each file loaded, with its description.
    pub files: Vec<(Source, Option<String>)>,
    /// Problems found while loading.
    pub diagnostics: Vec<Diagnostic>,
}

/// Loads each origin, with its imports, in order.
pub fn load(origins: &[Origin]) -> Loaded {
    let mut loaded = Loaded::default();
    let mut done = Vec::new();
    for origin in origins {
        let mut stack = Vec::new();
        load_one(origin, None, &mut stack, &mut done, &mut loaded);
    }
    loaded
}

/// Loads rules from text directly (tests, `--rule`), as if from a file.
pub fn load_text(name: &str, text: &str) -> Loaded {
    let mut loaded = Loaded::default();
    let source = Source::new(name, text);
    let origin = Origin::Path(PathBuf::from(name));
    add_file(
        &origin,
        source,
        &mut vec![(origin.clone(), name.to_string())],
        &mut vec![origin.clone()],
        &mut loaded,
    );
    loaded
}

fn load_one(
    origin: &Origin,
    from: Option<(&Source, Span)>,
    stack: &mut Vec<(Origin, String)>,
    done: &mut Vec<Origin>,
    loaded: &mut Loaded,
) {
    let canonical = match origin {
        Origin::Path(p) => Origin::Path(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())),
        pack => pack.clone(),
    };
    if let Some(at) = stack.iter().position(|o| o.0 == canonical) {
        let cycle: Vec<String> =
            stack[at..].iter().map(|o| o.1.clone()).chain([origin.name()]).collect();
        let diag = Diagnostic::error(
            "import cycle",
            from.map_or(Span::default(), |f| f.1),
            format!("imports {}", origin.name()),
        )
        .with_help(format!("the imports form a cycle: {}", cycle.join(" -> ")));
        loaded.diagnostics.push(match from {
            Some((source, _)) => diag.in_source(source),
            None => diag,
        });
        return;
    }
    if done.contains(&canonical) {
        return; // Imported already: its rules stand where it was first imported.
    }
    let text = match origin {
        Origin::Pack(name) => match pack(name) {
            Some(text) => Ok(text.to_string()),
            None => Err(format!("no built-in pack is named `{name}`")),
        },
        Origin::Path(path) if !path.exists() && path.extension().is_none() && from.is_none() => {
            Err(format!("`{}` is neither a rules file nor a built-in pack", path.display()))
        }
        Origin::Path(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display())),
    };
    let text = match text {
        Ok(text) => text,
        Err(message) => {
            let names: Vec<&str> = PACKS.iter().map(|(n, _)| *n).collect();
            let (title, how) = match from {
                Some(_) => ("unresolved import", "import a path relative to this file"),
                None => ("unknown rules", "give a path to a .rules file"),
            };
            let diag = Diagnostic::error(title, from.map_or(Span::default(), |f| f.1), message)
                .with_help(format!("{how}, or one of the built-in packs: {}", names.join(", ")));
            loaded.diagnostics.push(match from {
                Some((source, _)) => diag.in_source(source),
                None => diag,
            });
            return;
        }
    };
    let source = Source::new(origin.name(), text);
    stack.push((canonical.clone(), origin.name()));
    done.push(canonical);
    add_file(origin, source, stack, done, loaded);
    stack.pop();
}

fn add_file(
    origin: &Origin,
    source: Source,
    stack: &mut Vec<(Origin, String)>,
    done: &mut Vec<Origin>,
    loaded: &mut Loaded,
) {
    let file: File = match parse(&source.text) {
        Ok(file) => file,
        Err(diag) => {
            loaded.diagnostics.push((*diag).in_source(&source));
            loaded.files.push((source, None));
            return;
        }
    };
    loaded.files.push((source.clone(), file.doc.clone()));
    for item in file.items {
        match item {
            Item::Import(import) => {
                let target = match origin {
                    Origin::Path(path) if looks_like_path(&import.target) => {
                        let dir = path.parent().unwrap_or(Path::new("."));
                        Origin::Path(dir.join(&import.target))
                    }
                    Origin::Pack(_) if looks_like_path(&import.target) => {
                        // Packs import each other by file name.
                        Origin::Pack(import.target.trim_end_matches(".rules").to_string())
                    }
                    _ => Origin::Pack(import.target.clone()),
                };
                load_one(&target, Some((&source, import.span)), stack, done, loaded);
            }
            Item::Param(param) => loaded.params.push(LoadedParam { param, source: source.clone() }),
            Item::Rule(rule) => {
                loaded.rules.push(LoadedRule { rule: *rule, source: source.clone() })
            }
        }
    }
}

/// `cond.rules`, `./x`, `../packs/y.rules` are paths; `inference` is a pack.
fn looks_like_path(target: &str) -> bool {
    target.ends_with(".rules") || target.contains('/')
}
