//! Signature settings (SPEC §4 item 7): custom fields, or a preset that
//! fixes them the way its sender signs.

use hookplane::api::v1 as api;
use hookplane_model::{
    self as model, PresetFields, SecretField, SignatureAlgorithm, SignatureEncoding, SignaturePreset,
};

use super::Violations;
use super::validate::{duration_from_api, duration_to_api, is_header_name, timestamp_to_api};

const DEFAULT_HEADER: &str = "x-webhook-signature";
const DEFAULT_TOLERANCE_SECS: u64 = 300;
const MAX_TOLERANCE_MS: u64 = 3_600_000;

/// Converts signature settings; `previous` stays `None` (it is output only:
/// only a rotation sets it).
pub(super) fn signature_from_api(
    s: &api::SignatureSettings,
    prefix: &str,
    v: &mut Violations,
) -> model::SignatureSettings {
    let field = |name: &str| format!("{prefix}.{name}");
    let preset = match api::SignaturePreset::try_from(s.preset) {
        Ok(api::SignaturePreset::Unspecified | api::SignaturePreset::Custom) => SignaturePreset::Custom,
        Ok(api::SignaturePreset::Stripe) => SignaturePreset::Stripe,
        Ok(api::SignaturePreset::Github) => SignaturePreset::GitHub,
        Ok(api::SignaturePreset::Shopify) => SignaturePreset::Shopify,
        Ok(api::SignaturePreset::Slack) => SignaturePreset::Slack,
        Ok(api::SignaturePreset::StandardWebhooks) => SignaturePreset::StandardWebhooks,
        Err(_) => {
            v.add(field("preset"), "unknown preset");
            SignaturePreset::Custom
        }
    };
    let secret = if s.secret.is_empty() {
        SecretField::Absent
    } else {
        if !(8..=512).contains(&s.secret.len()) {
            v.add(field("secret"), "must be 8 to 512 bytes");
        } else if let Err(err) = preset.signing_key(&s.secret) {
            v.add(field("secret"), err.to_string());
        }
        SecretField::Plain(s.secret.clone())
    };
    let algorithm = match api::SignatureAlgorithm::try_from(s.algorithm) {
        Ok(api::SignatureAlgorithm::Unspecified) => None,
        Ok(api::SignatureAlgorithm::Sha256) => Some(SignatureAlgorithm::Sha256),
        Ok(api::SignatureAlgorithm::Sha1) => Some(SignatureAlgorithm::Sha1),
        Ok(api::SignatureAlgorithm::Sha512) => Some(SignatureAlgorithm::Sha512),
        Ok(api::SignatureAlgorithm::Md5) => Some(SignatureAlgorithm::Md5),
        Err(_) => {
            v.add(field("algorithm"), "unknown algorithm");
            None
        }
    };
    let encoding = match api::SignatureEncoding::try_from(s.encoding) {
        Ok(api::SignatureEncoding::Unspecified) => None,
        Ok(api::SignatureEncoding::Hex) => Some(SignatureEncoding::Hex),
        Ok(api::SignatureEncoding::Base64) => Some(SignatureEncoding::Base64),
        Ok(api::SignatureEncoding::Base64url) => Some(SignatureEncoding::Base64Url),
        Err(_) => {
            v.add(field("encoding"), "unknown encoding");
            None
        }
    };
    let header = header_name(&s.header, &field("header"), v);
    let timestamp_header = header_name(&s.timestamp_header, &field("timestamp_header"), v);
    if s.prefix.len() > 64 {
        v.add(field("prefix"), "must be at most 64 characters");
    }
    let timestamp_tolerance_secs = match s.timestamp_tolerance.as_ref() {
        None => DEFAULT_TOLERANCE_SECS,
        Some(d) => match duration_from_api(d, &field("timestamp_tolerance"), MAX_TOLERANCE_MS, v) {
            Some(0) => {
                v.add(field("timestamp_tolerance"), "must be at least 1 second (unset: 5 minutes)");
                DEFAULT_TOLERANCE_SECS
            }
            ms => ms.map_or(DEFAULT_TOLERANCE_SECS, |ms| ms.div_ceil(1000)),
        },
    };
    let chosen = Chosen { algorithm, encoding, header, prefix: &s.prefix, timestamp_header };
    let (algorithm, encoding, header, prefix, timestamp_header) = match preset.fields() {
        None => (
            algorithm.unwrap_or(SignatureAlgorithm::Sha256),
            encoding.unwrap_or(SignatureEncoding::Hex),
            chosen.header.unwrap_or_else(|| DEFAULT_HEADER.to_owned()),
            s.prefix.clone(),
            chosen.timestamp_header,
        ),
        Some(fixed) => {
            chosen.refuse_conflicts(preset, fixed, &field, v);
            (
                fixed.algorithm,
                fixed.encoding,
                fixed.header.to_owned(),
                fixed.prefix.to_owned(),
                fixed.timestamp_header.map(str::to_owned),
            )
        }
    };
    model::SignatureSettings {
        preset,
        secret,
        previous: None,
        algorithm,
        encoding,
        header,
        prefix,
        timestamp_header,
        timestamp_tolerance_secs,
    }
}

