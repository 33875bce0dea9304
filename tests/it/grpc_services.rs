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
