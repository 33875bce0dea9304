//! Regressions of the hardening issue: what an attacker or a careless admin
//! found to crash or exhaust a plane, each tried again against the real
//! control plane and a real node.

use crate::support;

use hookplane_sdk::api;
use support::fixtures::{connector, create_connector};
use support::nodes::start_dev_node;
use support::targets::{Behaviour, Target, post, trigger_path};
use support::triggers::create;
use support::{Backend, TestPlane};
use tonic::Code;
use tonic_types::StatusExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expression_deeper_than_the_limit_is_refused_and_the_plane_stays_up() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    // 8 000 terms aborted the control plane with a stack overflow; 6 000
    // were saved and aborted every node on the first call.
    for terms in [6_000, 8_000] {
        let mut deep = connector("deep");
        deep.mappings =
            vec![api::FieldMapping { name: "x".into(), expression: format!("$payload.x{}", " + 1".repeat(terms)) }];
        let refused = plane.admin.connectors().create_connector(create_connector(deep)).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{terms} terms");
        let violations = refused.get_details_bad_request().expect("field violations").field_violations;
        assert_eq!(violations[0].field, "connector.mappings[0].expression");
        assert!(violations[0].description.contains("nests deeper than 128 levels"), "{:?}", violations[0]);
    }
    let listed = plane.admin.list_all_connectors().await.expect("the control plane still serves");
    assert!(listed.is_empty(), "nothing was stored");
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_over_budget_fails_the_event_before_it_is_built() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(Behaviour::Ok).await;
    let mut blowup = connector("replace");
    blowup.perform.as_mut().unwrap().url = target.url("/in");
    blowup.mappings =
        vec![api::FieldMapping { name: "big".into(), expression: "replace($payload.s, \"a\", $payload.t)".into() }];
    let (id, token) = create(&plane, blowup).await;
    let node = start_dev_node(&plane, "node-1").await;
    // Two 16 000-character texts: 16 000 matches times 16 000 bytes would
    // have been 256 MB; the size is counted before anything is built.
    let body = serde_json::json!({"s": "a".repeat(16_000), "t": "b".repeat(16_000)}).to_string();
    let answer =
        post(node.http_address(), &trigger_path(&id), &[("authorization", &format!("Bearer {token}"))], body).await;
    assert_eq!(answer.status, 500, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "failed");
    let error = answer.body["error"].as_str().unwrap();
    assert!(error.starts_with("mappings[0] (big): expression output exceeded 1048576 bytes"), "{error}");
    assert_eq!(target.count(), 0, "nothing was performed");
    node.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_resource_exhausted() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    // Over the server's 4 MiB limit: tonic's codec refuses it before any
    // handler, with OUT_OF_RANGE, which clients would not read as "too big".
    let huge = support::fixtures::secret("HUGE", &"x".repeat(5 << 20));
    let refused = plane.admin.secrets().create_secret(huge).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(plane.admin.list_all_secrets().await.unwrap().is_empty());
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_organizations_is_for_the_operator() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let listed = plane.admin.organizations().list_organizations(api::ListOrganizationsRequest::default()).await;
    assert_eq!(listed.unwrap_err().code(), Code::PermissionDenied, "the proto says operator only");
    let all = plane.operator.organizations().list_organizations(api::ListOrganizationsRequest::default()).await;
    assert_eq!(all.unwrap().into_inner().organizations.len(), 1);
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_tokens_cannot_be_edited() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let mut connectors = plane.admin.connectors();
    for name in ["a", "b", "c"] {
        connectors.create_connector(create_connector(connector(name))).await.unwrap();
    }
    let list = |page_token: String| api::ListConnectorsRequest { page_size: 1, page_token };
    let first = connectors.list_connectors(list(String::new())).await.unwrap().into_inner();
    let token = first.next_page_token;
    let second = connectors.list_connectors(list(token.clone())).await.unwrap().into_inner();
    assert_ne!(second.connectors[0].id, first.connectors[0].id);
    // The finding: the token was base64 of `connectors|<filter hash>|<id>`,
    // and an edited id moved the cursor. The cursor is sealed now.
    assert!(!token.contains(&first.connectors[0].id));
    let mut edited = token.into_bytes();
    let last = edited.len() - 3;
    edited[last] = if edited[last] == b'A' { b'B' } else { b'A' };
    let refused = connectors.list_connectors(list(String::from_utf8(edited).unwrap())).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let violations = refused.get_details_bad_request().unwrap().field_violations;
    assert_eq!(violations[0].field, "page_token");
    plane.finish().await;
}