/// The fields as the caller set them (`None`: left unset).
struct Chosen<'a> {
    algorithm: Option<SignatureAlgorithm>,
    encoding: Option<SignatureEncoding>,
    header: Option<String>,
    prefix: &'a str,
    timestamp_header: Option<String>,
}

impl Chosen<'_> {
    /// A field set to anything but what the preset fixes is an error; the
    /// same value is not, so a connector read back can be sent back.
    fn refuse_conflicts(
        &self,
        preset: SignaturePreset,
        fixed: PresetFields,
        field: &dyn Fn(&str) -> String,
        v: &mut Violations,
    ) {
        let name = preset.name();
        let mut conflict = |path: &str, fixed: &str| {
            v.add(field(path), format!("is fixed by the `{name}` preset ({fixed}); leave it unset or choose `custom`"));
        };
        if self.algorithm.is_some_and(|a| a != fixed.algorithm) {
            conflict("algorithm", "SHA-256");
        }
        if self.encoding.is_some_and(|e| e != fixed.encoding) {
            conflict("encoding", if fixed.encoding == SignatureEncoding::Hex { "hex" } else { "base64" });
        }
        if self.header.as_deref().is_some_and(|h| h != fixed.header) {
            conflict("header", &format!("`{}`", fixed.header));
        }
        if !self.prefix.is_empty() && self.prefix != fixed.prefix {
            conflict("prefix", &format!("`{}`", fixed.prefix));
        }
        if self.timestamp_header.as_deref().is_some_and(|h| Some(h) != fixed.timestamp_header) {
            match fixed.timestamp_header {
                Some(header) => conflict("timestamp_header", &format!("`{header}`")),
                None if preset.signs_timestamp() => conflict("timestamp_header", "inside the signature header"),
                None => conflict("timestamp_header", "none: the sender signs no timestamp"),
            }
        }
    }
}

/// A header name as given (trimmed, lowercased), or `None` when empty.
fn header_name(name: &str, field: &str, v: &mut Violations) -> Option<String> {
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    if !is_header_name(name) {
        v.add(field, "must be a valid header name");
    }
    Some(name.to_ascii_lowercase())
}

