//! Config sync over TLS, and mTLS node identity instead of a node token.

use crate::support;

use std::time::Duration;

use hookplane_control_plane::ServerTls;
use hookplane_data_plane::ClientTls;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use support::fixtures::{connector, create_connector};
use support::nodes::{applied, current_version, http_get, start_node_with};
use support::{Backend, NODE_TOKEN, TestPlane, eventually};

/// A CA with a server certificate for 127.0.0.1 and a node client
/// certificate, all as PEM.
struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "hookplane test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["node-mtls".to_owned()]).unwrap();
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca).unwrap();
    Pki {
        ca: ca.pem(),
        server: (server.pem(), server_key.serialize_pem()),
        client: (client.pem(), client_key.serialize_pem()),
    }
}

fn server_tls(pki: &Pki, mtls: bool) -> ServerTls {
    ServerTls {
        cert_pem: pki.server.0.clone(),
        key_pem: pki.server.1.clone().into(),
        client_ca_pem: mtls.then(|| pki.ca.clone()),
    }
}

fn https(plane: &TestPlane) -> String {
    format!("https://{}", plane.address)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sync_over_tls_with_a_token_or_a_client_certificate() {
    let pki = pki();
    let plane = TestPlane::start_tls(Backend::Sqlite, server_tls(&pki, true), &pki.ca).await;
    let trusting = ClientTls { ca_pem: pki.ca.clone(), identity: None };
    let with_token = start_node_with(&https(&plane), "tls-token", None, NODE_TOKEN, Some(trusting)).await;
    let with_cert = ClientTls { ca_pem: pki.ca.clone(), identity: Some(pki.client.clone()) };
    let mtls = start_node_with(&https(&plane), "tls-mtls", None, "", Some(with_cert)).await;

    plane.admin.connectors().create_connector(create_connector(connector("over tls"))).await.unwrap();
    let version = current_version(&plane).await;
    applied(&with_token, version).await;
    applied(&mtls, version).await;
    assert_eq!(http_get(mtls.http_address(), "/readyz").await.0, 200);
    with_token.shutdown().await;
    mtls.shutdown().await;
    plane.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_refuse_an_untrusted_control_plane_and_need_some_credential() {
    let pki = pki();
    let other = pki_other_ca();
    let plane = TestPlane::start_tls(Backend::Sqlite, server_tls(&pki, false), &pki.ca).await;
    plane.admin.connectors().create_connector(create_connector(connector("secret config"))).await.unwrap();

    let untrusting = ClientTls { ca_pem: other, identity: None };
    let wrong_ca = start_node_with(&https(&plane), "wrong-ca", None, NODE_TOKEN, Some(untrusting)).await;
    let plaintext = start_node_with(&format!("http://{}", plane.address), "plaintext", None, NODE_TOKEN, None).await;
    let trusting = ClientTls { ca_pem: pki.ca.clone(), identity: None };
    let anonymous = start_node_with(&https(&plane), "anonymous", None, "", Some(trusting)).await;
    for node in [&wrong_ca, &plaintext, &anonymous] {
        eventually(Duration::from_secs(10), "the connection to be refused", || async {
            (node.state().sync_errors() > 0).then_some(())
        })
        .await;
        assert_eq!(node.snapshot().version, 0, "no configuration reaches the node");
        assert_eq!(http_get(node.http_address(), "/readyz").await.0, 503);
    }
    for node in [wrong_ca, plaintext, anonymous] {
        node.shutdown().await;
    }
    plane.finish().await;
}

fn pki_other_ca() -> String {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap().pem()
}
