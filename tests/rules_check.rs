//! The checker on one fixture file per case (tests/rules/check/), with the
//! rendered diagnostics snapshotted: no colour, 80 columns.

use graphrw::rules::check::check;
use graphrw::rules::load::{Origin, load};

/// Loads and checks a fixture; renders every diagnostic.
fn diagnostics(file: &str) -> (usize, String) {
    let path = format!("tests/rules/check/{file}");
    let loaded = load(&[Origin::Path(path.into())]);
    let mut diags = loaded.diagnostics.clone();
    diags.extend(check(&loaded));
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let text: String = diags.iter().map(|d| d.render(80)).collect();
    (errors, text)
}

macro_rules! case {
    ($name:ident, $file:expr, errors: $errors:expr) => {
        #[test]
        fn $name() {
            let (errors, text) = diagnostics($file);
            assert_eq!(errors, $errors, "{text}");
            insta::assert_snapshot!(stringify!($name), text);
        }
    };
}

case!(clean_file_has_no_diagnostics, "ok.rules", errors: 0);
case!(syntax_error_says_what_was_expected, "syntax_error.rules", errors: 1);
case!(missing_arrow, "syntax_missing_arrow.rules", errors: 1);
case!(unbound_variables, "unbound.rules", errors: 2);
case!(unused_variable_is_a_warning, "unused.rules", errors: 0);
case!(duplicate_rule_names, "duplicate.rules", errors: 1);
case!(arity_and_ports_of_known_ops, "arity.rules", errors: 3);
case!(unknown_op_suggests, "unknown_op.rules", errors: 0);
case!(ill_typed_constants, "const_errors.rules", errors: 3);
case!(root_must_be_an_op, "root_not_op.rules", errors: 1);
case!(unresolved_imports, "unresolved_import.rules", errors: 2);
case!(import_cycle, "cycle/a.rules", errors: 1);
case!(variable_kinds, "kinds.rules", errors: 2);
case!(inline_takes_the_root_function, "inline.rules", errors: 3);
case!(inline_is_the_whole_replacement, "inline_misplaced.rules", errors: 1);

/// miette cannot draw a label tens of thousands of columns into a line:
/// such a problem says where it is instead, and the others are drawn.
#[test]
fn a_problem_far_into_a_long_line_is_located_not_drawn() {
    let text = format!("rule r: Switch(x, p) where name(p) ~ \"{}\" => zzz\n", "A".repeat(70_000));
    let loaded = graphrw::rules::load::load_text("long.rules", &text);
    let mut diags = loaded.diagnostics.clone();
    diags.extend(check(&loaded));
    let unbound = diags.iter().find(|d| d.label.contains("`zzz`")).expect("the unbound variable");
    let column = text.find("zzz").unwrap() + 1;
    let said = unbound.to_string();
    assert!(said.ends_with(&format!("(at long.rules:1:{column}, too far into its line to show)")));
    assert!(!unbound.render(80).contains("╭─["), "nothing drawn: {said}");
    let unused = diags.iter().find(|d| d.label.contains("`x`")).expect("the unused variable");
    assert!(unused.render(80).contains("╭─[long.rules:1:16]"));
}

#[test]
fn all_problems_of_a_file_are_reported_at_once() {
    let (errors, text) = diagnostics("arity.rules");
    assert_eq!(errors, 3);
    for rule in ["Relu takes 1", "Switch has 2 outputs", "Merge has 2 outputs"] {
        assert!(text.contains(rule), "missing {rule:?} in {text}");
    }
}

#[test]
fn every_built_in_pack_is_clean() {
    for (name, _) in graphrw::rules::load::PACKS {
        let loaded = load(&[Origin::Pack(name.to_string())]);
        let mut diags = loaded.diagnostics.clone();
        diags.extend(check(&loaded));
        let text: String = diags.iter().map(|d| d.render(80)).collect();
        assert!(diags.is_empty(), "pack {name}:\n{text}");
        assert!(!loaded.rules.is_empty(), "pack {name} has no rules");
        assert!(loaded.files[0].1.is_some(), "pack {name} has no description");
    }
}

#[test]
fn rule_docs_come_from_the_comment_block_above() {
    let loaded = load(&[Origin::Path("tests/rules/check/ok.rules".into())]);
    assert_eq!(
        loaded.rules[0].rule.doc.as_deref(),
        Some("Replace each Merge by its false branch.")
    );
    assert_eq!(loaded.rules[1].rule.doc, None);
    assert_eq!(loaded.files[0].1.as_deref(), Some("A clean file: no diagnostics."));
}
