//! Compiling checked rules into a [`RuleSet`]: each rule's root ops (so the
//! engine finds candidates through the op index), its pattern and guard
//! ready to run, and parameters with their command-line overrides.

use std::collections::HashMap;

use super::ast::{Literal, LiteralKind, PatternKind, RExpr, RInput, Replacement, Rule, Span};
use super::check::check;
use super::consts::Consts;
use super::diag::{Diagnostic, Source};
use super::load::Loaded;
use crate::proto::DataType;

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
        match parse_set(value, &params[name]) {
            Ok(value) => {
                params.insert(name.clone(), value);
            }
            Err(problem) => diags.push(
                Diagnostic::error(
                    "invalid parameter value",
                    Span::default(),
                    format!("--set {name}={value}: {problem}"),
                )
                .with_help(format!(
                    "`{name}` defaults to {}; give a value of that kind",
                    show_literal(&params[name])
                )),
            ),
        }
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
                // As many as the function has: unknown until it is read.
                Replacement::Inline { .. } => 0,
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

/// A `--set` value, read as the kind of the parameter's default: a number,
/// `true`/`false`, a dtype (`DT_HALF`), a string, or for a list, its items
/// separated by commas (one item is a list of one). An empty value, or one
/// of another kind, is refused with what was expected.
fn parse_set(value: &str, default: &Literal) -> Result<Literal, String> {
    let literal = |kind| Literal { kind, span: Span::default() };
    let one = |text: &str, like: &LiteralKind| -> Result<LiteralKind, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("the value is empty".into());
        }
        match like {
            LiteralKind::Num { .. } => text
                .parse::<f64>()
                .map(|value| LiteralKind::Num { value, is_int: !text.contains(['.', 'e', 'E']) })
                .map_err(|_| format!("`{text}` is not a number")),
            LiteralKind::Bool(_) => match text {
                "true" => Ok(LiteralKind::Bool(true)),
                "false" => Ok(LiteralKind::Bool(false)),
                _ => Err(format!("`{text}` is not `true` or `false`")),
            },
            LiteralKind::DType(_) => match DataType::from_str_name(text) {
                Some(_) => Ok(LiteralKind::DType(text.to_string())),
                None => Err(format!("`{text}` is not a dtype (`DT_FLOAT`, `DT_HALF`, ...)")),
            },
            LiteralKind::Str(_) | LiteralKind::List(_) => Ok(LiteralKind::Str(text.to_string())),
        }
    };
    match &default.kind {
        LiteralKind::List(items) => {
            // Items are read as the default's first item is (strings when
            // the default is empty).
            let like = items.first().map_or(LiteralKind::Str(String::new()), |i| i.kind.clone());
            let items = value
                .split(',')
                .map(|item| one(item, &like).map(literal))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(literal(LiteralKind::List(items)))
        }
        like => one(value, like).map(literal),
    }
}

/// A literal as a rule file writes it.
fn show_literal(l: &Literal) -> String {
    match &l.kind {
        LiteralKind::Str(s) => format!("{s:?}"),
        LiteralKind::Num { value, .. } => value.to_string(),
        LiteralKind::Bool(b) => b.to_string(),
        LiteralKind::DType(d) => d.clone(),
        LiteralKind::List(items) => {
            format!("[{}]", items.iter().map(show_literal).collect::<Vec<_>>().join(", "))
        }
    }
}
