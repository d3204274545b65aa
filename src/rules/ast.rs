//! The syntax tree of a `.rules` file, with the source span of every part.
//! Built by [`super::syntax`]; checked by [`super::check`].

use std::fmt;

/// A byte range of the source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl From<Span> for miette::SourceSpan {
    fn from(span: Span) -> Self {
        (span.start, span.end - span.start).into()
    }
}

/// A name with where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ident {
    /// The name.
    pub name: String,
    /// Where.
    pub span: Span,
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A whole file.
#[derive(Clone, Debug, PartialEq)]
pub struct File {
    /// The file's first comment block: the pack's description.
    pub doc: Option<String>,
    /// Imports, parameters and rules, in order.
    pub items: Vec<Item>,
}

/// One top-level item.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// `import "..."`.
    Import(Import),
    /// `param name = value`.
    Param(Param),
    /// `rule name: ... => ...`.
    Rule(Box<Rule>),
}

/// `import "path"` or `import "pack"`.
#[derive(Clone, Debug, PartialEq)]
pub struct Import {
    /// The string as written.
    pub target: String,
    /// Where.
    pub span: Span,
}

/// `param name = literal`.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// The parameter's name.
    pub name: Ident,
    /// Its default value.
    pub value: Literal,
}

/// One rewrite rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// The rule's name.
    pub name: Ident,
    /// The comment block directly before the rule.
    pub doc: Option<String>,
    /// What to match.
    pub pattern: Pattern,
    /// The `where` condition.
    pub guard: Option<Cond>,
    /// What the matched root becomes.
    pub replacement: Replacement,
    /// The whole rule.
    pub span: Span,
}

/// A pattern: matches a tensor (at the root, the node producing it).
#[derive(Clone, Debug, PartialEq)]
pub struct Pattern {
    /// `name = ...`: binds the matched node.
    pub binding: Option<Ident>,
    /// What it matches.
    pub kind: PatternKind,
    /// Where.
    pub span: Span,
}

/// The kinds of pattern.
#[derive(Clone, Debug, PartialEq)]
pub enum PatternKind {
    /// `Op{attrs}(args):port`.
    Node(NodePattern),
    /// `x` or `x: Op{attrs}`.
    Var {
        /// The variable.
        var: Ident,
        /// A constraint on the tensor's producer.
        producer: Option<Producer>,
    },
    /// `_`.
    Wildcard,
    /// `dead`: a dead tensor.
    Dead,
}

/// `Op{attrs}(args):port`.
#[derive(Clone, Debug, PartialEq)]
pub struct NodePattern {
    /// The ops it accepts (`(A|B)` gives two).
    pub ops: Vec<Ident>,
    /// Attribute constraints and bindings.
    pub attrs: Vec<AttrPattern>,
    /// Data inputs (and control bindings), in order.
    pub args: Vec<Arg>,
    /// The output port read, when not 0.
    pub port: Option<(u32, Span)>,
}

/// A producer constraint: `Const` or `(Const|Identity){dtype: DT_FLOAT}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Producer {
    /// The ops it accepts.
    pub ops: Vec<Ident>,
    /// Attribute constraints and bindings.
    pub attrs: Vec<AttrPattern>,
}

/// One argument of a node pattern.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    /// A data input.
    Pattern(Pattern),
    /// `...`: any further data inputs.
    Rest(Span),
    /// `^c`: a control input, bound to `c`.
    Control(Ident),
}

/// `name: literal` (a constraint) or `name: var` (a binding).
#[derive(Clone, Debug, PartialEq)]
pub struct AttrPattern {
    /// The attribute.
    pub name: Ident,
    /// Its constraint or binding.
    pub value: AttrPatternValue,
}

/// The right side of an attribute pattern.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrPatternValue {
    /// Must equal this.
    Literal(Literal),
    /// Binds the value.
    Bind(Ident),
}

/// A literal value.
#[derive(Clone, Debug, PartialEq)]
pub struct Literal {
    /// The value.
    pub kind: LiteralKind,
    /// Where.
    pub span: Span,
}

/// The kinds of literal.
#[derive(Clone, Debug, PartialEq)]
pub enum LiteralKind {
    /// `"text"`.
    Str(String),
    /// `1`, `-2.5`, `1e-3`; `is_int` when written without `.` or exponent.
    Num {
        /// The value.
        value: f64,
        /// Written as an integer.
        is_int: bool,
    },
    /// `true`, `false`.
    Bool(bool),
    /// `[a, b]`.
    List(Vec<Literal>),
    /// `DT_FLOAT`.
    DType(String),
}

