//! Diagnostics of rule files: errors and warnings with the span they are
//! about, rendered by miette with the file's text.

use std::fmt;
use std::sync::Arc;

use miette::{LabeledSpan, NamedSource, Severity as MietteSeverity, SourceCode};

use super::ast::Span;

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing; the file still loads.
    Warning,
    /// The file cannot be used.
    Error,
}

/// A rules file's name and text, shared by its diagnostics.
#[derive(Clone, Debug)]
pub struct Source {
    /// The name shown (a path, or `pack:NAME` for built-in packs).
    pub name: String,
    /// The text.
    pub text: Arc<str>,
    named: Arc<NamedSource<Arc<str>>>,
}

impl Source {
    /// A source named `name` holding `text`.
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Source {
        let name = name.into();
        let text = text.into();
        let named = Arc::new(NamedSource::new(&name, text.clone()));
        Source { name, text, named }
    }
}

/// One problem in a rules file.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// What kind of problem (`syntax error`, `unbound variable`...).
    pub title: String,
    /// Where.
    pub span: Span,
    /// What is wrong there.
    pub label: String,
    /// What to do about it.
    pub help: Option<String>,
    /// The file, once known.
    pub source: Option<Source>,
}

impl Diagnostic {
    /// An error.
    pub fn error(title: impl Into<String>, span: Span, label: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            title: title.into(),
            span,
            label: label.into(),
            help: None,
            source: None,
        }
    }

    /// A warning.
    pub fn warning(title: impl Into<String>, span: Span, label: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(title, span, label) }
    }

    /// The same, with advice.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// The same, in `source`.
    pub fn in_source(mut self, source: &Source) -> Diagnostic {
        self.source = Some(source.clone());
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `file:line:col`, for one-line reports.
    pub fn location(&self) -> String {
        match &self.source {
            None => format!("{}..{}", self.span.start, self.span.end),
            Some(source) => {
                let (line, col) = crate::snippet::line_col(&source.text, self.span.start);
                format!("{}:{line}:{col}", source.name)
            }
        }
    }

    /// The file, when the span can be drawn in it (see [`crate::snippet`]).
    fn drawn_source(&self) -> Option<&Source> {
        self.source
            .as_ref()
            .filter(|s| crate::snippet::drawable(&s.text, self.span.start, self.span.end))
    }

    /// Renders with miette's graphical handler, without colour, at `width`.
    pub fn render(&self, width: usize) -> String {
        let handler =
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
                .with_width(width);
        let mut out = String::new();
        handler.render_report(&mut out, self).expect("rendering to a String cannot fail");
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.title, self.label)?;
        if self.source.is_some() && self.drawn_source().is_none() {
            write!(f, " (at {}, too far into its line to show)", self.location())?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

impl miette::Diagnostic for Diagnostic {
    fn severity(&self) -> Option<MietteSeverity> {
        Some(match self.severity {
            Severity::Warning => MietteSeverity::Warning,
            Severity::Error => MietteSeverity::Error,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.drawn_source().map(|s| &*s.named as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.drawn_source()?;
        let label = LabeledSpan::new_with_span(Some(self.label.clone()), self.span);
        Some(Box::new(std::iter::once(label)))
    }
}
