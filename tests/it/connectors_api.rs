//! Conformance of the connector API on both stores: lifecycle, validation,
//! pagination, optimistic concurrency, idempotency and credentials.

use crate::support;

use std::time::Duration;

use futures::StreamExt as _;
use futures::future::join_all;
use hookplane_sdk::{Error, api};
use support::fixtures::{connector, create_connector, mask};
use support::{Backend, TestPlane};
use tonic::Code;

on_both_stores!(
    lifecycle_create_get_list_update_rotate_disable_delete,
    bad_input_names_every_field_and_stores_nothing,
    pagination_walks_260_connectors_exactly_once,
    concurrent_updates_with_one_etag_let_exactly_one_win,
    concurrent_masked_updates_without_etag_all_apply,
    request_id_makes_creates_idempotent,
    rotation_keeps_old_credentials_for_the_grace_period,
    enabling_an_auth_method_mints_its_credential_once,
);

async fn lifecycle_create_get_list_update_rotate_disable_delete(backend: Backend) {
    let plane = TestPlane::start(backend).await;
    let mut connectors = plane.admin.connectors();

    let created = connectors.create_connector(create_connector(connector("orders"))).await.unwrap().into_inner();
    assert!(created.id.starts_with("con_"));
    assert_eq!(created.trigger_path, format!("/api/v1/connectors/{}/trigger", created.id));
    assert_eq!(created.enabled, Some(true));
    assert_eq!(created.issued_credentials.len(), 1);
    let token = &created.issued_credentials[0].token;
    assert!(token.starts_with("hpt_") && token.len() >= 36);
    assert_eq!(created.tokens[0].hint, token[..8]);

    let fetched =
        connectors.get_connector(api::GetConnectorRequest { id: created.id.clone() }).await.unwrap().into_inner();
    assert!(fetched.issued_credentials.is_empty(), "plaintext credentials are only returned once");
    assert_eq!(fetched.etag, created.etag);
    assert_eq!(fetched.perform, created.perform);

    let listed = plane.admin.list_all_connectors().await.unwrap();
    assert_eq!(listed.iter().map(|c| &c.id).collect::<Vec<_>>(), [&created.id]);

    let patch = api::Connector {
        id: created.id.clone(),
        etag: created.etag.clone(),
        display_name: "orders v2".into(),
        description: "ignored: not in the mask".into(),
        ..Default::default()
    };
    let updated = connectors
        .update_connector(api::UpdateConnectorRequest {
            connector: Some(patch.clone()),
            update_mask: mask(&["display_name"]),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.display_name, "orders v2");
    assert_eq!(updated.description, "created by a test");
    assert_ne!(updated.etag, created.etag);
    let stale = connectors
        .update_connector(api::UpdateConnectorRequest { connector: Some(patch), update_mask: mask(&["display_name"]) })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);

    let rotated = connectors
        .rotate_connector_tokens(api::RotateConnectorTokensRequest { id: created.id.clone(), grace_period: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rotated.issued_credentials.len(), 1);
    assert_ne!(&rotated.issued_credentials[0].token, token);
    assert!(rotated.tokens.iter().all(|t| t.hint != token[..8] || t.superseded));

    let disabled = connectors
        .disable_connector(api::DisableConnectorRequest { id: created.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(disabled.enabled, Some(false));
    let enabled =
        connectors.enable_connector(api::EnableConnectorRequest { id: created.id.clone() }).await.unwrap().into_inner();
    assert_eq!(enabled.enabled, Some(true));

    let wrong_etag = connectors
        .delete_connector(api::DeleteConnectorRequest { id: created.id.clone(), etag: created.etag.clone() })
        .await
        .unwrap_err();
    assert_eq!(wrong_etag.code(), Code::Aborted);
    connectors
        .delete_connector(api::DeleteConnectorRequest { id: created.id.clone(), etag: enabled.etag })
        .await
        .unwrap();
    let gone = connectors.get_connector(api::GetConnectorRequest { id: created.id.clone() }).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    plane.finish().await;
}

async fn bad_input_names_every_field_and_stores_nothing(backend: Backend) {
    let plane = TestPlane::start(backend).await;
    let mut bad = connector("");
    bad.perform = Some(api::Perform { method: "PO ST".into(), url: String::new(), ..Default::default() });
    bad.allowed_origins = vec!["not a url".into()];
    bad.sample_payload = "{not json".into();
    bad.condition = "uper($payload.status) == \"PAID\"".into();
    let err = Error::from(plane.admin.connectors().create_connector(create_connector(bad)).await.unwrap_err());
    assert_eq!(err.code(), Some(Code::InvalidArgument));
    let fields: Vec<_> = err.violations().iter().map(|v| v.field.as_str()).collect();
    for expected in
        ["connector.display_name", "connector.perform.method", "connector.perform.url", "connector.sample_payload"]
    {
        assert!(fields.contains(&expected), "{expected} missing from {fields:?}");
    }
    assert!(fields.iter().any(|f| f.starts_with("connector.allowed_origins")), "{fields:?}");

    let missing = Error::from(
        plane.admin.connectors().create_connector(api::CreateConnectorRequest::default()).await.unwrap_err(),
    );
    assert_eq!(missing.violations()[0].field, "connector");

    let mut no_auth = connector("x");
    no_auth.auth = Some(api::InboundAuth::default());
    let err = Error::from(plane.admin.connectors().create_connector(create_connector(no_auth)).await.unwrap_err());
    assert!(err.violations().iter().any(|v| v.field.starts_with("connector.auth")), "{:?}", err.violations());

    let created =
        plane.admin.connectors().create_connector(create_connector(connector("ok"))).await.unwrap().into_inner();
    let before = plane.config_version().await;
    let bad_update = api::UpdateConnectorRequest {
        connector: Some(api::Connector {
            id: created.id.clone(),
            perform: Some(api::Perform::default()),
            ..Default::default()
        }),
        update_mask: mask(&["perform", "nonsense"]),
    };
    let err = Error::from(plane.admin.connectors().update_connector(bad_update).await.unwrap_err());
    assert_eq!(err.violations()[0].field, "update_mask");
    let no_mask = api::UpdateConnectorRequest { connector: Some(created.clone()), update_mask: None };
    let err = Error::from(plane.admin.connectors().update_connector(no_mask).await.unwrap_err());
    assert_eq!(err.violations()[0].field, "update_mask");

    let stored = plane
        .admin
        .connectors()
        .get_connector(api::GetConnectorRequest { id: created.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.etag, created.etag, "rejected updates change nothing");
    assert_eq!(plane.config_version().await, before);
    assert_eq!(plane.admin.list_all_connectors().await.unwrap().len(), 1);
    plane.finish().await;
}

async fn pagination_walks_260_connectors_exactly_once(backend: Backend) {
    let plane = TestPlane::start(backend).await;
    let creates =
        (0..260).map(|i| {
            let mut client = plane.admin.connectors();
            async move {
                client.create_connector(create_connector(connector(&format!("c{i}")))).await.unwrap().into_inner().id
            }
        });
    let mut ids: Vec<String> = futures::stream::iter(creates).buffer_unordered(8).collect().await;
    ids.sort();

    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = plane
            .admin
            .connectors()
            .list_connectors(api::ListConnectorsRequest { page_size: 100, page_token: token })
            .await
            .unwrap()
            .into_inner();
        pages.push(page.connectors.len());
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(pages, [100, 100, 60]);
    let all: Vec<_> = plane.admin.list_all_connectors().await.unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(all, ids, "every connector once, ordered by id");

    let err = plane
        .admin
        .connectors()
        .list_connectors(api::ListConnectorsRequest { page_size: 10, page_token: "garbage".into() })
        .await
        .unwrap_err();
    assert_eq!(Error::from(err).violations()[0].field, "page_token");
    plane.finish().await;
}

async fn concurrent_updates_with_one_etag_let_exactly_one_win(backend: Backend) {
    let plane = TestPlane::start(backend).await;
    let created =
        plane.admin.connectors().create_connector(create_connector(connector("race"))).await.unwrap().into_inner();
    let attempts = (0..8).map(|i| {
        let mut client = plane.admin.connectors();
        let patch = api::Connector {
            id: created.id.clone(),
            etag: created.etag.clone(),
            display_name: format!("writer {i}"),
            ..Default::default()
        };
        async move {
            client
                .update_connector(api::UpdateConnectorRequest {
                    connector: Some(patch),
                    update_mask: mask(&["display_name"]),
                })
                .await
        }
    });
    let results = join_all(attempts).await;
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one writer wins");
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|s| s.code() == Code::Aborted));
    let stored =
        plane.admin.connectors().get_connector(api::GetConnectorRequest { id: created.id }).await.unwrap().into_inner();
    assert_eq!(stored.display_name, winners[0].get_ref().display_name);
    plane.finish().await;
}

async fn concurrent_masked_updates_without_etag_all_apply(backend: Backend) {
    let plane = TestPlane::start(backend).await;
    let created =
        plane.admin.connectors().create_connector(create_connector(connector("merge"))).await.unwrap().into_inner();
    let name_update = api::UpdateConnectorRequest {
        connector: Some(api::Connector {
            id: created.id.clone(),
            display_name: "renamed".into(),
            ..Default::default()
        }),
        update_mask: mask(&["display_name"]),
    };
    let description_update = api::UpdateConnectorRequest {
        connector: Some(api::Connector {
            id: created.id.clone(),
            description: "described".into(),
            ..Default::default()
        }),
        update_mask: mask(&["description"]),
    };
    let (mut a, mut b) = (plane.admin.connectors(), plane.admin.connectors());
    let (ra, rb) = tokio::join!(a.update_connector(name_update), b.update_connector(description_update));
    ra.unwrap();
    rb.unwrap();
    let stored =
        plane.admin.connectors().get_connector(api::GetConnectorRequest { id: created.id }).await.unwrap().into_inner();
    assert_eq!((stored.display_name.as_str(), stored.description.as_str()), ("renamed", "described"));
    plane.finish().await;
}

async fn request_id_makes_creates_idempotent(backend: Backend) {
    let plane = TestPlane::start(backend).await;
    let request = api::CreateConnectorRequest {
        connector: Some(connector("once")),
        request_id: "0d5e1c9a-2f9e-4a57-9a3c-6f1c2b8e7d10".into(),
    };
    let parallel = (0..4).map(|_| {
        let (mut client, request) = (plane.admin.connectors(), request.clone());
        async move { client.create_connector(request).await.unwrap().into_inner() }
    });
    let responses = join_all(parallel).await;
    assert!(responses.iter().all(|r| r == &responses[0]), "every retry gets the first response");
    assert_eq!(responses[0].issued_credentials.len(), 1, "including the minted credential");
    assert_eq!(plane.admin.list_all_connectors().await.unwrap().len(), 1);

    let mut different = request.clone();
    different.connector.as_mut().unwrap().display_name = "other".into();
    let err = plane.admin.connectors().create_connector(different).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    let bad_id = api::CreateConnectorRequest { connector: Some(connector("x")), request_id: "x".repeat(300) };
    let err = Error::from(plane.admin.connectors().create_connector(bad_id).await.unwrap_err());
    assert_eq!(err.violations()[0].field, "request_id");
    plane.finish().await;
}

async fn rotation_keeps_old_credentials_for_the_grace_period(backend: Backend) {
    let plane = TestPlane::start(backend).await;
    let mut connectors = plane.admin.connectors();
    let created = connectors.create_connector(create_connector(connector("rotate"))).await.unwrap().into_inner();
    let rotated = connectors
        .rotate_connector_tokens(api::RotateConnectorTokensRequest {
            id: created.id.clone(),
            grace_period: Some(prost_types::Duration { seconds: 3600, nanos: 0 }),
        })
        .await
        .unwrap()
        .into_inner();
    let old = rotated.tokens.iter().find(|t| t.id == created.tokens[0].id).expect("old credential kept");
    assert!(old.superseded);
    let ends = old.expire_time.as_ref().unwrap().seconds;
    let expected = chrono::Utc::now().timestamp() + 3600;
    assert!((ends - expected).abs() < 60, "old credential ends after the grace period");
    assert!(rotated.tokens.iter().any(|t| !t.superseded && t.expire_time.is_none()));

    let too_long = connectors
        .rotate_connector_tokens(api::RotateConnectorTokensRequest {
            id: created.id.clone(),
            grace_period: Some(prost_types::Duration { seconds: 31 * 24 * 3600, nanos: 0 }),
        })
        .await
        .unwrap_err();
    assert_eq!(Error::from(too_long).violations()[0].field, "grace_period");

    let immediate = connectors
        .rotate_connector_tokens(api::RotateConnectorTokensRequest { id: created.id.clone(), grace_period: None })
        .await
        .unwrap()
        .into_inner();
    let live: Vec<_> = immediate.tokens.iter().filter(|t| !t.superseded).collect();
    assert_eq!(live.len(), 1, "without grace only the new credential stays valid");
    plane.finish().await;
}

async fn enabling_an_auth_method_mints_its_credential_once(backend: Backend) {
    let plane = TestPlane::start(backend).await;
    let mut connectors = plane.admin.connectors();
    let mut spec = connector("methods");
    spec.auth.as_mut().unwrap().token_ttl = Some(prost_types::Duration { seconds: 86_400, nanos: 0 });
    let created = connectors.create_connector(create_connector(spec)).await.unwrap().into_inner();
    let update = api::UpdateConnectorRequest {
        connector: Some(api::Connector {
            id: created.id.clone(),
            auth: Some(api::InboundAuth {
                bearer_token: true,
                api_key: Some(api::ApiKeyAuth {
                    location: api::ApiKeyLocation::Header as i32,
                    name: "x-api-key".into(),
                }),
                token_ttl: Some(prost_types::Duration { seconds: 86_400, nanos: 0 }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        update_mask: mask(&["auth"]),
    };
    let updated = connectors.update_connector(update.clone()).await.unwrap().into_inner();
    let kinds: Vec<_> = updated.issued_credentials.iter().map(|c| c.kind()).collect();
    assert_eq!(kinds, [api::TokenKind::ApiKey], "only the newly enabled method gets a credential");
    let expires = updated.issued_credentials[0].expire_time.as_ref().unwrap().seconds;
    assert!((expires - chrono::Utc::now().timestamp() - 86_400).abs() < 60);
    let again = connectors.update_connector(update).await.unwrap().into_inner();
    assert!(again.issued_credentials.is_empty());
    assert_eq!(again.tokens.len(), 2);
    tokio::time::timeout(Duration::from_secs(5), plane.finish()).await.unwrap();
}

/// Credentials can end on a date (seed 000), whichever comes first with a
/// lifetime; a date that passed stops rotation, not other changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_expire_on_a_date() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let mut connectors = plane.admin.connectors();
    let at = |from_now: i64| prost_types::Timestamp { seconds: chrono::Utc::now().timestamp() + from_now, nanos: 0 };
    let with_date = |end: prost_types::Timestamp, ttl: Option<i64>| {
        let mut c = connector("dated");
        let auth = c.auth.get_or_insert_with(Default::default);
        auth.token_expire_time = Some(end);
        auth.token_ttl = ttl.map(|seconds| prost_types::Duration { seconds, nanos: 0 });
        create_connector(c)
    };
    let created = connectors.create_connector(with_date(at(86_400), None)).await.unwrap().into_inner();
    assert_eq!(created.auth.as_ref().unwrap().token_expire_time, Some(at(86_400)));
    assert_eq!(created.issued_credentials[0].expire_time, Some(at(86_400)));
    let sooner = connectors.create_connector(with_date(at(86_400), Some(3600))).await.unwrap().into_inner();
    let expires = sooner.issued_credentials[0].expire_time.unwrap().seconds;
    assert!((expires - at(3600).seconds).abs() <= 2, "the lifetime ends first");

    let err = connectors.create_connector(with_date(at(-60), None)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(Error::from(err).violations()[0].field, "connector.auth.token_expire_time");

    // A date about to pass: once it has, rotating is refused, renaming not.
    let brief = connectors.create_connector(with_date(at(2), None)).await.unwrap().into_inner();
    support::eventually(Duration::from_secs(10), "rotation refused once the date passed", || {
        let (mut connectors, id) = (plane.admin.connectors(), brief.id.clone());
        async move {
            let rotate = api::RotateConnectorTokensRequest { id, grace_period: None };
            let refused = connectors.rotate_connector_tokens(rotate).await.err().map(|status| status.code());
            (refused == Some(Code::FailedPrecondition)).then_some(())
        }
    })
    .await;
    let patch = api::Connector { id: brief.id.clone(), display_name: "renamed".into(), ..Default::default() };
    let rename = api::UpdateConnectorRequest { connector: Some(patch), update_mask: mask(&["display_name"]) };
    assert_eq!(connectors.update_connector(rename).await.unwrap().into_inner().display_name, "renamed");
    plane.finish().await;
}

/// `update_mask` names nested fields too (AIP-134): `perform.url` changes
/// the URL and nothing else of the perform.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_mask_paths_change_one_field() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let mut connectors = plane.admin.connectors();
    let created = connectors.create_connector(create_connector(connector("nested"))).await.unwrap().into_inner();
    let before = created.perform.clone().unwrap();
    let patch = api::Connector {
        id: created.id.clone(),
        perform: Some(api::Perform { url: "https://new.example.com/in".into(), ..Default::default() }),
        ..Default::default()
    };
    let update = api::UpdateConnectorRequest { connector: Some(patch.clone()), update_mask: mask(&["perform.url"]) };
    let updated = connectors.update_connector(update).await.unwrap().into_inner();
    let after = updated.perform.unwrap();
    assert_eq!(after.url, "https://new.example.com/in");
    assert_eq!(api::Perform { url: before.url.clone(), ..after }, before, "the rest of the perform is kept");

    for (path, why) in [("perform.urll", "not a field"), ("mappings.name", "cannot be crossed")] {
        let update = api::UpdateConnectorRequest { connector: Some(patch.clone()), update_mask: mask(&[path]) };
        let err = Error::from(connectors.update_connector(update).await.unwrap_err());
        assert_eq!(err.violations()[0].field, "update_mask", "{path}");
        assert!(err.violations()[0].description.contains(why), "{path}: {:?}", err.violations());
    }
    plane.finish().await;
}

/// Get and List say how far a connector's last change has reached the
/// fleet, so a client can wait until it is live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_show_their_rollout() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let mut connectors = plane.admin.connectors();
    let created = connectors.create_connector(create_connector(connector("rolled"))).await.unwrap().into_inner();
    let get = api::GetConnectorRequest { id: created.id.clone() };
    let alone = connectors.get_connector(get.clone()).await.unwrap().into_inner().rollout.unwrap();
    assert!(alone.config_version > 0);
    assert_eq!((alone.nodes_applied, alone.nodes_connected), (0, 0), "no node yet");

    let node = support::nodes::start_node(&plane.url(), "node-1", None).await;
    let live = support::eventually(Duration::from_secs(10), "the node has the connector", || {
        let (mut connectors, get) = (plane.admin.connectors(), get.clone());
        async move {
            let rollout = connectors.get_connector(get).await.ok()?.into_inner().rollout?;
            (rollout.nodes_connected == 1 && rollout.nodes_applied == 1).then_some(rollout)
        }
    })
    .await;
    assert_eq!(live.config_version, alone.config_version);
    let listed = connectors.list_connectors(api::ListConnectorsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.connectors[0].rollout, Some(live));
    node.shutdown().await;
    plane.finish().await;
}
