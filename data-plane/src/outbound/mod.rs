//! The node's outbound calls: the guarded client (`hookplane_egress`),
//! circuit breakers per target, and OAuth 2.0 tokens.

pub mod breaker;
pub mod circuits;
pub mod oauth;

pub use hookplane_egress::client::{Outbound, OutboundError, OutboundRequest, OutboundResponse};
