//! Compiling checked rules into a [`RuleSet`]: each rule's root ops (so the
//! engine finds candidates through the op index), its pattern and guard
//! ready to run, and parameters with their command-line overrides.

use std::collections::HashMap;

use super::ast::{Literal, LiteralKind, PatternKind, RExpr, RInput, Replacement, Rule, Span};
use super::check::check;
use super::consts::Consts;
use super::diag::{Diagnostic, Source};
use super::load::Loaded;

/// One rule, ready to run.
#[derive(Clone, Debug)]
pub struct CompiledRule {
    /// The rule as written.
    pub rule: Rule,
    /// Its file.
    pub source: Source,
    /// The ops its root matches: the engine's candidates come from these.
    pub root_ops: Vec<String>,
    /// How many nodes its replacement builds, at most.
    pub new_nodes: usize,
    /// Its constant expressions, compiled.
    pub consts: Consts,
}

/// Rules in priority order, with parameter values.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    /// The rules, first match wins.
    pub rules: Vec<CompiledRule>,
    /// Parameter values (defaults, overridden by `--set`).
    pub params: HashMap<String, Literal>,
    /// Warnings found while checking.
    pub warnings: Vec<Diagnostic>,
}

/// Checks and compiles loaded rules. `sets` are `--set NAME=VALUE`
/// overrides. Errors (of loading, checking, or unknown parameters) are all
/// returned together.
pub fn compile(loaded: &Loaded, sets: &[(String, String)]) -> Result<RuleSet, Vec<Diagnostic>> {
    let mut diags = loaded.diagnostics.clone();
    diags.extend(check(loaded));
    let mut params: HashMap<String, Literal> = HashMap::new();
    for p in &loaded.params {
        params.insert(p.param.name.name.clone(), p.param.value.clone());
    }
    for (name, value) in sets {
        if !params.contains_key(name) {
            let mut known: Vec<&str> = params.keys().map(String::as_str).collect();
            known.sort_unstable();
            diags.push(
                Diagnostic::error(
                    "unknown parameter",
                    Span::default(),
                    format!("--set {name}: the rules declare no `param {name}`"),
                )
                .with_help(if known.is_empty() {
                    "these rules have no parameters".to_string()
                } else {
                    format!("parameters: {}", known.join(", "))
                }),
            );
            continue;
        }
        params.insert(name.clone(), parse_set(value));
    }
    let (errors, warnings): (Vec<_>, Vec<_>) = diags.into_iter().partition(Diagnostic::is_error);
    if !errors.is_empty() {
        let mut all = errors;
        all.extend(warnings);
        return Err(all);
    }
    let rules = loaded
        .rules
        .iter()
        .map(|r| CompiledRule {
            root_ops: match &r.rule.pattern.kind {
                PatternKind::Node(node) => node.ops.iter().map(|o| o.name.clone()).collect(),
                _ => vec![],
            },
            new_nodes: match &r.rule.replacement {
                Replacement::Single(e) => new_nodes(e),
                Replacement::Ports(es, _) => es.iter().map(new_nodes).sum(),
            },
            consts: Consts::of(&r.rule.replacement),
            rule: r.rule.clone(),
            source: r.source.clone(),
        })
        .collect();
    Ok(RuleSet { rules, params, warnings })
}

/// The nodes a replacement expression builds (constants, new nodes, copies).
fn new_nodes(expr: &RExpr) -> usize {
    let inputs = |inputs: &[RInput]| -> usize {
        inputs
            .iter()
            .map(|i| match i {
                RInput::Data(e) => new_nodes(e),
                RInput::Control(_) => 0,
            })
            .sum()
    };
    match expr {
        RExpr::Dead(_) | RExpr::Var { .. } => 0,
        RExpr::Number(..) | RExpr::Const(..) => 1,
        RExpr::NewNode { inputs: i, .. } | RExpr::Copy { inputs: i, .. } => 1 + inputs(i),
    }
}

/// A `--set` value: a number, `true`/`false`, a comma-separated list of
/// strings, or a string.
fn parse_set(value: &str) -> Literal {
    let kind = if let Ok(n) = value.parse::<f64>() {
        LiteralKind::Num { value: n, is_int: !value.contains(['.', 'e', 'E']) }
    } else if value == "true" || value == "false" {
        LiteralKind::Bool(value == "true")
    } else if value.contains(',') {
        LiteralKind::List(
            value
                .split(',')
                .map(|s| Literal {
                    kind: LiteralKind::Str(s.trim().to_string()),
                    span: Span::default(),
                })
                .collect(),
        )
    } else {
        LiteralKind::Str(value.to_string())
    };
    Literal { kind, span: Span::default() }
}
