//! Uploads: in one request (`PUT /entries/{id}/file`), by URL import, or as
//! a resumable session in the spirit of the OCI distribution API: start,
//! send chunks at their offset, ask the offset, finish with the digest.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_RANGE, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures::StreamExt;
use kiln_catalog::model::{Entry, Status, UploadSession};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::access::writable_entry;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::ingest::{self, Declared};
use crate::linger::UploadBody;
use crate::state::AppState;

/// The header that carries a session's offset (bytes received so far).
pub const OFFSET_HEADER: &str = "kiln-upload-offset";

/// Upload the image in one request body; it is checked against the declared
/// size and digests and inspected before the entry becomes active.
#[utoipa::path(put, path = "/api/v1/entries/{id}/file", tag = "uploads", params(("id" = Uuid, Path), Declared),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = Entry), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put_file(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(declared): Query<Declared>,
    headers: HeaderMap,
    body: UploadBody,
) -> ApiResult<(StatusCode, Json<Entry>)> {
    let entry = writable_entry(&state, &caller, id).await?;
    if let Some(len) = content_length(&headers)
        && len > state.config.max_upload_bytes
    {
        return Err(ApiError::too_large(state.config.max_upload_bytes));
    }
    let entry = ingest::begin(&state, entry).await?;
    let spool = ingest::spool_stream(&state, &entry, body, 0);
    let entry = ingest::receive(&state, &entry, &declared, spool).await?;
    Ok((StatusCode::CREATED, Json(entry)))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct Import {
    /// An http or https URL the server fetches the image from.
    pub url: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub sha512: Option<String>,
}

/// Import the image from a URL: fetched, checksummed and inspected like an upload.
#[utoipa::path(post, path = "/api/v1/entries/{id}/import", tag = "uploads", params(("id" = Uuid, Path)), request_body = Import,
    responses((status = 201, body = Entry), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn import(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(import): Json<Import>,
) -> ApiResult<(StatusCode, Json<Entry>)> {
    let entry = writable_entry(&state, &caller, id).await?;
    let entry = ingest::begin(&state, entry).await?;
    tracing::info!(entry = %id, url = %import.url, "importing");
    let declared = Declared {
        size: import.size,
        sha256: import.sha256,
        sha512: import.sha512,
    };
    let spool = ingest::spool_url(&state, &entry, &import.url);
    let entry = ingest::receive(&state, &entry, &declared, spool).await?;
    Ok((StatusCode::CREATED, Json(entry)))
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionInfo {
    pub id: Uuid,
    pub entry_id: Uuid,
    /// Bytes received so far: the next chunk starts here.
    pub offset: u64,
}

fn session_response(status: StatusCode, s: &UploadSession) -> Response {
    let info = SessionInfo {
        id: s.id,
        entry_id: s.entry_id,
        offset: s.offset,
    };
    let mut r = (status, Json(info)).into_response();
    let h = r.headers_mut();
    h.insert(
        LOCATION,
        HeaderValue::from_str(&format!("/api/v1/uploads/{}", s.id)).expect("ascii"),
    );
    h.insert(OFFSET_HEADER, HeaderValue::from(s.offset));
    if s.offset > 0 {
        // OCI's form: the inclusive range received.
        h.insert(
            "range",
            HeaderValue::from_str(&format!("0-{}", s.offset - 1)).expect("ascii"),
        );
    }
    r
}

/// Start a resumable upload session into a queued entry.
#[utoipa::path(post, path = "/api/v1/entries/{id}/uploads", tag = "uploads", params(("id" = Uuid, Path)),
    responses((status = 201, body = SessionInfo), (status = 409, body = ErrorBody)))]
pub async fn start_session(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    let entry = writable_entry(&state, &caller, id).await?;
    let entry = ingest::begin(&state, entry).await?;
    let now = Utc::now();
    let session = UploadSession {
        id: Uuid::new_v4(),
        entry_id: entry.id,
        offset: 0,
        chunks: Vec::new(),
        created: now,
        updated: now,
    };
    state.store.insert_session(&session).await?;
    tracing::info!(entry = %id, session = %session.id, "upload session started");
    Ok(session_response(StatusCode::CREATED, &session))
}

/// The session and its entry, if the caller may write into it.
async fn owned_session(
    state: &AppState,
    caller: &Caller,
    sid: Uuid,
) -> ApiResult<(UploadSession, Entry)> {
    caller.user()?;
    let session = state
        .store
        .session(sid)
        .await?
        .ok_or_else(|| ApiError::not_found("upload session"))?;
    let entry = writable_entry(state, caller, session.entry_id).await?;
    if entry.status != Status::Uploading {
        return Err(ApiError::conflict(format!(
            "entry {} is {}",
            entry.id,
            entry.status.as_str()
        )));
    }
    Ok((session, entry))
}

/// Where an upload session stands.
#[utoipa::path(get, path = "/api/v1/uploads/{sid}", tag = "uploads", params(("sid" = Uuid, Path)),
    responses((status = 200, body = SessionInfo), (status = 404, body = ErrorBody)))]
