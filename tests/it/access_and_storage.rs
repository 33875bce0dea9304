//! Conformance on both stores: tenancy, roles, credential hashing, secret
//! sealing, restart survival and config-version bumps.

use crate::support;

use hookplane_control_plane::store::Store;
use hookplane_convert::encode_trace;
use hookplane_model::{Event, EventFilter, EventStatus, EventTrace, InboundRequestTrace};
use hookplane_sdk::{Error, api};
use sqlx::Executor as _;
use support::fixtures::{connector, create_connector, mask, secret};
use support::{Backend, TestPlane};
use tonic::Code;

on_both_stores!(
    organizations_cannot_see_each_other,
    viewer_keys_read_but_never_write,
    callers_without_a_valid_key_are_refused,
    only_the_operator_manages_organizations_and_plans,
    credentials_are_stored_only_as_hashes,
    secrets_are_sealed_and_never_returned,
    data_survives_a_restart,
    every_config_change_bumps_the_version,
    events_stored_before_binary_traces_are_still_read,
);

async fn organizations_cannot_see_each_other(backend: Backend) {
    let plane = TestPlane::start(backend).await;
    let (_, other) = plane.new_organization("Other").await;
    let mine =
        plane.admin.connectors().create_connector(create_connector(connector("mine"))).await.unwrap().into_inner();
    plane.admin.secrets().create_secret(secret("TOKEN", "s3cret-value")).await.unwrap();

    let mut theirs = other.connectors();
    let id = mine.id.clone();
    assert_eq!(
        theirs.get_connector(api::GetConnectorRequest { id: id.clone() }).await.unwrap_err().code(),
        Code::NotFound
    );
    let update = api::UpdateConnectorRequest {
        connector: Some(api::Connector { id: id.clone(), display_name: "stolen".into(), ..Default::default() }),
        update_mask: mask(&["display_name"]),
    };
    assert_eq!(theirs.update_connector(update).await.unwrap_err().code(), Code::NotFound);
    let delete = api::DeleteConnectorRequest { id: id.clone(), etag: String::new() };
    assert_eq!(theirs.delete_connector(delete).await.unwrap_err().code(), Code::NotFound);
    let rotate = api::RotateConnectorTokensRequest { id: id.clone(), grace_period: None };
    assert_eq!(theirs.rotate_connector_tokens(rotate).await.unwrap_err().code(), Code::NotFound);
    assert!(other.list_all_connectors().await.unwrap().is_empty());
    assert!(other.list_all_secrets().await.unwrap().is_empty());
    let get_secret = other.secrets().get_secret(api::GetSecretRequest { name: "TOKEN".into() }).await.unwrap_err();
    assert_eq!(get_secret.code(), Code::NotFound);

    let org =
        other.organizations().get_organization(api::GetOrganizationRequest { id: plane.organization_id.clone() }).await;
    assert_eq!(org.unwrap_err().code(), Code::NotFound);
    let orgs = other.organizations().list_organizations(api::ListOrganizationsRequest::default()).await;
    assert_eq!(orgs.unwrap_err().code(), Code::PermissionDenied, "listing organizations is for the operator (proto)");
    let keys = other
        .api_keys()
        .list_api_keys(api::ListApiKeysRequest { organization_id: plane.organization_id.clone(), ..Default::default() })
        .await;
    assert_eq!(keys.unwrap_err().code(), Code::NotFound);

    let still = plane.admin.connectors().get_connector(api::GetConnectorRequest { id }).await.unwrap().into_inner();
    assert_eq!(still.display_name, "mine");
    plane.finish().await;
}

