//! Admin pages: users (create, change role) and catalogues (create, members).
//! They call the same functions and store methods as the API.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use kiln_catalog::model::{Catalogue, Role};
use serde::Deserialize;

use super::page::{Ctx, UiError, UiResult, see_other};
use super::view::date;
use crate::api::accounts::{NewUser, add_user, valid_name};
use crate::state::AppState;

pub struct UserRow {
    pub name: String,
    pub role: &'static str,
    pub created: String,
    pub has_password: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin_users.html")]
struct UsersPage<'a> {
    ctx: &'a Ctx,
    users: Vec<UserRow>,
    roles: [&'static str; 3],
    /// After a user was created: their name and first API token (shown once).
    created: Option<(String, String)>,
}

const ROLES: [&str; 3] = ["reader", "developer", "admin"];

async fn users_page(state: &AppState, ctx: &Ctx, created: Option<(String, String)>) -> UiResult {
    let users = state
        .store
        .users()
        .await?
        .into_iter()
        .map(|u| UserRow {
            role: u.role.as_str(),
            created: date(u.created),
            has_password: u.password_hash.is_some(),
            name: u.name,
        })
        .collect();
    let status = if created.is_some() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let page = UsersPage {
        ctx,
        users,
        roles: ROLES,
        created,
    };
    Ok(ctx.render(status, page))
}

pub async fn users(State(state): State<AppState>, ctx: Ctx) -> UiResult {
    ctx.require(Role::Admin)?;
    users_page(&state, &ctx, None).await
}

fn parse_role(s: &str) -> Result<Role, UiError> {
    Role::parse(s)
        .ok_or_else(|| UiError::page(StatusCode::BAD_REQUEST, format!("unknown role {s:?}")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NewUserForm {
    name: String,
    role: String,
    password: String,
    csrf: String,
}

pub async fn create_user(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(form): Form<NewUserForm>,
) -> UiResult {
    ctx.require(Role::Admin)?;
    ctx.check_csrf(&form.csrf)?;
    let new = NewUser {
        name: form.name.trim().to_string(),
        role: parse_role(&form.role)?,
        password: (!form.password.is_empty()).then_some(form.password),
    };
    let issued = add_user(&state, new).await?;
    users_page(&state, &ctx, Some((issued.user.name, issued.token))).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RoleForm {
    role: String,
    csrf: String,
}

pub async fn set_role(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
    Form(form): Form<RoleForm>,
) -> UiResult {
    ctx.require(Role::Admin)?;
    ctx.check_csrf(&form.csrf)?;
    let role = parse_role(&form.role)?;
    if !state.store.set_role(&name, role).await? {
        return Err(UiError::page(
            StatusCode::NOT_FOUND,
            format!("no user {name:?}"),
        ));
    }
    tracing::info!(user = %name, role = role.as_str(), by = ctx.user_name(), "role changed");
    Ok(see_other("/admin/users"))
}

#[derive(Template, WebTemplate)]
#[template(path = "admin_catalogues.html")]
struct CataloguesPage<'a> {
    ctx: &'a Ctx,
    catalogues: Vec<Catalogue>,
}

pub async fn catalogues(State(state): State<AppState>, ctx: Ctx) -> UiResult {
    ctx.require(Role::Admin)?;
    let page = CataloguesPage {
        ctx: &ctx,
        catalogues: state.store.catalogues().await?,
    };
    Ok(ctx.render(StatusCode::OK, page))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CatalogueForm {
    name: String,
    description: String,
    /// A checkbox: present when ticked.
    public: Option<String>,
    csrf: String,
}

pub async fn put_catalogue(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(form): Form<CatalogueForm>,
) -> UiResult {
    ctx.require(Role::Admin)?;
    ctx.check_csrf(&form.csrf)?;
    let name = form.name.trim();
    if !valid_name(name) {
        return Err(UiError::page(
            StatusCode::BAD_REQUEST,
            "a catalogue name is 1-64 of A-Z a-z 0-9 - _ . @",
        ));
    }
    let c = Catalogue {
        name: name.to_string(),
        public: form.public.is_some(),
        description: form.description.trim().to_string(),
        members: Vec::new(),
    };
    state.store.put_catalogue(&c).await?;
    tracing::info!(catalogue = %c.name, public = c.public, by = ctx.user_name(), "catalogue saved");
    Ok(see_other("/admin/catalogues"))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MemberForm {
    user: String,
    csrf: String,
}

pub async fn add_member(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
    Form(form): Form<MemberForm>,
) -> UiResult {
    ctx.require(Role::Admin)?;
    ctx.check_csrf(&form.csrf)?;
    let user = form.user.trim();
    let not_found = |what: String| UiError::page(StatusCode::NOT_FOUND, what);
    state
        .store
        .catalogue(&name)
        .await?
        .ok_or_else(|| not_found(format!("no catalogue {name:?}")))?;
    state
        .store
        .user(user)
        .await?
        .ok_or_else(|| not_found(format!("no user {user:?}")))?;
    state.store.add_member(&name, user).await?;
    Ok(see_other("/admin/catalogues"))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CsrfForm {
    csrf: String,
}

pub async fn remove_member(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((name, user)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> UiResult {
    ctx.require(Role::Admin)?;
    ctx.check_csrf(&form.csrf)?;
    state.store.remove_member(&name, &user).await?;
    Ok(see_other("/admin/catalogues"))
}