pub async fn session_status(
    State(state): State<AppState>,
    caller: Caller,
    Path(sid): Path<Uuid>,
) -> ApiResult<Response> {
    let (session, _) = owned_session(&state, &caller, sid).await?;
    Ok(session_response(StatusCode::OK, &session))
}

/// The start offset a chunk claims: `Content-Range: bytes START-END/*` (or
/// OCI's bare `START-END`), else the offset header.
fn chunk_start(headers: &HeaderMap) -> ApiResult<Option<u64>> {
    if let Some(v) = headers.get(CONTENT_RANGE) {
        let v = v
            .to_str()
            .map_err(|_| ApiError::bad_request("malformed Content-Range"))?;
        let v = v.trim().trim_start_matches("bytes").trim();
        let start = v.split(['-', '/']).next().unwrap_or("");
        return start
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("malformed Content-Range {v:?}")));
    }
    if let Some(v) = headers.get(OFFSET_HEADER) {
        let v = v
            .to_str()
            .map_err(|_| ApiError::bad_request("malformed offset header"))?;
        return v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("malformed offset {v:?}")));
    }
    Ok(None)
}

fn offset_mismatch(have: u64, claimed: u64) -> Response {
    let mut r = ApiError::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        format!("the session is at offset {have}, the chunk starts at {claimed}"),
    )
    .into_response();
    r.headers_mut()
        .insert(OFFSET_HEADER, HeaderValue::from(have));
    r
}

/// Send the next chunk. It must start at the session's offset.
#[utoipa::path(patch, path = "/api/v1/uploads/{sid}", tag = "uploads", params(("sid" = Uuid, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 202, body = SessionInfo), (status = 413, body = ErrorBody), (status = 416, body = ErrorBody)))]
pub async fn put_chunk(
    State(state): State<AppState>,
    caller: Caller,
    Path(sid): Path<Uuid>,
    headers: HeaderMap,
    body: UploadBody,
) -> ApiResult<Response> {
    let (session, entry) = owned_session(&state, &caller, sid).await?;
    let start = chunk_start(&headers)?.unwrap_or(session.offset);
    if start != session.offset {
        return Ok(offset_mismatch(session.offset, start));
    }
    let spooled = ingest::spool_stream(&state, &entry, body, session.offset).await?;
    let len = spooled.len;
    let key = format!(
        "uploads/{sid}/{:020}-{}",
        session.offset,
        Uuid::new_v4().simple()
    );
    let path = spooled.path.take();
    let committed = state.blobs.commit_file(&path, &key).await;
    let _ = tokio::fs::remove_file(&path).await;
    committed?;
    if !state
        .store
        .advance_session(sid, session.offset, &key, len)
        .await?
    {
        // Another chunk at this offset won the race.
        state.blobs.delete(&key).await?;
        let now = state
            .store
            .session(sid)
            .await?
            .map(|s| s.offset)
            .unwrap_or(0);
        return Ok(offset_mismatch(now, start));
    }
    let session = state
        .store
        .session(sid)
        .await?
        .ok_or_else(|| ApiError::not_found("upload session"))?;
    Ok(session_response(StatusCode::ACCEPTED, &session))
}

/// Finish the session: the chunks are joined, checked against the declared
/// digest and size, inspected, and the entry becomes active.
#[utoipa::path(put, path = "/api/v1/uploads/{sid}", tag = "uploads", params(("sid" = Uuid, Path), Declared),
    responses((status = 201, body = Entry), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn finish_session(
    State(state): State<AppState>,
    caller: Caller,
    Path(sid): Path<Uuid>,
    Query(declared): Query<Declared>,
) -> ApiResult<(StatusCode, Json<Entry>)> {
    let (session, entry) = owned_session(&state, &caller, sid).await?;
    let chunks = futures::stream::iter(session.chunks.clone())
        .then(|key| {
            let blobs = state.blobs.clone();
            async move { blobs.read(&key, None).await }
        })
        .flat_map(|r| match r {
            Ok(s) => s,
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        });
    let spooled = ingest::spool_stream(&state, &entry, chunks, 0);
    let result = ingest::receive(&state, &entry, &declared, spooled).await;
    // A refused upload is over; a server-side failure leaves the session to retry.
    if result
        .as_ref()
        .map_or_else(|e| !e.status.is_server_error(), |_| true)
    {
        crate::sweeper::drop_session(&state, &session).await?;
    }
    Ok((StatusCode::CREATED, Json(result?)))
}

/// Cancel the session: its chunks are deleted and the entry is queued again.
#[utoipa::path(delete, path = "/api/v1/uploads/{sid}", tag = "uploads", params(("sid" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn cancel_session(
    State(state): State<AppState>,
    caller: Caller,
    Path(sid): Path<Uuid>,
) -> ApiResult<StatusCode> {
    let (session, entry) = owned_session(&state, &caller, sid).await?;
    crate::sweeper::drop_session(&state, &session).await?;
    ingest::abandon(&state, &entry).await;
    Ok(StatusCode::NO_CONTENT)
}
