//! How bytes become an entry: receive into the spool (hashed on the fly,
//! size-capped), check the declared size and digests, run the safety
//! inspector, commit the blob, then publish the metadata with one
//! compare-and-set. Any failure returns the entry to `queued` and drops the
//! spool file, so nothing partial is ever visible.

use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use futures::{Stream, StreamExt};
use kiln_catalog::model::{Entry, Location, Status};
use kiln_catalog::spool::Spooled;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult};
use crate::metrics::Metrics;
use crate::state::AppState;

/// Size and digests a client declares for the bytes it sends; each one given
/// must match what arrives. They add to those declared when the entry was created.
#[derive(Debug, Clone, Default, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Declared {
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub sha512: Option<String>,
}

pub fn blob_key(entry: &Entry) -> String {
    format!("blobs/{}", entry.id)
}

/// Moves a queued entry to `uploading`, so that one upload at a time runs.
pub async fn begin(state: &AppState, mut entry: Entry) -> ApiResult<Entry> {
    if entry.status != Status::Queued {
        return Err(ApiError::conflict(format!(
            "entry {} is {}: only a queued entry takes an upload",
            entry.id,
            entry.status.as_str()
        )));
    }
    entry.status = Status::Uploading;
    entry.updated = Utc::now();
    if !state.store.update_entry(&entry, Status::Queued).await? {
        return Err(ApiError::conflict(
            "another upload into this entry has started",
        ));
    }
    Ok(entry)
}

/// Returns an entry whose upload failed to `queued`.
pub async fn abandon(state: &AppState, entry: &Entry) {
    let mut e = entry.clone();
    e.status = Status::Queued;
    e.updated = Utc::now();
    if let Err(err) = state.store.update_entry(&e, Status::Uploading).await {
        tracing::warn!(entry = %entry.id, error = %err, "could not return the entry to queued");
    }
}

/// Receives `body` into a new spool file, refusing it past the size cap.
pub async fn spool_stream<S, E>(
    state: &AppState,
    entry: &Entry,
    body: S,
    already: u64,
) -> ApiResult<Spooled>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let cap = state.config.max_upload_bytes;
    let mut writer = state.spool.create().await?;
    let mut last_touch = Instant::now();
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the upload: {e}")))?;
        if already + writer.len() + chunk.len() as u64 > cap {
            return Err(ApiError::too_large(cap));
        }
        Metrics::add(&state.metrics.upload_bytes, chunk.len() as u64);
        writer.write(chunk).await?;
        // Keeps the sweeper away from a long upload that is still progressing.
        if last_touch.elapsed() > Duration::from_secs(10) {
            state.store.touch_entry(entry.id, Utc::now()).await?;
            last_touch = Instant::now();
        }
    }
    Ok(writer.finish().await?)
}

fn check_declared(entry: &Entry, spooled: &Spooled, declared: &Declared) -> ApiResult<()> {
    if spooled.len == 0 {
        return Err(ApiError::refused("the upload is empty: no image"));
    }
    for size in [entry.bytes, declared.size].into_iter().flatten() {
        if size != spooled.len {
            return Err(ApiError::refused(format!(
                "declared size {size} bytes, received {} bytes",
                spooled.len
            )));
        }
    }
    let digests = [
        (
            "sha256",
            &spooled.digests.sha256,
            [&entry.checksums.sha256, &declared.sha256],
        ),
        (
            "sha512",
            &spooled.digests.sha512,
            [&entry.checksums.sha512, &declared.sha512],
        ),
    ];
    for (name, actual, claims) in digests {
        for claim in claims.into_iter().flatten() {
            let claim = claim
                .strip_prefix(&format!("{name}:"))
                .unwrap_or(claim)
                .to_ascii_lowercase();
            if &claim != actual {
                return Err(ApiError::refused(format!(
                    "declared {name} {claim}, received {actual}"
                )));
            }
        }
    }
    Ok(())
}

