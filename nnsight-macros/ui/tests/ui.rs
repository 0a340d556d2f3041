//! Compile-time checks: every mistake gets a helpful message at the right span. (The model the
//! cases share is checked to compile and trace in the facade's tests, `trace_macro.rs`: with no
//! pass case here, trybuild only checks the dependencies instead of building them.)

use std::process::Command;

/// The rustc flags trybuild gives the cases (its own, then `--diagnostic-width=140` that it adds
/// for the cases' step). trybuild checks the dependencies with its flags first and the cases with
/// one more, and cargo checks every dependency again when the flags change: nnsight and burn,
/// ≈ 50 s of a cold `cargo test --workspace` on two cores. Under `CARGO_ENCODED_RUSTFLAGS`, which
/// cargo prefers to the flags trybuild passes, both steps run with these and the dependencies are
/// checked once.
const FLAGS: [&str; 6] = ["--cfg", "trybuild", "--verbose", "-A", "dead_code", "--diagnostic-width=140"];

/// Set in the second run of this test, the one that runs trybuild under [`FLAGS`].
const UNDER_FLAGS: &str = "NNSIGHT_UI_UNDER_FLAGS";

#[test]
fn ui() {
    let set = |name| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    // Flags of the caller's own (coverage, say) are left to trybuild, which knows which to keep.
    if !set(UNDER_FLAGS) && !set("RUSTFLAGS") && !set("CARGO_ENCODED_RUSTFLAGS") {
        let this = std::env::current_exe().expect("the test binary's path");
        let status = Command::new(this)
            .args(["ui", "--exact", "--nocapture"])
            .env(UNDER_FLAGS, "1")
            .env("CARGO_ENCODED_RUSTFLAGS", FLAGS.join("\u{1f}"))
            .status()
            .expect("the test binary runs again");
        assert!(status.success(), "a UI case failed: its report is above");
        return;
    }
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/fail/*.rs");
}
