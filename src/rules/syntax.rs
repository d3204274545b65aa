//! Parsing: the pest grammar (`grammar/graphrw.pest`) to the syntax tree.
//! A syntax error becomes a diagnostic in words, with pest's rule names
//! renamed to what a user would call them.

use pest::Parser;
use pest::iterators::Pair;

use super::ast::*;
use super::diag::Diagnostic;

mod grammar {
    //! The parser pest derives from `grammar/graphrw.pest`.
    #![allow(missing_docs)]

    #[derive(pest_derive::Parser)]
    #[grammar = "../grammar/graphrw.pest"]
    pub struct RulesParser;
}

use grammar::{Rule as G, RulesParser};

/// Parses a `.rules` file. On a syntax error, returns its diagnostic.
pub fn parse(source: &str) -> Result<File, Box<Diagnostic>> {
    let mut pairs = RulesParser::parse(G::file, source).map_err(|e| Box::new(syntax_error(&e)))?;
    let file = pairs.next().expect("the grammar's top rule");
    if let Some(inline) =
        file.clone().into_inner().flatten().find(|p| p.as_rule() == G::misplaced_inline)
    {
        let diagnostic = Diagnostic::error(
            "inline inside a replacement",
            span(&inline),
            "`inline(...)` takes the root's place, all its outputs: it is the whole replacement",
        )
        .with_help("write it alone after `=>`, like `=> inline(r.else_branch)`");
        return Err(Box::new(diagnostic));
    }
    let mut items = Vec::new();
    for pair in file.into_inner() {
        match pair.as_rule() {
            G::import => {
                let span = span(&pair);
                let target = string(pair.into_inner().next().expect("import string"));
                items.push(Item::Import(Import { target, span }));
            }
            G::param => {
                let mut inner = pair.into_inner();
                let name = ident(inner.next().expect("param name"));
                let value = literal(inner.next().expect("param value"));
                items.push(Item::Param(Param { name, value }));
            }
            G::rule => items.push(Item::Rule(Box::new(rule(pair, source)))),
            G::EOI => {}
            other => unreachable!("unexpected {other:?} at the top level"),
        }
    }
    Ok(File { doc: leading_comment(source), items })
}

fn syntax_error(err: &pest::error::Error<G>) -> Diagnostic {
    let renamed = err.clone().renamed_rules(|r| describe(*r).to_string());
    let (start, end) = match renamed.location {
        pest::error::InputLocation::Pos(p) => (p, p),
        pest::error::InputLocation::Span((s, e)) => (s, e),
    };
    let message = match &renamed.variant {
        pest::error::ErrorVariant::ParsingError { positives, negatives } => {
            let mut expected: Vec<String> =
                positives.iter().map(|r| describe(*r).to_string()).collect();
            expected.sort();
            expected.dedup();
            let mut text = match expected.len() {
                0 => "unexpected input".to_string(),
                1 => format!("expected {}", expected[0]),
                _ => {
                    let last = expected.pop().unwrap_or_default();
                    format!("expected {} or {last}", expected.join(", "))
                }
            };
            if !negatives.is_empty() {
                let unexpected: Vec<&str> = negatives.iter().map(|r| describe(*r)).collect();
                text.push_str(&format!(" (not {})", unexpected.join(", ")));
            }
            text
        }
        pest::error::ErrorVariant::CustomError { message } => message.clone(),
    };
    Diagnostic::error("syntax error", Span { start, end: end.max(start) }, message)
}

/// Words for grammar rules, as a user would name them.
fn describe(kind: G) -> &'static str {
    match kind {
        G::EOI => "end of file",
        G::item | G::import | G::param | G::rule => "`rule`, `import` or `param`",
        G::ident | G::binding => "a name",
        G::attr_name => "an attribute name",
        G::op_name | G::ops => "an op name (like `Conv2D`)",
        G::keyword => "a keyword",
        G::wildcard => "`_`",
        G::string | G::string_inner => "a string",
        G::number | G::int => "a number",
        G::boolean => "`true` or `false`",
        G::pattern | G::pattern_body | G::var_pattern => "a pattern",
        G::node_pattern => "an op pattern like `Op(x, y)`",
        G::port => "an output port like `:1`",
        G::attr_patterns | G::attr_values => "attributes in `{...}`",
        G::attr_pattern | G::attr_value => "an attribute `name: value`",
        G::args => "arguments in `(...)`",
        G::rest => "`...`",
        G::control_arg | G::control_input => "a control input `^name`",
        G::producer => "a producer op",
        G::dead => "`dead`",
        G::guard => "`where`",
        G::condition | G::conjunct | G::negation | G::comparison => "a condition",
        G::not => "`not`",
        G::compare_op => "a comparison (`==`, `!=`, `<`, `~`, `in`...)",
        G::value | G::call | G::attr_ref => "a value",
        G::literal | G::list | G::dtype => "a literal",
        G::replacement | G::ports | G::replacement_var => "a replacement",
        G::new_node | G::copy_node => "a node to create",
        G::const_expr => "`const(...)`",
        G::inline | G::misplaced_inline => "`inline(...)`",
        G::expr | G::term | G::factor | G::primary => "an expression",
        G::neg | G::add_op | G::mul_op => "an operator",
        G::expr_call | G::expr_arg | G::list_expr | G::expr_attr | G::expr_var => "an expression",
        G::file => "a rules file",
        G::arrow => "`=>`",
        G::WHITESPACE | G::COMMENT | G::ident_char => "whitespace",
        G::expr_replacement | G::input | G::arg | G::atom_condition => "an expression",
    }
}

