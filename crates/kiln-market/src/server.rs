//! The HTTP server: router, middleware, /healthz, /metrics, graceful shutdown.

use std::future::Future;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::Utc;
use kiln_catalog::query::{Query, Scope};
use serde_json::json;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;
use utoipa_swagger_ui::SwaggerUi;

use crate::config::Config;
use crate::state::AppState;
use crate::{api, auth, metrics, sweeper, ui};

pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

pub fn router(state: AppState) -> Router {
    let (api_router, openapi) = api::routes().split_for_parts();
    Router::new()
        .merge(api_router)
        .merge(ui::routes())
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route_layer(from_fn_with_state(state.clone(), metrics::record))
        .merge(SwaggerUi::new("/api/v1/docs").url(OPENAPI_PATH, openapi))
        .layer(from_fn_with_state(state.clone(), auth::authenticate))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.catalogues().await {
        Ok(_) => (StatusCode::OK, Json(json!({"status": "ok"}))),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "error": e.to_string()})),
        ),
    }
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    let scope = Scope {
        all: true,
        ..Default::default()
    };
    let valid = match state
        .store
        .search(
            &Query {
                limit: Some(1),
                ..Default::default()
            },
            &scope,
            Utc::now(),
        )
        .await
    {
        Ok(page) => page.total,
        Err(_) => 0,
    };
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(valid),
    )
}

/// Serves on `listener` until `shutdown` resolves, then finishes the
/// requests in flight.
pub async fn serve_on(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sweeper = sweeper::spawn(state.clone(), stop_rx);
    tracing::info!(addr = %listener.local_addr()?, "kiln marketplace listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    let _ = stop_tx.send(true);
    let _ = sweeper.await;
    tracing::info!("kiln marketplace stopped");
    Ok(())
}

/// SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing requests in flight");
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let state = AppState::open(config).await?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("listening on {listen}: {e}"))?;
    serve_on(state, listener, shutdown_signal()).await
}
