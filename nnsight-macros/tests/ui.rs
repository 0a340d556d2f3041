//! Compile-time checks: every mistake gets a helpful message at the right span. (The model the
//! cases share is checked to compile and trace in the facade's tests, `trace_macro.rs`: with no
//! pass case here, trybuild only checks the dependencies instead of building them.)

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/fail/*.rs");
}
