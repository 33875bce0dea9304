//! E-mail notifications to organization admins (SPEC §8) through a real
//! SMTP server on loopback (aiosmtpd): a credential about to expire and a
//! circuit opening are mailed once each, to every admin address; without
//! SMTP they are logged.

use crate::support;

use std::time::Duration;

use hookplane_control_plane::notify::{MailSettings, SmtpTls};
use hookplane_model::CircuitTransition;
use hookplane_sdk::api;
use support::fixtures::mask;
use support::python::SmtpSink;
use support::triggers::{create, mapped_connector};
use support::{Backend, TestPlane};

const ADMINS: [&str; 2] = ["ops@acme.example", "oncall@acme.example"];

async fn set_admins(plane: &TestPlane) {
    let organization = api::Organization {
        id: plane.organization_id.clone(),
        admin_emails: ADMINS.iter().map(|a| (*a).to_owned()).collect(),
        ..Default::default()
    };
    let update =
        api::UpdateOrganizationRequest { organization: Some(organization), update_mask: mask(&["admin_emails"]) };
    plane.admin.organizations().update_organization(update).await.unwrap();
}

fn expiring_in_two_days(name: &str) -> api::Connector {
    let mut connector = mapped_connector("https://erp.example.com");
    connector.display_name = name.to_owned();
    connector.auth.as_mut().unwrap().token_ttl = Some(prost_types::Duration { seconds: 2 * 86_400, nanos: 0 });
    connector
}

fn opened(plane: &TestPlane, connector: &str) -> CircuitTransition {
    CircuitTransition {
        organization_id: plane.organization_id.clone(),
        connector_id: connector.to_owned(),
        target: "https://erp.example.com/orders".into(),
        opened: true,
        time: hookplane_model::now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_credentials_and_opened_circuits_are_mailed_once_to_every_admin() {
    let sink = SmtpSink::start();
    let mail = MailSettings {
        host: "127.0.0.1".into(),
        port: sink.port,
        tls: SmtpTls::None,
        username: None,
        password: None,
        from: "hookplane <alerts@hookplane.test>".into(),
        retry_base: Duration::from_millis(100),
    };
    let plane = TestPlane::start_mailing(Backend::Sqlite, mail).await;
    set_admins(&plane).await;
    let (connector, _) = create(&plane, expiring_in_two_days("orders")).await;
    let wait = Duration::from_secs(20);
    let expiring = sink.next(wait).await.expect("the expiring credential is mailed");
    assert_eq!(expiring["from"], "alerts@hookplane.test");
    let mut to: Vec<String> = serde_json::from_value(expiring["to"].clone()).unwrap();
    to.sort();
    assert_eq!(to, ["oncall@acme.example", "ops@acme.example"]);
    assert!(
        expiring["subject"].as_str().unwrap().starts_with("[hookplane] A credential of connector \"orders\" expires")
    );
    assert!(expiring["body"].as_str().unwrap().contains(&connector), "{expiring}");

    // A circuit opening, as a node reports it (the node's side is
    // `platform_webhooks::breaker_transitions_on_a_node_are_delivered`);
    // a closing is not mailed.
    let store = plane.control_plane.store();
    let closed = CircuitTransition { opened: false, ..opened(&plane, &connector) };
    store.record_circuit_transitions(&[opened(&plane, &connector), closed]).await.unwrap();
    let circuit = sink.next(wait).await.expect("the opened circuit is mailed");
    assert_eq!(circuit["subject"], "[hookplane] Circuit opened for https://erp.example.com/orders");
    assert!(circuit["body"].as_str().unwrap().contains(&connector));

    // Once each: the next mail is the next credential's, not a repeat.
    create(&plane, expiring_in_two_days("invoices")).await;
    let next = sink.next(wait).await.expect("the second credential is mailed");
    assert!(next["subject"].as_str().unwrap().contains("\"invoices\""), "{next}");
    assert!(sink.next(Duration::from_millis(500)).await.is_none(), "nothing mailed twice");
    plane.finish().await;
}

/// A mail server that is down when a notification is due gets it once it
/// is up: failed sends are tried again, and nothing else waits on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_is_retried_until_the_server_is_up() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mail = MailSettings {
        host: "127.0.0.1".into(),
        port,
        tls: SmtpTls::None,
        username: None,
        password: None,
        from: "alerts@hookplane.test".into(),
        retry_base: Duration::from_millis(300),
    };
    let plane = TestPlane::start_mailing(Backend::Sqlite, mail).await;
    set_admins(&plane).await;
    create(&plane, expiring_in_two_days("orders")).await;
    // The first send is refused (nothing listens); the API answers all along.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let listed = plane.admin.connectors().list_connectors(api::ListConnectorsRequest::default()).await.unwrap();
    assert_eq!(listed.into_inner().connectors.len(), 1);
    let sink = SmtpSink::start_on(port);
    let mail = sink.next(Duration::from_secs(20)).await.expect("mailed once the server is up");
    assert!(mail["subject"].as_str().unwrap().contains("\"orders\""), "{mail}");
    plane.finish().await;
}

/// Without an SMTP server, each notification is a structured log line.
#[tokio::test(flavor = "current_thread")]
async fn without_smtp_notifications_are_logged() {
    // A current-thread runtime runs the whole plane on this thread, so a
    // subscriber set for it sees the mailer's lines.
    let captured = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || Writer(writer.clone()))
        .with_ansi(false)
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .finish();
    // `tracing`'s own, not tracing-subscriber's, which would also install
    // the process-wide `log` bridge `sync_logs` installs.
    let _guard = tracing::subscriber::set_default(subscriber);
    let plane = TestPlane::start(Backend::Sqlite).await;
    set_admins(&plane).await;
    let (connector, _) = create(&plane, expiring_in_two_days("orders")).await;
    let line = support::eventually(Duration::from_secs(20), "the notification is logged", || async {
        let text = String::from_utf8_lossy(&captured.lock().unwrap()).into_owned();
        text.lines().find(|l| l.contains("notification (no SMTP server configured)")).map(str::to_owned)
    })
    .await;
    assert!(line.contains("hookplane::notification"), "{line}");
    assert!(line.contains("connector.token_expiring") && line.contains("ops@acme.example"), "{line}");
    assert!(line.contains(r#"subject="[hookplane] A credential of connector \"orders\""#), "{line}");
    let _ = connector;
    plane.finish().await;
}

struct Writer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
