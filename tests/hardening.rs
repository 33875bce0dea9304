//! Regressions of the hardening issue: what an attacker or a careless admin
//! found to crash or exhaust a plane, each tried again against the real
//! control plane and a real node.

mod support;

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
