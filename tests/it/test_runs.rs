//! Dry runs and replays (SPEC §10): a connector run on a payload through
//! the control plane, with the steps a node runs and nothing sent; a stored
//! event replayed through the current spec and a draft, with the
//! differences from what it sent.

use crate::support;

use hookplane_sdk::api;
use support::fixtures::secret;
use support::nodes::start_dev_node;
use support::targets::{Behaviour, Target, post, trigger_path};
use support::triggers::{ORDER, create, event, mapped_connector};
use support::{Backend, TestPlane};
use tonic::Code;

fn test_request(id: &str, payload: &str) -> api::TestConnectorRequest {
    api::TestConnectorRequest { id: id.into(), payload: payload.into(), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_shows_each_step_and_the_rendered_request_without_sending_it() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(Behaviour::Ok).await;
    plane.admin.secrets().create_secret(secret("TARGET_KEY", "tk-very-secret-value")).await.unwrap();
    let mut connector = mapped_connector(&target.url(""));
    let perform = connector.perform.as_mut().unwrap();
    perform.headers.push(api::NamedTemplate { name: "X-Api-Key".into(), value: "$secret.TARGET_KEY".into() });
    perform.auth = Some(api::OutboundAuth {
        method: Some(api::outbound_auth::Method::Bearer(api::BearerOutbound {
            token: "erp-$secret.TARGET_KEY".into(),
        })),
    });
    connector.sample_payload = ORDER.into();
    let (id, _) = create(&plane, connector).await;
    let mut connectors = plane.admin.connectors();

    // The sample payload, when none is given.
    let run = connectors.test_connector(test_request(&id, "")).await.unwrap().into_inner();
    assert_eq!(run.condition_result, Some(true));
    assert!(run.failure.is_none(), "{:?}", run.failure);
    let processed: serde_json::Value = serde_json::from_str(&run.processed).unwrap();
    assert_eq!(processed, serde_json::json!({"email": "ada@example.com", "cents": 1250}));
    let request = run.perform_request.clone().unwrap();
    assert_eq!(request.method, "PUT");
    assert_eq!(request.url, target.url("/orders/A-17?source=hookplane"));
    let header = |name: &str| request.headers.iter().find(|h| h.name == name).map(|h| h.value.as_str());
    assert_eq!(header("x-api-key"), Some("[redacted]"), "a $secret is never shown");
    assert_eq!(header("authorization"), Some("[redacted]"), "nor a credential");
    assert_eq!(header("content-type"), Some("application/json"));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&request.body).unwrap(),
        serde_json::json!({"customer": {"email": "ada@example.com"}, "amount": {"cents": 1250}, "note": "order A-17"})
    );
    assert!(!format!("{run:?}").contains("tk-very-secret-value"));
    assert_eq!(target.count(), 0, "a dry run sends nothing");

    // A false condition ends the run, as a node would skip the call.
    let skipped = connectors.test_connector(test_request(&id, r#"{"id":"B","total":0}"#)).await.unwrap();
    let skipped = skipped.into_inner();
    assert_eq!(skipped.condition_result, Some(false));
    assert!(skipped.perform_request.is_none() && skipped.processed.is_empty());

    // A failing mapping points at its field.
    let failed =
        connectors.test_connector(test_request(&id, r#"{"id":"C","total":1,"customer":{"email":5}}"#)).await.unwrap();
    let failure = failed.into_inner().failure.expect("the run fails");
    assert_eq!(failure.step, api::TestStep::Mappings as i32);
    assert_eq!(failure.field, "mappings[0].expression");
    assert!(failure.message.starts_with("mappings[0] (email): trim()"), "{}", failure.message);

    // Bad requests name their field.
    for (request, field) in [
        (test_request(&id, "{not json"), "payload"),
        (test_request("", "{}"), "id"),
        (
            api::TestConnectorRequest { id: id.clone(), lookup_result: "[".into(), ..Default::default() },
            "lookup_result",
        ),
    ] {
        let status = connectors.test_connector(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        let violations = hookplane_sdk::Error::from(status).violations().to_vec();
        assert_eq!(violations[0].field, field);
    }
    let missing = connectors.test_connector(test_request("con_missing", "{}")).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let (_, other) = plane.new_organization("other").await;
    let theirs = other.connectors().test_connector(test_request(&id, "{}")).await.unwrap_err();
    assert_eq!(theirs.code(), Code::NotFound, "another organization's connector is not there");
    // Viewers dry-run stored connectors; a draft (expressions of their
    // own over the organization's secrets) needs write access.
    let viewer = plane.key_for(&plane.organization_id, api::ApiKeyRole::Viewer).await;
    let mut viewing = viewer.connectors();
    let seen = viewing.test_connector(test_request(&id, "")).await.unwrap().into_inner().perform_request.unwrap();
    let api_key = seen.headers.iter().find(|h| h.name == "x-api-key").map(|h| h.value.as_str());
    assert_eq!(api_key, Some("<secret TARGET_KEY>"), "a viewer's dry run never opens a secret");
    let draft = api::TestConnectorRequest {
        draft: Some(mapped_connector("https://x.example.com")),
        payload: ORDER.into(),
        ..Default::default()
    };
    let refused = viewing.test_connector(draft).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_runs_unsaved_and_a_lookup_is_sent_only_when_asked() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let lookups = Target::start(Behaviour::Lookup).await;
    let mut draft = mapped_connector("https://erp.example.com");
    draft.lookup = Some(api::Lookup { url: lookups.url("/customers/$payload.id"), ..Default::default() });
    draft.mappings.push(api::FieldMapping { name: "echo".into(), expression: "$lookup.tier".into() });
    // A signed draft needs no secret: a dry run never opens it.
    draft.signature = Some(api::SignatureSettings::default());
    let mut connectors = plane.admin.connectors();
    let request = |lookup_result: &str, send_lookup| api::TestConnectorRequest {
        draft: Some(draft.clone()),
        payload: ORDER.into(),
        lookup_result: lookup_result.into(),
        send_lookup,
        ..Default::default()
    };

    let given = connectors.test_connector(request(r#"{"tier":"GIVEN"}"#, false)).await.unwrap().into_inner();
    assert!(given.failure.is_none(), "{:?}", given.failure);
    assert_eq!(given.lookup_request.unwrap().url, lookups.url("/customers/A-17"));
    assert!(given.processed.contains(r#""echo":"GIVEN""#), "{}", given.processed);
    assert_eq!(lookups.count(), 0, "the lookup is not sent unless asked");

    // The lookup target's JSON answer becomes `$lookup`.
    let sent = connectors.test_connector(request("", true)).await.unwrap().into_inner();
    assert!(sent.failure.is_none(), "{:?}", sent.failure);
    assert_eq!(lookups.count(), 1);
    assert!(sent.processed.contains(r#""echo":"gold""#), "{}", sent.processed);
    assert!(sent.perform_request.unwrap().url.starts_with("https://erp.example.com/orders/A-17"));

    let mut broken = draft.clone();
    broken.mappings[0].expression = "lower(".into();
    let status = connectors
        .test_connector(api::TestConnectorRequest { draft: Some(broken), payload: ORDER.into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let violations = hookplane_sdk::Error::from(status).violations().to_vec();
    assert_eq!(violations[0].field, "draft.mappings[0].expression", "a draft is checked as a create would be");
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_compares_the_current_spec_and_a_draft_with_what_the_event_sent() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(Behaviour::Ok).await;
    let connector = mapped_connector(&target.url(""));
    let (id, token) = create(&plane, connector.clone()).await;
    let node = start_dev_node(&plane, "node-1").await;
    let answer =
        post(node.http_address(), &trigger_path(&id), &[("authorization", &format!("Bearer {token}"))], ORDER).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let event_id = answer.body["event_id"].as_i64().unwrap();
    event(&plane, event_id).await;
    let mut events = plane.admin.events();

    let current =
        events.replay_event(api::ReplayEventRequest { id: event_id, ..Default::default() }).await.unwrap().into_inner();
    assert!(current.run.as_ref().unwrap().failure.is_none());
    assert_eq!(current.original_request.as_ref().unwrap().url, target.url("/orders/A-17?source=hookplane"));
    assert_eq!(current.changes, [], "the same spec renders the same request");

    let mut draft = connector;
    draft.id = id.clone();
    let perform = draft.perform.as_mut().unwrap();
    perform.url = format!("{}/v2/orders/$payload.id", target.url(""));
    perform.body[0].value = "upper($processed.email)".into();
    perform.headers.push(api::NamedTemplate { name: "X-Source".into(), value: "replay".into() });
    let replayed = events
        .replay_event(api::ReplayEventRequest { id: event_id, draft: Some(draft), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let changes: Vec<(&str, Option<&str>, Option<&str>)> =
        replayed.changes.iter().map(|c| (c.field.as_str(), c.before.as_deref(), c.after.as_deref())).collect();
    let old_url = target.url("/orders/A-17?source=hookplane");
    let new_url = target.url("/v2/orders/A-17?source=hookplane");
    assert_eq!(
        changes,
        [
            ("url", Some(old_url.as_str()), Some(new_url.as_str())),
            ("headers.x-source", None, Some("replay")),
            ("body.customer.email", Some("\"ada@example.com\""), Some("\"ADA@EXAMPLE.COM\"")),
        ]
    );
    assert_eq!(target.count(), 1, "a replay sends nothing");

    let missing = events.replay_event(api::ReplayEventRequest { id: 42, ..Default::default() }).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    node.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_run_executes_on_a_node_and_its_event_is_marked_test() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::counting(Behaviour::Ok).await;
    let mut connector = mapped_connector(&target.url(""));
    connector.sample_payload = ORDER.into();
    let (id, _) = create(&plane, connector).await;
    let mut connectors = plane.admin.connectors();
    let live = |id: &str| api::TestConnectorRequest { id: id.into(), live: true, ..Default::default() };

    let nowhere = connectors.test_connector(live(&id)).await.unwrap_err();
    assert_eq!(nowhere.code(), Code::FailedPrecondition, "no node has the connector: {}", nowhere.message());

    let node = start_dev_node(&plane, "node-1").await;
    let run = connectors.test_connector(live(&id)).await.unwrap().into_inner();
    let outcome = run.live.expect("a live outcome");
    assert_eq!(outcome.status, api::LiveRunStatus::Completed as i32, "{outcome:?}");
    assert_eq!((outcome.response_code, outcome.node_id.as_str()), (Some(200), "node-1"));
    assert!(run.perform_request.is_none(), "a live run shows its event, not a dry run");
    assert_eq!(target.count(), 1, "a live run sends the perform");
    let recorded = event(&plane, outcome.event_id).await;
    assert!(recorded.test, "its event is marked as a test");
    assert_eq!(recorded.trace.as_ref().unwrap().request.as_ref().unwrap().auth_method, "test_run");

    // A live replay runs the event's payload again through the current spec.
    let mut events = plane.admin.events();
    let replay = api::ReplayEventRequest { id: outcome.event_id, live: true, ..Default::default() };
    let replayed = events.replay_event(replay).await.unwrap().into_inner().live.expect("a live outcome");
    assert_eq!(replayed.status, api::LiveRunStatus::Completed as i32);
    assert_ne!(replayed.event_id, outcome.event_id);
    assert_eq!(target.count(), 2);

    // A failing target fails the run, as it would a sender's call.
    target.set(Behaviour::AlwaysFail);
    let failed = connectors.test_connector(live(&id)).await.unwrap().into_inner().live.unwrap();
    assert_eq!(failed.status, api::LiveRunStatus::Failed as i32);
    assert_eq!(failed.error, "the target answered 500");

    let with_draft = api::TestConnectorRequest { draft: Some(mapped_connector("https://x.example.com")), ..live(&id) };
    let refused = connectors.test_connector(with_draft).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(hookplane_sdk::Error::from(refused).violations()[0].field, "draft");
    let huge = api::TestConnectorRequest { payload: format!(r#"{{"x":"{}"}}"#, "a".repeat(1 << 20)), ..live(&id) };
    let too_big = connectors.test_connector(huge).await.unwrap_err();
    assert_eq!(hookplane_sdk::Error::from(too_big).violations()[0].field, "payload");
    let viewer = plane.key_for(&plane.organization_id, api::ApiKeyRole::Viewer).await;
    let denied = viewer.connectors().test_connector(live(&id)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "a live run sends requests: writers only");
    node.shutdown().await;
    plane.finish().await;
}
