//! Fuzzes compile + eval of the expression language: any input compiles or
//! fails with errors; any compiled program evaluates or fails with an
//! error, within its budget — never panics, hangs, overflows the stack or
//! claims more bytes than the budget allows.
//!
//! The input's first line is the source; the rest, when it is JSON, is the
//! payload (read through the programs' projection, as a node reads it).
#![no_main]

use hookplane_expr::{Budget, Context, Limits, NoSecrets, ProgramSetBuilder, Scope, SourceKind};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

const LIMITS: Limits = Limits { max_steps: 10_000, max_output_bytes: 64 * 1024, max_total_bytes: 256 * 1024 };

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (source, payload) = text.split_once('\n').unwrap_or((text, ""));
    for kind in [SourceKind::Expression, SourceKind::Template] {
        let mut builder = ProgramSetBuilder::new();
        let Ok(program) = builder.compile(source, kind, Context::default()) else { continue };
        let set = builder.finish();
        let payload = set
            .read_payload(payload)
            .unwrap_or_else(|_| json!({"a": 1, "b": "text", "c": [1, {"d": null}], "e": {"f": true}}));
        let processed = hookplane_expr::Processed::new();
        let scope = Scope { payload: (&payload).into(), lookup: Some(&payload), processed: &processed, secrets: &NoSecrets };
        let mut budget = Budget::new(LIMITS);
        let _ = set.eval_in(program, &scope, &mut budget);
        assert!(budget.spent_bytes() <= LIMITS.max_total_bytes, "claims stay within the budget");
        // What compiled prints back to source that compiles again.
        let printed = set.source(program);
        assert!(hookplane_expr::compile(&printed, kind).is_ok(), "{source:?} printed as {printed:?}");
    }
});
