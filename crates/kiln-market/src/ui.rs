//! The slot for the server-rendered web UI (a later change). Its routes are
//! merged into the server's router; the auth middleware already resolves the
//! `kiln_session` cookie into a [`crate::auth::Caller`] for its handlers.

use axum::Router;

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
}
