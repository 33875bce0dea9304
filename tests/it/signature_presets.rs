//! Named senders end to end (SPEC §4 item 7): calls signed by the senders'
//! own libraries (`support::python`) against a real node, replay
//! protection by delivery id, and signing-secret rotation on both stores.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use hookplane_sdk::{Error, api};
use support::fixtures::mask;
use support::nodes::{applied, current_version, start_dev_node};
use support::python::{Signing, sign};
use support::targets::{Answer, Behaviour, Target, post, trigger_path};
use support::triggers::{ORDER, create, event, mapped_connector, use_plan};
use support::{Backend, TestPlane, eventually};
use tonic::Code;

on_both_stores!(rotation_overlap_accepts_both_secrets_then_only_the_new_one);

const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SW_SECRET: &str = "whsec_dGhpcyBpcyBhbm90aGVyIGtleSBvZiAyNCBieXRlcw==";
const TAMPERED: &str = r#"{"id":"A-18","total":12.5,"customer":{"email":"  Ada@Example.COM "}}"#;

/// A connector verifying `preset` with `secret`, authenticated by its
/// signature alone, as a sender that sends no credential of ours needs.
fn signed_connector(target: &Target, preset: api::SignaturePreset, secret: &str) -> api::Connector {
    let mut connector = mapped_connector(&target.url(""));
    connector.auth = None;
    connector.signature =
        Some(api::SignatureSettings { preset: preset as i32, secret: secret.into(), ..Default::default() });
    connector
}

async fn call(node: &hookplane_data_plane::DataPlane, id: &str, headers: &[(String, String)], body: &str) -> Answer {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    post(node.http_address(), &trigger_path(id), &headers, body.to_owned()).await
}

fn preset_header(preset: api::SignaturePreset) -> &'static str {
    match preset {
        api::SignaturePreset::Stripe => "stripe-signature",
        api::SignaturePreset::Github => "x-hub-signature-256",
        api::SignaturePreset::Shopify => "x-shopify-hmac-sha256",
        api::SignaturePreset::Slack => "x-slack-signature",
        _ => "webhook-signature",
    }
}

/// Each sender, as `sign.py` names it, with a secret of the kind it issues.
const SENDERS: [(&str, api::SignaturePreset, &str); 5] = [
    ("stripe", api::SignaturePreset::Stripe, "whsec_stripeEndpointSecret"),
    ("github", api::SignaturePreset::Github, "a GitHub webhook secret"),
    ("shopify", api::SignaturePreset::Shopify, "shpss_shopifyAppSecret"),
    ("slack", api::SignaturePreset::Slack, "8f742231b10e8888abcd99yyyzzz85a5"),
    ("standard_webhooks", api::SignaturePreset::StandardWebhooks, SW_SECRET),
];

