//! The resolver half of the SSRF guard (SPEC §11).
//!
//! Names are resolved by the system resolver, then every address is checked
//! against the egress policy; the connector only ever sees (and connects to)
//! addresses that passed, so a name that resolves to a private address, or
//! re-resolves to one later (DNS rebinding), is refused. IP literals never
//! reach a resolver: [`crate::client::Outbound`] checks them before connecting.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::{EgressError, EgressPolicy};
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};

/// A resolver that drops the addresses the policy refuses.
#[derive(Clone)]
pub struct GuardedResolver {
    inner: GaiResolver,
    policy: Arc<EgressPolicy>,
}

impl GuardedResolver {
    pub fn new(policy: Arc<EgressPolicy>) -> GuardedResolver {
        GuardedResolver { inner: GaiResolver::new(), policy }
    }
}

/// Why a name gave no address to call.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("resolving {name}: {source}")]
    Lookup { name: String, source: std::io::Error },
    #[error("{name} resolves only to refused addresses: {reason}")]
    Refused { name: String, reason: EgressError },
}

type Addresses = std::vec::IntoIter<SocketAddr>;

impl tower_service::Service<Name> for GuardedResolver {
    type Response = Addresses;
    type Error = ResolveError;
    type Future = Pin<Box<dyn Future<Output = Result<Addresses, ResolveError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ResolveError>> {
        self.inner.poll_ready(cx).map_err(|source| ResolveError::Lookup { name: String::new(), source })
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let lookup = self.inner.call(name.clone());
        let policy = self.policy.clone();
        Box::pin(async move {
            let resolved = lookup.await.map_err(|source| ResolveError::Lookup { name: name.to_string(), source })?;
            let mut allowed = Vec::new();
            let mut refusal = None;
            for address in resolved {
                match policy.check_ip(address.ip()) {
                    Ok(()) => allowed.push(address),
                    Err(reason) => refusal = Some(reason),
                }
            }
            match (allowed.is_empty(), refusal) {
                (true, Some(reason)) => Err(ResolveError::Refused { name: name.to_string(), reason }),
                _ => Ok(allowed.into_iter()),
            }
        })
    }
}
