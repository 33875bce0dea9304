//! Where an outbound request goes: its URL, and what hyper needs of it.
//!
//! hyper takes a request's target as a [`Uri`], parsed from the URL's
//! text, and on an HTTP/1 connection adds a `Host` header made from it,
//! formatted anew whenever the port is not the scheme's default. A
//! connector's literal URL is the same on every call, so a node works both
//! out once, when it deploys the connector ([`Destination::prepared`]).
//! Counted under callgrind, parsing the `Uri` and formatting `Host` again
//! cost the trigger-load bench's end-to-end call 2.7k instructions (of
//! 153k) for a target on a loopback port.
//!
//! The URL the egress policy checks and the `Uri` hyper connects to are
//! made from one another only here, and a prepared destination cannot be
//! changed, so the two never disagree.

use std::sync::Arc;

use hyper::Uri;
use hyper::header::HeaderValue;

/// A request's target.
#[derive(Clone, Debug)]
pub struct Destination {
    url: url::Url,
    /// `url` as hyper takes it, when worked out beforehand; shared, so a
    /// call's copy costs one count, not one per part of the `Uri`.
    prepared: Option<Arc<Prepared>>,
}

#[derive(Debug)]
struct Prepared {
    uri: Uri,
    /// The `Host` header hyper would add; kept only for plain `http`, which
    /// is always HTTP/1 here (the client negotiates HTTP/2 only through TLS's
    /// ALPN), so a request carries exactly the headers it did without it.
    host: Option<HeaderValue>,
}

impl Destination {
    /// `url`, to be parsed for hyper when it is sent (a URL rendered per
    /// call).
    pub fn new(url: url::Url) -> Destination {
        Destination { url, prepared: None }
    }

    /// `url`, parsed for hyper now, for a URL sent many times. A URL hyper
    /// does not take stays unparsed, and is refused when it is sent.
    pub fn prepared(url: url::Url) -> Destination {
        let prepared = Uri::try_from(url.as_str()).ok().map(|uri| {
            let host = (uri.scheme_str() == Some("http")).then(|| host_header(&uri)).flatten();
            Arc::new(Prepared { uri, host })
        });
        Destination { url, prepared }
    }

    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// Whether hyper's parts were worked out beforehand.
    pub fn is_prepared(&self) -> bool {
        self.prepared.is_some()
    }

    /// The target as hyper takes it, and the `Host` header to add where the
    /// request has none (`None`: hyper adds its own).
    pub(crate) fn for_hyper(&self) -> Result<(Uri, Option<HeaderValue>), hyper::http::uri::InvalidUri> {
        match &self.prepared {
            Some(prepared) => Ok((prepared.uri.clone(), prepared.host.clone())),
            None => Ok((Uri::try_from(self.url.as_str())?, None)),
        }
    }
}

impl From<url::Url> for Destination {
    fn from(url: url::Url) -> Destination {
        Destination::new(url)
    }
}

/// The `Host` header hyper-util's client writes for a plain `http` `uri`:
/// the host, and the port unless it is 80 (which `url` drops anyway).
fn host_header(uri: &Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    match uri.port_u16() {
        Some(port) if port != 80 => HeaderValue::from_str(&format!("{host}:{port}")).ok(),
        _ => HeaderValue::from_str(host).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &str) -> (Uri, Option<HeaderValue>) {
        Destination::prepared(url.parse().unwrap()).for_hyper().unwrap()
    }

    /// Prepared or not, hyper is given the URL's own text.
    #[test]
    fn a_prepared_destination_is_the_urls_text() {
        for url in [
            "http://127.0.0.1:8080/orders?x=1",
            "https://user:secret@erp.example.com/orders/%7Bid%7D",
            "http://[::1]:9000/",
            "https://ERP.example.com:8443/a%20b",
            "http://xn--bcher-kva.example/",
        ] {
            let url: url::Url = url.parse().unwrap();
            let prepared = Destination::prepared(url.clone());
            assert!(prepared.is_prepared());
            assert_eq!(prepared.for_hyper().unwrap().0.to_string(), url.as_str());
            let per_call = Destination::new(url.clone());
            assert!(!per_call.is_prepared());
            assert_eq!(per_call.for_hyper().unwrap(), (prepared.for_hyper().unwrap().0, None), "{url}");
        }
    }

    /// The same text hyper-util's client gives `Host` on an HTTP/1
    /// connection: the port only where it is not the scheme's default.
    #[test]
    fn host_is_kept_for_plain_http_as_hyper_writes_it() {
        assert_eq!(parts("http://127.0.0.1:8080/x").1.unwrap(), "127.0.0.1:8080");
        assert_eq!(parts("http://erp.example.com:80/x").1.unwrap(), "erp.example.com");
        assert_eq!(host_header(&Uri::from_static("http://erp.example.com:80/x")).unwrap(), "erp.example.com");
        assert_eq!(parts("http://erp.example.com:443/x").1.unwrap(), "erp.example.com:443");
        assert_eq!(parts("http://user:pw@erp.example.com/x").1.unwrap(), "erp.example.com");
        assert_eq!(parts("http://[::1]:9000/").1.unwrap(), "[::1]:9000");
        // HTTPS may be HTTP/2, which names its authority itself.
        assert_eq!(parts("https://erp.example.com:8443/x").1, None);
    }

    #[test]
    fn a_url_hyper_refuses_is_refused_when_sent() {
        let long = format!("http://erp.example.com/{}", "a".repeat(70_000));
        let destination = Destination::prepared(long.parse().unwrap());
        assert!(!destination.is_prepared());
        assert!(destination.for_hyper().is_err());
    }
}
