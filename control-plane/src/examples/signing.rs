//! The signature half of an integration example: how each scheme signs a
//! call (`Signing`, from the connector's settings) and the code computing
//! it in each language. Owner-chosen values (header names, prefixes) go
//! into the shell through `shell_word`, as the rest of the example does.

use hookplane_model::{SignatureAlgorithm, SignatureEncoding, SignaturePreset, SignatureSettings};

use super::{SIGNING_SECRET_ENV, Word, quoted, shell_word};

/// What the signed message is made of.
#[derive(Clone, Copy)]
enum Message {
    Body,
    TimestampDotBody,
    /// Slack: `v0:{ts}:{body}`.
    SlackV0,
    /// Standard Webhooks: `{id}.{ts}.{body}`.
    IdTimestampBody,
}

/// How to sign a call the way the connector verifies it.
pub(super) struct Signing {
    algorithm: &'static str,
    encoding: SignatureEncoding,
    /// Standard Webhooks: the key is the base64 after `whsec_`.
    base64_key: bool,
    message: Message,
    header: String,
    prefix: String,
    timestamp_header: Option<String>,
    /// Stripe: `t={ts},v1={signature}`.
    stripe: bool,
    id_header: Option<&'static str>,
}

impl Signing {
    pub(super) fn of(settings: &SignatureSettings) -> Signing {
        let preset = settings.preset;
        let message = match preset {
            SignaturePreset::Slack => Message::SlackV0,
            SignaturePreset::StandardWebhooks => Message::IdTimestampBody,
            SignaturePreset::Stripe => Message::TimestampDotBody,
            _ if settings.timestamp_header.is_some() => Message::TimestampDotBody,
            _ => Message::Body,
        };
        Signing {
            algorithm: match settings.algorithm {
                SignatureAlgorithm::Sha256 => "sha256",
                SignatureAlgorithm::Sha1 => "sha1",
                SignatureAlgorithm::Sha512 => "sha512",
                SignatureAlgorithm::Md5 => "md5",
            },
            encoding: settings.encoding,
            base64_key: preset == SignaturePreset::StandardWebhooks,
            message,
            header: settings.header.clone(),
            prefix: settings.prefix.clone(),
            timestamp_header: settings.timestamp_header.clone(),
            stripe: preset == SignaturePreset::Stripe,
            id_header: preset.id_header(),
        }
    }

    fn uses_timestamp(&self) -> bool {
        !matches!(self.message, Message::Body)
    }
}

/// bash: sets `SIG` (and `TS`, `ID`) and adds the signature headers.
pub(super) fn curl_signature(signing: &Signing, args: &mut Vec<String>) -> Vec<String> {
    let mut lines = Vec::new();
    if signing.uses_timestamp() {
        lines.push("TS=$(date +%s)".into());
    }
    if signing.id_header.is_some() {
        lines.push("ID=\"msg_$(date +%s%N)\"".into());
    }
    let message = match signing.message {
        Message::Body => "$BODY",
        Message::TimestampDotBody => "$TS.$BODY",
        Message::SlackV0 => "v0:$TS:$BODY",
        Message::IdTimestampBody => "$ID.$TS.$BODY",
    };
    let key = if signing.base64_key {
        format!(
            "-mac HMAC -macopt hexkey:\"$(printf '%s' \"${{{SIGNING_SECRET_ENV}#whsec_}}\" | base64 -d | od -An -v -tx1 | tr -d ' \\n')\""
        )
    } else {
        format!("-hmac \"${SIGNING_SECRET_ENV}\"")
    };
    let encode = match signing.encoding {
        SignatureEncoding::Hex => "od -An -v -tx1 | tr -d ' \\n'",
        SignatureEncoding::Base64 => "base64 | tr -d '\\n'",
        SignatureEncoding::Base64Url => "base64 | tr -d '\\n=' | tr '+/' '-_'",
    };
    lines.push(format!(
        "SIG=$(printf '%s' \"{message}\" | openssl dgst -{} {key} -binary | {encode})",
        signing.algorithm
    ));
    let header = &signing.header;
    let value = if signing.stripe {
        shell_word(&[
            Word::Text(format!("{header}: t=")),
            Word::Var("TS".into()),
            Word::Text(",v1=".into()),
            Word::Var("SIG".into()),
        ])
    } else {
        shell_word(&[Word::Text(format!("{header}: {}", signing.prefix)), Word::Var("SIG".into())])
    };
    args.push(format!("-H {value}"));
    if let Some(header) = &signing.timestamp_header {
        args.push(format!("-H {}", shell_word(&[Word::Text(format!("{header}: ")), Word::Var("TS".into())])));
    }
    if let Some(header) = signing.id_header {
        args.push(format!("-H {}", shell_word(&[Word::Text(format!("{header}: ")), Word::Var("ID".into())])));
    }
    lines
}