/// Checks, inspects, commits and publishes a complete spool file into an
/// `uploading` entry.
pub async fn publish(
    state: &AppState,
    mut entry: Entry,
    spooled: Spooled,
    declared: &Declared,
) -> ApiResult<Entry> {
    check_declared(&entry, &spooled, declared)?;
    let path = spooled.path.path().to_path_buf();
    let report = tokio::task::spawn_blocking(move || kiln_disk::inspect::inspect_file(&path))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| {
            ApiError::refused(format!(
                "the safety inspector could not read the image: {e}"
            ))
        })?;
    if !report.is_safe() {
        return Err(ApiError::refused(format!(
            "unsafe image: {}",
            report.problems.join("; ")
        )));
    }
    let key = blob_key(&entry);
    let spool_path = spooled.path.take();
    let committed = state.blobs.commit_file(&spool_path, &key).await;
    let _ = tokio::fs::remove_file(&spool_path).await;
    committed?;

    entry.status = Status::Active;
    entry.bytes = Some(spooled.len);
    entry.format = Some(report.format.name().to_string());
    entry.virtual_size = report.virtual_size;
    entry.checksums.sha256 = Some(spooled.digests.sha256);
    entry.checksums.sha512 = Some(spooled.digests.sha512);
    entry
        .locations
        .retain(|l| !matches!(l, Location::Blob { .. }));
    entry
        .locations
        .insert(0, Location::Blob { key: key.clone() });
    entry.updated = Utc::now();
    if !state.store.update_entry(&entry, Status::Uploading).await? {
        // The sweeper gave up on this upload meanwhile: the blob is garbage.
        state.blobs.delete(&key).await?;
        return Err(ApiError::conflict(
            "the upload was abandoned before it completed",
        ));
    }
    Metrics::add(&state.metrics.uploads_committed, 1);
    tracing::info!(entry = %entry.id, bytes = spooled_len(&entry), format = ?entry.format, "entry published");
    link_replaced(state, &entry).await;
    Ok(entry)
}

fn spooled_len(e: &Entry) -> u64 {
    e.bytes.unwrap_or(0)
}

/// Sets `replaced_by` on the entry this one replaces.
pub async fn link_replaced(state: &AppState, entry: &Entry) {
    let Some(old_id) = entry.replaces else { return };
    match state.store.entry(old_id).await {
        Ok(Some(mut old)) => {
            let status = old.status;
            old.replaced_by = Some(entry.id);
            if let Err(e) = state.store.update_entry(&old, status).await {
                tracing::warn!(entry = %old_id, error = %e, "could not record replaced_by");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(entry = %old_id, error = %e, "could not record replaced_by"),
    }
}

/// Runs one upload attempt into an `uploading` entry: on any failure the
/// entry returns to `queued`.
pub async fn receive<F>(
    state: &AppState,
    entry: &Entry,
    declared: &Declared,
    spool: F,
) -> ApiResult<Entry>
where
    F: Future<Output = ApiResult<Spooled>>,
{
    let result = match spool.await {
        Ok(spooled) => publish(state, entry.clone(), spooled, declared).await,
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        Metrics::add(&state.metrics.uploads_refused, 1);
        tracing::warn!(entry = %entry.id, status = %e.status, reason = %e.message, "upload refused");
        abandon(state, entry).await;
    }
    result
}

/// Fetches `url` into the spool for an import.
pub async fn spool_url(state: &AppState, entry: &Entry, url: &str) -> ApiResult<Spooled> {
    let parsed =
        url::Url::parse(url).map_err(|e| ApiError::bad_request(format!("bad URL {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ApiError::bad_request(
            "only http and https URLs can be imported",
        ));
    }
    let response = state.http.get(parsed).send().await.map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            format!("fetching {url}: {e}"),
        )
    })?;
    if !response.status().is_success() {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            format!("fetching {url}: the server answered {}", response.status()),
        ));
    }
    if response
        .content_length()
        .is_some_and(|n| n > state.config.max_upload_bytes)
    {
        return Err(ApiError::too_large(state.config.max_upload_bytes));
    }
    spool_stream(state, entry, response.bytes_stream(), 0).await
}
