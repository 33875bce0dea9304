//! The hookplane control plane: the gRPC API over a SQLite or PostgreSQL
//! store (see ARCHITECTURE.md for the map).
#![forbid(unsafe_code)]

pub mod auth;
mod background;
pub mod bootstrap;
pub mod crypto;
pub mod error;
pub mod events;
mod examples;
pub mod metrics;
pub mod notify;
pub mod page_token;
mod server;
pub mod services;
pub mod store;
pub mod sync;
pub mod webhooks;

pub use server::{ControlPlane, ControlPlaneConfig, ServerTls, StartError};