/// A connector verifying each of `senders`; their ids, in order.
async fn create_each(
    plane: &TestPlane,
    target: &Target,
    senders: &[(&str, api::SignaturePreset, &str)],
) -> Vec<String> {
    let mut connectors = Vec::new();
    for &(_, preset, secret) in senders {
        connectors.push(create(plane, signed_connector(target, preset, secret)).await.0);
    }
    connectors
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_preset_accepts_its_senders_signature_and_refuses_every_bad_one_alike() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(Behaviour::Ok).await;
    let presets = SENDERS;
    let connectors = create_each(&plane, &target, &presets).await;
    let node = start_dev_node(&plane, "node-1").await;
    let now = now();
    // Per preset: valid, stale, signed with another secret.
    let mut calls = Vec::new();
    for (name, _, secret) in presets {
        let other = if name == "standard_webhooks" { OTHER_SW_SECRET } else { "another-secret-entirely" };
        let signing = |secrets, timestamp, id| Signing { preset: name, secrets, timestamp, body: ORDER, id };
        calls.push(signing(vec![secret], now, "msg_valid"));
        calls.push(signing(vec![secret], now - 3600, "msg_stale"));
        calls.push(signing(vec![other], now, "msg_other"));
    }
    let signed = sign(calls).await;
    let mut refusals = Vec::new();
    for (i, (name, preset, _)) in presets.into_iter().enumerate() {
        let id = &connectors[i];
        let [valid, stale, foreign] = [&signed[3 * i], &signed[3 * i + 1], &signed[3 * i + 2]];
        let answer = call(&node, id, valid, ORDER).await;
        assert_eq!((answer.status, answer.body["status"].as_str()), (200, Some("completed")), "{name}: {answer:?}");
        let recorded = event(&plane, answer.body["event_id"].as_i64().unwrap()).await;
        let inbound = recorded.trace.unwrap().request.unwrap();
        assert_eq!(inbound.auth_method, "signature", "{name}: the signature authenticated the call");
        let signature_header = preset_header(preset);
        assert_eq!(inbound.headers[signature_header], "[redacted]", "{name}: a stored event cannot be sent again");
        let mut bad = vec![
            ("tampered body", call(&node, id, valid, TAMPERED).await),
            ("another secret", call(&node, id, foreign, ORDER).await),
        ];
        if matches!(
            preset,
            api::SignaturePreset::Stripe | api::SignaturePreset::Slack | api::SignaturePreset::StandardWebhooks
        ) {
            bad.push(("stale timestamp", call(&node, id, stale, ORDER).await));
        }
        for (header, _) in valid {
            // GitHub's and Shopify's delivery ids are not signed: without
            // one a call runs, unremembered.
            let unsigned_id =
                matches!(header.to_ascii_lowercase().as_str(), "x-github-delivery" | "x-shopify-webhook-id");
            if !unsigned_id {
                let without: Vec<(String, String)> = valid.iter().filter(|(h, _)| h != header).cloned().collect();
                bad.push(("a missing header", call(&node, id, &without, ORDER).await));
            }
        }
        for (what, answer) in bad {
            assert_eq!((answer.status, answer.code()), (401, "invalid_signature"), "{name}, {what}: {answer:?}");
            refusals.push(answer.body["error"]["message"].as_str().unwrap().to_owned());
        }
    }
    refusals.dedup();
    assert_eq!(refusals.len(), 1, "one message for every signature failure: {refusals:?}");
    assert_eq!(target.count(), presets.len(), "only the valid calls ran");
    node.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_signatures_where_one_matches_are_accepted() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(Behaviour::Ok).await;
    let (stripe, _) = create(&plane, signed_connector(&target, api::SignaturePreset::Stripe, "whsec_current")).await;
    let (sw, _) = create(&plane, signed_connector(&target, api::SignaturePreset::StandardWebhooks, SW_SECRET)).await;
    let node = start_dev_node(&plane, "node-1").await;
    let now = now();
    let signed = sign(vec![
        Signing {
            preset: "stripe",
            secrets: vec!["whsec_rolled", "whsec_current"],
            timestamp: now,
            body: ORDER,
            id: "",
        },
        Signing {
            preset: "standard_webhooks",
            secrets: vec![OTHER_SW_SECRET, SW_SECRET],
            timestamp: now,
            body: ORDER,
            id: "msg_several",
        },
    ])
    .await;
    let header = |i: usize, name: &str| signed[i].iter().find(|(h, _)| h.eq_ignore_ascii_case(name)).unwrap().1.clone();
    let (stripe_header, sw_header) = (header(0, "stripe-signature"), header(1, "webhook-signature"));
    assert!(stripe_header.matches("v1=").count() == 2 && sw_header.contains(' '), "{signed:?}");
    for (id, headers) in [(&stripe, &signed[0]), (&sw, &signed[1])] {
        let answer = call(&node, id, headers, ORDER).await;
        assert_eq!((answer.status, answer.body["status"].as_str()), (200, Some("completed")), "{answer:?}");
    }
    node.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_delivery_id_runs_once_and_answers_with_the_first_event() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(Behaviour::Ok).await;
    // The senders that name their deliveries.
    let presets = [SENDERS[1], SENDERS[2], SENDERS[4]];
    let connectors = create_each(&plane, &target, &presets).await;
    let node = start_dev_node(&plane, "node-1").await;
    let now = now();
    let mut calls = Vec::new();
    for (name, _, secret) in presets {
        for id in ["delivery-1", "delivery-2"] {
            calls.push(Signing { preset: name, secrets: vec![secret], timestamp: now, body: ORDER, id });
        }
    }
    let signed = sign(calls).await;
    for (i, (name, _, _)) in presets.into_iter().enumerate() {
        let id = &connectors[i];
        let before = target.count();
        let first = call(&node, id, &signed[2 * i], ORDER).await;
        assert_eq!((first.status, first.body["status"].as_str()), (200, Some("completed")), "{name}: {first:?}");
        let replayed = call(&node, id, &signed[2 * i], ORDER).await;
        assert_eq!((replayed.status, replayed.body["status"].as_str()), (200, Some("duplicate")), "{name}");
        assert_eq!(replayed.body["event_id"], first.body["event_id"], "{name}: the first call's event");
        let next = call(&node, id, &signed[2 * i + 1], ORDER).await;
        assert_eq!(next.body["status"], "completed", "{name}: another delivery runs");
        assert_eq!(target.count(), before + 2, "{name}: the replay did not run");
    }
    // Another connector's delivery with the same id is its own.
    let (fresh, _) = create(&plane, signed_connector(&target, api::SignaturePreset::StandardWebhooks, SW_SECRET)).await;
    applied(&node, current_version(&plane).await).await;
    let answer = call(&node, &fresh, &signed[4], ORDER).await;
    assert_eq!(answer.body["status"], "completed", "{answer:?}");
    node.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_runs_again_when_the_sender_retries_it() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(Behaviour::AlwaysFail).await;
    let (id, _) = create(&plane, signed_connector(&target, api::SignaturePreset::StandardWebhooks, SW_SECRET)).await;
    let node = start_dev_node(&plane, "node-1").await;
    let signed = sign(vec![Signing {
        preset: "standard_webhooks",
        secrets: vec![SW_SECRET],
        timestamp: now(),
        body: ORDER,
        id: "msg_retried",
    }])
    .await;
    let failed = call(&node, &id, &signed[0], ORDER).await;
    assert_eq!((failed.status, failed.body["status"].as_str()), (500, Some("failed")));
    target.set(Behaviour::Ok);
    let retried = call(&node, &id, &signed[0], ORDER).await;
    assert_eq!((retried.status, retried.body["status"].as_str()), (200, Some("completed")), "{retried:?}");
    assert_ne!(retried.body["event_id"], failed.body["event_id"]);
    let again = call(&node, &id, &signed[0], ORDER).await;
    assert_eq!(
        (again.body["status"].as_str(), &again.body["event_id"]),
        (Some("duplicate"), &retried.body["event_id"])
    );
    node.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_still_running_is_not_answered_as_a_duplicate() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(Behaviour::Hang).await;
    let mut connector = signed_connector(&target, api::SignaturePreset::StandardWebhooks, SW_SECRET);
    let perform = connector.perform.as_mut().unwrap();
    perform.timeout = Some(prost_types::Duration { seconds: 1, nanos: 0 });
    perform.retry = None;
    let (id, _) = create(&plane, connector).await;
    let node = Arc::new(start_dev_node(&plane, "node-1").await);
    let signing = Signing {
        preset: "standard_webhooks",
        secrets: vec![SW_SECRET],
        timestamp: now(),
        body: ORDER,
        id: "msg_slow",
    };
    let signed = Arc::new(sign(vec![signing]).await.remove(0));
    let first = tokio::spawn({
        let (node, id, signed) = (node.clone(), id.clone(), signed.clone());
        async move { call(&node, &id, &signed, ORDER).await }
    });
    target.wait_for(1).await;
    let meanwhile = call(&node, &id, &signed, ORDER).await;
    assert_eq!((meanwhile.status, meanwhile.code()), (409, "delivery_in_progress"), "{meanwhile:?}");
    assert_eq!(meanwhile.headers["retry-after"], "1");
    let first = first.await.unwrap();
    assert_eq!(first.body["status"], "failed", "the first call timed out: {first:?}");
    target.set(Behaviour::Ok);
    let retried = call(&node, &id, &signed, ORDER).await;
    assert_eq!(retried.body["status"], "completed", "a failed delivery's retry runs: {retried:?}");
    Arc::into_inner(node).expect("the first call is done").shutdown().await;
    plane.finish().await;
}

