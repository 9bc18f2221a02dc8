//! Who may do what. Public catalogues are readable by anyone, private ones by
//! their members; developers publish; only an entry's owner or an admin
//! changes it. Entries a caller may not read are reported as not found.

use kiln_catalog::model::{Catalogue, Entry, Role, Status};
use kiln_catalog::query::Scope;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn can_read_catalogue(caller: &Caller, c: &Catalogue) -> bool {
    c.public
        || caller.is_admin()
        || caller
            .name()
            .is_some_and(|n| c.members.iter().any(|m| m == n))
}

/// Catalogues where the caller may publish: readable ones, with the developer role.
pub fn can_publish_in(caller: &Caller, c: &Catalogue) -> bool {
    caller.role().is_some_and(|r| r >= Role::Developer) && can_read_catalogue(caller, c)
}

pub fn is_owner(caller: &Caller, e: &Entry) -> bool {
    caller.name() == Some(e.publisher.as_str())
}

/// The store's view of what the caller may list.
pub async fn scope(state: &AppState, caller: &Caller) -> ApiResult<Scope> {
    if caller.is_admin() {
        return Ok(Scope {
            all: true,
            ..Default::default()
        });
    }
    let catalogues = state.store.catalogues().await?;
    Ok(Scope {
        all: false,
        catalogues: catalogues
            .into_iter()
            .filter(|c| can_read_catalogue(caller, c))
            .map(|c| c.name)
            .collect(),
        user: caller.name().map(str::to_string),
    })
}

/// The entry if the caller may read it, else 404. Unpublished and deactivated
/// entries are visible to their owner and admins only.
pub async fn readable_entry(state: &AppState, caller: &Caller, id: uuid::Uuid) -> ApiResult<Entry> {
    let entry = state
        .store
        .entry(id)
        .await?
        .ok_or_else(|| ApiError::not_found("entry"))?;
    if entry.status == Status::Deleted {
        return Err(ApiError::not_found("entry"));
    }
    if caller.is_admin() || is_owner(caller, &entry) {
        return Ok(entry);
    }
    let catalogue = state.store.catalogue(&entry.catalogue).await?;
    let readable = catalogue.is_some_and(|c| can_read_catalogue(caller, &c));
    if !readable
        || !matches!(
            entry.status,
            Status::Active | Status::Deprecated | Status::Expired
        )
    {
        return Err(ApiError::not_found("entry"));
    }
    Ok(entry)
}

/// The entry if the caller may change it: its owner (still a developer) or an admin.
pub async fn writable_entry(state: &AppState, caller: &Caller, id: uuid::Uuid) -> ApiResult<Entry> {
    caller.user()?;
    let entry = readable_entry(state, caller, id).await?;
    if caller.is_admin() {
        return Ok(entry);
    }
    if !is_owner(caller, &entry) {
        return Err(ApiError::forbidden(
            "only the entry's owner or an admin may change it",
        ));
    }
    caller.require(Role::Developer)?;
    Ok(entry)
}
