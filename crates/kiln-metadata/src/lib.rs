//! kiln's metadata service over HTTP. The answers come from
//! [`kiln_context::metadata::MetadataService`]; this crate gives it an
//! [`axum::Router`] (which `kiln metadata serve` runs and `kiln serve`
//! mounts beside the marketplace) and a small runner.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::any;
use kiln_context::metadata::{Event, MetadataService, Request, TokenSource};

/// The `Server` header of every answer.
pub const SERVER: &str = "kiln-metadata";

/// Request bodies (ready reports) above this size are refused.
const MAX_BODY: usize = 64 * 1024;

/// 128 bits from the operating system, hex: IMDSv2 session and VM tokens.
pub fn random_token() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system has a random source");
    hex::encode(bytes)
}

/// The token source a live service uses.
pub fn os_tokens() -> TokenSource {
    Box::new(random_token)
}

/// Every route of the service, at the root. The router needs the peer's
/// address: serve it with `into_make_service_with_connect_info::<SocketAddr>()`
/// (as [`serve`] does); without it requests are treated as coming from
/// 0.0.0.0, which no VM has.
pub fn router(service: Arc<MetadataService>) -> axum::Router {
    axum::Router::new()
        .route("/", any(handle))
        .route("/{*path}", any(handle))
        .with_state(service)
}

/// Where `kiln serve` mounts the service beside the marketplace: a VM's
/// seedfrom is `URL/metadata/t/TOKEN/`, EC2's metadata URL is `URL/metadata`.
pub const MOUNT: &str = "/metadata";

/// The service as `kiln serve` carries it: every route under [`MOUNT`], and
/// the node classifier at `/enc/NODE` too, where Puppet's ENC script and
/// `kiln metadata serve` put it. Needs the peer's address as [`router`] does.
pub fn mounts(service: Arc<MetadataService>) -> axum::Router {
    axum::Router::new()
        .route("/enc/{*node}", any(handle))
        .with_state(Arc::clone(&service))
        .nest(MOUNT, router(service))
}

async fn handle(
    State(service): State<Arc<MetadataService>>,
    request: axum::extract::Request,
) -> Response {
    let source = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |ConnectInfo(a)| {
            a.ip()
        });
    let (parts, body) = request.into_parts();
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        let mut response = Response::new(Body::from("request body too large\n"));
        *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        return response;
    };
    let request = Request {
        method: method.as_str().to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        source,
        headers: headers
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body: body.to_vec(),
    };
    let (answer, event) = service.handle(&request, Instant::now());
    tracing::debug!(%source, method = %method, path = %uri.path(), status = answer.status, "request");
    if let Some(Event::Ready { id, name, data }) = event {
        tracing::info!(vm = id, %name, %source, data = %data.trim(), "VM reported ready");
    }
    let mut response = Response::new(if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(answer.body)
    });
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let response_headers = response.headers_mut();
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(answer.content_type),
    );
    // kiln-agent sends its ready report to a service that names itself so.
    response_headers.insert(header::SERVER, HeaderValue::from_static(SERVER));
    for (name, value) in answer.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response_headers.insert(HeaderName::from_static(name), value);
        }
    }
    response
}

/// Serves until Ctrl-C or SIGTERM. `ready` is called once the socket listens,
/// with its address (port 0 picks a free one).
pub async fn serve(
    service: Arc<MetadataService>,
    listen: SocketAddr,
    ready: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    ready(listener.local_addr()?);
    axum::serve(
        listener,
        router(service).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown())
    .await
}

async fn shutdown() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
