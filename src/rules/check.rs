//! Static checks of loaded rules. Every problem of every file is reported at
//! once, each with its span: unbound and unused variables, duplicate rule
//! names, patterns whose root is not an op, wrong arity or unknown output
//! ports for well-known ops, unknown op names (a warning with a suggestion),
//! unknown functions and ill-formed constant expressions.

use std::collections::HashMap;

use super::ast::*;
use super::diag::{Diagnostic, Source};
use super::load::Loaded;
use crate::ops::{self, Outputs};
use crate::prune::edit_distance;

/// What a rule variable stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarKind {
    /// A matched node (`bn = Op(...)`, `^c`); as a tensor, its port 0.
    Node,
    /// A matched tensor (`x`, `w: Const`).
    Tensor,
    /// An attribute value (`{epsilon: eps}`).
    Attr,
}

/// Functions a guard may call, with their arity (docs/rules.md says what
/// each returns).
pub const GUARD_FUNCTIONS: &[(&str, usize)] = &[
    ("name", 1),
    ("op", 1),
    ("consumers", 1),
    ("dtype", 1),
    ("shape", 1),
    ("rank", 1),
    ("dim", 2),
    ("port", 1),
];

/// Functions of constant expressions, with their arity.
pub const CONST_FUNCTIONS: &[(&str, usize)] = &[
    ("sqrt", 1),
    ("rsqrt", 1),
    ("neg", 1),
    ("abs", 1),
    ("square", 1),
    ("reshape", 2),
    ("shape", 1),
    ("dim", 2),
];

/// Checks every loaded rule; returns the diagnostics (errors and warnings).
pub fn check(loaded: &Loaded) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let params: HashMap<&str, &Literal> =
        loaded.params.iter().map(|p| (p.param.name.name.as_str(), &p.param.value)).collect();
    let mut seen: HashMap<&str, (&Source, Span)> = HashMap::new();
    for loaded_rule in &loaded.rules {
        let rule = &loaded_rule.rule;
        let source = &loaded_rule.source;
        if let Some((first_source, first)) = seen.get(rule.name.name.as_str()) {
            let at = if first_source.name == source.name {
                let line = first_source.text[..first.start].matches('\n').count() + 1;
                format!("line {line}")
            } else {
                first_source.name.clone()
            };
            diags.push(
                Diagnostic::error(
                    "duplicate rule name",
                    rule.name.span,
                    format!("`{}` is already a rule ({at})", rule.name),
                )
                .with_help("rule names must be unique across a rule set and its imports")
                .in_source(source),
            );
        } else {
            seen.insert(&rule.name.name, (source, rule.name.span));
        }
        let mut checker = RuleChecker {
            params: &params,
            vars: HashMap::new(),
            used: HashMap::new(),
            diags: Vec::new(),
        };
        checker.rule(rule);
        diags.extend(checker.diags.into_iter().map(|d| d.in_source(source)));
    }
    diags
}

struct RuleChecker<'a> {
    params: &'a HashMap<&'a str, &'a Literal>,
    /// Each variable: its kind and where it was first bound.
    vars: HashMap<String, (VarKind, Span)>,
    /// Uses outside the binding site.
    used: HashMap<String, usize>,
    diags: Vec<Diagnostic>,
}

