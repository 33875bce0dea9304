//! The end-to-end suite, one test binary (linked once; each module a
//! subject): real control planes over SQLite and PostgreSQL, real nodes,
//! real targets on loopback, driven through the SDK and HTTP. `support`
//! is the harness every module shares.

#[macro_use]
mod support;

mod access_and_storage;
mod config_sync;
mod connectors_api;
mod events_api;
mod fleet_limits;
mod grpc_services;
mod hardening;
mod integration_examples;
mod metrics;
mod notifications;
mod platform_events;
mod platform_webhooks;
mod replicas;
mod signature_presets;
mod sync_logs;
mod sync_tls;
mod test_runs;
mod trigger_access;
mod trigger_bodies;
mod triggers;
mod triggers_async;
