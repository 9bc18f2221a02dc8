//! Downloads with HEAD, single byte ranges, If-Range, and ETag = the sha256
//! digest; entries that live elsewhere are served by redirect.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{
    ACCEPT_RANGES, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG,
    IF_NONE_MATCH, IF_RANGE, LOCATION, RANGE,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use kiln_catalog::model::Status;
use uuid::Uuid;

use crate::access::{is_owner, readable_entry};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::metrics::Metrics;
use crate::state::AppState;

/// A parsed `Range: bytes=…` with one range, resolved against `size`:
/// Ok(None) for no usable range, Err(()) for an unsatisfiable one.
fn byte_range(value: &str, size: u64) -> Result<Option<std::ops::Range<u64>>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // Multiple ranges: answer with the whole file.
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        size.saturating_sub(n)..size
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            size
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .saturating_add(1)
                .min(size)
        };
        if start >= size || start >= end {
            return Err(());
        }
        start..end
    };
    Ok(Some(range))
}

fn header<'a>(headers: &'a HeaderMap, name: &axum::http::HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

/// Download an entry's image (GET, or HEAD for the headers only).
#[utoipa::path(get, path = "/api/v1/entries/{id}/file", tag = "downloads", params(("id" = Uuid, Path)),
    responses((status = 200, description = "the image", content_type = "application/octet-stream"),
        (status = 206, description = "the requested range"), (status = 302, description = "stored elsewhere"),
        (status = 304), (status = 404, body = ErrorBody), (status = 416, body = ErrorBody)))]
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    method: Method,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let entry = readable_entry(&state, &caller, id).await?;
    if !entry.status.is_published()
        || (entry.status == Status::Deactivated && !caller.is_admin() && !is_owner(&caller, &entry))
    {
        return Err(ApiError::not_found("image data"));
    }
    let Some(key) = entry.blob_key() else {
        let url = entry
            .external_url()
            .ok_or_else(|| ApiError::not_found("image data"))?;
        return Response::builder()
            .status(StatusCode::FOUND)
            .header(LOCATION, url)
            .body(Body::empty())
            .map_err(ApiError::internal);
    };
    let size = entry
        .bytes
        .ok_or_else(|| ApiError::internal("published entry without a size"))?;
    let sha256 = entry
        .checksums
        .sha256
        .as_deref()
        .ok_or_else(|| ApiError::internal("published entry without sha256"))?;
    let etag = format!("\"sha256:{sha256}\"");

    let mut builder = Response::builder()
        .header(ETAG, &etag)
        .header(ACCEPT_RANGES, "bytes")
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(
            CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"{id}.{}\"",
                entry.format.as_deref().unwrap_or("img")
            ),
        )
        .header("kiln-sha256", sha256);
    if header(&headers, &IF_NONE_MATCH).is_some_and(|v| etag_matches(v, &etag)) {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .map_err(ApiError::internal);
    }
    // If-Range with another validator means "the file changed: send it all".
    let range_allowed = header(&headers, &IF_RANGE).is_none_or(|v| v.trim() == etag);
    let range = match header(&headers, &RANGE).filter(|_| range_allowed) {
        None => None,
        Some(v) => match byte_range(v, size) {
            Ok(r) => r,
            Err(()) => {
                return builder
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(CONTENT_RANGE, format!("bytes */{size}"))
                    .body(Body::empty())
                    .map_err(ApiError::internal);
            }
        },
    };
    let (status, len) = match &range {
        Some(r) => {
            builder = builder.header(
                CONTENT_RANGE,
                format!("bytes {}-{}/{size}", r.start, r.end - 1),
            );
            (StatusCode::PARTIAL_CONTENT, r.end - r.start)
        }
        None => (StatusCode::OK, size),
    };
    builder = builder
        .status(status)
        .header(CONTENT_LENGTH, HeaderValue::from(len));
    if method == Method::HEAD {
        return builder.body(Body::empty()).map_err(ApiError::internal);
    }
    let metrics = state.metrics.clone();
    let stream = state.blobs.read(key, range).await?.inspect(move |chunk| {
        if let Ok(c) = chunk {
            Metrics::add(&metrics.download_bytes, c.len() as u64);
        }
    });
    builder
        .body(Body::from_stream(stream))
        .map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::byte_range;

    #[test]
    fn ranges() {
        assert_eq!(byte_range("bytes=0-9", 100), Ok(Some(0..10)));
        assert_eq!(byte_range("bytes=90-", 100), Ok(Some(90..100)));
        assert_eq!(byte_range("bytes=-10", 100), Ok(Some(90..100)));
        assert_eq!(byte_range("bytes=95-200", 100), Ok(Some(95..100)));
        assert_eq!(byte_range("bytes=100-", 100), Err(()));
        assert_eq!(byte_range("bytes=5-2", 100), Err(()));
        assert_eq!(byte_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(byte_range("items=0-1", 100), Ok(None));
    }
}
