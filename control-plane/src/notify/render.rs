//! The words of each notification mail, from its platform event's data.

use hookplane_model::PlatformEventType;
use serde_json::Value;

/// A mail's subject and plain-text body; `None` for events no mail is
/// written for, or whose data lacks what the mail says.
pub fn render(event_type: PlatformEventType, data: &str) -> Option<(String, String)> {
    let data: Value = serde_json::from_str(data).ok()?;
    let text = |path: &[&str]| -> Option<String> {
        let mut value = &data;
        for key in path {
            value = value.get(*key)?;
        }
        value.as_str().map(str::to_owned)
    };
    match event_type {
        PlatformEventType::ConnectorTokenExpiring => {
            let connector = text(&["connector", "id"])?;
            let name = text(&["connector", "display_name"]).unwrap_or_default();
            let hint = text(&["token", "hint"])?;
            let expires = text(&["token", "expire_time"])?;
            let subject = format!("[hookplane] A credential of connector \"{name}\" expires {expires}");
            let body = format!(
                "A credential of connector \"{name}\" ({connector}) expires at {expires}: {hint}…\n\n\
                 After that, senders using it are refused (401). Rotate the connector's credentials \
                 (RotateConnectorTokens, with a grace period) and give senders the new one before then.\n"
            );
            Some((subject, body))
        }
        PlatformEventType::CircuitOpened => {
            let target = text(&["circuit", "target"])?;
            let connector = text(&["circuit", "connector_id"])?;
            let time = text(&["circuit", "time"]).unwrap_or_default();
            let subject = format!("[hookplane] Circuit opened for {target}");
            let body = format!(
                "The circuit breaker for {target} opened at {time}, after calls of connector {connector} to it \
                 failed.\n\nWhile it is open, calls to this target are refused at once (their events say \
                 `circuit_open`); after its cooldown one call probes the target, and the circuit closes when \
                 that call succeeds. Check that the target is up and answering.\n"
            );
            Some((subject, body))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mailed_event_has_its_words() {
        let expiring = r#"{"connector":{"id":"con_1","display_name":"orders"},"token":{"id":"tok_1","kind":"bearer","hint":"hpt_AbCd","expire_time":"2026-12-01T00:00:00Z"}}"#;
        let (subject, body) = render(PlatformEventType::ConnectorTokenExpiring, expiring).unwrap();
        assert_eq!(subject, "[hookplane] A credential of connector \"orders\" expires 2026-12-01T00:00:00Z");
        assert!(body.contains("con_1") && body.contains("hpt_AbCd"));
        let opened =
            r#"{"circuit":{"target":"https://api.example.com/in","state":"open","connector_id":"con_2","time":"t"}}"#;
        let (subject, body) = render(PlatformEventType::CircuitOpened, opened).unwrap();
        assert_eq!(subject, "[hookplane] Circuit opened for https://api.example.com/in");
        assert!(body.contains("con_2"));
        assert_eq!(render(PlatformEventType::CircuitClosed, opened), None);
        assert_eq!(render(PlatformEventType::CircuitOpened, "{}"), None);
    }
}