async fn viewer_keys_read_but_never_write(backend: Backend) {
    let plane = TestPlane::start(backend).await;
    let created =
        plane.admin.connectors().create_connector(create_connector(connector("c"))).await.unwrap().into_inner();
    let viewer = plane.key_for(&plane.organization_id, api::ApiKeyRole::Viewer).await;
    assert_eq!(viewer.list_all_connectors().await.unwrap().len(), 1);
    let mut connectors = viewer.connectors();
    connectors.get_connector(api::GetConnectorRequest { id: created.id.clone() }).await.unwrap();

    let denied = [
        connectors.create_connector(create_connector(connector("no"))).await.unwrap_err(),
        connectors
            .update_connector(api::UpdateConnectorRequest {
                connector: Some(api::Connector { id: created.id.clone(), ..Default::default() }),
                update_mask: mask(&["display_name"]),
            })
            .await
            .unwrap_err(),
        connectors.disable_connector(api::DisableConnectorRequest { id: created.id.clone() }).await.unwrap_err(),
        connectors
            .rotate_connector_tokens(api::RotateConnectorTokensRequest { id: created.id.clone(), grace_period: None })
            .await
            .unwrap_err(),
        connectors
            .delete_connector(api::DeleteConnectorRequest { id: created.id.clone(), etag: String::new() })
            .await
            .unwrap_err(),
        viewer.secrets().create_secret(secret("X", "y")).await.unwrap_err(),
        viewer
            .api_keys()
            .create_api_key(api::CreateApiKeyRequest {
                api_key: Some(api::ApiKey { role: api::ApiKeyRole::Admin as i32, ..Default::default() }),
                ..Default::default()
            })
            .await
            .unwrap_err(),
    ];
    for status in &denied {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
    let stored =
        plane.admin.connectors().get_connector(api::GetConnectorRequest { id: created.id }).await.unwrap().into_inner();
    assert_eq!(stored.etag, created.etag);
    plane.finish().await;
}

async fn callers_without_a_valid_key_are_refused(backend: Backend) {
    let plane = TestPlane::start(backend).await;
    for key in ["", "hpk_notARealKeyAtAll000000000000000000", &plane.admin_key[..plane.admin_key.len() - 1]] {
        let client = plane.admin.with_api_key(key).unwrap();
        let status = client.connectors().list_connectors(api::ListConnectorsRequest::default()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "key {key:?}");
    }
    let expired = plane
        .admin
        .api_keys()
        .create_api_key(api::CreateApiKeyRequest {
            api_key: Some(api::ApiKey {
                role: api::ApiKeyRole::Admin as i32,
                expire_time: Some(prost_types::Timestamp { seconds: chrono::Utc::now().timestamp() - 10, nanos: 0 }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(Error::from(expired).violations()[0].field, "api_key.expire_time");

    let short = plane
        .admin
        .api_keys()
        .create_api_key(api::CreateApiKeyRequest {
            api_key: Some(api::ApiKey {
                role: api::ApiKeyRole::Admin as i32,
                expire_time: Some(prost_types::Timestamp { seconds: chrono::Utc::now().timestamp() + 1, nanos: 0 }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let client = plane.admin.with_api_key(&short.key).unwrap();
    support::eventually(std::time::Duration::from_secs(5), "the short-lived key to expire", || {
        let mut connectors = client.connectors();
        async move {
            let result = connectors.list_connectors(api::ListConnectorsRequest::default()).await;
            matches!(result, Err(s) if s.code() == Code::Unauthenticated).then_some(())
        }
    })
    .await;

    let revoked = plane.key_for(&plane.organization_id, api::ApiKeyRole::Admin).await;
    let keys = plane.admin.api_keys().list_api_keys(api::ListApiKeysRequest::default()).await.unwrap().into_inner();
    assert!(keys.api_keys.iter().all(|k| k.key.is_empty()), "listed keys never carry plaintext");
    for key in keys.api_keys.iter().filter(|k| k.display_name == "test") {
        plane
            .admin
            .api_keys()
            .delete_api_key(api::DeleteApiKeyRequest { id: key.id.clone(), ..Default::default() })
            .await
            .unwrap();
    }
    let status = revoked.connectors().list_connectors(api::ListConnectorsRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    plane.finish().await;
}

async fn only_the_operator_manages_organizations_and_plans(backend: Backend) {
    let plane = TestPlane::start(backend).await;
    let create = api::CreateOrganizationRequest {
        organization: Some(api::Organization {
            display_name: "Acme".into(),
            plan: "starter".into(),
            ..Default::default()
        }),
        request_id: "acme-1".into(),
    };
    let status = plane.admin.organizations().create_organization(create.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let acme = plane.operator.organizations().create_organization(create.clone()).await.unwrap().into_inner();
    let replay = plane.operator.organizations().create_organization(create).await.unwrap().into_inner();
    assert_eq!(acme, replay);
    assert_eq!(acme.plan, "starter");

    let bad_plan = api::CreateOrganizationRequest {
        organization: Some(api::Organization {
            display_name: "X".into(),
            plan: "platinum".into(),
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let err = Error::from(plane.operator.organizations().create_organization(bad_plan).await.unwrap_err());
    assert_eq!(err.violations()[0].field, "organization.plan");

    let acme_admin = plane.key_for(&acme.id, api::ApiKeyRole::Admin).await;
    let change_plan = api::UpdateOrganizationRequest {
        organization: Some(api::Organization { id: acme.id.clone(), plan: "free".into(), ..Default::default() }),
        update_mask: mask(&["plan"]),
    };
    let status = acme_admin.organizations().update_organization(change_plan.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let renamed = acme_admin
        .organizations()
        .update_organization(api::UpdateOrganizationRequest {
            organization: Some(api::Organization {
                id: acme.id.clone(),
                display_name: "Acme Inc".into(),
                admin_emails: vec!["ops@acme.example".into()],
                ..Default::default()
            }),
            update_mask: mask(&["display_name", "admin_emails"]),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.admin_emails, ["ops@acme.example"]);
    let moved = plane.operator.organizations().update_organization(change_plan).await.unwrap().into_inner();
    assert_eq!(moved.plan, "free");

    let plans = plane.admin.plans().list_plans(api::ListPlansRequest {}).await.unwrap().into_inner();
    assert!(plans.plans.iter().any(|p| p.name == "free" && !p.retries_enabled));
    assert!(plans.plans.iter().any(|p| p.name == "starter" && p.retries_enabled));
    let raise = api::UpdatePlanRequest {
        plan: Some(api::Plan { name: "free".into(), per_ip_per_minute: 120, ..Default::default() }),
        update_mask: mask(&["per_ip_per_minute"]),
    };
    assert_eq!(plane.admin.plans().update_plan(raise.clone()).await.unwrap_err().code(), Code::PermissionDenied);
    let raised = plane.operator.plans().update_plan(raise).await.unwrap().into_inner();
    assert_eq!((raised.per_ip_per_minute, raised.per_connector_per_minute), (120, 30));
    let status = plane.operator.connectors().list_connectors(api::ListConnectorsRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "the operator key is not an organization key");
    plane.finish().await;
}

async fn credentials_are_stored_only_as_hashes(backend: Backend) {
    let plane = TestPlane::start(backend).await;
    let mut spec = connector("hashed");
    spec.auth = Some(api::InboundAuth {
        bearer_token: true,
        secret_token: true,
        basic: Some(api::BasicAuth { username: "sender".into() }),
        custom_headers: vec![api::CustomHeader { name: "X-Shared".into(), value: "custom-header-plaintext-42".into() }],
        ..Default::default()
    });
    let created = plane.admin.connectors().create_connector(create_connector(spec)).await.unwrap().into_inner();
    assert_eq!(created.issued_credentials.len(), 3);
    let returned = &created.auth.as_ref().unwrap().custom_headers[0];
    assert!(returned.value.is_empty(), "custom header values are write-only");
    let key = plane.key_for(&plane.organization_id, api::ApiKeyRole::Viewer).await;
    drop(key);

    let dump = plane.database.dump().await;
    assert!(!dump.is_empty());
    for credential in &created.issued_credentials {
        assert!(!dump.contains(&credential.token), "a {:?} credential is stored in plaintext", credential.kind());
        assert!(dump.contains(&hookplane_control_plane::crypto::hash_credential(&credential.token)));
    }
    assert!(!dump.contains(&plane.admin_key), "the admin key is stored in plaintext");
    assert!(!dump.contains("custom-header-plaintext-42"));
    plane.finish().await;
}

async fn secrets_are_sealed_and_never_returned(backend: Backend) {
    let plane = TestPlane::start(backend).await;
    let mut secrets = plane.admin.secrets();
    let created = secrets.create_secret(secret("API_TOKEN", "plaintext-secret-value-1")).await.unwrap().into_inner();
    assert!(created.value.is_empty());
    let duplicate = secrets.create_secret(secret("API_TOKEN", "x")).await.unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    let err = Error::from(secrets.create_secret(secret("bad name", "")).await.unwrap_err());
    let fields: Vec<_> = err.violations().iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, ["secret.name", "secret.value"]);

    let mut spec = connector("signed");
    spec.signature = Some(api::SignatureSettings {
        secret: "signing-secret-plaintext-2".into(),
        header: "X-Signature".into(),
        ..Default::default()
    });
    let signed = plane.admin.connectors().create_connector(create_connector(spec)).await.unwrap().into_inner();
    let settings = signed.signature.as_ref().unwrap();
    assert!(settings.secret.is_empty() && settings.secret_set);

    let updated = secrets
        .update_secret(api::UpdateSecretRequest {
            secret: Some(api::Secret {
                name: "API_TOKEN".into(),
                value: "plaintext-secret-value-2".into(),
                ..Default::default()
            }),
            update_mask: mask(&["value"]),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(updated.value.is_empty());
    assert_ne!(updated.etag, created.etag);

    let dump = plane.database.dump().await;
    for plaintext in ["plaintext-secret-value-1", "plaintext-secret-value-2", "signing-secret-plaintext-2"] {
        assert!(!dump.contains(plaintext), "{plaintext} is stored in the clear");
    }
    let stored = plane.control_plane.store().get_secret(&plane.organization_id, "API_TOKEN").await.unwrap();
    let hookplane_model::SecretField::Sealed(sealed) = &stored.value else { panic!("sealed at rest") };
    let owner = hookplane_control_plane::crypto::secret_owner(&plane.organization_id, "API_TOKEN");
    assert_eq!(&*plane.control_plane.secret_box().open_text(&owner, sealed).unwrap(), "plaintext-secret-value-2");
    let elsewhere = hookplane_control_plane::crypto::secret_owner("org_other", "API_TOKEN");
    assert!(
        plane.control_plane.secret_box().open(&elsewhere, sealed).is_err(),
        "sealed values are bound to their owner"
    );

    secrets.delete_secret(api::DeleteSecretRequest { name: "API_TOKEN".into(), etag: String::new() }).await.unwrap();
    let gone = secrets.get_secret(api::GetSecretRequest { name: "API_TOKEN".into() }).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    plane.finish().await;
}

async fn data_survives_a_restart(backend: Backend) {
    let plane = TestPlane::start(backend).await;
    let created =
        plane.admin.connectors().create_connector(create_connector(connector("durable"))).await.unwrap().into_inner();
    plane.admin.secrets().create_secret(secret("KEPT", "kept-value")).await.unwrap();
    let version = plane.config_version().await;

    let plane = plane.restart().await;
    let fetched = plane
        .admin
        .connectors()
        .get_connector(api::GetConnectorRequest { id: created.id.clone() })
        .await
        .unwrap()
        .into_inner();
    let mut expected = created.clone();
    expected.issued_credentials.clear();
    expected.integration_examples.clear();
    // Get adds the rollout, which a create's answer does not have yet.
    expected.rollout = fetched.rollout;
    assert!(fetched.rollout.is_some_and(|r| r.config_version > 0));
    assert_eq!(fetched, expected);
    assert_eq!(plane.config_version().await, version, "versions never go backwards across restarts");
    let stored = plane.control_plane.store().get_secret(&plane.organization_id, "KEPT").await.unwrap();
    let hookplane_model::SecretField::Sealed(sealed) = &stored.value else { panic!("sealed") };
    let owner = hookplane_control_plane::crypto::secret_owner(&plane.organization_id, "KEPT");
    assert_eq!(&*plane.control_plane.secret_box().open_text(&owner, sealed).unwrap(), "kept-value");
    plane.admin.connectors().create_connector(create_connector(connector("after"))).await.unwrap();
    assert!(plane.config_version().await > version);
    plane.finish().await;
}

async fn every_config_change_bumps_the_version(backend: Backend) {
    let plane = TestPlane::start(backend).await;
    let mut connectors = plane.admin.connectors();
    let mut secrets = plane.admin.secrets();
    let mut last = plane.config_version().await;
    let mut expect_bump = async |what: &str| {
        let now = plane.config_version().await;
        assert!(now > last, "{what} did not bump the config version ({last} → {now})");
        last = now;
    };

    let c = connectors.create_connector(create_connector(connector("v"))).await.unwrap().into_inner();
    expect_bump("connector create").await;
    let update = api::UpdateConnectorRequest {
        connector: Some(api::Connector { id: c.id.clone(), display_name: "v2".into(), ..Default::default() }),
        update_mask: mask(&["display_name"]),
    };
    connectors.update_connector(update).await.unwrap();
    expect_bump("connector update").await;
    connectors.disable_connector(api::DisableConnectorRequest { id: c.id.clone() }).await.unwrap();
    expect_bump("connector disable").await;
    connectors
        .rotate_connector_tokens(api::RotateConnectorTokensRequest { id: c.id.clone(), grace_period: None })
        .await
        .unwrap();
    expect_bump("token rotation").await;
    connectors.delete_connector(api::DeleteConnectorRequest { id: c.id.clone(), etag: String::new() }).await.unwrap();
    expect_bump("connector delete").await;
    secrets.create_secret(secret("S", "v1")).await.unwrap();
    expect_bump("secret create").await;
    secrets
        .update_secret(api::UpdateSecretRequest {
            secret: Some(api::Secret { name: "S".into(), value: "v2".into(), ..Default::default() }),
            update_mask: mask(&["value"]),
        })
        .await
        .unwrap();
    expect_bump("secret update").await;
    secrets.delete_secret(api::DeleteSecretRequest { name: "S".into(), etag: String::new() }).await.unwrap();
    expect_bump("secret delete").await;
    plane
        .operator
        .plans()
        .update_plan(api::UpdatePlanRequest {
            plan: Some(api::Plan { name: "free".into(), org_per_day: 10_000, ..Default::default() }),
            update_mask: mask(&["org_per_day"]),
        })
        .await
        .unwrap();
    expect_bump("plan update").await;
    plane.set_plan("starter").await;
    expect_bump("organization plan change").await;

    let before = plane.config_version().await;
    let failed = plane.admin.connectors().create_connector(create_connector(connector(""))).await;
    assert!(failed.is_err());
    assert_eq!(plane.config_version().await, before, "rejected requests do not bump");
    plane.finish().await;
}

/// A database last migrated before traces became protobuf bytes (schema
/// version 3) keeps its events readable, JSON traces and all, beside new
/// ones; on SQLite the events table is rebuilt around its rowid.
async fn events_stored_before_binary_traces_are_still_read(backend: Backend) {
    let database = support::Database::create(backend).await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&database.url).await.unwrap();
    let mut before_v3 = sqlx::migrate!("./control-plane/migrations");
    before_v3.migrations = before_v3.iter().filter(|m| m.version < 3).cloned().collect::<Vec<_>>().into();
    before_v3.run(&pool).await.unwrap();
    let old_trace = r#"{"request":{"client_ip":"203.0.113.7","headers":{"content-type":"application/json"},"auth_method":"bearer","body_bytes":2},"payload":"{}","condition_result":false}"#;
    pool.execute(sqlx::AssertSqlSafe(format!(
        "INSERT INTO events (id, organization_id, connector_id, status, response_code, error, node_id, create_time, duration_ms, trace) \
         VALUES (7, 'org_1', 'con_1', 'skipped', NULL, '', 'node-a', 1700000000000000, 3, '{old_trace}')"
    )))
    .await
    .unwrap();
    pool.close().await;

    let store = Store::connect(&database.url).await.unwrap();
    let old = store.get_event("org_1", 7).await.unwrap();
    assert_eq!(old.status, EventStatus::Skipped);
    assert_eq!(old.trace.request.client_ip, "203.0.113.7");
    assert_eq!(old.trace.request.headers["content-type"], "application/json");
    assert_eq!(old.trace.condition_result, Some(false));
    let new = Event {
        id: 8,
        organization_id: "org_1".into(),
        connector_id: "con_1".into(),
        status: EventStatus::Completed,
        response_code: Some(200),
        error: String::new(),
        node_id: "node-a".into(),
        create_time: old.create_time,
        duration_ms: 12,
        trace: EventTrace {
            request: InboundRequestTrace { client_ip: "198.51.100.2".into(), ..Default::default() },
            payload: r#"{"quote":"\"é\""}"#.into(),
            processed: r#"{"x":1}"#.into(),
            ..Default::default()
        },
    };
    let stored = new.clone().map_trace(encode_trace);
    assert_eq!(store.insert_events(std::slice::from_ref(&stored)).await.unwrap(), vec![8]);
    assert_eq!(
        store.insert_events(std::slice::from_ref(&stored)).await.unwrap(),
        Vec::<i64>::new(),
        "a resent event is absorbed"
    );
    assert_eq!(store.get_event("org_1", 8).await.unwrap(), new);
    let listed = store.list_events("org_1", &EventFilter::default(), i64::MAX, 10).await.unwrap();
    assert_eq!(listed.iter().map(|e| e.id).collect::<Vec<_>>(), [8, 7]);
    assert_eq!(listed[1], old);
    if backend == Backend::Sqlite {
        let pool = sqlx::AnyPool::connect(&database.url).await.unwrap();
        let indexes: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(
            indexes, 3,
            "the id is the rowid: no separate key index, only the two lookup indexes and retention's by time"
        );
    }
    store.close().await;
}
