//! kiln marketplace: the HTTP server (REST API under /api/v1 with its
//! OpenAPI document, uploads, downloads, accounts, metrics) and the client
//! the CLI uses. Storage is `kiln-catalog`'s; every upload passes
//! `kiln-disk`'s safety inspector.

pub mod access;
pub mod api;
pub mod auth;
pub mod client;
pub mod config;
pub mod error;
pub mod ingest;
pub mod linger;
pub mod metrics;
pub mod server;
pub mod signing;
pub mod state;
pub mod sweeper;
pub mod ui;

pub use client::Client;
pub use config::Config;
pub use state::AppState;

/// rustls finds two crypto providers in this dependency graph (aws-lc-rs and
/// ring) and then refuses to pick one: choose aws-lc-rs once per process.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
