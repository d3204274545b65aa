//! How far into a line a diagnostic can point.
//!
//! miette draws a label under the text it is about, padding up to it with a
//! `format!` width, and Rust refuses widths past `u16::MAX`: rendering a
//! label that starts 70 000 columns into a line (a text-format model keeps
//! a tensor's bytes on one line) panics. A label that far in is no help to
//! read anyway, so such a diagnostic says where instead of drawing it.

/// The furthest byte of its line a drawn label may start or end at.
pub(crate) const WIDEST: usize = 4096;

/// 1-based line and column (in bytes) of byte `at` of `text`.
pub(crate) fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..at.min(text.len())];
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    (before.iter().filter(|&&b| b == b'\n').count() + 1, before.len() - line_start + 1)
}

/// Whether a label on bytes `start..end` of `text` can be drawn.
pub(crate) fn drawable(text: &str, start: usize, end: usize) -> bool {
    [start, end].into_iter().all(|at| line_col(text, at).1 <= WIDEST + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_count_from_one() {
        let text = "ab\ncde\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 4), (2, 2));
        assert_eq!(line_col(text, 99), (3, 1));
    }

    #[test]
    fn a_label_far_into_a_line_is_not_drawn() {
        let long = format!("x\n{}y\nz", "a".repeat(WIDEST + 10));
        assert!(drawable(&long, 0, 1));
        assert!(drawable(&long, 2, 2 + WIDEST));
        assert!(!drawable(&long, 2, 2 + WIDEST + 1), "ends too far in");
        assert!(!drawable(&long, 2 + WIDEST + 5, 2 + WIDEST + 6));
        assert!(drawable(&long, long.len() - 1, long.len()));
    }
}
