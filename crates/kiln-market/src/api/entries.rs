//! Entries: search, create, read, change, deprecate, deactivate, delete.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::Utc;
use kiln_catalog::model::{Checksums, Entry, EntryPatch, Location, NewEntry, Role, Status};
use kiln_catalog::query::{self, Page};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::access::{can_publish_in, readable_entry, scope, writable_entry};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;

fn is_hex_digest(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An http or https URL, for a field named `field`.
fn check_http_url(field: &str, url: &str) -> ApiResult<()> {
    let parsed =
        url::Url::parse(url).map_err(|e| ApiError::bad_request(format!("{field}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ApiError::bad_request(format!(
            "{field} must be http or https"
        )));
    }
    Ok(())
}

fn validate_checksums(c: &Checksums) -> ApiResult<()> {
    for (name, value, len) in [
        ("sha256", &c.sha256, 64),
        ("sha512", &c.sha512, 128),
        ("sha1", &c.sha1, 40),
        ("md5", &c.md5, 32),
    ] {
        if let Some(v) = value
            && !is_hex_digest(v, len)
        {
            return Err(ApiError::bad_request(format!(
                "{name} must be {len} hex digits"
            )));
        }
    }
    Ok(())
}

/// Search the catalogue.
#[utoipa::path(get, path = "/api/v1/entries", tag = "entries", params(query::Query),
    responses((status = 200, body = Page), (status = 400, body = ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<query::Query>,
) -> ApiResult<Json<Page>> {
    let scope = scope(&state, &caller).await?;
    Ok(Json(state.store.search(&q, &scope, Utc::now()).await?))
}

/// Create an entry. It stays `queued` (invisible) until its bytes are uploaded,
/// unless it only points at an external URL.
#[utoipa::path(post, path = "/api/v1/entries", tag = "entries", request_body = NewEntry,
    responses((status = 201, body = Entry), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(new): Json<NewEntry>,
) -> ApiResult<(StatusCode, Json<Entry>)> {
    let user = caller.require(Role::Developer)?.clone();
    if new.title.trim().is_empty() {
        return Err(ApiError::bad_request("title must not be empty"));
    }
    validate_checksums(&new.checksums)?;
    let catalogue_name = new
        .catalogue
        .clone()
        .unwrap_or_else(|| "public".to_string());
    let catalogue = state
        .store
        .catalogue(&catalogue_name)
        .await?
        .ok_or_else(|| ApiError::bad_request(format!("no catalogue {catalogue_name:?}")))?;
    if !can_publish_in(&caller, &catalogue) {
        return Err(ApiError::forbidden(format!(
            "you may not publish in catalogue {catalogue_name:?}"
        )));
    }
    if let Some(old) = new.replaces {
        let old = writable_entry(&state, &caller, old).await?;
        if old.catalogue != catalogue_name {
            return Err(ApiError::bad_request(
                "an entry can only replace one in its own catalogue",
            ));
        }
    }
    let now = Utc::now();
    let mut locations = Vec::new();
    if let Some(url) = &new.external_url {
        check_http_url("external_url", url)?;
        if new.bytes.is_none() || new.checksums.sha256.is_none() {
            return Err(ApiError::bad_request(
                "an external image needs bytes and checksums.sha256",
            ));
        }
        locations.push(Location::External { url: url.clone() });
    }
    for url in &new.mirrors {
        check_http_url("mirrors", url)?;
        locations.push(Location::External { url: url.clone() });
    }
    let status = if new.external_url.is_some() {
        Status::Active
    } else {
        Status::Queued
    };
    let entry = Entry {
        id: Uuid::new_v4(),
        title: new.title,
        description: new.description,
        version: new.version,
        os: new.os,
        os_version: new.os_version,
        arch: new.arch,
        hypervisor: new.hypervisor,
        format: None,
        virtual_size: None,
        bytes: new.bytes,
        checksums: new.checksums,
        locations,
        publisher: user.name,
        created: now,
        updated: now,
        valid_until: new.valid_until,
        status,
        deprecated: None,
        replaces: new.replaces,
        replaced_by: None,
        series: new.series,
        tags: new.tags,
        catalogue: catalogue_name,
        min_ram_mib: new.min_ram_mib,
        min_cpus: new.min_cpus,
        context_kind: new.context_kind,
        properties: new.properties,
        endorsements: Vec::new(),
    };
    state.store.insert_entry(&entry).await?;
    if entry.status == Status::Active {
        crate::ingest::link_replaced(&state, &entry).await;
    }
    tracing::info!(entry = %entry.id, publisher = %entry.publisher, status = entry.status.as_str(), "entry created");
    Ok((StatusCode::CREATED, Json(entry)))
}

/// One entry.
#[utoipa::path(get, path = "/api/v1/entries/{id}", tag = "entries", params(("id" = Uuid, Path)),
    responses((status = 200, body = Entry), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Entry>> {
    let mut entry = readable_entry(&state, &caller, id).await?;
    entry.status = entry.effective_status(Utc::now());
    super::endorsements::attach(&state, &mut entry).await?;
    Ok(Json(entry))
}

/// Change an entry's description (owner or admin).
#[utoipa::path(patch, path = "/api/v1/entries/{id}", tag = "entries", params(("id" = Uuid, Path)), request_body = EntryPatch,
    responses((status = 200, body = Entry), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(patch): Json<EntryPatch>,
) -> ApiResult<Json<Entry>> {
    let mut entry = writable_entry(&state, &caller, id).await?;
    let status = entry.status;
    patch.apply(&mut entry);
    entry.updated = Utc::now();
    save(&state, &entry, status).await?;
    Ok(Json(entry))
}

async fn save(state: &AppState, entry: &Entry, expected: Status) -> ApiResult<()> {
    if !state.store.update_entry(entry, expected).await? {
        return Err(ApiError::conflict("the entry changed meanwhile; try again"));
    }
    Ok(())
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct Deprecation {
    pub reason: String,
}

/// Deprecate an entry, with a reason (owner or admin).
#[utoipa::path(post, path = "/api/v1/entries/{id}/deprecate", tag = "entries", params(("id" = Uuid, Path)), request_body = Deprecation,
    responses((status = 200, body = Entry), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn deprecate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(d): Json<Deprecation>,
) -> ApiResult<Json<Entry>> {
    let mut entry = writable_entry(&state, &caller, id).await?;
    if d.reason.trim().is_empty() {
        return Err(ApiError::bad_request("a deprecation needs a reason"));
    }
    if !matches!(entry.status, Status::Active | Status::Deprecated) {
        return Err(ApiError::conflict(format!(
            "a {} entry cannot be deprecated",
            entry.status.as_str()
        )));
    }
    let was = entry.status;
    entry.status = Status::Deprecated;
    entry.deprecated = Some(d.reason);
    entry.updated = Utc::now();
    save(&state, &entry, was).await?;
    tracing::info!(entry = %id, by = ?caller.name(), "entry deprecated");
    Ok(Json(entry))
}

async fn set_activation(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    from: Status,
    to: Status,
) -> ApiResult<Json<Entry>> {
    caller.require(Role::Admin)?;
    let mut entry = readable_entry(state, caller, id).await?;
    if entry.status != from {
        return Err(ApiError::conflict(format!(
            "the entry is {}, not {}",
            entry.status.as_str(),
            from.as_str()
        )));
    }
    entry.status = to;
    entry.updated = Utc::now();
    save(state, &entry, from).await?;
    tracing::info!(entry = %id, status = to.as_str(), "entry status changed by an admin");
    Ok(Json(entry))
}

/// Hide an active entry and its data from everyone but its owner and admins (admin).
#[utoipa::path(post, path = "/api/v1/entries/{id}/deactivate", tag = "entries", params(("id" = Uuid, Path)),
    responses((status = 200, body = Entry), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn deactivate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Entry>> {
    set_activation(&state, &caller, id, Status::Active, Status::Deactivated).await
}

/// Make a deactivated entry active again (admin).
#[utoipa::path(post, path = "/api/v1/entries/{id}/reactivate", tag = "entries", params(("id" = Uuid, Path)),
    responses((status = 200, body = Entry), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn reactivate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Entry>> {
    set_activation(&state, &caller, id, Status::Deactivated, Status::Active).await
}

/// Delete an entry and its stored bytes (owner or admin).
#[utoipa::path(delete, path = "/api/v1/entries/{id}", tag = "entries", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    let mut entry = writable_entry(&state, &caller, id).await?;
    let was = entry.status;
    entry.status = Status::Deleted;
    entry.updated = Utc::now();
    save(&state, &entry, was).await?;
    // Metadata first: once deleted, nothing points at the blob.
    if let Some(key) = entry.blob_key() {
        state.blobs.delete(key).await?;
    }
    crate::sweeper::drop_sessions(&state, id).await?;
    tracing::info!(entry = %id, by = ?caller.name(), "entry deleted");
    Ok(StatusCode::NO_CONTENT)
}
