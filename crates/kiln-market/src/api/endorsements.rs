//! Endorsements of an entry: signatures over its canonical metadata
//! (kiln-trust's `kiln-entry/1`). The server verifies each one against the
//! entry as it is now and refuses a bad one; it does not decide whom to
//! trust — sites do, with their policy. An endorser deprecates or revokes its
//! endorsement with a signed statement.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use kiln_catalog::model::{Endorsement, EndorsementStatus, Entry, Role};
use kiln_trust::endorsement::{check_new, check_status_change};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::access::readable_entry;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndorsement {
    /// The detached signature over the entry's canonical metadata, as text
    /// (kiln's Ed25519 JSON line, or PEM CMS).
    pub signature: String,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndorsementChange {
    /// `deprecated` or `revoked`.
    pub status: EndorsementStatus,
    #[serde(default)]
    pub reason: String,
    /// The endorser's signature over the `kiln-endorsement-status/1` statement.
    pub signature: String,
}

/// The entry's endorsements as the entry document carries them.
pub async fn attach(state: &AppState, entry: &mut Entry) -> ApiResult<()> {
    entry.endorsements = state
        .store
        .endorsements(entry.id)
        .await?
        .iter()
        .map(|e| serde_json::to_value(e).expect("serializable"))
        .collect();
    Ok(())
}

/// An entry's endorsements, oldest first.
#[utoipa::path(get, path = "/api/v1/entries/{id}/endorsements", tag = "endorsements", params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<Endorsement>), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Vec<Endorsement>>> {
    readable_entry(&state, &caller, id).await?;
    Ok(Json(state.store.endorsements(id).await?))
}

/// Endorse an entry. The signature must verify over the entry's current
/// canonical metadata; one current active endorsement per endorser and entry.
#[utoipa::path(post, path = "/api/v1/entries/{id}/endorsements", tag = "endorsements", params(("id" = Uuid, Path)),
    request_body = NewEndorsement,
    responses((status = 201, body = Endorsement), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(new): Json<NewEndorsement>,
) -> ApiResult<(StatusCode, Json<Endorsement>)> {
    let user = caller.require(Role::Reader)?.clone();
    let entry = readable_entry(&state, &caller, id).await?;
    let endorser = check_new(&entry, &new.signature)
        .map_err(|e| ApiError::refused(format!("endorsement refused: {e}")))?
        .to_string();
    // One current endorsement per endorser; one made over metadata that has
    // changed since no longer verifies and does not block a new one.
    let existing = state.store.endorsements(id).await?;
    if existing.iter().any(|e| {
        e.endorser == endorser
            && e.status == EndorsementStatus::Active
            && check_new(&entry, &e.signature).is_ok()
    }) {
        return Err(ApiError::conflict(format!(
            "{endorser} already endorses this entry"
        )));
    }
    let now = Utc::now();
    let endorsement = Endorsement {
        id: Uuid::new_v4(),
        entry_id: id,
        endorser,
        signature: new.signature,
        submitted_by: user.name,
        created: now,
        updated: now,
        status: EndorsementStatus::Active,
        reason: None,
        status_signature: None,
    };
    state.store.insert_endorsement(&endorsement).await?;
    tracing::info!(entry = %id, endorser = %endorsement.endorser, "endorsement stored");
    Ok((StatusCode::CREATED, Json(endorsement)))
}

/// Deprecate or revoke an endorsement: only its endorser can, by signing the
/// `kiln-endorsement-status/1` statement. Revoked is final.
#[utoipa::path(post, path = "/api/v1/entries/{id}/endorsements/{eid}/status", tag = "endorsements",
    params(("id" = Uuid, Path), ("eid" = Uuid, Path)), request_body = EndorsementChange,
    responses((status = 200, body = Endorsement), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn change_status(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, eid)): Path<(Uuid, Uuid)>,
    Json(change): Json<EndorsementChange>,
) -> ApiResult<Json<Endorsement>> {
    caller.require(Role::Reader)?;
    readable_entry(&state, &caller, id).await?;
    let mut e = state
        .store
        .endorsement(eid)
        .await?
        .filter(|e| e.entry_id == id)
        .ok_or_else(|| ApiError::not_found("endorsement"))?;
    let allowed = matches!(
        (e.status, change.status),
        (EndorsementStatus::Active, EndorsementStatus::Deprecated)
            | (
                EndorsementStatus::Active | EndorsementStatus::Deprecated,
                EndorsementStatus::Revoked
            )
    );
    if !allowed {
        return Err(ApiError::conflict(format!(
            "an endorsement that is {} cannot become {}",
            e.status.as_str(),
            change.status.as_str()
        )));
    }
    check_status_change(&e, change.status, &change.reason, &change.signature)
        .map_err(|err| ApiError::refused(format!("status change refused: {err}")))?;
    let was = e.status;
    e.status = change.status;
    e.reason = Some(change.reason).filter(|r| !r.is_empty());
    e.status_signature = Some(change.signature);
    e.updated = Utc::now();
    if !state.store.update_endorsement(&e, was).await? {
        return Err(ApiError::conflict(
            "the endorsement changed meanwhile; try again",
        ));
    }
    tracing::info!(entry = %id, endorsement = %eid, status = e.status.as_str(), "endorsement status changed");
    Ok(Json(e))
}
