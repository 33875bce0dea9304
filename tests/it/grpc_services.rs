//! The control plane serves gRPC health and reflection, so grpcurl, Postman
//! and generated clients work without proto files.

use crate::support;

use futures::StreamExt as _;
use support::{Backend, TestPlane};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_are_served() {
    let plane = TestPlane::start(Backend::Sqlite).await;
    let channel = tonic::transport::Endpoint::from_shared(plane.url()).unwrap().connect().await.unwrap();

    let mut health = HealthClient::new(channel.clone());
    for service in ["hookplane.v1.ConnectorService", "hookplane.v1.EventService", ""] {
        let status = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(status.status(), ServingStatus::Serving, "{service:?}");
    }
    let unknown = health.check(HealthCheckRequest { service: "nope.Service".into() }).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection.server_reflection_info(futures::stream::iter([request])).await.unwrap().into_inner();
    let Some(Ok(response)) = responses.next().await else { panic!("a reflection response") };
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else { panic!("a service list") };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "hookplane.v1.ConnectorService",
        "hookplane.v1.SecretService",
        "hookplane.v1.EventService",
        "hookplane.v1.OrganizationService",
        "hookplane.v1.NodeSyncService",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    plane.finish().await;
}

/// The Rust SDK retries a call while the control plane is down and
/// answers once it is back on the same address; other codes are not
/// retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_retries_calls_while_the_control_plane_restarts() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use hookplane_sdk::{Client, RetryPolicy, api};

    let plane = TestPlane::start(Backend::Sqlite).await;
    let stopped = plane.stopped().await;
    let policy = RetryPolicy {
        max_attempts: 100,
        initial_backoff: std::time::Duration::from_millis(20),
        max_backoff: std::time::Duration::from_millis(100),
    };
    let client = Client::connect_lazy(stopped.url(), stopped.admin_key()).unwrap().with_retry_policy(policy);
    let attempts = Arc::new(AtomicU32::new(0));
    let call = tokio::spawn({
        let (client, attempts) = (client.clone(), attempts.clone());
        async move {
            client
                .retrying(|| {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    let mut connectors = client.connectors();
                    async move { connectors.list_connectors(api::ListConnectorsRequest::default()).await }
                })
                .await
        }
    });
    // The server is back only once the client has been refused.
    support::eventually(std::time::Duration::from_secs(10), "a refused attempt", || async {
        (attempts.load(Ordering::SeqCst) >= 2).then_some(())
    })
    .await;
    let plane = stopped.start_again().await;
    assert!(call.await.unwrap().is_ok(), "the call answers once the server is back");

    let unauthorized = client.with_api_key("hpk_not_a_key").unwrap();
    let before = attempts.load(Ordering::SeqCst);
    let refused = unauthorized
        .retrying(|| {
            attempts.fetch_add(1, Ordering::SeqCst);
            let mut connectors = unauthorized.connectors();
            async move { connectors.list_connectors(api::ListConnectorsRequest::default()).await }
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(tonic::Code::Unauthenticated));
    assert_eq!(attempts.load(Ordering::SeqCst), before + 1, "a refused key is not retried");
    plane.finish().await;
}
