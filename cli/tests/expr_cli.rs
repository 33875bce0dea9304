//! `hookplane expr eval|check` through the real binary.

use std::process::Command;

fn hookplane(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_hookplane")).args(args).output().expect("run hookplane");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

#[test]
fn eval_prints_json_and_keeps_types() {
    let (code, stdout, _) =
        hookplane(&["expr", "eval", "$payload.items[0].qty * 2", "--payload", r#"{"items":[{"qty":21}]}"#]);
    assert_eq!((code, stdout.trim()), (0, "42"));
    let (code, stdout, _) = hookplane(&[
        "expr",
        "eval",
        "Bearer $secret.TOKEN for $lookup.user.name",
        "--lookup",
        r#"{"user":{"name":"Ann"}}"#,
        "--secret",
        "TOKEN=abc",
    ]);
    assert_eq!((code, stdout.trim()), (0, r#""Bearer abc for Ann""#));
}

#[test]
fn errors_exit_non_zero_with_positions() {
    let (code, _, stderr) = hookplane(&["expr", "check", r#"concat($payload.a, "b""#]);
    assert_eq!(code, 1);
    assert!(stderr.contains("1:23: expected ')' to close 'concat(' opened at 1:1"), "{stderr}");
    let (code, _, stderr) = hookplane(&["expr", "eval", r#"to_number("abc")"#]);
    assert_eq!(code, 1);
    assert!(stderr.contains("to_number() could not read the text as a number"), "{stderr}");
    let (code, stdout, _) = hookplane(&["expr", "check", "--condition", r#"$payload.status == "paid""#]);
    assert_eq!((code, stdout.trim()), (0, "ok"));
    let (code, _, stderr) = hookplane(&["expr", "eval", "1", "--payload", "{oops"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--payload is not valid JSON"), "{stderr}");
}
