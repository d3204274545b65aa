//! The rule language, stage by stage: syntax tree ([`ast`]), parser
//! ([`syntax`]), loading with imports ([`load`]), static checks ([`check`]),
//! compilation into a rule set ([`compile`]), matching ([`matcher`]),
//! replacements (`replace`), the search for a round's patches (`search`)
//! and the engine that applies them ([`engine`]).
//! Diagnostics of every stage are [`diag::Diagnostic`]s.

pub mod ast;
pub mod check;
pub mod compile;
pub mod consts;
pub mod diag;
pub mod engine;
mod inline;
pub mod load;
pub mod matcher;
mod names;
mod replace;
mod search;
pub mod syntax;
mod work;