async fn rotation_overlap_accepts_both_secrets_then_only_the_new_one(backend: Backend) {
    let plane = TestPlane::start(backend).await;
    let target = Target::start(Behaviour::Ok).await;
    let (id, _) =
        create(&plane, signed_connector(&target, api::SignaturePreset::Stripe, "whsec_oldStripeSecret")).await;
    // The overlap's end is polled for: no per-IP limit may refuse the polls.
    use_plan(&plane, api::Plan { name: "unlimited".into(), ..Default::default() }).await;
    let node = start_dev_node(&plane, "node-1").await;
    // Signed before the rotation, so that signing takes none of the overlap.
    let now = now();
    let stripe = |secret| Signing { preset: "stripe", secrets: vec![secret], timestamp: now, body: ORDER, id: "" };
    let signed = sign(vec![stripe("whsec_oldStripeSecret"), stripe("whsec_newStripeSecret")]).await;
    let (old, new) = (&signed[0], &signed[1]);
    let rotate = |secret: &str, overlap: Option<Duration>| {
        let request = api::RotateSigningSecretRequest {
            id: id.clone(),
            secret: secret.to_owned(),
            overlap: overlap
                .map(|d| prost_types::Duration { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }),
        };
        let mut client = plane.admin.connectors();
        async move { client.rotate_signing_secret(request).await.map(|r| r.into_inner()) }
    };
    let rotated = rotate("whsec_newStripeSecret", Some(Duration::from_secs(5))).await.unwrap();
    assert!(rotated.generated_secret.is_empty(), "a secret the caller chose is not echoed");
    let signature = rotated.connector.unwrap().signature.unwrap();
    assert!(signature.previous_secret_expire_time.is_some() && signature.secret.is_empty());
    applied(&node, current_version(&plane).await).await;
    assert_eq!(call(&node, &id, old, ORDER).await.status, 200, "the old secret verifies during the overlap");
    assert_eq!(call(&node, &id, new, ORDER).await.status, 200, "the new one too");
    eventually(Duration::from_secs(20), "the overlap to end", || async {
        (call(&node, &id, old, ORDER).await.status == 401).then_some(())
    })
    .await;
    assert_eq!(call(&node, &id, new, ORDER).await.status, 200, "only the new secret verifies after the overlap");

    let dump = plane.database.dump().await;
    for secret in ["whsec_oldStripeSecret", "whsec_newStripeSecret"] {
        assert!(!dump.contains(secret), "a signing secret is stored in plaintext");
    }

    // Stripe issues its secrets: hookplane does not make one up for it.
    assert_eq!(rotate("", None).await.unwrap_err().code(), Code::FailedPrecondition);
    // For a sender whose secret the receiver chooses, a generated secret
    // is shown once and verifies; the one it replaced stops at once
    // without an overlap.
    let (sw, _) = create(&plane, signed_connector(&target, api::SignaturePreset::StandardWebhooks, SW_SECRET)).await;
    let request = api::RotateSigningSecretRequest { id: sw.clone(), ..Default::default() };
    let generated =
        plane.admin.connectors().rotate_signing_secret(request).await.unwrap().into_inner().generated_secret;
    assert!(generated.starts_with("whsec_"), "{generated}");
    applied(&node, current_version(&plane).await).await;
    let generated: &'static str = Box::leak(generated.into_boxed_str());
    let signing =
        |secret, id| Signing { preset: "standard_webhooks", secrets: vec![secret], timestamp: now, body: ORDER, id };
    let signed = sign(vec![signing(generated, "msg_generated"), signing(SW_SECRET, "msg_replaced")]).await;
    assert_eq!(call(&node, &sw, &signed[0], ORDER).await.status, 200);
    assert_eq!(call(&node, &sw, &signed[1], ORDER).await.status, 401);

    // Bad rotations change nothing.
    let too_long = rotate("whsec_x", Some(Duration::from_secs(31 * 86_400))).await.unwrap_err();
    assert_eq!(Error::from(too_long).violations()[0].field, "overlap");
    let unsigned = create(&plane, mapped_connector(&target.url(""))).await.0;
    let mut client = plane.admin.connectors();
    let refused = client
        .rotate_signing_secret(api::RotateSigningSecretRequest { id: unsigned, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    node.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_preset_config_is_invalid_argument_naming_the_field() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(Behaviour::Ok).await;
    let mut conflicting = signed_connector(&target, api::SignaturePreset::Github, "a GitHub webhook secret");
    conflicting.signature.as_mut().unwrap().header = "X-Signature".into();
    let not_whsec = signed_connector(&target, api::SignaturePreset::StandardWebhooks, "plain-text-secret");
    let mut no_auth_no_signature = mapped_connector(&target.url(""));
    no_auth_no_signature.auth = None;
    for (connector, field) in [
        (conflicting, "connector.signature.header"),
        (not_whsec, "connector.signature.secret"),
        (no_auth_no_signature, "connector.auth"),
    ] {
        let err = plane.admin.connectors().create_connector(support::fixtures::create_connector(connector)).await;
        let err = Error::from(err.unwrap_err());
        assert_eq!(err.code(), Some(Code::InvalidArgument));
        assert_eq!(err.violations().iter().map(|v| v.field.as_str()).collect::<Vec<_>>(), [field], "{err:?}");
    }
    let (id, _) = create(&plane, signed_connector(&target, api::SignaturePreset::StandardWebhooks, SW_SECRET)).await;
    // Another sender's scheme needs that sender's secret.
    let mut switched = signed_connector(&target, api::SignaturePreset::Github, "");
    switched.id = id.clone();
    let update = api::UpdateConnectorRequest { connector: Some(switched), update_mask: mask(&["signature"]) };
    let refused = Error::from(plane.admin.connectors().update_connector(update).await.unwrap_err());
    assert_eq!(refused.violations()[0].field, "connector.signature.secret", "{refused:?}");
    let refused = plane
        .admin
        .connectors()
        .rotate_signing_secret(api::RotateSigningSecretRequest {
            id,
            secret: "not-a-whsec-secret".into(),
            overlap: None,
        })
        .await
        .unwrap_err();
    assert_eq!(Error::from(refused).violations()[0].field, "secret");
    plane.finish().await;
}