impl RuleChecker<'_> {
    fn rule(&mut self, rule: &Rule) {
        let root_ops = match &rule.pattern.kind {
            PatternKind::Node(node) => Some(node.ops.clone()),
            _ => {
                self.diags.push(
                    Diagnostic::error(
                        "pattern root is not an op",
                        rule.pattern.span,
                        "a rule must match a node here",
                    )
                    .with_help("write the root as an op pattern, like `Merge(a, _)`"),
                );
                None
            }
        };
        if let (Some(binding), PatternKind::Node(_)) = (&rule.pattern.binding, &rule.pattern.kind) {
            self.bind(binding, VarKind::Node);
        }
        self.pattern(&rule.pattern, true);
        if let Some(guard) = &rule.guard {
            self.cond(guard);
        }
        match &rule.replacement {
            Replacement::Single(expr) => self.rexpr(expr),
            Replacement::Inline { var, attr: _, span } => {
                self.use_var(var, &[VarKind::Node], "the node whose function is inlined");
                let root = rule.pattern.binding.as_ref().map(|b| b.name.as_str());
                if self.vars.contains_key(&var.name) && root != Some(var.name.as_str()) {
                    self.diags.push(
                        Diagnostic::error(
                            "inline of a node that is not the root",
                            *span,
                            format!("`{}` is not the node the rule replaces", var.name),
                        )
                        .with_help(
                            "bind the root (`r = If(...)`) and inline one of its attributes, \
                             `inline(r.else_branch)`",
                        ),
                    );
                }
            }
            Replacement::Ports(exprs, span) => {
                for expr in exprs {
                    self.rexpr(expr);
                }
                if let Some(ops) = &root_ops {
                    for op in ops {
                        if let Some(Outputs::Fixed(n)) = ops::lookup(&op.name).map(|i| i.outputs) {
                            if exprs.len() > n as usize {
                                self.diags.push(Diagnostic::error(
                                    "too many replaced ports",
                                    *span,
                                    format!(
                                        "{} replacements, but {} has {n} output{}",
                                        exprs.len(),
                                        op.name,
                                        plural(n)
                                    ),
                                ));
                            }
                        }
                    }
                }
            }
        }
        let mut unused: Vec<(&String, &(VarKind, Span))> = self
            .vars
            .iter()
            .filter(|(name, _)| !name.starts_with('_') && !self.used.contains_key(*name))
            .collect();
        unused.sort_by_key(|(_, (_, span))| span.start);
        for (name, (_, span)) in unused {
            self.diags.push(
                Diagnostic::warning(
                    "unused variable",
                    *span,
                    format!("`{name}` is bound but never used"),
                )
                .with_help(format!("write `_` to match anything, or `_{name}` to keep the name")),
            );
        }
    }

    fn bind(&mut self, var: &Ident, kind: VarKind) {
        match self.vars.get(&var.name) {
            None => {
                self.vars.insert(var.name.clone(), (kind, var.span));
            }
            Some((existing, _)) if *existing == kind && kind == VarKind::Tensor => {
                // The same tensor twice: DAG sharing. Counts as a use.
                *self.used.entry(var.name.clone()).or_default() += 1;
            }
            Some((_, first)) => {
                let first = *first;
                self.diags.push(
                    Diagnostic::error("variable bound twice", var.span, format!("`{}` is already bound", var.name))
                        .with_help(format!(
                            "only a tensor variable may repeat (it then means the same tensor); first bound at byte {}",
                            first.start
                        )),
                );
            }
        }
    }

    fn pattern(&mut self, pattern: &Pattern, root: bool) {
        match &pattern.kind {
            PatternKind::Node(node) => {
                if !root {
                    if let Some(binding) = &pattern.binding {
                        self.bind(binding, VarKind::Node);
                    }
                }
                self.op_names(&node.ops);
                self.attr_patterns(&node.attrs);
                let data = node.args.iter().filter(|a| matches!(a, Arg::Pattern(_))).count() as u32;
                let open = node.args.iter().any(|a| matches!(a, Arg::Rest(_)));
                for op in &node.ops {
                    self.arity(op, data, open, pattern.span);
                    if let (Some((port, span)), Some(info)) = (node.port, ops::lookup(&op.name)) {
                        if let Outputs::Fixed(n) = info.outputs {
                            if port >= n {
                                self.diags.push(Diagnostic::error(
                                    "no such output port",
                                    span,
                                    format!(
                                        "{} has {n} output{}, ports 0 to {}",
                                        op.name,
                                        plural(n),
                                        n.saturating_sub(1)
                                    ),
                                ));
                            }
                        }
                    }
                }
                for arg in &node.args {
                    match arg {
                        Arg::Pattern(p) => self.pattern(p, false),
                        Arg::Rest(_) => {}
                        Arg::Control(c) => self.bind(c, VarKind::Node),
                    }
                }
            }
            PatternKind::Var { var, producer } => {
                if let Some(binding) = &pattern.binding {
                    self.diags.push(Diagnostic::error(
                        "binding a variable",
                        binding.span,
                        "only op patterns can be named",
                    ));
                }
                self.bind(var, VarKind::Tensor);
                if let Some(producer) = producer {
                    self.op_names(&producer.ops);
                    self.attr_patterns(&producer.attrs);
                }
            }
            PatternKind::Wildcard | PatternKind::Dead => {
                if let Some(binding) = &pattern.binding {
                    self.bind(binding, VarKind::Tensor);
                }
            }
        }
    }

    fn arity(&mut self, op: &Ident, data: u32, open: bool, span: Span) {
        let Some(info) = ops::lookup(&op.name) else {
            return;
        };
        let (min, max) = (info.inputs.min, info.inputs.max);
        let too_few = !open && data < min;
        let too_many = max.is_some_and(|max| data > max);
        if too_few || too_many {
            let expected = match max {
                Some(max) if max == min => format!("{min}"),
                Some(max) => format!("{min} to {max}"),
                None => format!("at least {min}"),
            };
            self.diags.push(
                Diagnostic::error(
                    "wrong number of inputs",
                    span,
                    format!(
                        "{} takes {expected} data input{}, the pattern gives {data}",
                        op.name,
                        if expected == "1" { "" } else { "s" }
                    ),
                )
                .with_help("write `...` to match any further inputs"),
            );
        }
    }

    fn op_names(&mut self, ops_: &[Ident]) {
        for op in ops_ {
            if ops::lookup(&op.name).is_some() || op.name.starts_with('_') {
                continue;
            }
            let suggestion = ops::OPS
                .iter()
                .map(|info| {
                    (edit_distance(&op.name.to_lowercase(), &info.name.to_lowercase()), info.name)
                })
                .filter(|(d, _)| *d <= (op.name.len() / 3).max(2))
                .min_by_key(|(d, _)| *d);
            let diag = Diagnostic::warning(
                "unknown op",
                op.span,
                format!("`{}` is not an op graphrw knows", op.name),
            );
            self.diags.push(match suggestion {
                Some((_, name)) => diag.with_help(format!("did you mean `{name}`?")),
                None => diag
                    .with_help("the rule still applies to nodes of that op; arity is not checked"),
            });
        }
    }

    fn attr_patterns(&mut self, attrs: &[AttrPattern]) {
        for attr in attrs {
            if let AttrPatternValue::Bind(var) = &attr.value {
                self.bind(var, VarKind::Attr);
            }
        }
    }

    fn use_var(&mut self, var: &Ident, allowed: &[VarKind], role: &str) {
        match self.vars.get(&var.name) {
            Some((kind, _)) if allowed.contains(kind) => {
                *self.used.entry(var.name.clone()).or_default() += 1;
            }
            Some((kind, _)) => {
                *self.used.entry(var.name.clone()).or_default() += 1;
                let kind = format!("{kind:?}").to_lowercase();
                self.diags.push(Diagnostic::error(
                    "wrong kind of variable",
                    var.span,
                    format!(
                        "`{}` is bound to {} {kind}, not usable as {role}",
                        var.name,
                        article(&kind)
                    ),
                ));
            }
            None if self.params.contains_key(var.name.as_str()) => {}
            None => {
                let mut names: Vec<&str> = self.vars.keys().map(String::as_str).collect();
                names.extend(self.params.keys());
                let close = names
                    .iter()
                    .map(|n| (edit_distance(&var.name, n), *n))
                    .filter(|(d, _)| *d <= 2)
                    .min_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)));
                let diag = Diagnostic::error(
                    "unbound variable",
                    var.span,
                    format!("`{}` is not bound by the pattern", var.name),
                );
                self.diags.push(match close {
                    // `inline(r)`: read as a copy of a node named `inline`.
                    None if var.name == "inline" => diag.with_help(
                        "to inline a function, name the root's attribute: `inline(r.else_branch)`",
                    ),
                    Some((_, name)) => diag.with_help(format!("did you mean `{name}`?")),
                    None => diag.with_help("variables are bound by the pattern (`x`, `n = Op(...)`, `{attr: v}`) or declared with `param`"),
                });
            }
        }
    }

    fn cond(&mut self, cond: &Cond) {
        match cond {
            Cond::Or(parts) | Cond::And(parts) => parts.iter().for_each(|c| self.cond(c)),
            Cond::Not(inner) => self.cond(inner),
            Cond::Compare { lhs, rhs } => {
                self.value(lhs);
                if let Some((_, rhs)) = rhs {
                    self.value(rhs);
                }
            }
        }
    }

    fn value(&mut self, value: &Value) {
        match &value.kind {
            ValueKind::Call { func, args } => {
                self.call(
                    GUARD_FUNCTIONS,
                    "a guard function",
                    "guards",
                    func,
                    args.len(),
                    value.span,
                );
                for arg in args {
                    match &arg.kind {
                        ValueKind::Var(var) => {
                            self.use_var(var, &[VarKind::Node, VarKind::Tensor], "a tensor")
                        }
                        _ => self.value(arg),
                    }
                }
            }
            ValueKind::AttrRef { var, .. } => self.use_var(var, &[VarKind::Node], "a node"),
            ValueKind::Literal(_) => {}
            ValueKind::Var(var) => self.use_var(var, &[VarKind::Attr], "a value"),
        }
    }

    fn rexpr(&mut self, expr: &RExpr) {
        match expr {
            RExpr::Dead(_) | RExpr::Number(..) => {}
            RExpr::Var { var, port } => {
                self.use_var(var, &[VarKind::Node, VarKind::Tensor], "a tensor");
                if port.is_some()
                    && self.vars.get(&var.name).is_some_and(|(k, _)| *k == VarKind::Tensor)
                {
                    self.diags.push(Diagnostic::error(
                        "port of a tensor",
                        var.span,
                        format!("`{}` is a tensor; only a node variable takes a port", var.name),
                    ));
                }
            }
            RExpr::NewNode { op, attrs, inputs, span, .. } => {
                self.op_names(std::slice::from_ref(op));
                let data = inputs.iter().filter(|i| matches!(i, RInput::Data(_))).count() as u32;
                self.arity(op, data, false, *span);
                for (_, value) in attrs {
                    self.value(value);
                }
                self.inputs(inputs);
            }
            RExpr::Copy { of, inputs, .. } => {
                self.use_var(of, &[VarKind::Node], "a node to copy");
                self.inputs(inputs);
            }
            RExpr::Const(texpr, _) => self.texpr(texpr),
        }
    }

    /// A call of a function of `table`: known, with the right arity.
    fn call(
        &mut self,
        table: &[(&str, usize)],
        what: &str,
        caller: &str,
        func: &Ident,
        given: usize,
        span: Span,
    ) {
        match table.iter().find(|(name, _)| *name == func.name) {
            None => {
                let names: Vec<&str> = table.iter().map(|f| f.0).collect();
                self.diags.push(
                    Diagnostic::error(
                        "unknown function",
                        func.span,
                        format!("`{}` is not {what}", func.name),
                    )
                    .with_help(format!("{caller} can call {}", names.join(", "))),
                );
            }
            Some((_, arity)) if *arity != given => {
                let s = if *arity == 1 { "" } else { "s" };
                let label = format!("`{}` takes {arity} argument{s}", func.name);
                self.diags.push(Diagnostic::error("wrong number of arguments", span, label));
            }
            Some(_) => {}
        }
    }

    fn inputs(&mut self, inputs: &[RInput]) {
        for input in inputs {
            match input {
                RInput::Data(expr) => self.rexpr(expr),
                RInput::Control(var) => {
                    self.use_var(var, &[VarKind::Node, VarKind::Tensor], "a control input")
                }
            }
        }
    }

    fn texpr(&mut self, expr: &TExpr) {
        match &expr.kind {
            TExprKind::Num(_) => {}
            TExprKind::Var(var) => {
                self.use_var(var, &[VarKind::Tensor, VarKind::Node, VarKind::Attr], "a constant")
            }
            TExprKind::Attr(var, _) => self.use_var(var, &[VarKind::Node], "a node"),
            TExprKind::Call(func, args) => {
                self.call(
                    CONST_FUNCTIONS,
                    "a constant function",
                    "const(...)",
                    func,
                    args.len(),
                    expr.span,
                );
                args.iter().for_each(|a| self.texpr(a));
            }
            TExprKind::List(items) => {
                // A shape: scalars (numbers, `dim(w, 2)`...), not tensors or lists.
                for item in items {
                    let scalar = match &item.kind {
                        TExprKind::Num(_) | TExprKind::Neg(_) | TExprKind::Attr(..) => true,
                        TExprKind::Call(f, _) => f.name == "dim",
                        TExprKind::Bin(..) => true,
                        _ => false,
                    };
                    if !scalar {
                        self.diags.push(Diagnostic::error(
                            "ill-typed constant",
                            item.span,
                            "list elements must be numbers or dimensions (`dim(w, 2)`)",
                        ));
                    }
                    self.texpr(item);
                }
            }
            TExprKind::Neg(inner) => self.texpr(inner),
            TExprKind::Bin(lhs, _, rhs) => {
                for side in [lhs, rhs] {
                    if matches!(side.kind, TExprKind::List(_)) {
                        self.diags.push(Diagnostic::error(
                            "ill-typed constant",
                            side.span,
                            "a list is a shape, not a tensor to compute with",
                        ));
                    }
                }
                self.texpr(lhs);
                self.texpr(rhs);
            }
        }
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" }
}