/// A connector of the plane's organization (or `client`'s) posting to
/// `url` with `$secret.TOKEN` in a header.
fn reads_secret(url: &str) -> api::Connector {
    let mut reads = connector("reads a secret");
    let perform = reads.perform.as_mut().unwrap();
    perform.url = url.to_owned();
    perform.headers = vec![api::NamedTemplate { name: "X-Token".into(), value: "$secret.TOKEN".into() }];
    reads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_that_does_not_open_holds_only_its_connectors() {
    use support::fixtures::{mask, secret};
    use support::nodes::{applied, current_version};
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(Behaviour::Ok).await;
    let (other_org, other) = plane.new_organization("other").await;
    for client in [&plane.admin, &other] {
        client.secrets().create_secret(secret("TOKEN", "secret-value")).await.unwrap();
    }
    let (mine, my_token) = create(&plane, reads_secret(&target.url("/mine"))).await;
    let theirs = other.connectors().create_connector(create_connector(reads_secret(&target.url("/theirs")))).await;
    let theirs = theirs.unwrap().into_inner();
    let mut signed = connector("signed");
    signed.signature = Some(api::SignatureSettings { secret: "whsec-for-the-signed-one".into(), ..Default::default() });
    let signed = other.connectors().create_connector(create_connector(signed)).await.unwrap().into_inner();
    // The finding: one organization's altered row stopped every node's
    // sync ("sealed value does not open"), for every organization.
    plane
        .database
        .execute(&format!(
            "UPDATE secrets SET sealed_value = 'v1.{}' WHERE organization_id = '{other_org}'",
            "A".repeat(80)
        ))
        .await;
    plane
        .database
        .execute(&format!(
            "UPDATE connectors SET spec = replace(spec, '\"v1.', '\"v1.AAAA') WHERE id = '{}'",
            signed.id
        ))
        .await;

    let node = start_dev_node(&plane, "node-1").await;
    let call = |id: String, token: String| {
        let address = node.http_address();
        async move { post(address, &trigger_path(&id), &[("authorization", &format!("Bearer {token}"))], "{}").await }
    };
    let answer = call(mine.clone(), my_token.clone()).await;
    assert_eq!((answer.status, answer.body["status"].as_str()), (200, Some("completed")), "{:?}", answer.body);
    let their_token = theirs.issued_credentials[0].token.clone();
    let held = call(theirs.id.clone(), their_token.clone()).await;
    assert_eq!((held.status, held.code()), (503, "connector_unavailable"));
    let rejected = call(signed.id.clone(), signed.issued_credentials[0].token.clone()).await;
    assert_eq!((rejected.status, rejected.code()), (404, "connector_not_found"));
    // What nodes acknowledge is written in batches, within a second.
    let last_error =
        support::eventually(std::time::Duration::from_secs(5), "the node's rejection is listed", || async {
            let nodes = plane.operator.nodes().list_nodes(api::ListNodesRequest::default()).await.unwrap().into_inner();
            Some(nodes.nodes[0].last_error.clone()).filter(|error| !error.is_empty())
        })
        .await;
    assert!(last_error.contains(&format!("{}: reads $secret.TOKEN", theirs.id)), "{last_error}");
    assert!(last_error.contains(&format!("{}: the control plane could not open", signed.id)), "{last_error}");
    assert!(!last_error.contains("secret-value"));

    // The rest of the fleet's config flows...
    let (later, later_token) = create(&plane, reads_secret(&target.url("/later"))).await;
    applied(&node, current_version(&plane).await).await;
    assert_eq!(call(later, later_token).await.status, 200);
    // ... and setting the secret again heals what it held.
    let patch = api::Secret { name: "TOKEN".into(), value: "set-again".into(), ..Default::default() };
    let update = api::UpdateSecretRequest { secret: Some(patch), update_mask: mask(&["value"]) };
    other.secrets().update_secret(update).await.unwrap();
    applied(&node, current_version(&plane).await).await;
    let healed = call(theirs.id.clone(), their_token).await;
    assert_eq!((healed.status, healed.body["status"].as_str()), (200, Some("completed")), "{:?}", healed.body);
    let received = target.received();
    assert_eq!(received.last().unwrap().headers["x-token"], "set-again");
    node.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_keeps_no_secret_in_the_clear_on_disk() {
    use support::fixtures::secret;
    use support::nodes::start_node_configured;
    let plane = TestPlane::start(Backend::Sqlite).await;
    plane.admin.secrets().create_secret(secret("TOKEN", "dollar-secret-in-the-cache")).await.unwrap();
    let mut signed = reads_secret("https://api.example.com/orders");
    signed.signature =
        Some(api::SignatureSettings { secret: "signing-secret-in-the-cache".into(), ..Default::default() });
    create(&plane, signed).await;
    let cache = tempfile::tempdir().unwrap();
    let node = start_node_configured(&plane, "node-1", Some(cache.path()), |_| {}).await;
    let sealed = cache.path().join("snapshot.sealed");
    support::eventually(std::time::Duration::from_secs(5), "the snapshot is cached", || async {
        sealed.exists().then_some(())
    })
    .await;
    node.shutdown().await;
    let mut on_disk = Vec::new();
    let mut dirs = vec![cache.path().to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { dirs.push(path) } else { on_disk.extend(std::fs::read(path).unwrap()) }
        }
    }
    for plaintext in ["dollar-secret-in-the-cache", "signing-secret-in-the-cache"] {
        assert!(!on_disk.windows(plaintext.len()).any(|w| w == plaintext.as_bytes()), "{plaintext} on disk");
    }
    plane.finish().await;
}

/// A plane on an unlimited plan, a target acting as `behaviour`, and a
/// mapped connector calling it, with its id and token.
async fn unlimited_connector(behaviour: Behaviour) -> (TestPlane, Target, String, String) {
    let plane = TestPlane::start(Backend::Sqlite).await;
    support::triggers::use_plan(&plane, api::Plan { name: "unlimited".into(), ..Default::default() }).await;
    let target = Target::start(behaviour).await;
    let (id, token) = create(&plane, support::triggers::mapped_connector(&target.url(""))).await;
    (plane, target, id, token)
}

/// A node following `plane` that may call loopback targets, its config
/// adjusted further by `adjust`.
async fn loopback_node(
    plane: &TestPlane,
    adjust: impl FnOnce(&mut hookplane_data_plane::NodeConfig),
) -> hookplane_data_plane::DataPlane {
    support::nodes::start_node_configured(plane, "node-1", None, |c| {
        c.egress = hookplane_egress::EgressPolicy::public_only().with_loopback();
        adjust(c);
    })
    .await
}

/// An event larger than gRPC's default message limit (4 MiB) reaches the
/// control plane over `ReportEvents`, and so does the next one. The
/// control plane refused the batch that held it, and the node sent that
/// batch again from its spool on every reconnect, so that no later event
/// reached the control plane either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_over_grpcs_default_message_limit_reaches_the_control_plane() {
    use support::triggers::ORDER;
    let (plane, _target, id, token) = unlimited_connector(Behaviour::Ok).await;
    let node = loopback_node(&plane, |c| {
        c.ingress.max_body_bytes = 8 << 20;
    })
    .await;
    let (address, path, bearer) = (node.http_address(), trigger_path(&id), format!("Bearer {token}"));
    let note = "x".repeat(5 << 20);
    let large = format!(r#"{{"id":"A-17","total":12.5,"customer":{{"email":"a@example.com"}},"note":"{note}"}}"#);
    let mut answered = Vec::new();
    for body in [large, ORDER.to_owned()] {
        let answer = post(address, &path, &[("authorization", &bearer)], body).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        answered.push(answer.body["event_id"].as_i64().expect("an event id"));
    }
    // Read as a client must read an event this large: with a limit of its
    // own above gRPC's default.
    let events = plane.admin.events().max_decoding_message_size(16 << 20);
    for id in answered {
        let event = support::eventually(std::time::Duration::from_secs(30), "the event reaches the API", || async {
            events.clone().get_event(api::GetEventRequest { id }).await.ok().map(|r| r.into_inner())
        })
        .await;
        // Not `{event:?}`: its payload is megabytes.
        assert_eq!(event.status(), api::EventStatus::Completed, "event {id}");
    }
    node.shutdown().await;
    plane.finish().await;
}

/// The events of connector `id`, once there are `n`.
async fn events_of(plane: &TestPlane, id: &str, n: usize) -> Vec<api::Event> {
    let filter = api::EventFilter { connector_id: id.to_owned(), ..Default::default() };
    let request = api::ListEventsRequest { filter: Some(filter), ..Default::default() };
    support::eventually(std::time::Duration::from_secs(30), "the call's event reaches the API", || async {
        let events = plane.admin.events().list_events(request.clone()).await.ok()?.into_inner().events;
        (events.len() >= n).then_some(events)
    })
    .await
}

/// A sender that closes its connection while its call runs does not cut
/// the call off: it runs to its end, and its event tells how it went.
/// Before, hyper read the close as an incomplete message and dropped the
/// call's future: the target had the perform, and no event was recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_sender_hangs_up_runs_to_its_own_event() {
    use support::triggers::ORDER;
    use tokio::io::AsyncWriteExt as _;
    let (plane, target, id, token) = unlimited_connector(Behaviour::Slow(1_000)).await;
    let node = start_dev_node(&plane, "node-1").await;
    let mut sender = tokio::net::TcpStream::connect(node.http_address()).await.unwrap();
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: node\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{ORDER}",
        trigger_path(&id),
        ORDER.len()
    );
    sender.write_all(request.as_bytes()).await.unwrap();
    target.wait_for(1).await;
    // The sender gives up while the target is still answering.
    drop(sender);
    let events = events_of(&plane, &id, 1).await;
    assert_eq!(events[0].status(), api::EventStatus::Completed, "{}", events[0].error);
    assert_eq!(events[0].response_code, Some(200));
    node.shutdown().await;
    plane.finish().await;
}

