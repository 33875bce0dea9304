//! Integration examples (SPEC §10): every snippet is run for real, with
//! `bash` + `curl` + `openssl`, `node` and `python3` + `requests`, against
//! a running node, and must be answered 200 with its event stored; for
//! bearer, API key in the query, Basic, and HMAC with a signed timestamp
//! and a preset (Standard Webhooks, whose key is base64 and which signs a
//! delivery id).

use crate::support;

use std::path::Path;
use std::process::Command;

use hookplane_sdk::api;
use support::nodes::{applied, current_version, start_dev_node};
use support::targets::{Behaviour, Target};
use support::triggers::event;
use support::{Backend, TestPlane};

const SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn connector(target: &str, auth: api::InboundAuth, signature: Option<api::SignatureSettings>) -> api::Connector {
    api::Connector {
        display_name: "examples".into(),
        auth: Some(auth),
        signature,
        sample_payload: r#"{"id": "A-17", "note": "it's \"quoted\" & spaced"}"#.into(),
        mappings: vec![api::FieldMapping { name: "id".into(), expression: "$payload.id".into() }],
        perform: Some(api::Perform {
            method: "POST".into(),
            url: target.into(),
            body_type: api::BodyType::Json as i32,
            body: vec![api::BodyField { key: "id".into(), value: "$processed.id".into(), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Runs `code` in `language` with `env`; the event id of its answer.
fn run(language: &str, code: &str, env: &[(String, String)], dir: &Path) -> i64 {
    let (file, mut command) = match language {
        "curl" => (dir.join("example.sh"), Command::new("bash")),
        "javascript" => (dir.join("example.js"), Command::new("node")),
        "python" => (dir.join("example.py"), Command::new(support::python::python())),
        other => panic!("unknown language {other}"),
    };
    std::fs::write(&file, code).unwrap();
    let output = command.arg(&file).envs(env.iter().cloned()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{language} example failed: {stdout}\n{}\n{code}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json = &stdout[stdout.find('{').unwrap_or_else(|| panic!("{language}: no answer in {stdout}"))..];
    let answer: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(answer["status"], "completed", "{language}: {answer}");
    answer["event_id"].as_i64().unwrap()
}

/// The variables a snippet reads, from what the create call issued.
fn environment(issued: &[api::IssuedCredential]) -> Vec<(String, String)> {
    let mut env = vec![("HOOKPLANE_SIGNING_SECRET".to_owned(), SIGNING_SECRET.to_owned())];
    for credential in issued {
        let name = match api::TokenKind::try_from(credential.kind).unwrap() {
            api::TokenKind::Bearer => "HOOKPLANE_TOKEN",
            api::TokenKind::ApiKey => "HOOKPLANE_TRIGGER_API_KEY",
            api::TokenKind::BasicPassword => "HOOKPLANE_BASIC_PASSWORD",
            api::TokenKind::SecretToken => "HOOKPLANE_SECRET_TOKEN",
            api::TokenKind::Unspecified => continue,
        };
        env.push((name.to_owned(), credential.token.clone()));
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_snippet_runs_and_its_event_is_stored() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let target = Target::start(Behaviour::Ok).await;
    let node = start_dev_node(&plane, "node-1").await;
    let base_url = format!("http://{}", node.http_address());
    let dir = tempfile::tempdir().unwrap();
    let query_key = api::ApiKeyAuth { location: api::ApiKeyLocation::Query as i32, name: "api_key".into() };
    let timestamped = api::SignatureSettings {
        secret: "custom-signing-secret-1".into(),
        timestamp_header: "X-Webhook-Timestamp".into(),
        encoding: api::SignatureEncoding::Base64url as i32,
        prefix: "v1=".into(),
        ..Default::default()
    };
    let standard = api::SignatureSettings {
        secret: SIGNING_SECRET.into(),
        preset: api::SignaturePreset::StandardWebhooks as i32,
        ..Default::default()
    };
    let cases = [
        ("bearer_token", api::InboundAuth { bearer_token: true, ..Default::default() }, None),
        ("api_key", api::InboundAuth { api_key: Some(query_key), ..Default::default() }, None),
        (
            "basic",
            api::InboundAuth { basic: Some(api::BasicAuth { username: "erp".into() }), ..Default::default() },
            None,
        ),
        ("bearer_token", api::InboundAuth { bearer_token: true, ..Default::default() }, Some(timestamped)),
        ("signature", api::InboundAuth::default(), Some(standard)),
    ];
    let mut connectors = plane.admin.connectors();
    for (method, auth, signature) in cases {
        let signing_secret = signature.as_ref().map(|s| s.secret.clone());
        let request = api::CreateConnectorRequest {
            connector: Some(connector(&target.url("/in"), auth, signature)),
            ..Default::default()
        };
        let created = connectors.create_connector(request).await.unwrap().into_inner();
        applied(&node, current_version(&plane).await).await;
        let mut env = environment(&created.issued_credentials);
        if let Some(secret) = signing_secret {
            env[0].1 = secret;
        }
        let examples = connectors
            .get_integration_examples(api::GetIntegrationExamplesRequest {
                id: created.id.clone(),
                base_url: base_url.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(examples.trigger_url, format!("{base_url}{}", created.trigger_path));
        let languages: Vec<&str> = examples.examples.iter().map(|e| e.language.as_str()).collect();
        assert_eq!(languages, ["curl", "javascript", "python"], "{method}");
        for example in &examples.examples {
            assert_eq!(example.auth_method, method);
            for credential in &created.issued_credentials {
                assert!(!example.code.contains(&credential.token), "only a create shows a token inline");
            }
            let event_id = run(&example.language, &example.code, &env, dir.path());
            let stored = event(&plane, event_id).await;
            assert_eq!(stored.connector_id, created.id);
        }
        // The create response's own examples carry the fresh token inline
        // and run without it in the environment.
        let inline = &created.integration_examples;
        assert_eq!(inline.len(), 3);
        for credential in &created.issued_credentials {
            assert!(inline.iter().all(|e| e.code.contains(&credential.token)));
        }
        let secret_only: Vec<(String, String)> =
            env.iter().filter(|(name, _)| name == "HOOKPLANE_SIGNING_SECRET").cloned().collect();
        let python = inline.iter().find(|e| e.language == "python").unwrap();
        // The create response does not know the node's address; point it there.
        let code = python.code.replace("https://hooks.example.com", &base_url);
        run("python", &code, &secret_only, dir.path());
    }
    assert_eq!(target.count(), 5 * 4);

    let missing = connectors
        .get_integration_examples(api::GetIntegrationExamplesRequest { id: "con_missing".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let bad = connectors
        .get_integration_examples(api::GetIntegrationExamplesRequest { id: "con_x".into(), base_url: "ftp://x".into() })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    node.shutdown().await;
    plane.finish().await;
}
