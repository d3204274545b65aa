//! The rule language, stage by stage: syntax tree ([`ast`]), parser
//! ([`syntax`]), loading with imports ([`load`]), static checks ([`check`]),
//! compilation into a rule set ([`compile`]), matching ([`matcher`]),
//! replacements (`replace`) and the engine that applies them ([`engine`]).
//! Diagnostics of every stage are [`diag::Diagnostic`]s.

pub mod ast;
pub mod check;
pub mod compile;
pub mod diag;
pub mod engine;
pub mod load;
pub mod matcher;
mod replace;
pub mod syntax;
mod work;