/// A call still running when a stopping node's drain timeout ends is cut
/// off with its connection, and ends as a failed event that says so; it
/// left none before, though its perform had reached the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cut_off_by_the_drain_timeout_ends_as_a_failed_event() {
    use support::targets::try_post;
    use support::triggers::ORDER;
    let (plane, target, id, token) = unlimited_connector(Behaviour::Hang).await;
    let node = loopback_node(&plane, |c| {
        c.connections.drain_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    let (address, path) = (node.http_address(), trigger_path(&id));
    let bearer = format!("Bearer {token}");
    let sender = tokio::spawn(async move { try_post(address, &path, &[("authorization", &bearer)], ORDER).await });
    target.wait_for(1).await;
    node.shutdown().await;
    assert!(sender.await.unwrap().is_none(), "the call is not answered");
    let events = events_of(&plane, &id, 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].status(), api::EventStatus::Failed);
    assert_eq!(events[0].error, hookplane_data_plane::trigger::running::CUT_OFF);
    let trace = events[0].trace.as_ref().expect("a trace");
    assert_eq!(trace.payload, ORDER, "the inbound request is kept");
    let request = trace.request.as_ref().expect("the inbound request");
    assert_eq!(request.headers["authorization"], "[redacted]");
    plane.finish().await;
}

