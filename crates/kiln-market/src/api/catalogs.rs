//! What subscribers fetch: a catalogue's signed catalog and its detached
//! signature, the same catalogue as an S/MIME signed HEPiX image list, and
//! the simplestreams tree of every catalogue the caller may read.

use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use kiln_trust::catalog::Catalog;
use kiln_trust::{hepix, simplestreams};

use crate::access::can_read_catalogue;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::signing::{SignedCatalog, catalog_entries};
use crate::state::AppState;

async fn readable(state: &AppState, caller: &Caller, name: &str) -> ApiResult<()> {
    match state.store.catalogue(name).await? {
        Some(c) if can_read_catalogue(caller, &c) => Ok(()),
        _ => Err(ApiError::not_found("catalogue")),
    }
}

async fn signed(
    state: &AppState,
    caller: &Caller,
    name: &str,
) -> ApiResult<std::sync::Arc<SignedCatalog>> {
    let Some(signer) = &state.catalogs else {
        return Err(ApiError::not_found(
            "signed catalog (this marketplace has no signing key configured)",
        ));
    };
    readable(state, caller, name).await?;
    let now = Utc::now();
    let entries = catalog_entries(state.store.as_ref(), name, now).await?;
    signer
        .current(name, entries, now)
        .map_err(ApiError::internal)
}

fn body(content_type: &'static str, bytes: Vec<u8>) -> Response {
    (
        [(CONTENT_TYPE, HeaderValue::from_static(content_type))],
        bytes,
    )
        .into_response()
}

/// The catalogue's signed catalog: its published entries with a version that
/// only grows and an expiry (docs/trust.md). Its signature is at `…/signed.sig`.
#[utoipa::path(get, path = "/api/v1/catalogues/{name}/signed", tag = "catalogues",
    params(("name" = String, Path)),
    responses((status = 200, description = "the catalog (kiln-catalog/1 JSON), exactly the signed bytes", content_type = "application/json"),
        (status = 404, body = ErrorBody)))]
pub async fn signed_catalog(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let s = signed(&state, &caller, &name).await?;
    Ok(body("application/json", s.bytes.clone()))
}

/// The detached signature of the current signed catalog (Ed25519 kiln
/// signature, or CMS PEM when the marketplace signs with a certificate).
#[utoipa::path(get, path = "/api/v1/catalogues/{name}/signed.sig", tag = "catalogues",
    params(("name" = String, Path)),
    responses((status = 200, description = "the signature", content_type = "application/octet-stream"),
        (status = 404, body = ErrorBody)))]
pub async fn signed_catalog_signature(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let s = signed(&state, &caller, &name).await?;
    Ok(body("application/octet-stream", s.signature.clone()))
}

/// The catalogue as a HEPiX image list, signed S/MIME with the
/// marketplace's certificate (what vmcatcher and cloudkeeper read).
#[utoipa::path(get, path = "/api/v1/catalogues/{name}/hepix", tag = "catalogues",
    params(("name" = String, Path)),
    responses((status = 200, description = "S/MIME multipart/signed message holding the JSON list", content_type = "text/plain"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn hepix_list(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let s = signed(&state, &caller, &name).await?;
    let signer = state.catalogs.as_ref().expect("signed() checked");
    let base = match &signer.public_url {
        Some(u) => u.clone(),
        None => {
            let host = headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .ok_or_else(|| ApiError::bad_request("no Host header"))?;
            url::Url::parse(&format!("http://{host}/"))
                .map_err(|e| ApiError::bad_request(format!("Host header: {e}")))?
        }
    };
    let list_uri = base
        .join(&format!("api/v1/catalogues/{name}/hepix"))
        .map_err(ApiError::internal)?;
    let identity = signer.signer.identity();
    let list = hepix::ImageList::from_catalog(&s.catalog, &list_uri, &identity)
        .map_err(|e| ApiError::conflict(e.to_string()))?;
    let message = hepix::sign_smime(&list.to_bytes(), &signer.signer)
        .map_err(|e| ApiError::conflict(e.to_string()))?;
    Ok(body("text/plain", message))
}

/// Unsigned catalogs of every catalogue the caller may read (simplestreams
/// needs no signature; plain HTTPS is its transport security).
async fn readable_catalogs(state: &AppState, caller: &Caller) -> ApiResult<Vec<Catalog>> {
    let now = Utc::now();
    let mut out = Vec::new();
    for c in state.store.catalogues().await? {
        if can_read_catalogue(caller, &c) {
            let entries = catalog_entries(state.store.as_ref(), &c.name, now).await?;
            out.push(Catalog::new(
                &c.name,
                now.timestamp().max(0) as u64,
                now,
                chrono::Duration::zero(),
                entries,
            ));
        }
    }
    Ok(out)
}

/// simplestreams index (`sstream-query http://server/streams/v1/index.json`).
#[utoipa::path(get, path = "/streams/v1/index.json", tag = "catalogues",
    responses((status = 200, description = "simplestreams index:1.0", content_type = "application/json")))]
pub async fn streams_index(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    let catalogs = readable_catalogs(&state, &caller).await?;
    let v = simplestreams::index(&catalogs, Utc::now());
    Ok(body(
        "application/json",
        serde_json::to_vec_pretty(&v).expect("serializable"),
    ))
}

/// A simplestreams products file, `org.kiln:<catalogue>:download.json`.
#[utoipa::path(get, path = "/streams/v1/{file}", tag = "catalogues",
    params(("file" = String, Path)),
    responses((status = 200, description = "simplestreams products:1.0", content_type = "application/json"),
        (status = 404, body = ErrorBody)))]
pub async fn streams_products(
    State(state): State<AppState>,
    caller: Caller,
    Path(file): Path<String>,
) -> ApiResult<Response> {
    let catalogs = readable_catalogs(&state, &caller).await?;
    let c = catalogs
        .iter()
        .find(|c| simplestreams::products_path(&c.catalogue) == format!("streams/v1/{file}"))
        .ok_or_else(|| ApiError::not_found("products file"))?;
    Ok(body(
        "application/json",
        serde_json::to_vec_pretty(&simplestreams::products(c)).expect("serializable"),
    ))
}