fn span(pair: &Pair<G>) -> Span {
    let s = pair.as_span();
    Span { start: s.start(), end: s.end() }
}

fn ident(pair: Pair<G>) -> Ident {
    Ident { name: pair.as_str().to_string(), span: span(&pair) }
}

/// The text of a string literal, escapes resolved.
fn string(pair: Pair<G>) -> String {
    let inner = pair.into_inner().next().map_or("", |p| p.as_str());
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn literal(pair: Pair<G>) -> Literal {
    let pair = if pair.as_rule() == G::literal {
        pair.into_inner().next().expect("literal")
    } else {
        pair
    };
    let at = span(&pair);
    let kind = match pair.as_rule() {
        G::string => LiteralKind::Str(string(pair)),
        G::number => number(pair.as_str()),
        G::boolean => LiteralKind::Bool(pair.as_str() == "true"),
        G::list => LiteralKind::List(pair.into_inner().map(literal).collect()),
        G::dtype => LiteralKind::DType(pair.as_str().to_string()),
        other => unreachable!("{other:?} is not a literal"),
    };
    Literal { kind, span: at }
}

fn number(text: &str) -> LiteralKind {
    let is_int = !text.contains(['.', 'e', 'E']);
    LiteralKind::Num { value: text.parse().unwrap_or(f64::NAN), is_int }
}

fn rule(pair: Pair<G>, source: &str) -> Rule {
    let at = span(&pair);
    let mut inner = pair.into_inner();
    let name = ident(inner.next().expect("rule name"));
    let pattern = pattern(inner.next().expect("rule pattern"));
    let mut guard = None;
    let mut replacement = None;
    for part in inner {
        match part.as_rule() {
            G::guard => guard = Some(condition(part.into_inner().next().expect("condition"))),
            G::arrow => {}
            G::replacement => replacement = Some(replacement_of(part)),
            other => unreachable!("{other:?} in a rule"),
        }
    }
    Rule {
        name,
        doc: comment_before(source, at.start),
        pattern,
        guard,
        replacement: replacement.expect("the grammar requires a replacement"),
        span: at,
    }
}

fn pattern(pair: Pair<G>) -> Pattern {
    let at = span(&pair);
    let mut binding = None;
    let mut kind = PatternKind::Wildcard;
    for part in pair.into_inner() {
        match part.as_rule() {
            G::binding => binding = Some(ident(part.into_inner().next().expect("name"))),
            G::node_pattern => kind = PatternKind::Node(node_pattern(part)),
            G::var_pattern => {
                let mut inner = part.into_inner();
                let var = ident(inner.next().expect("variable"));
                let producer = inner.next().map(|p| {
                    let mut inner = p.into_inner();
                    let ops = ops(inner.next().expect("ops"));
                    let attrs = inner.next().map(attr_patterns).unwrap_or_default();
                    Producer { ops, attrs }
                });
                kind = PatternKind::Var { var, producer };
            }
            G::wildcard => kind = PatternKind::Wildcard,
            G::dead => kind = PatternKind::Dead,
            other => unreachable!("{other:?} in a pattern"),
        }
    }
    Pattern { binding, kind, span: at }
}

fn ops(pair: Pair<G>) -> Vec<Ident> {
    pair.into_inner().map(ident).collect()
}

fn attr_patterns(pair: Pair<G>) -> Vec<AttrPattern> {
    pair.into_inner()
        .map(|p| {
            let mut inner = p.into_inner();
            let name = ident(inner.next().expect("attribute name"));
            let value = inner.next().expect("attribute value");
            let value = match value.as_rule() {
                G::ident => AttrPatternValue::Bind(ident(value)),
                _ => AttrPatternValue::Literal(literal(value)),
            };
            AttrPattern { name, value }
        })
        .collect()
}

fn port(pair: Pair<G>) -> (u32, Span) {
    let at = span(&pair);
    let n = pair.into_inner().next().map_or(0, |p| p.as_str().parse().unwrap_or(u32::MAX));
    (n, at)
}

fn node_pattern(pair: Pair<G>) -> NodePattern {
    let at = span(&pair);
    let mut has_args = false;
    let mut result = NodePattern { ops: vec![], attrs: vec![], args: vec![], port: None };
    for part in pair.into_inner() {
        match part.as_rule() {
            G::ops => result.ops = ops(part),
            G::attr_patterns => result.attrs = attr_patterns(part),
            G::args => {
                has_args = true;
                for arg in part.into_inner() {
                    result.args.push(match arg.as_rule() {
                        G::rest => Arg::Rest(span(&arg)),
                        G::control_arg => {
                            Arg::Control(ident(arg.into_inner().next().expect("control name")))
                        }
                        _ => Arg::Pattern(pattern(arg)),
                    });
                }
            }
            G::port => result.port = Some(port(part)),
            other => unreachable!("{other:?} in a node pattern"),
        }
    }
    if !has_args {
        result.args.push(Arg::Rest(at));
    }
    result
}

fn condition(pair: Pair<G>) -> Cond {
    match pair.as_rule() {
        G::condition => {
            let mut parts: Vec<Cond> = pair.into_inner().map(condition).collect();
            if parts.len() == 1 { parts.pop().expect("one") } else { Cond::Or(parts) }
        }
        G::conjunct => {
            let mut parts: Vec<Cond> = pair.into_inner().map(condition).collect();
            if parts.len() == 1 { parts.pop().expect("one") } else { Cond::And(parts) }
        }
        G::negation => {
            let mut inner = pair.into_inner().peekable();
            let negated = inner.peek().is_some_and(|p| p.as_rule() == G::not);
            if negated {
                inner.next();
            }
            let body = condition(inner.next().expect("condition"));
            if negated { Cond::Not(Box::new(body)) } else { body }
        }
        G::comparison => {
            let mut inner = pair.into_inner();
            let lhs = value(inner.next().expect("value"));
            let rhs = inner.next().map(|op| {
                let op = match op.as_str() {
                    "==" => CompareOp::Eq,
                    "!=" => CompareOp::Ne,
                    "<" => CompareOp::Lt,
                    "<=" => CompareOp::Le,
                    ">" => CompareOp::Gt,
                    ">=" => CompareOp::Ge,
                    "~" => CompareOp::Match,
                    _ => CompareOp::In,
                };
                (op, value(inner.next().expect("right side")))
            });
            Cond::Compare { lhs, rhs }
        }
        other => unreachable!("{other:?} in a condition"),
    }
}

fn value(pair: Pair<G>) -> Value {
    let at = span(&pair);
    let inner = pair.into_inner().next().expect("value");
    let kind = match inner.as_rule() {
        G::call => {
            let mut parts = inner.into_inner();
            let func = ident(parts.next().expect("function"));
            ValueKind::Call { func, args: parts.map(value).collect() }
        }
        G::attr_ref => {
            let mut parts = inner.into_inner();
            let var = ident(parts.next().expect("variable"));
            let attr = ident(parts.next().expect("attribute"));
            ValueKind::AttrRef { var, attr }
        }
        G::literal => ValueKind::Literal(literal(inner)),
        G::ident => ValueKind::Var(ident(inner)),
        other => unreachable!("{other:?} in a value"),
    };
    Value { kind, span: at }
}

fn replacement_of(pair: Pair<G>) -> Replacement {
    let inner = pair.into_inner().next().expect("replacement");
    if inner.as_rule() == G::inline {
        let at = span(&inner);
        let mut parts = inner.into_inner().next().expect("attribute").into_inner();
        let var = ident(parts.next().expect("variable"));
        let attr = ident(parts.next().expect("attribute"));
        return Replacement::Inline { var, attr, span: at };
    }
    if inner.as_rule() == G::ports {
        let at = span(&inner);
        return Replacement::Ports(inner.into_inner().map(rexpr).collect(), at);
    }
    Replacement::Single(rexpr(inner))
}

fn rinputs(pairs: pest::iterators::Pairs<G>) -> (Vec<RInput>, Option<u32>, Vec<(Ident, Value)>) {
    let mut inputs = Vec::new();
    let mut port_ = None;
    let mut attrs = Vec::new();
    for part in pairs {
        match part.as_rule() {
            G::control_input => {
                inputs.push(RInput::Control(ident(part.into_inner().next().expect("name"))))
            }
            G::port => port_ = Some(port(part).0),
            G::attr_values => {
                for attr in part.into_inner() {
                    let mut inner = attr.into_inner();
                    let name = ident(inner.next().expect("attribute name"));
                    attrs.push((name, value(inner.next().expect("attribute value"))));
                }
            }
            _ => inputs.push(RInput::Data(rexpr(part))),
        }
    }
    (inputs, port_, attrs)
}

fn rexpr(pair: Pair<G>) -> RExpr {
    let at = span(&pair);
    match pair.as_rule() {
        G::dead => RExpr::Dead(at),
        G::number => match number(pair.as_str()) {
            LiteralKind::Num { value, .. } => RExpr::Number(value, at),
            _ => unreachable!("a number"),
        },
        G::replacement_var => {
            let mut inner = pair.into_inner();
            let var = ident(inner.next().expect("variable"));
            RExpr::Var { var, port: inner.next().map(|p| port(p).0) }
        }
        G::new_node => {
            let mut inner = pair.into_inner();
            let op = ident(inner.next().expect("op"));
            let (inputs, port, attrs) = rinputs(inner);
            RExpr::NewNode { op, attrs, inputs, port, span: at }
        }
        G::copy_node => {
            let mut inner = pair.into_inner();
            let of = ident(inner.next().expect("node"));
            let (inputs, port, _) = rinputs(inner);
            RExpr::Copy { of, inputs, port, span: at }
        }
        G::const_expr => RExpr::Const(texpr(pair.into_inner().next().expect("expression")), at),
        other => unreachable!("{other:?} in a replacement"),
    }
}

fn texpr(pair: Pair<G>) -> TExpr {
    let at = span(&pair);
    match pair.as_rule() {
        G::expr | G::term => {
            let mut inner = pair.into_inner();
            let mut acc = texpr(inner.next().expect("operand"));
            while let Some(op) = inner.next() {
                let rhs = texpr(inner.next().expect("operand"));
                let op = match op.as_str() {
                    "+" => BinOp::Add,
                    "-" => BinOp::Sub,
                    "*" => BinOp::Mul,
                    _ => BinOp::Div,
                };
                let span = Span { start: acc.span.start, end: rhs.span.end };
                acc = TExpr { kind: TExprKind::Bin(Box::new(acc), op, Box::new(rhs)), span };
            }
            acc
        }
        G::factor => {
            let mut inner = pair.into_inner().peekable();
            let negated = inner.peek().is_some_and(|p| p.as_rule() == G::neg);
            if negated {
                inner.next();
            }
            let body = texpr(inner.next().expect("operand"));
            if negated { TExpr { kind: TExprKind::Neg(Box::new(body)), span: at } } else { body }
        }
        G::number => match number(pair.as_str()) {
            LiteralKind::Num { value, .. } => TExpr { kind: TExprKind::Num(value), span: at },
            _ => unreachable!("a number"),
        },
        G::expr_call => {
            let mut inner = pair.into_inner();
            let func = ident(inner.next().expect("function"));
            TExpr { kind: TExprKind::Call(func, inner.map(texpr).collect()), span: at }
        }
        G::list_expr => {
            TExpr { kind: TExprKind::List(pair.into_inner().map(texpr).collect()), span: at }
        }
        G::expr_attr => {
            let mut inner = pair.into_inner();
            let var = ident(inner.next().expect("variable"));
            let attr = ident(inner.next().expect("attribute"));
            TExpr { kind: TExprKind::Attr(var, attr), span: at }
        }
        G::expr_var => {
            TExpr { kind: TExprKind::Var(ident(pair.into_inner().next().expect("name"))), span: at }
        }
        other => unreachable!("{other:?} in an expression"),
    }
}

/// The comment block on the lines directly above `offset` (no blank line
/// between), without the `#`s.
fn comment_before(source: &str, offset: usize) -> Option<String> {
    let before = &source[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    if !before[line_start..].trim().is_empty() {
        return None;
    }
    let mut lines = Vec::new();
    for line in before[..line_start].lines().rev() {
        match line.trim().strip_prefix('#') {
            Some(text) => lines.push(text.strip_prefix(' ').unwrap_or(text)),
            None => break,
        }
    }
    lines.reverse();
    let text = lines.join("\n").trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// The file's first comment block: the pack's description.
fn leading_comment(source: &str) -> Option<String> {
    let mut lines = Vec::new();
    for line in source.lines() {
        let trimmed = line.trim();
        match trimmed.strip_prefix('#') {
            Some(text) => lines.push(text.strip_prefix(' ').unwrap_or(text)),
            None if trimmed.is_empty() && lines.is_empty() => continue,
            None => break,
        }
    }
    let text = lines.join("\n").trim().to_string();
    (!text.is_empty()).then_some(text)
}
