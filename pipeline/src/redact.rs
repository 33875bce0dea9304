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
    /// Redacts `value` from now on.
    pub fn add(&mut self, value: &str) {
        if value.len() >= MIN_SECRET_LEN && !self.values.iter().any(|v| v == value) {
            self.values.push(value.to_owned());
            // Longest first, so a secret containing another is removed whole.
            self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_occurrence_of_every_secret_is_replaced() {
        let mut redactor = Redactor::default();
        redactor.add("s3cr3t-token");
        redactor.add("s3cr3t");
        redactor.add("ab");
        assert_eq!(redactor.scrub("Bearer s3cr3t-token and s3cr3t, ab"), "Bearer [redacted] and [redacted], ab");
        assert!(matches!(redactor.scrub("nothing here"), Cow::Borrowed(_)));
    }
}
