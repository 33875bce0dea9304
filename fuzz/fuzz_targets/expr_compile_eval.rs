//! Fuzzes compile + eval of the expression language: any input must compile
//! or fail with errors, and any compiled program must evaluate or fail with
//! an error — never panic, hang or overflow the stack.
//!
//! Run: `cargo +nightly fuzz run expr_compile_eval` (from the repository root).
#![no_main]

use hookplane::expr::{Limits, NoSecrets, Scope, SourceKind, compile};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, json};

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    let payload = json!({"a": 1, "b": "text", "c": [1, {"d": null}], "e": {"f": true}});
    let processed = Map::new();
    let scope = Scope { payload: &payload, lookup: Some(&payload), processed: &processed, secrets: &NoSecrets };
    let limits = Limits { max_steps: 10_000, max_output_bytes: 64 * 1024, max_total_bytes: 256 * 1024 };
    for kind in [SourceKind::Expression, SourceKind::Template] {
        match compile(source, kind) {
            Ok(program) => {
                let _ = program.eval(&scope, &limits);
            }
            Err(errors) => assert!(!errors.0.is_empty(), "a failed compile reports at least one error"),
        }
    }
});