pub(super) fn javascript_signature(signing: &Signing) -> Vec<String> {
    let mut lines = Vec::new();
    if signing.uses_timestamp() {
        lines.push("const timestamp = Math.floor(Date.now() / 1000).toString();".into());
    }
    if signing.id_header.is_some() {
        lines.push("const id = `msg_${crypto.randomUUID()}`;".into());
    }
    lines.push(if signing.base64_key {
        format!("const key = Buffer.from(process.env.{SIGNING_SECRET_ENV}.replace(/^whsec_/, \"\"), \"base64\");")
    } else {
        format!("const key = process.env.{SIGNING_SECRET_ENV};")
    });
    let message = match signing.message {
        Message::Body => "body",
        Message::TimestampDotBody => "`${timestamp}.${body}`",
        Message::SlackV0 => "`v0:${timestamp}:${body}`",
        Message::IdTimestampBody => "`${id}.${timestamp}.${body}`",
    };
    let digest = match signing.encoding {
        SignatureEncoding::Hex => "hex",
        SignatureEncoding::Base64 => "base64",
        SignatureEncoding::Base64Url => "base64url",
    };
    lines.push(format!(
        "const signature = crypto.createHmac({}, key).update({message}).digest({});",
        quoted(signing.algorithm),
        quoted(digest)
    ));
    let value = if signing.stripe {
        "`t=${timestamp},v1=${signature}`".to_owned()
    } else {
        format!("{} + signature", quoted(&signing.prefix))
    };
    lines.push(format!("headers[{}] = {value};", quoted(&signing.header)));
    if let Some(header) = &signing.timestamp_header {
        lines.push(format!("headers[{}] = timestamp;", quoted(header)));
    }
    if let Some(header) = signing.id_header {
        lines.push(format!("headers[{}] = id;", quoted(header)));
    }
    lines
}

pub(super) fn python_signature(signing: &Signing) -> Vec<String> {
    let mut lines = Vec::new();
    if signing.uses_timestamp() {
        lines.push("timestamp = str(int(time.time()))".into());
    }
    if signing.id_header.is_some() {
        lines.push("delivery_id = f\"msg_{uuid.uuid4().hex}\"".into());
    }
    lines.push(format!("secret = os.environ[{}]", quoted(SIGNING_SECRET_ENV)));
    if signing.base64_key {
        lines.push("secret = secret.removeprefix(\"whsec_\")".into());
        lines.push("key = base64.b64decode(secret + \"=\" * (-len(secret) % 4))".into());
    } else {
        lines.push("key = secret.encode()".into());
    }
    let message = match signing.message {
        Message::Body => "body",
        Message::TimestampDotBody => "f\"{timestamp}.{body}\"",
        Message::SlackV0 => "f\"v0:{timestamp}:{body}\"",
        Message::IdTimestampBody => "f\"{delivery_id}.{timestamp}.{body}\"",
    };
    lines.push(format!("digest = hmac.new(key, {message}.encode(), hashlib.{}).digest()", signing.algorithm));
    lines.push(
        match signing.encoding {
            SignatureEncoding::Hex => "signature = digest.hex()",
            SignatureEncoding::Base64 => "signature = base64.b64encode(digest).decode()",
            SignatureEncoding::Base64Url => "signature = base64.urlsafe_b64encode(digest).decode().rstrip(\"=\")",
        }
        .into(),
    );
    let value = if signing.stripe {
        "f\"t={timestamp},v1={signature}\"".to_owned()
    } else {
        format!("{} + signature", quoted(&signing.prefix))
    };
    lines.push(format!("headers[{}] = {value}", quoted(&signing.header)));
    if let Some(header) = &signing.timestamp_header {
        lines.push(format!("headers[{}] = timestamp", quoted(header)));
    }
    if let Some(header) = signing.id_header {
        lines.push(format!("headers[{}] = delivery_id", quoted(header)));
    }
    lines
}
