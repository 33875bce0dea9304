//! Table-driven tests of the whole language, the examples of SPEC §6 and
//! the seed documentation, error messages, and property tests.

use std::collections::HashMap;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn payload() -> Value {
    json!({
        "id": 42,
        "user_id": "u-7",
        "status": "paid",
        "amount": 1999,
        "price": 19.99,
        "name": "  Zoë Müller ",
        "email": "ZOE@Example.COM",
        "tags": ["vip", "new"],
        "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1}],
        "customer": {"first_name": "Zoë", "last_name": "Müller", "address": null},
        "empty": "",
        "zero": 0,
        "flag": true,
        "created": "2026-01-31T12:34:56Z",
        "epoch": 1769862896,
        "nested json": "{\"a\":[1,2]}",
        "b64": "aGVsbG8gd29ybGQ=",
        "csv": "a,b,,c"
    })
}

fn secrets() -> HashMap<String, String> {
    HashMap::from([("TOKEN".to_owned(), "s3cr3t".to_owned()), ("KEY".to_owned(), "key".to_owned())])
}

fn run_with(source: &str, kind: SourceKind, processed: &Processed<'_>) -> Result<Value, String> {
    let program = compile(source, kind).map_err(|e| format!("compile: {e}"))?;
    let payload = payload();
    let lookup = json!({"crm": {"id": "c-1", "score": 7}});
    let secrets = secrets();
    let scope = Scope { payload: (&payload).into(), lookup: Some(&lookup), processed, secrets: &secrets };
    program.eval(&scope, &Limits::default()).map_err(|e| e.to_string())
}

fn eval(source: &str) -> Value {
    run_with(source, SourceKind::Template, &Processed::new()).unwrap_or_else(|e| panic!("{source}: {e}"))
}

fn eval_err(source: &str) -> String {
    run_with(source, SourceKind::Template, &Processed::new()).expect_err(source)
}

fn table(cases: &[(&str, Value)]) {
    for (source, expected) in cases {
        assert_eq!(&eval(source), expected, "{source}");
    }
}