/// A node without a cache dir keeps in memory the events the control
/// plane did not take, and has answered their calls. Stopping, it offers
/// them once more: it ended with them before, though the control plane
/// would have taken them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_cache_dir_delivers_its_spooled_events_as_it_stops() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use support::triggers::{ORDER, event};
    let (plane, _target, id, token) = unlimited_connector(Behaviour::Ok).await;
    // The control plane in the node's process, refusing batches at first.
    let (refusing, refusals) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicUsize::new(0)));
    let local = {
        let (events, refusing, refusals) = (plane.control_plane.events().clone(), refusing.clone(), refusals.clone());
        hookplane_data_plane::events::LocalEvents::new(move |batch| {
            let (events, refusing, refusals) = (events.clone(), refusing.clone(), refusals.clone());
            async move {
                if refusing.load(Ordering::SeqCst) {
                    refusals.fetch_add(1, Ordering::SeqCst);
                    return false;
                }
                events.ingest(batch).await.is_ok()
            }
        })
    };
    let node = loopback_node(&plane, |c| {
        c.local_events = Some(local);
    })
    .await;
    let (address, path, bearer) = (node.http_address(), trigger_path(&id), format!("Bearer {token}"));
    let mut answered = Vec::new();
    for _ in 0..3 {
        let answer = post(address, &path, &[("authorization", &bearer)], ORDER).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        answered.push(answer.body["event_id"].as_i64().expect("an event id"));
    }
    // Refused often enough that the reporter's next try is seconds away
    // (its backoff starts at 0.2 s and doubles), so only the stop delivers.
    support::eventually(std::time::Duration::from_secs(30), "the reporter backs off", || async {
        (refusals.load(Ordering::SeqCst) >= 6).then_some(())
    })
    .await;
    refusing.store(false, Ordering::SeqCst);
    node.shutdown().await;
    for id in answered {
        event(&plane, id).await;
    }
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_node_under_load_keeps_every_answered_event() {
    use std::sync::{Arc, Mutex};
    use support::targets::try_post;
    use support::triggers::{ORDER, event};
    let (plane, _target, id, token) = unlimited_connector(Behaviour::Ok).await;
    let node = start_dev_node(&plane, "node-1").await;
    let (address, path, bearer) = (node.http_address(), trigger_path(&id), format!("Bearer {token}"));
    // The finding: 12 clients, then SIGTERM: the node exited in 1.7 s and 12
    // calls answered 200 after the signal had no event; the reporter
    // stopped before the calls in flight had finished.
    let answered = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..12)
        .map(|_| {
            let (answered, path, bearer) = (answered.clone(), path.clone(), bearer.clone());
            tokio::spawn(async move {
                while let Some(answer) = try_post(address, &path, &[("authorization", &bearer)], ORDER).await {
                    assert_eq!(answer.status, 200, "{:?}", answer.body);
                    answered.lock().unwrap().push(answer.body["event_id"].as_i64().unwrap());
                }
            })
        })
        .collect();
    support::eventually(std::time::Duration::from_secs(20), "the node is under load", || async {
        (answered.lock().unwrap().len() >= 100).then_some(())
    })
    .await;
    node.shutdown().await;
    for client in clients {
        client.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    for id in &answered {
        event(&plane, *id).await;
    }
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_node_fails_readiness_first_and_serves_until_its_listener_closes() {
    use std::time::Duration;
    use support::nodes::{http_get, start_node_configured};
    use support::triggers::{ORDER, mapped_connector};
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(Behaviour::Ok).await;
    let (id, token) = create(&plane, mapped_connector(&target.url(""))).await;
    let node = start_node_configured(&plane, "node-1", None, |c| {
        c.egress = hookplane_egress::EgressPolicy::public_only().with_loopback();
        // Long enough for a busy machine to see /readyz fail and still call.
        c.connections.drain_delay = Duration::from_secs(8);
    })
    .await;
    let address = node.http_address();
    assert_eq!(http_get(address, "/readyz").await.0, 200);
    // A connection open before the stop, to see the node close it.
    let mut idle = tokio::net::TcpStream::connect(address).await.unwrap();
    let stopping = tokio::spawn(node.shutdown());
    let (_, body) = support::eventually(Duration::from_secs(5), "/readyz to fail first", || async {
        let answer = http_get(address, "/readyz").await;
        (answer.0 == 503).then_some(answer)
    })
    .await;
    assert_eq!(body, r#"{"status":"draining"}"#);
    // A load balancer has not noticed yet: calls still on their way are served.
    let late = post(address, &trigger_path(&id), &[("authorization", &format!("Bearer {token}"))], ORDER).await;
    assert_eq!((late.status, late.body["status"].as_str()), (200, Some("completed")), "{late:?}");
    stopping.await.unwrap();
    let mut byte = [0u8; 1];
    let closed = tokio::io::AsyncReadExt::read(&mut idle, &mut byte).await;
    assert!(matches!(closed, Ok(0) | Err(_)), "the node closed its connections once stopped: {closed:?}");
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_cannot_hold_the_node() {
    use std::time::Duration;
    use support::nodes::{http_get, start_node_configured};
    use tokio::io::AsyncReadExt as _;
    let plane = TestPlane::start(Backend::Sqlite).await;
    let node = start_node_configured(&plane, "node-1", None, |c| {
        c.connections.max_connections = 300;
        c.connections.max_connections_per_ip = 100;
        c.connections.first_byte_timeout = Duration::from_secs(1);
    })
    .await;
    // The finding: 10 050 connections that send nothing were never closed,
    // and /healthz timed out while they were held. Here 400 silent ones
    // come from one address (the loopback /8 is ours to pick from).
    let mut silent = Vec::new();
    for _ in 0..400 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        silent.push(socket.connect(node.http_address()).await.unwrap());
    }
    let health = tokio::time::timeout(Duration::from_secs(5), http_get(node.http_address(), "/healthz")).await;
    assert_eq!(health.expect("/healthz answers beside them").0, 200);
    // Over the per-address cap at once, the rest after the first-byte
    // timeout: every one is closed by the node.
    for mut connection in silent {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), connection.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the node closes a silent connection: {read:?}");
    }
    node.shutdown().await;
    plane.finish().await;
}

/// SPEC §4's header read timeout: a client that keeps bytes coming but
/// never finishes its request head (a slowloris) is cut off once the
/// timeout passes, like a silent one, and never reaches the endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_sent_too_slowly_is_cut_off() {
    use std::time::{Duration, Instant};
    use support::nodes::start_node_configured;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let plane = TestPlane::start(Backend::Sqlite).await;
    let node = start_node_configured(&plane, "node-1", None, |c| {
        c.connections.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let mut connection = tokio::net::TcpStream::connect(node.http_address()).await.unwrap();
    let started = Instant::now();
    connection.write_all(b"POST /api/v1/connectors/con_x/trigger HTTP/1.1\r\nhost: node\r\nx-pad: ").await.unwrap();
    // A byte every 100 ms: the connection is never silent, and its head
    // never ends. The read's own timeout paces the bytes.
    let cut_off = loop {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(100), connection.read(&mut byte)).await {
            Ok(Ok(0) | Err(_)) => break started.elapsed(),
            Ok(Ok(_)) => panic!("the node answered a request whose head never ended"),
            Err(_) => {}
        }
        assert!(started.elapsed() < Duration::from_secs(10), "a head begun 10 s ago is still being read");
        if connection.write_all(b"a").await.is_err() {
            break started.elapsed();
        }
    };
    assert!(cut_off >= Duration::from_millis(900), "cut off after {cut_off:?}, before the timeout");
    node.shutdown().await;
    plane.finish().await;
}

/// SPEC §4's body timeout through a real node and hyper: a body whose
/// second half comes later, within the timeout, is read and its call runs;
/// one that stops halfway is refused 408 once the timeout passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_in_parts_is_read_within_the_body_timeout() {
    use std::time::{Duration, Instant};
    use support::nodes::{applied, start_node_configured};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let plane = TestPlane::start(Backend::Sqlite).await;
    let mut skipping = connector("parts");
    skipping.condition = "$payload.status == \"refunded\"".into();
    let (id, token) = create(&plane, skipping).await;
    let node = start_node_configured(&plane, "node-1", None, |c| {
        c.ingress.body_timeout = Duration::from_secs(1);
    })
    .await;
    applied(&node, plane.config_version().await).await;
    let body = br#"{"status":"paid"}"#;
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: node\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        trigger_path(&id),
        body.len()
    );
    // The answer, as text, to `head` and the body's first half, then its
    // second half `rest_after` later, if given.
    let address = node.http_address();
    let answer = |rest_after: Option<Duration>| {
        let head = head.clone();
        async move {
            let mut connection = tokio::net::TcpStream::connect(address).await.unwrap();
            connection.write_all(&[head.as_bytes(), &body[..8]].concat()).await.unwrap();
            if let Some(delay) = rest_after {
                tokio::time::sleep(delay).await;
                connection.write_all(&body[8..]).await.unwrap();
            }
            // Read until the JSON body's end: head and body may come apart.
            let mut answer = Vec::new();
            while !(answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}")) {
                let mut chunk = [0u8; 1024];
                let read = connection.read(&mut chunk).await.unwrap();
                assert!(read > 0, "the node closed the connection mid-answer");
                answer.extend_from_slice(&chunk[..read]);
            }
            String::from_utf8_lossy(&answer).into_owned()
        }
    };
    let answered = answer(Some(Duration::from_millis(300))).await;
    assert!(answered.starts_with("HTTP/1.1 200 "), "{answered}");
    assert!(answered.contains(r#""status":"skipped""#), "{answered}");
    let started = Instant::now();
    let answered =
        tokio::time::timeout(Duration::from_secs(10), answer(None)).await.expect("a body never finished is cut off");
    let took = started.elapsed();
    assert!(answered.starts_with("HTTP/1.1 408 "), "{answered}");
    assert!(answered.contains("body_timeout"), "{answered}");
    assert!(took >= Duration::from_millis(900), "refused after {took:?}, before the body timeout");
    node.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_answers_while_its_control_plane_hangs() {
    use std::time::{Duration, Instant};
    use support::nodes::{keep_in, start_node_configured};
    use support::triggers::ORDER;
    let (plane, _target, id, token) = unlimited_connector(Behaviour::Ok).await;
    let cache = tempfile::tempdir().unwrap();
    let loopback = |c: &mut hookplane_data_plane::NodeConfig| {
        c.egress = hookplane_egress::EgressPolicy::public_only().with_loopback();
    };
    let node = start_node_configured(&plane, "node-1", Some(cache.path()), loopback).await;
    let sealed = cache.path().join("snapshot.sealed");
    support::eventually(Duration::from_secs(5), "the snapshot is cached", || async { sealed.exists().then_some(()) })
        .await;
    node.shutdown().await;
    // The control plane's address now accepts connections and says
    // nothing: every attempt of the reporter to open its stream hangs.
    let stopped = plane.stopped().await;
    let address: std::net::SocketAddr = stopped.url().trim_start_matches("http://").parse().unwrap();
    let silent = tokio::net::TcpListener::bind(address).await.unwrap();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let node = hookplane_data_plane::DataPlane::start({
        let mut config = hookplane_data_plane::NodeConfig::new(
            "node-1".into(),
            stopped.url(),
            support::NODE_TOKEN.into(),
            "127.0.0.1:0".parse().unwrap(),
        );
        keep_in(&mut config, Some(cache.path()));
        loopback(&mut config);
        config
    })
    .await
    .unwrap();
    // The finding (review): the reporter opened its stream inline, with
    // no timeout on the call, so every answer waited on the hung attempt.
    for _ in 0..20 {
        let started = Instant::now();
        let answer =
            post(node.http_address(), &trigger_path(&id), &[("authorization", &format!("Bearer {token}"))], ORDER)
                .await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert!(started.elapsed() < Duration::from_secs(3), "answered in {:?}", started.elapsed());
    }
    let spooled = std::fs::read_dir(cache.path().join("events")).map_or(0, |d| d.count());
    assert!(spooled > 0, "the events wait on disk");
    node.shutdown().await;
    held.abort();
    stopped.start_again().await.finish().await;
}
