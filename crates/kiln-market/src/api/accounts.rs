//! Accounts: users, roles, tokens, password login; catalogues and members.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use kiln_catalog::model::{Catalogue, Role, TokenKind, User};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access::can_read_catalogue;
use crate::auth::{Caller, hash_password, issue_token, verify_password};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NewUser {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IssuedToken {
    pub user: User,
    /// Shown once; the server keeps only its hash.
    pub token: String,
}

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
}

/// Creates a user and a first API token (shared by the API and `kiln user add`).
pub async fn add_user(state: &AppState, new: NewUser) -> ApiResult<IssuedToken> {
    if !valid_name(&new.name) {
        return Err(ApiError::bad_request(
            "a user name is 1-64 of A-Z a-z 0-9 - _ . @",
        ));
    }
    let password_hash = new.password.as_deref().map(hash_password).transpose()?;
    let user = User {
        name: new.name,
        role: new.role,
        created: Utc::now(),
        password_hash,
    };
    state.store.insert_user(&user).await?;
    let token = issue_token(state, &user.name, TokenKind::Api).await?;
    tracing::info!(user = %user.name, role = user.role.as_str(), "user created");
    Ok(IssuedToken { user, token })
}

/// Create a user with a first API token (admin).
#[utoipa::path(post, path = "/api/v1/users", tag = "accounts", request_body = NewUser,
    responses((status = 201, body = IssuedToken), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    Json(new): Json<NewUser>,
) -> ApiResult<(StatusCode, Json<IssuedToken>)> {
    caller.require(Role::Admin)?;
    Ok((StatusCode::CREATED, Json(add_user(&state, new).await?)))
}

/// All users (admin).
#[utoipa::path(get, path = "/api/v1/users", tag = "accounts",
    responses((status = 200, body = Vec<User>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<User>>> {
    caller.require(Role::Admin)?;
    Ok(Json(state.store.users().await?))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RoleChange {
    pub role: Role,
}

/// Change a user's role (admin).
#[utoipa::path(put, path = "/api/v1/users/{name}/role", tag = "accounts", params(("name" = String, Path)), request_body = RoleChange,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_role(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(change): Json<RoleChange>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    if !state.store.set_role(&name, change.role).await? {
        return Err(ApiError::not_found("user"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The calling user.
#[utoipa::path(get, path = "/api/v1/me", tag = "accounts",
    responses((status = 200, body = User), (status = 401, body = ErrorBody)))]
pub async fn me(caller: Caller) -> ApiResult<Json<User>> {
    Ok(Json(caller.user()?.clone()))
}

/// A new API token for the calling user.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "accounts",
    responses((status = 201, body = IssuedToken), (status = 401, body = ErrorBody)))]
pub async fn new_token(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<(StatusCode, Json<IssuedToken>)> {
    let user = caller.user()?.clone();
    let token = issue_token(&state, &user.name, TokenKind::Api).await?;
    Ok((StatusCode::CREATED, Json(IssuedToken { user, token })))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Login {
    pub name: String,
    pub password: String,
}

/// Exchange a name and password for a new API token.
#[utoipa::path(post, path = "/api/v1/login", tag = "accounts", request_body = Login,
    responses((status = 201, body = IssuedToken), (status = 401, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    Json(login): Json<Login>,
) -> ApiResult<(StatusCode, Json<IssuedToken>)> {
    let user = check_password(&state, login).await?;
    let token = issue_token(&state, &user.name, TokenKind::Api).await?;
    Ok((StatusCode::CREATED, Json(IssuedToken { user, token })))
}

/// The user if the password is theirs, else 401 (shared by the API and the
/// web UI's login form). Argon2 runs off the async threads.
pub async fn check_password(state: &AppState, login: Login) -> ApiResult<User> {
    let refused = || ApiError::new(StatusCode::UNAUTHORIZED, "wrong name or password");
    let user = state.store.user(&login.name).await?.ok_or_else(refused)?;
    let hash = user.password_hash.clone().ok_or_else(refused)?;
    let password = login.password;
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(ApiError::internal)?;
    if !ok {
        tracing::warn!(user = %login.name, "failed login");
        return Err(refused());
    }
    Ok(user)
}

/// Catalogues the caller may read.
#[utoipa::path(get, path = "/api/v1/catalogues", tag = "catalogues", responses((status = 200, body = Vec<Catalogue>)))]
pub async fn list_catalogues(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<Catalogue>>> {
    let all = state.store.catalogues().await?;
    Ok(Json(
        all.into_iter()
            .filter(|c| can_read_catalogue(&caller, c))
            .map(|mut c| {
                if !caller.is_admin() {
                    c.members.clear(); // Membership lists are for admins.
                }
                c
            })
            .collect(),
    ))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CatalogueSpec {
    pub public: bool,
    #[serde(default)]
    pub description: String,
}

/// Create or change a catalogue (admin).
#[utoipa::path(put, path = "/api/v1/catalogues/{name}", tag = "catalogues", params(("name" = String, Path)), request_body = CatalogueSpec,
    responses((status = 200, body = Catalogue), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn put_catalogue(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(spec): Json<CatalogueSpec>,
) -> ApiResult<Json<Catalogue>> {
    caller.require(Role::Admin)?;
    if !valid_name(&name) {
        return Err(ApiError::bad_request(
            "a catalogue name is 1-64 of A-Z a-z 0-9 - _ . @",
        ));
    }
    let c = Catalogue {
        name: name.clone(),
        public: spec.public,
        description: spec.description,
        members: Vec::new(),
    };
    state.store.put_catalogue(&c).await?;
    Ok(Json(
        state
            .store
            .catalogue(&name)
            .await?
            .ok_or_else(|| ApiError::not_found("catalogue"))?,
    ))
}

/// Add a member to a catalogue (admin).
#[utoipa::path(put, path = "/api/v1/catalogues/{name}/members/{user}", tag = "catalogues",
    params(("name" = String, Path), ("user" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn add_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    state
        .store
        .catalogue(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("catalogue"))?;
    state
        .store
        .user(&user)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    state.store.add_member(&name, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a member from a catalogue (admin).
#[utoipa::path(delete, path = "/api/v1/catalogues/{name}/members/{user}", tag = "catalogues",
    params(("name" = String, Path), ("user" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    if !state.store.remove_member(&name, &user).await? {
        return Err(ApiError::not_found("membership"));
    }
    Ok(StatusCode::NO_CONTENT)
}