#[test]
fn references_paths_and_missing_values() {
    table(&[
        ("$payload.id", json!(42)),
        ("$payload.items[0].sku", json!("A-1")),
        ("$payload.items[-1].sku", json!("B-2")),
        ("$payload.items.1.qty", json!(1)),
        (r#"$payload["nested json"]"#, json!("{\"a\":[1,2]}")),
        ("$payload.customer", json!({"first_name": "Zoë", "last_name": "Müller", "address": null})),
        ("$payload.missing", json!(null)),
        ("$payload.items[9].sku", json!(null)),
        ("$payload.id.deeper", json!(null)),
        ("$lookup.crm.score", json!(7)),
        ("$secret.TOKEN", json!("s3cr3t")),
    ]);
}

#[test]
fn literals_and_operators() {
    table(&[
        ("42", json!(42)),
        ("-3.5", json!(-3.5)),
        (r#""a\"b\u00e9""#, json!("a\"bé")),
        ("true", json!(true)),
        ("null", json!(null)),
        ("1 + 2 * 3", json!(7)),
        ("(1 + 2) * 3", json!(9)),
        ("7 / 2", json!(3.5)),
        ("8 / 2", json!(4)),
        ("$payload.amount / 100", json!(19.99)),
        ("$payload.price * 2", json!(39.98)),
        ("10 - 20", json!(-10)),
        ("-$payload.id", json!(-42)),
        (r#""ab" + "cd""#, json!("abcd")),
        ("1 == 1.0", json!(true)),
        (r#"$payload.status == "paid""#, json!(true)),
        (r#"$payload.status != "paid""#, json!(false)),
        ("$payload.amount > 1000 && $payload.flag", json!(true)),
        ("$payload.zero || $payload.empty", json!(false)),
        ("!$payload.missing", json!(true)),
        (r#""b" > "a""#, json!(true)),
        ("$payload.missing < 5", json!(false)),
        (r#"1 < "2""#, json!(false)),
        (
            "$payload.tags == [\"vip\", \"new\"]".replace("[\"vip\", \"new\"]", "split(\",\", \"vip,new\")").as_str(),
            json!(true),
        ),
    ]);
}

#[test]
fn operator_errors_name_the_types() {
    assert_eq!(eval_err("1 / 0"), "division by zero");
    assert_eq!(eval_err(r#""a" + 1"#), "cannot apply `+` to text and number; join text with concat()");
    assert_eq!(eval_err("$payload.missing * 2"), "cannot apply `*` to null and number");
    assert_eq!(eval_err(r#"-"x""#), "cannot negate text");
    assert_eq!(eval("9223372036854775807 + 1"), json!(9223372036854775808.0_f64));
}

#[test]
fn text_functions() {
    table(&[
        (r#"concat($payload.customer.first_name, " ", $payload.customer.last_name)"#, json!("Zoë Müller")),
        (r#"concat("n=", 1, true, null)"#, json!("n=1true")),
        ("concat($payload.tags, $payload.tags)", json!(["vip", "new", "vip", "new"])),
        (r#"split(",", $payload.csv)"#, json!(["a", "b", "", "c"])),
        (r#"split("", "ab")"#, json!(["a", "b"])),
        (r#"split(",", $payload.missing)"#, json!(null)),
        ("first($payload.tags)", json!("vip")),
        ("last($payload.items).sku".replace(".sku", "").as_str(), json!({"sku": "B-2", "qty": 1})),
        (r#"first("Zoë")"#, json!("Z")),
        (r#"last("Zoë")"#, json!("ë")),
        ("first(split(\",\", \"\"))", json!("")),
        ("first($payload.missing)", json!(null)),
        (r#"join($payload.tags, "|")"#, json!("vip|new")),
        (r#"join($payload.missing, ",")"#, json!(null)),
        ("upper($payload.customer.first_name)", json!("ZOË")),
        ("lower($payload.email)", json!("zoe@example.com")),
        ("trim($payload.name)", json!("Zoë Müller")),
        ("upper($payload.missing)", json!(null)),
        (r#"replace("a-b-c", "-", "+")"#, json!("a+b+c")),
        (r#"substring("Zoë Müller", 4)"#, json!("Müller")),
        (r#"substring("Zoë Müller", 0, 3)"#, json!("Zoë")),
        (r#"substring("abcdef", -3, -1)"#, json!("de")),
        (r#"substring("abc", 5, 9)"#, json!("")),
        ("length($payload.name)", json!(13)),
        ("length($payload.items)", json!(2)),
        ("length($payload.customer)", json!(3)),
        ("length($payload.missing)", json!(0)),
        (r#"contains($payload.email, "@")"#, json!(true)),
        (r#"contains($payload.tags, "vip")"#, json!(true)),
        (r#"contains($payload.missing, "x")"#, json!(false)),
        (r#"starts_with($payload.user_id, "u-")"#, json!(true)),
        (r#"ends_with($payload.user_id, "-7")"#, json!(true)),
        (r#"starts_with($payload.missing, "u")"#, json!(false)),
    ]);
}

#[test]
fn text_function_errors() {
    assert_eq!(eval_err("upper(1)"), "upper() expects text as its first argument, got number");
    assert_eq!(eval_err(r#"join("a", ",")"#), "join() expects an array as its first argument, got text");
    assert_eq!(eval_err(r#"replace("a", "", "b")"#), "replace() needs non-empty text to search for");
    assert_eq!(eval_err("contains(1, 1)"), "contains() expects text or an array, got number");
    assert_eq!(eval_err(r#"substring("a", "b")"#), "substring() expects a number as its second argument, got text");
    assert_eq!(eval_err("first(1)"), "first() expects an array or text, got number");
}

#[test]
fn logic_and_defaults_are_lazy() {
    table(&[
        (r#"default($payload.missing, "n/a")"#, json!("n/a")),
        (r#"default($payload.empty, "n/a")"#, json!("")),
        ("coalesce($payload.missing, $payload.customer.address, $payload.id)", json!(42)),
        ("coalesce($payload.missing)", json!(null)),
        (r#"if($payload.amount > 1000, "big", "small")"#, json!("big")),
        // The branch not taken never runs, so its error cannot happen.
        ("if(true, 1, 1 / 0)", json!(1)),
        ("default(1, 1 / 0)", json!(1)),
        ("false && 1 / 0", json!(false)),
    ]);
}

#[test]
fn conversions() {
    table(&[
        ("to_string(42)", json!("42")),
        ("to_string($payload.missing)", json!("")),
        ("to_string($payload.tags)", json!("[\"vip\",\"new\"]")),
        (r#"to_number(" 12 ")"#, json!(12)),
        (r#"to_number("1.5e2")"#, json!(150)),
        ("to_number(true)", json!(1)),
        ("to_number($payload.missing)", json!(null)),
        (r#"to_bool("YES")"#, json!(true)),
        (r#"to_bool("0")"#, json!(false)),
        ("to_bool(2)", json!(true)),
        ("to_bool($payload.missing)", json!(false)),
    ]);
    assert_eq!(eval_err(r#"to_number("abc")"#), "to_number() could not read the text as a number");
    assert_eq!(eval_err(r#"to_bool("maybe")"#), "to_bool() could not read the text as true or false");
    assert_eq!(eval_err("to_number($payload.tags)"), "to_number() cannot convert array");
}

#[test]
fn encodings_digests_and_dates() {
    table(&[
        (r#"base64_encode("hello world")"#, json!("aGVsbG8gd29ybGQ=")),
        ("base64_decode($payload.b64)", json!("hello world")),
        (r#"base64_decode("aGVsbG8")"#, json!("hello")),
        (r#"url_encode("a b&c=d/é")"#, json!("a%20b%26c%3Dd%2F%C3%A9")),
        ("json_encode($payload.items[0])", json!("{\"qty\":2,\"sku\":\"A-1\"}")),
        (r#"json_parse($payload["nested json"]).a[1]"#.replace(".a[1]", "").as_str(), json!({"a": [1, 2]})),
        (r#"sha256("abc")"#, json!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")),
        (
            r#"hmac_sha256("key", "The quick brown fox jumps over the lazy dog")"#,
            json!("f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"),
        ),
        (r#"format_date($payload.created, "%Y-%m-%d %H:%M")"#, json!("2026-01-31 12:34")),
        (r#"format_date($payload.epoch, "%d.%m.%Y")"#, json!("31.01.2026")),
        (r#"format_date($payload.missing, "%Y")"#, json!(null)),
    ]);
    assert_eq!(eval_err(r#"base64_decode("%%%")"#), "base64_decode() got text that is not base64");
    assert!(eval_err(r#"json_parse("{oops")"#).starts_with("json_parse() got text that is not JSON"));
    assert!(eval_err(r#"format_date("yesterday", "%Y")"#).contains("RFC 3339"));
    let now = eval("now()");
    assert!(chrono::DateTime::parse_from_rfc3339(now.as_str().unwrap()).is_ok());
    let id = eval("uuid()");
    assert_eq!(uuid::Uuid::parse_str(id.as_str().unwrap()).unwrap().get_version_num(), 4);
    assert_ne!(eval("uuid()"), eval("uuid()"));
}

#[test]
fn templates_render_text_and_single_expressions_keep_their_type() {
    table(&[
        ("https://api.example.com/users/$payload.user_id", json!("https://api.example.com/users/u-7")),
        ("Bearer $secret.TOKEN", json!("Bearer s3cr3t")),
        ("Order ${ $payload.id + 1 } for ${ upper($payload.status) }", json!("Order 43 for PAID")),
        ("Hello $payload.customer.first_name.", json!("Hello Zoë.")),
        ("tags: $payload.tags / none: [$payload.missing]", json!("tags: [\"vip\",\"new\"] / none: []")),
        ("costs $$5 or $5", json!("costs $5 or $5")),
        ("$payload.amount", json!(1999)),
        ("$payload.flag", json!(true)),
        ("hello world", json!("hello world")),
        ("01234", json!("01234")),
        ("", json!("")),
        ("${ $payload.id }", json!("42")),
    ]);
}

#[test]
fn spec_and_seed_examples() {
    // SPEC §6 and the seed's mapping example: three mappings where later
    // ones read earlier ones through $processed.
    let program = compile_mappings(&[
        ("full_name", r#"concat($payload.customer.first_name, " ", $payload.customer.last_name)"#),
        ("email", "lower(trim($payload.email))"),
        ("greeting", "Hello $processed.full_name <$processed.email>"),
    ])
    .unwrap();
    let payload = payload();
    let processed = program.eval(&payload, None, &NoSecrets, &Limits::default()).unwrap().into_map();
    assert_eq!(processed["greeting"], json!("Hello Zoë Müller <zoe@example.com>"));
    assert_eq!(program.names().collect::<Vec<_>>(), ["full_name", "email", "greeting"]);

    let mut processed = Processed::new();
    processed.insert("total", json!(19.99));
    assert_eq!(run_with("$processed.total * 2", SourceKind::Template, &processed).unwrap(), json!(39.98));
}

#[test]
fn mappings_may_only_read_earlier_mappings() {
    let errors = compile_mappings(&[("a", "$processed.b"), ("b", "1"), ("c", "$processed.c"), ("d", "$processed.a")])
        .unwrap_err();
    let indexes: Vec<_> = errors.iter().map(|e| e.index).collect();
    assert_eq!(indexes, [0, 2]);
    assert!(errors[0].errors.to_string().contains("`$processed.b` refers to no earlier mapping"));
}

#[test]
fn compile_errors_are_all_reported_with_positions() {
    let err = compile("concat($payload.a, \"b\"", SourceKind::Template).unwrap_err();
    assert_eq!(err.to_string(), "1:23: expected ')' to close 'concat(' opened at 1:1, found the end of the expression");

    let err = compile("uper($payload.x) + concat() + $paylod.y + if(1, 2)", SourceKind::Expression).unwrap_err();
    let messages: Vec<_> = err.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "1:1: unknown function `uper`; did you mean `upper`?",
            "1:20: concat() takes at least 1 argument(s), got 0: concat(value, ...)",
            "1:31: unknown reference `$paylod`; expected $payload, $lookup, $processed or $secret",
            "1:43: if() takes 3 argument(s), got 2: if(condition, then, else)",
        ]
    );
    let err = compile("format_date($payload.d, \"%Q\")", SourceKind::Expression).unwrap_err();
    assert!(err.to_string().contains("is not a valid date format"));
    let err = compile("$secret", SourceKind::Expression).unwrap_err();
    assert!(err.to_string().contains("$secret.NAME"));
    let err = compile("Dear $custmer.name, ${ 1 + }", SourceKind::Template).unwrap_err();
    assert_eq!(err.0.len(), 2, "{err}");
    assert!(compile("", SourceKind::Expression).is_err());
    assert!(compile("$payload.a $payload.b", SourceKind::Expression).is_err());
}

#[test]
fn programs_report_what_they_read() {
    let program = compile("${ $secret.B } $secret.A $processed.x $lookup.y $secret.A", SourceKind::Template).unwrap();
    assert_eq!(program.secrets(), ["A", "B"]);
    assert_eq!(program.processed(), ["x"]);
    assert!(program.uses_lookup());
    assert!(!compile("$payload.a", SourceKind::Template).unwrap().uses_lookup());
}

#[test]
fn missing_secrets_fail_without_printing_values() {
    let err = eval_err("Bearer $secret.NOPE");
    assert_eq!(err, "secret `NOPE` is not defined in this organization");
}

#[test]
fn limits_bound_steps_and_output() {
    let program = compile("concat($payload.name, $payload.name, $payload.name)", SourceKind::Template).unwrap();
    let payload = json!({"name": "x".repeat(1000)});
    let scope =
        Scope { payload: (&payload).into(), lookup: None, processed: &Processed::default(), secrets: &NoSecrets };
    let tight = Limits { max_steps: 100, max_output_bytes: 2000, max_total_bytes: 1 << 20 };
    assert_eq!(program.eval(&scope, &tight), Err(EvalError::OutputTooLarge(2000)));
    let few_steps = Limits { max_steps: 3, max_output_bytes: 1 << 20, max_total_bytes: 1 << 20 };
    assert_eq!(program.eval(&scope, &few_steps), Err(EvalError::TooManySteps(3)));
}

#[test]
fn evaluation_borrows_plain_references() {
    let program = compile("$payload.items", SourceKind::Template).unwrap();
    let payload = payload();
    let scope =
        Scope { payload: (&payload).into(), lookup: None, processed: &Processed::default(), secrets: &NoSecrets };
    let value = program.eval_cow(&scope, &Limits::default()).unwrap();
    assert!(matches!(value, std::borrow::Cow::Borrowed(_)), "no copy of the payload");
}

#[test]
fn programs_are_shared_across_threads() {
    let program = compile(r#"concat($payload.user_id, "-", $payload.id)"#, SourceKind::Template).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let program = program.clone();
            s.spawn(move || {
                let payload = payload();
                let scope = Scope {
                    payload: (&payload).into(),
                    lookup: None,
                    processed: &Processed::default(),
                    secrets: &NoSecrets,
                };
                for _ in 0..1000 {
                    assert_eq!(program.eval(&scope, &Limits::default()).unwrap(), json!("u-7-42"));
                }
            });
        }
    });
}

fn arb_expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        any::<i32>().prop_map(|n| n.to_string()),
        "[a-z ]{0,8}".prop_map(|s| format!("\"{s}\"")),
        Just("true".to_owned()),
        Just("null".to_owned()),
        "[a-z]{1,6}(\\.[a-z]{1,4}){0,2}".prop_map(|p| format!("$payload.{p}")),
        (0u8..5).prop_map(|i| format!("$payload.items[{i}]")),
    ];
    leaf.prop_recursive(4, 32, 3, |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(vec!["+", "-", "*", "/", "==", "!=", "<", ">=", "&&", "||"]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            inner.clone().prop_map(|a| format!("!({a})")),
            (prop::sample::select(vec!["upper", "lower", "trim", "length", "to_string", "first"]), inner.clone())
                .prop_map(|(f, a)| format!("{f}({a})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("concat({a}, {b})")),
            (inner.clone(), inner.clone(), inner).prop_map(|(a, b, c)| format!("if({a}, {b}, {c})")),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(source in "\\PC{0,64}") {
        for kind in [SourceKind::Expression, SourceKind::Template] {
            if let Ok(program) = compile(&source, kind) {
                let payload = payload();
                let scope = Scope { payload: (&payload).into(), lookup: None, processed: &Processed::default(), secrets: &NoSecrets };
                let _ = program.eval(&scope, &Limits::default());
            }
        }
    }

    #[test]
    fn generated_expressions_evaluate_without_panicking(source in arb_expr()) {
        let program = compile(&source, SourceKind::Expression);
        prop_assert!(program.is_ok(), "{source}: {:?}", program.err());
        let payload = payload();
        let scope = Scope { payload: (&payload).into(), lookup: None, processed: &Processed::default(), secrets: &NoSecrets };
        let _ = program.unwrap().eval(&scope, &Limits::default());
    }

    #[test]
    fn a_printed_program_compiles_to_one_that_behaves_the_same(source in arb_expr()) {
        let payload = payload();
        let scope = Scope { payload: (&payload).into(), lookup: None, processed: &Processed::default(), secrets: &NoSecrets };
        for kind in [SourceKind::Expression, SourceKind::Template] {
            let first = compile(&source, kind).unwrap();
            let printed = first.source();
            let second = compile(&printed, kind);
            prop_assert!(second.is_ok(), "{source} printed as {printed}: {:?}", second.err());
            let second = second.unwrap();
            prop_assert_eq!(second.source(), printed.clone(), "printing is stable");
            let (a, b) = (first.eval(&scope, &Limits::default()), second.eval(&scope, &Limits::default()));
            prop_assert_eq!(format!("{a:?}"), format!("{b:?}"), "{} printed as {}", source, printed);
        }
    }

    /// What a program says it always renders is what it renders, whatever
    /// the scope.
    #[test]
    fn constant_text_is_what_the_program_renders(source in "\\PC{0,48}", expression in arb_expr()) {
        for (source, kind) in [(&source, SourceKind::Template), (&expression, SourceKind::Expression)] {
            let Ok(program) = compile(source, kind) else { continue };
            let Some(text) = program.constant_text() else { continue };
            let payload = payload();
            let scope = Scope { payload: (&payload).into(), lookup: None, processed: &Processed::default(), secrets: &secrets() };
            let rendered = program.eval(&scope, &Limits::default()).map(|value| render(&value));
            prop_assert_eq!(rendered.as_deref(), Ok(text), "{}", source);
        }
    }

    #[test]
    fn printing_and_parsing_again_gives_the_same_tree(source in arb_expr()) {
        let parser::Parsed { node: first, errors, .. } = parser::parse_expression(&source, &source, 0);
        prop_assert!(errors.is_empty());
        let printed = first.to_string();
        let parser::Parsed { node: second, errors, .. } = parser::parse_expression(&printed, &printed, 0);
        prop_assert!(errors.is_empty(), "{printed}: {errors:?}");
        prop_assert_eq!(first, second);
    }
}

#[test]
fn literal_text_is_known_to_be_constant() {
    let cases = [
        ("https://api.example.com/orders", SourceKind::Template, Some("https://api.example.com/orders")),
        ("costs $$5", SourceKind::Template, Some("costs $5")),
        ("\"fixed\"", SourceKind::Expression, Some("fixed")),
        ("https://x.test/$payload.id", SourceKind::Template, None),
        ("https://x.test/${ $secret.TOKEN }", SourceKind::Template, None),
        ("upper(\"a\")", SourceKind::Expression, None),
        ("42", SourceKind::Expression, None),
    ];
    for (source, kind, constant) in cases {
        assert_eq!(compile(source, kind).unwrap().constant_text(), constant, "{source}");
    }
}

#[test]
fn templates_print_back_as_templates() {
    let cases = [
        ("https://x.test/$payload.id?q=1", "https://x.test/${ $payload.id }?q=1"),
        ("Bearer $secret.TOKEN", "Bearer ${ $secret.TOKEN }"),
        (
            "costs $$5 for ${ $payload.customer[\"first name\"] }",
            "costs $$5 for ${ $payload.customer[\"first name\"] }",
        ),
        ("plain text", "plain text"),
        ("", ""),
        ("$payload.count", "$payload.count"),
        ("default($payload.a, \"x\")", "coalesce($payload.a, \"x\")"),
        ("  42 ", "42"),
    ];
    let payload = payload();
    let scope =
        Scope { payload: (&payload).into(), lookup: None, processed: &Processed::default(), secrets: &secrets() };
    for (source, printed) in cases {
        let program = compile(source, SourceKind::Template).unwrap();
        assert_eq!(program.source(), printed, "{source}");
        let again = compile(printed, SourceKind::Template).unwrap();
        assert_eq!(
            program.eval(&scope, &Limits::default()).unwrap(),
            again.eval(&scope, &Limits::default()).unwrap(),
            "{source}"
        );
    }
}

#[test]
fn operations_stay_small() {
    // Nodes hold every connector's programs; this is their memory budget.
    assert_eq!(std::mem::size_of::<code::Op>(), 12);
    assert_eq!(std::mem::size_of::<code::Step>(), 16);
}

#[test]
fn a_failed_program_leaves_nothing_in_its_set() {
    let mut builder = ProgramSetBuilder::new();
    let kept = builder.compile("$payload.a", SourceKind::Template, Context::default()).unwrap();
    builder.compile("concat($payload.b, nope())", SourceKind::Template, Context::default()).unwrap_err();
    let set = builder.finish();
    assert_eq!(set.source(kept), "$payload.a");
    let mut alone = ProgramSetBuilder::new();
    alone.compile("$payload.a", SourceKind::Template, Context::default()).unwrap();
    assert_eq!(format!("{set:?}"), format!("{:?}", alone.finish()), "the failed program left nothing behind");
}

#[test]
fn seed_documentation_examples() {
    // ../shared/seeds/001: lookup URL, headers, query and the mapping chain.
    let payload = json!({
        "user_id": "u-1",
        "first": "Ada",
        "last": "Lovelace",
        "email": "ada@analytical.engine",
        "customer": {"email": "ada@analytical.engine"},
        "request_id": "req-9"
    });
    let secrets =
        HashMap::from([("CRM_TOKEN".to_owned(), "crm".to_owned()), ("TARGET_API_KEY".to_owned(), "tgt".to_owned())]);
    let empty = Processed::new();
    let scope = Scope { payload: (&payload).into(), lookup: None, processed: &empty, secrets: &secrets };
    let value = |source: &str| compile(source, SourceKind::Template).unwrap().eval(&scope, &Limits::default()).unwrap();
    assert_eq!(value("https://api.example.com/users/$payload.user_id"), json!("https://api.example.com/users/u-1"));
    assert_eq!(value("Bearer $secret.CRM_TOKEN"), json!("Bearer crm"));
    assert_eq!(value("$payload.customer.email"), json!("ada@analytical.engine"));
    assert_eq!(value("Bearer $secret.TARGET_API_KEY"), json!("Bearer tgt"));
    assert_eq!(value("$payload.request_id"), json!("req-9"));

    let mappings = compile_mappings(&[
        ("full_name", r#"concat($payload.first, " ", $payload.last)"#),
        ("email_domain", r#"last(split("@", $payload.email))"#),
        ("display", r#"concat($processed.full_name, " (", $processed.email_domain, ")")"#),
    ])
    .unwrap();
    let processed = mappings.eval(&payload, None, &secrets, &Limits::default()).unwrap().into_map();
    assert_eq!(processed["full_name"], json!("Ada Lovelace"));
    assert_eq!(processed["email_domain"], json!("analytical.engine"));
    assert_eq!(processed["display"], json!("Ada Lovelace (analytical.engine)"));
}

/// The program `shape` builds at `levels` levels, and what it evaluates to.
fn deep(shape: &str, levels: usize) -> String {
    match shape {
        "chain" => format!("$payload.amount{}", " + 1".repeat(levels - 1)),
        "parentheses" => format!("{}1{}", "(1 + ".repeat(levels - 1), ")".repeat(levels - 1)),
        "negations" => format!("{}$payload.flag", "!".repeat(levels - 1)),
        "calls" => format!("{}$payload.name{}", "trim(".repeat(levels - 1), ")".repeat(levels - 1)),
        "template" => format!("id ${{ {} }}", "$payload.id + ".repeat(levels - 2) + "1"),
        other => unreachable!("no shape {other}"),
    }
}

const SHAPES: [&str; 5] = ["chain", "parentheses", "negations", "calls", "template"];

#[test]
fn trees_deeper_than_the_limit_are_refused_not_overflowed() {
    // The finding of the hardening issue: 8 000 terms aborted the control
    // plane, 6 000 were saved and aborted every node on the first call.
    let chain = format!("$payload.x{}", " + 1".repeat(8_000));
    for kind in [SourceKind::Expression, SourceKind::Template] {
        let errors = compile(&chain, kind).expect_err("refused").to_string();
        assert!(errors.contains("nests deeper than 128 levels"), "{errors}");
    }
    for shape in SHAPES {
        let at_limit = deep(shape, parser::MAX_DEPTH);
        compile(&at_limit, SourceKind::Template).unwrap_or_else(|e| panic!("{shape} at the limit: {e}"));
        let over = deep(shape, parser::MAX_DEPTH + 1);
        let errors = compile(&over, SourceKind::Template).expect_err(shape).to_string();
        assert!(errors.contains("nests deeper"), "{shape}: {errors}");
    }
}

/// Stack for every pass over the deepest programs: compiling, evaluating,
/// printing and compiling the print again, listing what they read, and
/// dropping them, plus the deepest input the parser refuses. Measured in a
/// debug build by bisecting the thread's stack: 482 KiB for all of it
/// (release builds need far less); tokio's workers and blocking threads
/// have 2 MiB. Before the depth limit counted operator chains, 6 000 terms
/// overflowed 2 MiB.
const DEEPEST_PROGRAM_STACK: usize = 1024 * 1024;

#[test]
fn the_deepest_programs_fit_a_small_stack() {
    let run = || {
        let payload = payload();
        let scope =
            Scope { payload: (&payload).into(), lookup: None, processed: &Processed::default(), secrets: &NoSecrets };
        for shape in SHAPES {
            let source = deep(shape, parser::MAX_DEPTH);
            let program = compile(&source, SourceKind::Template).unwrap();
            program.eval(&scope, &Limits::default()).unwrap_or_else(|e| panic!("{shape}: {e}"));
            let printed = program.source();
            let again = compile(&printed, SourceKind::Template).unwrap_or_else(|e| panic!("{shape} printed: {e}"));
            assert_eq!(again.source(), printed);
            assert!(program.secrets().is_empty() && !program.uses_lookup());
            let mut builder = ProgramSetBuilder::new();
            builder.compile(&source, SourceKind::Template, Context::default()).unwrap();
            builder.finish().read_payload(r#"{"amount": 1, "name": "x"}"#).unwrap();
        }
        // The parser's own stack peaks on input it then refuses: every
        // precedence level inside each pair of parentheses is a frame.
        let ladder = "$payload.a || $payload.b && $payload.c == $payload.d < $payload.e + $payload.f * (";
        let refused = format!("{}1{}", ladder.repeat(parser::MAX_DEPTH), ")".repeat(parser::MAX_DEPTH));
        assert!(compile(&refused, SourceKind::Template).is_err());
    };
    std::thread::Builder::new().stack_size(DEEPEST_PROGRAM_STACK).spawn(run).unwrap().join().expect("no overflow");
}

#[test]
fn programs_are_capped_in_operations_alone_and_per_set() {
    // A long text is one operation; many references are many.
    let references = "$payload.a ".repeat(MAX_PROGRAM_OPS / 2 + 1);
    let err = compile(&references, SourceKind::Template).unwrap_err().to_string();
    assert!(err.contains(&format!("a program may have at most {MAX_PROGRAM_OPS}")), "{err}");
    let mut builder = ProgramSetBuilder::new();
    let half = "$payload.a ".repeat(MAX_PROGRAM_OPS / 4);
    let fit = MAX_SET_OPS / (MAX_PROGRAM_OPS / 2);
    for _ in 0..fit - 1 {
        builder.compile(&half, SourceKind::Template, Context::default()).unwrap();
    }
    let err = builder.compile(&half, SourceKind::Template, Context::default()).unwrap_err().to_string();
    assert!(err.contains(&format!("more than {MAX_SET_OPS} operations")), "{err}");
    let kept = builder.compile("$payload.b", SourceKind::Template, Context::default());
    assert!(kept.is_ok(), "a refused program left nothing behind");
}

#[test]
fn text_that_nests_deep_for_other_reasons_stays_text() {
    // A divider line is a template, not an expression 200 levels deep.
    for text in ["-".repeat(200), format!("a{}", "/b".repeat(200))] {
        let program = compile(&text, SourceKind::Template).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(program.eval(&empty_scope(), &Limits::default()).unwrap(), json!(text));
    }
    // An expression whose only fault is its depth is refused, also inside
    // parentheses the skip leaves unclosed.
    for deep in [deep("chain", parser::MAX_DEPTH + 1), deep("parentheses", parser::MAX_DEPTH + 1)] {
        let err = compile(&deep, SourceKind::Template).unwrap_err().to_string();
        assert!(err.contains("nests deeper") && !err.contains("expected ')'"), "{err}");
    }
}

/// Runs `source` on `payload` with `limits`.
fn run_limited(source: &str, payload: Value, limits: Limits) -> Result<Value, EvalError> {
    let program = compile(source, SourceKind::Template).unwrap();
    let scope =
        Scope { payload: (&payload).into(), lookup: None, processed: &Processed::default(), secrets: &NoSecrets };
    program.eval(&scope, &limits)
}

#[test]
fn producing_functions_refuse_before_they_build() {
    // The finding: two 16 000-character texts took a node from 47 MB to
    // 562 MB before "output exceeded" was noticed. Now the size is counted
    // first; the budget's own accounting shows nothing was claimed past it.
    let payload = json!({"s": "a".repeat(16_000), "t": "b".repeat(16_000)});
    let limits = Limits::default();
    assert_eq!(
        run_limited("replace($payload.s, \"a\", $payload.t)", payload.clone(), limits),
        Err(EvalError::OutputTooLarge(1 << 20))
    );
    let small = Limits { max_steps: 1000, max_output_bytes: 1000, max_total_bytes: 4000 };
    // `ŉ` is two bytes and upper-cases to three (`ʼN`): 800 bytes in, 1 200 out.
    let text =
        json!({"s": "ab,".repeat(400), "n": "ŉ".repeat(400), "d": "2026-01-31T12:00:00Z", "f": "%c".repeat(100)});
    let refused = [
        "concat($payload.s, $payload.s)",
        "split(\",\", $payload.s)",
        "split(\"\", $payload.s)",
        "join(split(\",\", $payload.s), \"------\")",
        "upper($payload.n)",
        "replace($payload.s, \",\", \"----\")",
        "base64_encode($payload.s)",
        "url_encode($payload.s)",
        "json_encode(split(\",\", $payload.s))",
        "json_parse(json_encode(split(\",\", $payload.s)))",
        "format_date($payload.d, $payload.f)",
        "$payload.s + $payload.s",
        "to_string(split(\",\", $payload.s))",
        "${ $payload.s }${ $payload.s }",
    ];
    for source in refused {
        let result = run_limited(source, text.clone(), small);
        assert!(
            matches!(result, Err(EvalError::OutputTooLarge(1000) | EvalError::TotalOutputTooLarge(4000))),
            "{source}: {result:?}"
        );
    }
    // Each on its own fits; together they pass the execution's total.
    let copy = "concat($payload.s, \"\")";
    let set = compile_mappings(&[("a", copy), ("b", copy), ("c", copy), ("d", copy), ("e", copy)]).unwrap();
    let err = set.eval(&json!({"s": "x".repeat(900)}), None, &NoSecrets, &small).unwrap_err();
    assert_eq!(err, (4, EvalError::TotalOutputTooLarge(4000)), "the fifth copy passes the total");
}

#[test]
fn copies_of_the_payload_are_paid_for() {
    let payload = json!({"items": vec!["x".repeat(100); 20]});
    let limits = Limits { max_steps: 100, max_output_bytes: 1 << 20, max_total_bytes: 2_000 };
    let program = compile("$payload.items", SourceKind::Template).unwrap();
    let scope =
        Scope { payload: (&payload).into(), lookup: None, processed: &Processed::default(), secrets: &NoSecrets };
    assert!(program.eval_cow(&scope, &limits).is_ok(), "a borrowed result costs nothing");
    assert_eq!(program.eval(&scope, &limits), Err(EvalError::TotalOutputTooLarge(2_000)), "an owned copy does");
    // Forwarding a part of the body is as large as the body may be: the
    // per-value limit (meant for what expressions build) does not apply.
    let forwarding = Limits { max_steps: 100, max_output_bytes: 100, max_total_bytes: 1 << 20 };
    assert!(program.eval(&scope, &forwarding).is_ok(), "a copy counts towards the total only");
}

#[test]
fn control_characters_print_and_read_back() {
    // Found by fuzzing: a program holding a backspace printed it as JSON
    // does (`\b`), which the lexer did not read, so a node's cached
    // snapshot would not compile again.
    let source = "format_date($payload.created, \"%Y\u{0}\u{8}\u{c}-%m\")";
    let program = compile(source, SourceKind::Template).unwrap();
    let printed = program.source();
    assert!(printed.contains("\\b") && printed.contains("\\u0000"), "{printed}");
    let again = compile(&printed, SourceKind::Template).expect("the print compiles");
    assert_eq!(again.source(), printed);
    assert_eq!(again.eval(&empty_scope(), &Limits::default()), program.eval(&empty_scope(), &Limits::default()));
}

fn empty_scope() -> Scope<'static> {
    static PAYLOAD: std::sync::LazyLock<Value> = std::sync::LazyLock::new(payload);
    static PROCESSED: Processed<'static> = Processed::new();
    Scope { payload: (&*PAYLOAD).into(), lookup: None, processed: &PROCESSED, secrets: &NoSecrets }
}
