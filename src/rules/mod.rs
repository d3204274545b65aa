//! The rule language: syntax tree ([`ast`]), parser ([`syntax`]), loading
//! with imports ([`load`]), static checks ([`check`]) and diagnostics
//! ([`diag`]).

pub mod ast;
pub mod check;
pub mod compile;
pub mod diag;
pub mod engine;
pub mod load;
pub mod matcher;
pub mod syntax;
