//! Integration examples (SPEC §10): code that calls a connector's trigger
//! URL, per configured authentication method, in cURL (bash + openssl),
//! JavaScript (Node 18+ `fetch`) and Python (`requests`), with the
//! connector's signature computed in the code when it has one (with its
//! timestamp and delivery id where its scheme signs them).
//!
//! Credentials minted by the call that asks (create, rotate) are written
//! inline; otherwise an environment variable stands in, and the example
//! lists it. Signing secrets are never written: the sender holds them.
//! Every example is run for real by the test suite.

mod signing;

use hookplane_model::{ApiKeyLocation, ConnectorSpec, IntegrationExample, IssuedCredential, TokenKind};
use signing::{Signing, curl_signature, javascript_signature, python_signature};

/// The signing secret's variable.
const SIGNING_SECRET_ENV: &str = "HOOKPLANE_SIGNING_SECRET";

/// A credential the code sends: a variable or, freshly minted, inline.
#[derive(Clone)]
enum Value {
    Env(String),
    Literal(String),
}

/// How the call authenticates.
enum Auth {
    Bearer(Value),
    SecretToken(Value),
    ApiKeyHeader(String, Value),
    ApiKeyQuery(String, Value),
    Basic(String, Value),
    Headers(Vec<(String, Value)>),
    /// The signature alone authenticates.
    None,
}

/// Every example for `spec` at `trigger_url`; `issued` are the
/// credentials minted by this call, written inline.
pub fn integration_examples(
    spec: &ConnectorSpec,
    trigger_url: &str,
    issued: &[IssuedCredential],
) -> Vec<IntegrationExample> {
    let credential = |kind: TokenKind, env: &str| {
        issued
            .iter()
            .find(|c| c.kind == kind)
            .map_or_else(|| Value::Env(env.to_owned()), |c| Value::Literal(c.token.clone()))
    };
    let auth = &spec.auth;
    let mut methods: Vec<(&str, Auth)> = Vec::new();
    if auth.bearer_token {
        methods.push(("bearer_token", Auth::Bearer(credential(TokenKind::Bearer, "HOOKPLANE_TOKEN"))));
    }
    if auth.secret_token {
        let value = credential(TokenKind::SecretToken, "HOOKPLANE_SECRET_TOKEN");
        methods.push(("secret_token", Auth::SecretToken(value)));
    }
    if let Some(api_key) = &auth.api_key {
        let value = credential(TokenKind::ApiKey, "HOOKPLANE_TRIGGER_API_KEY");
        methods.push(match api_key.location {
            ApiKeyLocation::Header => ("api_key", Auth::ApiKeyHeader(api_key.name.clone(), value)),
            ApiKeyLocation::Query => ("api_key", Auth::ApiKeyQuery(api_key.name.clone(), value)),
        });
    }
    if let Some(basic) = &auth.basic {
        let value = credential(TokenKind::BasicPassword, "HOOKPLANE_BASIC_PASSWORD");
        methods.push(("basic", Auth::Basic(basic.username.clone(), value)));
    }
    if !auth.custom_headers.is_empty() {
        // Their values are stored as hashes: the sender knows them.
        let headers = auth
            .custom_headers
            .iter()
            .enumerate()
            .map(|(i, h)| (h.name.clone(), Value::Env(format!("HOOKPLANE_HEADER_{}", i + 1))))
            .collect();
        methods.push(("custom_headers", Auth::Headers(headers)));
    }
    let signing = spec.signature.as_deref().map(Signing::of);
    if methods.is_empty() && signing.is_some() {
        methods.push(("signature", Auth::None));
    }
    let body = spec.sample_payload.as_deref().map_or_else(|| "{}".to_owned(), compact);
    let mut examples = Vec::new();
    for (method, auth) in &methods {
        let call = Call { url: trigger_url, body: &body, auth, signing: signing.as_ref() };
        for (language, code) in [("curl", call.curl()), ("javascript", call.javascript()), ("python", call.python())] {
            examples.push(IntegrationExample {
                auth_method: (*method).to_owned(),
                language: language.to_owned(),
                code,
                environment: call.environment(),
            });
        }
    }
    examples
}

/// The sample payload on one line (it is a JSON text when stored).
fn compact(payload: &str) -> String {
    serde_json::from_str::<serde_json::Value>(payload).map_or_else(|_| payload.to_owned(), |v| v.to_string())
}

/// One call to render in each language.
struct Call<'a> {
    url: &'a str,
    body: &'a str,
    auth: &'a Auth,
    signing: Option<&'a Signing>,
}

/// A string literal valid in JavaScript and Python alike.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// A bash word in single quotes.
fn shell_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A part of one shell word: text taken literally, or a variable.
enum Word {
    Text(String),
    Var(String),
}

