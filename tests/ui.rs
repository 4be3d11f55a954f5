//! Every misuse of `#[stage]` and `#[profiled]` fails to compile with a message that points at
//! the offending tokens and says what to write instead. One case per rule in `tests/ui/`.

#[test]
fn misuses_are_compile_errors_with_clear_messages() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
