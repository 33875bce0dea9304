//! Expression benchmark: compiling, and evaluating a realistic connector per
//! trigger — a condition, three mappings and a body of five fields over a
//! ~1 KiB payload. Baseline in the same run: `serde_json` parsing the same
//! payload into a full tree, and the projected parse a node does instead
//! (only what the connector reads).
//!
//! Run: `cargo bench --bench expressions`.

use criterion::{Criterion, criterion_group, criterion_main};
use hookplane_expr::{Context, Limits, Processed, ProgramSetBuilder, Scope, SourceKind, compile, compile_mappings};
use serde_json::{Map, Value, json};

fn payload() -> Value {
    json!({
        "id": "evt_1NqgG2LkdIwHu7ix0Y7Q3a1b",
        "type": "checkout.session.completed",
        "status": "paid",
        "amount_total": 129900,
        "currency": "eur",
        "created": 1769862896,
        "customer": {
            "id": "cus_Nf0XqZ8bYz",
            "email": "Jane.Doe@Example.com",
            "name": "  Jane Doe ",
            "address": {"line1": "Hauptstraße 5", "city": "Berlin", "postal_code": "10115", "country": "DE"}
        },
        "items": [
            {"sku": "SKU-001", "name": "Widget", "qty": 2, "price": 49900},
            {"sku": "SKU-002", "name": "Gadget", "qty": 1, "price": 30100},
            {"sku": "SKU-003", "name": "Sprocket, large", "qty": 4, "price": 2500},
            {"sku": "SKU-004", "name": "Gift wrapping", "qty": 1, "price": 0}
        ],
        "shipping": {"method": "express", "carrier": "DHL", "tracking": null, "eta_days": 2},
        "description": "Winter sale order placed from the web shop; customer asked for a single parcel.",
        "metadata": {"order_id": "ord_778899", "channel": "web", "campaign": "winter-sale", "notes": "leave at the door, ring twice"},
        "livemode": true
    })
}

fn bench(c: &mut Criterion) {
    let payload = payload();
    let payload_text = payload.to_string();
    assert!((850..1400).contains(&payload_text.len()), "a realistic payload of about 1 KiB: {}", payload_text.len());

    let condition_source = r#"$payload.status == "paid" && $payload.amount_total > 0"#;
    let mapping_sources = [
        ("order_id", "$payload.metadata.order_id"),
        ("email", "lower(trim($payload.customer.email))"),
        ("total", "$payload.amount_total / 100"),
    ];
    let body_sources = [
        "$processed.order_id",
        "$processed.email",
        "$processed.total",
        "${ upper($payload.currency) } ${ $processed.total }",
        "https://shop.example.com/orders/$processed.order_id",
    ];

    c.bench_function("compile realistic connector", |b| {
        b.iter(|| {
            compile(condition_source, SourceKind::Expression).unwrap();
            compile_mappings(&mapping_sources).unwrap();
            for source in body_sources {
                compile(source, SourceKind::Template).unwrap();
            }
        })
    });

    let condition = compile(condition_source, SourceKind::Expression).unwrap();
    let mappings = compile_mappings(&mapping_sources).unwrap();
    let body: Vec<_> = body_sources.iter().map(|s| compile(s, SourceKind::Template).unwrap()).collect();
    let limits = Limits::default();
    let secrets = std::collections::HashMap::<String, String>::new();

    c.bench_function("baseline: parse the 1 KiB payload", |b| {
        b.iter(|| serde_json::from_str::<Value>(std::hint::black_box(&payload_text)).unwrap())
    });

    // What a node does instead of the baseline: one set holds the
    // connector's programs, and the payload tree keeps only what they read.
    let mut builder = ProgramSetBuilder::new();
    for (source, kind) in std::iter::once((condition_source, SourceKind::Expression))
        .chain(mapping_sources.iter().map(|(_, s)| (*s, SourceKind::Expression)))
        .chain(body_sources.iter().map(|s| (*s, SourceKind::Template)))
    {
        builder.compile(source, kind, Context::default()).unwrap();
    }
    let set = builder.finish();
    c.bench_function("parse the 1 KiB payload as the connector reads it", |b| {
        b.iter(|| set.read_payload(std::hint::black_box(&payload_text)).unwrap())
    });
    // As a trigger reads it: values where paths end, no maps.
    c.bench_function("project the 1 KiB payload as a trigger reads it", |b| {
        b.iter(|| set.capture_payload(std::hint::black_box(&payload_text)).unwrap().into_projected().unwrap())
    });

    c.bench_function("evaluate realistic connector", |b| {
        b.iter(|| {
            let empty = Processed::new();
            let scope = Scope { payload: (&payload).into(), lookup: None, processed: &empty, secrets: &secrets };
            assert_eq!(condition.eval_cow(&scope, &limits).unwrap().as_ref(), &Value::Bool(true));
            let processed = mappings.eval(&payload, None, &secrets, &limits).unwrap();
            let scope = Scope { payload: (&payload).into(), lookup: None, processed: &processed, secrets: &secrets };
            let mut fields = Map::new();
            for (i, program) in body.iter().enumerate() {
                fields.insert(format!("f{i}"), program.eval(&scope, &limits).unwrap());
            }
            fields
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