/// One shell word of `parts`: text single-quoted, variables double-quoted
/// (`'Authorization: Bearer '"${HOOKPLANE_TOKEN}"`).
fn shell_word(parts: &[Word]) -> String {
    parts
        .iter()
        .map(|part| match part {
            Word::Text(text) => shell_quoted(text),
            Word::Var(name) => format!("\"${{{name}}}\""),
        })
        .collect()
}

/// `prefix` and a rendered credential as one JavaScript or Python
/// expression.
fn concat(prefix: &str, credential: String) -> String {
    if prefix.is_empty() { credential } else { format!("{} + {credential}", quoted(prefix)) }
}

impl Call<'_> {
    fn environment(&self) -> Vec<String> {
        let mut names = Vec::new();
        let mut add = |value: &Value| {
            if let Value::Env(name) = value {
                names.push(name.clone());
            }
        };
        match self.auth {
            Auth::Bearer(v) | Auth::SecretToken(v) | Auth::ApiKeyHeader(_, v) | Auth::ApiKeyQuery(_, v) => add(v),
            Auth::Basic(_, v) => add(v),
            Auth::Headers(headers) => headers.iter().for_each(|(_, v)| add(v)),
            Auth::None => {}
        }
        if self.signing.is_some() {
            names.push(SIGNING_SECRET_ENV.to_owned());
        }
        names
    }

    /// The URL with an API key in its query, when that is the method.
    fn query(&self) -> Option<(&str, &Value)> {
        match self.auth {
            Auth::ApiKeyQuery(name, value) => Some((name, value)),
            _ => None,
        }
    }

    /// Headers carrying credentials: name, the text before the credential,
    /// and the credential.
    fn credential_headers(&self) -> Vec<(&str, &'static str, &Value)> {
        match self.auth {
            Auth::Bearer(v) => vec![("Authorization", "Bearer ", v)],
            Auth::SecretToken(v) => vec![("X-Secret-Token", "", v)],
            Auth::ApiKeyHeader(name, v) => vec![(name.as_str(), "", v)],
            Auth::Headers(headers) => headers.iter().map(|(name, v)| (name.as_str(), "", v)).collect(),
            Auth::ApiKeyQuery(..) | Auth::Basic(..) | Auth::None => Vec::new(),
        }
    }

    /// Every value a connector's owner chose (names, prefixes, the
    /// username, the URL) goes into the shell single-quoted, and variables
    /// double-quoted: the code runs what it shows, whatever those hold.
    fn curl(&self) -> String {
        let part = |v: &Value| match v {
            Value::Env(name) => Word::Var(name.clone()),
            Value::Literal(token) => Word::Text(token.clone()),
        };
        let mut lines = vec!["#!/usr/bin/env bash".to_owned(), "set -euo pipefail".to_owned()];
        let url = match self.query() {
            Some((name, value)) => {
                let name: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
                shell_word(&[Word::Text(format!("{}?{name}=", self.url)), part(value)])
            }
            None => shell_quoted(self.url),
        };
        lines.push(format!("URL={url}"));
        lines.push(format!("BODY={}", shell_quoted(self.body)));
        let mut args = vec!["-H 'Content-Type: application/json'".to_owned()];
        for (name, prefix, value) in self.credential_headers() {
            args.push(format!("-H {}", shell_word(&[Word::Text(format!("{name}: {prefix}")), part(value)])));
        }
        if let Auth::Basic(username, value) = self.auth {
            args.push(format!("-u {}", shell_word(&[Word::Text(format!("{username}:")), part(value)])));
        }
        if let Some(signing) = self.signing {
            lines.extend(curl_signature(signing, &mut args));
        }
        lines.push(format!("curl -sS --fail-with-body -X POST \"$URL\" {} --data-binary \"$BODY\"", args.join(" ")));
        lines.join("\n") + "\n"
    }

    fn javascript(&self) -> String {
        let render = |v: &Value| match v {
            Value::Env(name) => format!("process.env.{name}"),
            Value::Literal(token) => quoted(token),
        };
        let mut lines = vec!["// Node 18 or later: node example.js".to_owned()];
        if self.signing.is_some() {
            lines.push("const crypto = require(\"node:crypto\");".into());
        }
        match self.query() {
            Some((name, value)) => {
                lines.push(format!("const url = new URL({});", quoted(self.url)));
                lines.push(format!("url.searchParams.set({}, {});", quoted(name), render(value)));
            }
            None => lines.push(format!("const url = {};", quoted(self.url))),
        }
        lines.push(format!("const body = {};", quoted(self.body)));
        lines.push("const headers = { \"Content-Type\": \"application/json\" };".into());
        for (name, prefix, value) in self.credential_headers() {
            lines.push(format!("headers[{}] = {};", quoted(name), concat(prefix, render(value))));
        }
        if let Auth::Basic(username, value) = self.auth {
            lines.push(format!(
                "headers[\"Authorization\"] = \"Basic \" + Buffer.from({} + \":\" + {}).toString(\"base64\");",
                quoted(username),
                render(value)
            ));
        }
        if let Some(signing) = self.signing {
            lines.extend(javascript_signature(signing));
        }
        lines.push("fetch(url, { method: \"POST\", headers, body }).then(async (response) => {".into());
        lines.push("  console.log(response.status, await response.text());".into());
        lines.push("  if (!response.ok) process.exitCode = 1;".into());
        lines.push("});".into());
        lines.join("\n") + "\n"
    }

    fn python(&self) -> String {
        let render = |v: &Value| match v {
            Value::Env(name) => format!("os.environ[{}]", quoted(name)),
            Value::Literal(token) => quoted(token),
        };
        let mut lines = vec!["# pip install requests".to_owned()];
        lines.push(if self.signing.is_some() {
            "import base64, hashlib, hmac, os, time, uuid".into()
        } else {
            "import os".into()
        });
        lines.push("import requests".into());
        lines.push(String::new());
        lines.push(format!("url = {}", quoted(self.url)));
        lines.push(format!("body = {}", quoted(self.body)));
        lines.push("headers = {\"Content-Type\": \"application/json\"}".into());
        for (name, prefix, value) in self.credential_headers() {
            lines.push(format!("headers[{}] = {}", quoted(name), concat(prefix, render(value))));
        }
        let mut extra = String::new();
        if let Some((name, value)) = self.query() {
            extra.push_str(&format!(", params={{{}: {}}}", quoted(name), render(value)));
        }
        if let Auth::Basic(username, value) = self.auth {
            extra.push_str(&format!(", auth=({}, {})", quoted(username), render(value)));
        }
        if let Some(signing) = self.signing {
            lines.extend(python_signature(signing));
        }
        lines.push(format!("response = requests.post(url, data=body.encode(), headers=headers{extra}, timeout=30)"));
        lines.push("print(response.status_code, response.text)".into());
        lines.push("response.raise_for_status()".into());
        lines.join("\n") + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values a connector's owner chose reach the shell as text, never as
    /// code: the generated script is run with `curl` replaced by a function
    /// that prints its arguments.
    #[test]
    fn owner_chosen_values_are_never_run_by_the_shell() {
        let dir = std::env::temp_dir().join(format!("hookplane-examples-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Run in `dir`, so `pw` is where a command would create its file.
        let marker = dir.join("pw");
        let hostile = "$(touch pw)`touch pw`";
        // Through the API's conversion: what an owner can really store.
        let connector = hookplane::api::v1::Connector {
            display_name: "hostile".into(),
            auth: Some(hookplane::api::v1::InboundAuth {
                basic: Some(hookplane::api::v1::BasicAuth { username: format!("u{hostile}") }),
                api_key: Some(hookplane::api::v1::ApiKeyAuth {
                    location: hookplane::api::v1::ApiKeyLocation::Query as i32,
                    name: format!("k{hostile}"),
                }),
                ..Default::default()
            }),
            signature: Some(hookplane::api::v1::SignatureSettings {
                secret: "a-signing-secret".into(),
                prefix: format!("p{hostile}"),
                ..Default::default()
            }),
            perform: Some(hookplane::api::v1::Perform { url: "https://erp.example.com/".into(), ..Default::default() }),
            ..Default::default()
        };
        let mut spec =
            hookplane_convert::connector_from_api(&connector, "connector").expect("an owner may store these");
        spec.sample_payload = Some(format!(r#"{{"note": "it's {hostile}"}}"#));
        for example in integration_examples(&spec, &format!("https://hooks.example.com/t?x={hostile}"), &[]) {
            if example.language != "curl" {
                continue;
            }
            let script = dir.join("example.sh");
            std::fs::write(&script, &example.code).unwrap();
            let output = std::process::Command::new("bash")
                .arg("-c")
                .arg(format!("curl() {{ printf '%s\\n' \"$@\"; }}; source {}", script.display()))
                .current_dir(&dir)
                .env("HOOKPLANE_BASIC_PASSWORD", "password")
                .env("HOOKPLANE_TRIGGER_API_KEY", "key")
                .env("HOOKPLANE_SIGNING_SECRET", "secret")
                .output()
                .unwrap();
            let printed = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success(), "{}\n{}", example.code, String::from_utf8_lossy(&output.stderr));
            assert!(!marker.exists(), "the shell ran an owner's value:\n{}", example.code);
            assert!(printed.contains("$(touch"), "the values arrive as text: {printed}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
