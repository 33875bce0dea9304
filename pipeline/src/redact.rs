//! Keeps secret values out of events (SPEC §11): every `$secret` value a
//! connector reads and every outbound credential is replaced in the trace.

use std::borrow::Cow;

use hookplane_model::{EventTrace, HttpExchangeTrace};

pub const REDACTED: &str = "[redacted]";
/// The same in a URL's userinfo, where brackets would be percent-encoded.
pub const REDACTED_WORD: &str = "redacted";
/// Shorter values are not searched for: they would blank out common text
/// and are not secrets worth the name.
const MIN_SECRET_LEN: usize = 4;

/// The secret values of one execution.
#[derive(Debug, Default)]
pub struct Redactor {
    values: Vec<String>,
}

impl Redactor {
    /// Redacts `value` from now on, and the forms a request writes it in:
    /// percent-encoded in a query or form (`+/=` become `%2B%2F%3D`) and
    /// escaped in a JSON string. A secret a mapping transforms
    /// (`upper($secret.X)`) is not recognised: no redactor can be.
    pub fn add(&mut self, value: &str) {
        if value.len() < MIN_SECRET_LEN {
            return;
        }
        let form: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
        let json = serde_json::to_string(value).unwrap_or_default();
        let json = json.get(1..json.len().saturating_sub(1)).unwrap_or_default().to_owned();
        for form in [value.to_owned(), form, json] {
            if !self.values.contains(&form) {
                self.values.push(form);
            }
        }
        // Longest first, so a secret containing another is removed whole.
        self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }

    /// `text` with every secret value replaced.
    pub fn scrub<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        for value in &self.values {
            if out.contains(value.as_str()) {
                out = Cow::Owned(out.replace(value.as_str(), REDACTED));
            }
        }
        out
    }

    fn scrub_in_place(&self, text: &mut String) {
        if let Cow::Owned(clean) = self.scrub(text) {
            *text = clean;
        }
    }

    fn scrub_exchange(&self, exchange: &mut HttpExchangeTrace) {
        self.scrub_in_place(&mut exchange.url);
        self.scrub_in_place(&mut exchange.request_body);
        self.scrub_in_place(&mut exchange.response_excerpt);
        self.scrub_in_place(&mut exchange.error);
        exchange.request_headers.values_mut().for_each(|v| self.scrub_in_place(v));
    }

    /// Scrubs every text the pipeline recorded in a trace. The inbound
    /// request's part is scrubbed when the event is encoded
    /// (by the node's event encoder).
    pub fn scrub_trace(&self, trace: &mut EventTrace) {
        if self.values.is_empty() {
            return;
        }
        self.scrub_in_place(&mut trace.processed);
        if let Some(lookup) = &mut trace.lookup {
            self.scrub_exchange(lookup);
        }
        trace.perform_attempts.iter_mut().for_each(|a| self.scrub_exchange(a));
    }
}

/// An outbound header's value as a trace or a dry run shows it: hidden
/// where the request marks it sensitive (its credentials), and named where
/// it is not text.
pub fn shown_header(value: &hyper::header::HeaderValue) -> &str {
    if value.is_sensitive() {
        return REDACTED;
    }
    value.to_str().unwrap_or("[binary]")
}

/// The URL as a trace shows it: credentials in its userinfo
/// (`https://user:pass@host/`) are replaced, whatever wrote them there.
pub fn traced_url(url: &url::Url) -> Cow<'_, str> {
    if url.username().is_empty() && url.password().is_none() {
        return Cow::Borrowed(url.as_str());
    }
    let mut shown = url.clone();
    let _ = shown.set_username(REDACTED_WORD);
    if url.password().is_some() {
        let _ = shown.set_password(Some(REDACTED_WORD));
    }
    Cow::Owned(shown.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_and_binary_header_values_are_not_shown() {
        let mut credential = hyper::header::HeaderValue::from_static("Bearer t0k3n");
        credential.set_sensitive(true);
        assert_eq!(shown_header(&credential), REDACTED);
        assert_eq!(shown_header(&hyper::header::HeaderValue::from_bytes(b"\xff").unwrap()), "[binary]");
        assert_eq!(shown_header(&hyper::header::HeaderValue::from_static("application/json")), "application/json");
    }

    #[test]
    fn traced_urls_hide_their_userinfo() {
        let url = url::Url::parse("https://erp-user:erp-pass@api.example.com/orders?id=7").unwrap();
        assert_eq!(traced_url(&url), "https://redacted:redacted@api.example.com/orders?id=7");
        let url = url::Url::parse("https://sk_live_123@api.example.com/").unwrap();
        assert_eq!(traced_url(&url), "https://redacted@api.example.com/");
        let url = url::Url::parse("https://api.example.com/x").unwrap();
        assert_eq!(traced_url(&url), "https://api.example.com/x");
    }

    #[test]
    fn every_occurrence_of_every_secret_is_replaced() {
        let mut redactor = Redactor::default();
        redactor.add("s3cr3t-token");
        redactor.add("s3cr3t");
        redactor.add("ab");
        assert_eq!(redactor.scrub("Bearer s3cr3t-token and s3cr3t, ab"), "Bearer [redacted] and [redacted], ab");
        assert!(matches!(redactor.scrub("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn encoded_forms_of_a_secret_are_replaced_too() {
        let mut redactor = Redactor::default();
        redactor.add("k+y/1=\"q\"");
        assert_eq!(redactor.scrub("https://x/?key=k%2By%2F1%3D%22q%22"), "https://x/?key=[redacted]");
        assert_eq!(redactor.scrub(r#"{"key":"k+y/1=\"q\""}"#), r#"{"key":"[redacted]"}"#);
    }
}
