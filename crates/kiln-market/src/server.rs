//! The HTTP server: router, middleware, /healthz, /metrics, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;

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

use crate::state::AppState;
use crate::{api, auth, metrics, sweeper, ui};

pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// The marketplace's routes, plus `mounts`: services that share its listener
/// but not its accounts (the metadata service, whose callers are VMs). They
/// sit outside the authentication layer and are served with the peer's
/// address (`ConnectInfo<SocketAddr>`).
pub fn router(state: AppState, mounts: Router) -> Router {
    let (api_router, openapi) = api::routes().split_for_parts();
    Router::new()
        .merge(api_router)
        .merge(ui::routes())
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route_layer(from_fn_with_state(state.clone(), metrics::record))
        .merge(SwaggerUi::new("/api/v1/docs").url(OPENAPI_PATH, openapi))
        .layer(from_fn_with_state(state.clone(), auth::authenticate))
        .with_state(state)
        .merge(mounts)
        .layer(TraceLayer::new_for_http())
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

/// Serves on `listener` (with `mounts`, see [`router`]) until `shutdown`
/// resolves, then finishes the requests in flight.
pub async fn serve_on(
    state: AppState,
    listener: TcpListener,
    mounts: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sweeper = sweeper::spawn(state.clone(), stop_rx);
    tracing::info!(addr = %listener.local_addr()?, "kiln marketplace listening");
    axum::serve(
        listener,
        router(state, mounts).into_make_service_with_connect_info::<SocketAddr>(),
    )
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