/// A `where` condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    /// Any of these.
    Or(Vec<Cond>),
    /// All of these.
    And(Vec<Cond>),
    /// Not this.
    Not(Box<Cond>),
    /// `lhs op rhs`, or a lone boolean value.
    Compare {
        /// Left side.
        lhs: Value,
        /// Operator and right side.
        rhs: Option<(CompareOp, Value)>,
    },
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `~`: glob match (or regex, when the pattern is `/.../`).
    Match,
    /// `in`: membership in a list.
    In,
}

/// A value in a guard or an attribute of a new node.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// What it is.
    pub kind: ValueKind,
    /// Where.
    pub span: Span,
}

/// The kinds of value.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueKind {
    /// `name(p)`, `consumers(n)`...
    Call {
        /// The function.
        func: Ident,
        /// Its arguments.
        args: Vec<Value>,
    },
    /// `bn.T`: an attribute of a bound node.
    AttrRef {
        /// The node variable.
        var: Ident,
        /// The attribute.
        attr: Ident,
    },
    /// A literal.
    Literal(Literal),
    /// A variable (bound tensor, node, attribute, or parameter).
    Var(Ident),
}

/// What a rule puts in place of the matched root.
#[derive(Clone, Debug, PartialEq)]
pub enum Replacement {
    /// One replacement for output port 0.
    Single(RExpr),
    /// One per output port: `[x, dead]`.
    Ports(Vec<RExpr>, Span),
    /// `inline(r.else_branch)`: the body of the function the attribute of
    /// the root names, its inputs the root's inputs after the first (an
    /// If's predicate), its outputs in place of the root's.
    Inline {
        /// The root's variable.
        var: Ident,
        /// The attribute naming the function.
        attr: Ident,
        /// The whole `inline(...)`.
        span: Span,
    },
}

/// A replacement expression: names a tensor, existing or new.
#[derive(Clone, Debug, PartialEq)]
pub enum RExpr {
    /// `dead`.
    Dead(Span),
    /// `x` or `n:1`: a bound tensor or a port of a bound node.
    Var {
        /// The variable.
        var: Ident,
        /// The port, for a node variable.
        port: Option<u32>,
    },
    /// A number: a new scalar Const of the root's type.
    Number(f64, Span),
    /// `Op{attrs}(inputs)`.
    NewNode {
        /// The op.
        op: Ident,
        /// Attributes.
        attrs: Vec<(Ident, Value)>,
        /// Inputs.
        inputs: Vec<RInput>,
        /// The port read, when not 0.
        port: Option<u32>,
        /// Where.
        span: Span,
    },
    /// `conv(x, w2)`: a copy of matched node `conv` with new inputs.
    Copy {
        /// The node copied.
        of: Ident,
        /// Its new inputs.
        inputs: Vec<RInput>,
        /// The port read, when not 0.
        port: Option<u32>,
        /// Where.
        span: Span,
    },
    /// `const(expr)`.
    Const(TExpr, Span),
}

impl RExpr {
    /// Where the expression was written.
    pub fn span(&self) -> Span {
        match self {
            RExpr::Dead(span) | RExpr::Number(_, span) | RExpr::Const(_, span) => *span,
            RExpr::Var { var, .. } => var.span,
            RExpr::NewNode { span, .. } | RExpr::Copy { span, .. } => *span,
        }
    }
}

/// An input of a new node.
#[derive(Clone, Debug, PartialEq)]
pub enum RInput {
    /// A data input.
    Data(RExpr),
    /// `^c`: a control input on the node bound to `c`.
    Control(Ident),
}

/// A tensor expression in `const(...)`.
#[derive(Clone, Debug, PartialEq)]
pub struct TExpr {
    /// What it is.
    pub kind: TExprKind,
    /// Where.
    pub span: Span,
}

/// The kinds of tensor expression.
#[derive(Clone, Debug, PartialEq)]
pub enum TExprKind {
    /// A number.
    Num(f64),
    /// A bound tensor (its producer must be a Const) or attribute.
    Var(Ident),
    /// `bn.epsilon`.
    Attr(Ident, Ident),
    /// `rsqrt(x)`, `reshape(x, [-1, 1])`...
    Call(Ident, Vec<TExpr>),
    /// `[a, b]`.
    List(Vec<TExpr>),
    /// `-x`.
    Neg(Box<TExpr>),
    /// `a + b` and the like.
    Bin(Box<TExpr>, BinOp, Box<TExpr>),
}

/// An arithmetic operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
}