pub(super) fn signature_to_api(s: &model::SignatureSettings) -> api::SignatureSettings {
    api::SignatureSettings {
        secret: String::new(),
        secret_set: s.secret.is_set(),
        algorithm: match s.algorithm {
            SignatureAlgorithm::Sha256 => api::SignatureAlgorithm::Sha256,
            SignatureAlgorithm::Sha1 => api::SignatureAlgorithm::Sha1,
            SignatureAlgorithm::Sha512 => api::SignatureAlgorithm::Sha512,
            SignatureAlgorithm::Md5 => api::SignatureAlgorithm::Md5,
        } as i32,
        encoding: match s.encoding {
            SignatureEncoding::Hex => api::SignatureEncoding::Hex,
            SignatureEncoding::Base64 => api::SignatureEncoding::Base64,
            SignatureEncoding::Base64Url => api::SignatureEncoding::Base64url,
        } as i32,
        header: s.header.clone(),
        prefix: s.prefix.clone(),
        timestamp_header: s.timestamp_header.clone().unwrap_or_default(),
        timestamp_tolerance: Some(duration_to_api(s.timestamp_tolerance_secs * 1000)),
        preset: match s.preset {
            SignaturePreset::Custom => api::SignaturePreset::Custom,
            SignaturePreset::Stripe => api::SignaturePreset::Stripe,
            SignaturePreset::GitHub => api::SignaturePreset::Github,
            SignaturePreset::Shopify => api::SignaturePreset::Shopify,
            SignaturePreset::Slack => api::SignaturePreset::Slack,
            SignaturePreset::StandardWebhooks => api::SignaturePreset::StandardWebhooks,
        } as i32,
        previous_secret_expire_time: s
            .previous_at(model::now())
            .and(s.previous.as_ref())
            .map(|p| timestamp_to_api(p.expire_time)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(s: api::SignatureSettings) -> Result<model::SignatureSettings, Vec<(String, String)>> {
        let mut v = Violations::default();
        let settings = signature_from_api(&s, "connector.signature", &mut v);
        v.finish(settings).map_err(|e| e.violations.into_iter().map(|v| (v.field, v.description)).collect())
    }

    fn preset(preset: api::SignaturePreset, secret: &str) -> api::SignatureSettings {
        api::SignatureSettings { preset: preset as i32, secret: secret.into(), ..Default::default() }
    }

    #[test]
    fn a_preset_fills_its_fields_and_reads_back_unchanged() {
        for (api_preset, header) in [
            (api::SignaturePreset::Stripe, "stripe-signature"),
            (api::SignaturePreset::Github, "x-hub-signature-256"),
            (api::SignaturePreset::Shopify, "x-shopify-hmac-sha256"),
            (api::SignaturePreset::Slack, "x-slack-signature"),
            (api::SignaturePreset::StandardWebhooks, "webhook-signature"),
        ] {
            let settings = convert(preset(api_preset, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).unwrap();
            assert_eq!(settings.header, header);
            let read_back = signature_to_api(&settings);
            assert_eq!(read_back.preset, api_preset as i32);
            let again = convert(api::SignatureSettings {
                secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
                ..read_back
            })
            .unwrap();
            assert_eq!(again, settings, "{api_preset:?}: a connector read back is accepted as it is");
        }
    }

    #[test]
    fn a_preset_refuses_every_conflicting_field_by_name() {
        let conflicting = api::SignatureSettings {
            header: "X-Signature".into(),
            algorithm: api::SignatureAlgorithm::Sha1 as i32,
            encoding: api::SignatureEncoding::Base64 as i32,
            prefix: "sha1=".into(),
            timestamp_header: "X-Time".into(),
            ..preset(api::SignaturePreset::Github, "a-github-secret")
        };
        let fields: Vec<String> = convert(conflicting).unwrap_err().into_iter().map(|(f, _)| f).collect();
        let expected = ["algorithm", "encoding", "header", "prefix", "timestamp_header"];
        assert_eq!(fields, expected.map(|f| format!("connector.signature.{f}")));
        let stripe = api::SignatureSettings {
            timestamp_header: "X-Time".into(),
            ..preset(api::SignaturePreset::Stripe, "whsec_stripe")
        };
        let (_, message) = &convert(stripe).unwrap_err()[0];
        assert!(message.contains("inside the signature header"), "{message}");
    }

    #[test]
    fn a_standard_webhooks_secret_must_be_whsec_base64() {
        for bad in ["plain-secret-text", "whsec_!!!!not-base64!!!!", "whsec_c2hvcnQta2V5"] {
            let errors = convert(preset(api::SignaturePreset::StandardWebhooks, bad)).unwrap_err();
            assert_eq!(errors[0].0, "connector.signature.secret");
            assert!(!errors[0].1.contains(bad), "the message does not echo the secret");
        }
    }

    #[test]
    fn a_previous_secret_is_shown_only_during_its_overlap() {
        let mut settings = convert(preset(api::SignaturePreset::Github, "a-github-secret")).unwrap();
        let now = model::now();
        let previous =
            |expire_time| Some(model::PreviousSecret { secret: SecretField::Sealed("x".into()), expire_time });
        settings.previous = previous(now + chrono::Duration::seconds(60));
        assert!(signature_to_api(&settings).previous_secret_expire_time.is_some());
        settings.previous = previous(now - chrono::Duration::seconds(1));
        assert_eq!(signature_to_api(&settings).previous_secret_expire_time, None, "over: verifies nothing");
        let zero = api::SignatureSettings {
            timestamp_tolerance: Some(Default::default()),
            ..preset(api::SignaturePreset::Github, "a-github-secret")
        };
        assert_eq!(convert(zero).unwrap_err()[0].0, "connector.signature.timestamp_tolerance");
    }

    #[test]
    fn custom_settings_keep_their_defaults() {
        let settings =
            convert(api::SignatureSettings { secret: "a-long-secret".into(), ..Default::default() }).unwrap();
        assert_eq!(
            (settings.preset, settings.header.as_str(), settings.algorithm, settings.timestamp_tolerance_secs),
            (SignaturePreset::Custom, DEFAULT_HEADER, SignatureAlgorithm::Sha256, 300)
        );
        assert_eq!(
            convert(api::SignatureSettings { preset: 99, ..Default::default() }).unwrap_err()[0].1,
            "unknown preset"
        );
    }
}
