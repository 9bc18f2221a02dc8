//! Login with a password (a session token in an HttpOnly cookie) and logout
//! (the token is revoked, the cookie cleared).

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use kiln_catalog::model::TokenKind;
use serde::Deserialize;

use super::page::{Ctx, UiError, UiResult, local_path, see_other};
use crate::api::accounts::{Login, check_password};
use crate::auth::{SESSION_COOKIE, cookie, hash_token, issue_token};
use crate::state::AppState;

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    ctx: &'a Ctx,
    next: &'a str,
    name: &'a str,
    error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Next {
    next: String,
}

pub async fn login_page(ctx: Ctx, Query(q): Query<Next>) -> UiResult {
    let page = LoginPage {
        ctx: &ctx,
        next: local_path(&q.next),
        name: "",
        error: None,
    };
    Ok(ctx.render(StatusCode::OK, page))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LoginForm {
    name: String,
    password: String,
    next: String,
    csrf: String,
}

pub async fn login(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(form): Form<LoginForm>,
) -> UiResult {
    ctx.check_csrf(&form.csrf)?;
    let next = local_path(&form.next);
    let login = Login {
        name: form.name.clone(),
        password: form.password,
    };
    match check_password(&state, login).await {
        Ok(user) => {
            let token = issue_token(&state, &user.name, TokenKind::Session).await?;
            tracing::info!(user = %user.name, "web login");
            let mut r = see_other(next);
            r.headers_mut().append(
                SET_COOKIE,
                ctx.cookie(SESSION_COOKIE, &token, Some(login_max_age(&state))),
            );
            Ok(r)
        }
        Err(e) if e.status == StatusCode::UNAUTHORIZED => {
            let page = LoginPage {
                ctx: &ctx,
                next,
                name: &form.name,
                error: Some(e.message),
            };
            Ok(ctx.render(StatusCode::UNAUTHORIZED, page))
        }
        Err(e) => Err(UiError::from(e)),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CsrfOnly {
    csrf: String,
}

pub async fn logout(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: axum::http::HeaderMap,
    Form(form): Form<CsrfOnly>,
) -> UiResult {
    ctx.check_csrf(&form.csrf)?;
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        state.store.delete_token(&hash_token(&token)).await?;
        tracing::info!(user = ctx.user_name(), "web logout");
    }
    let mut r = see_other("/");
    r.headers_mut()
        .append(SET_COOKIE, ctx.cookie(SESSION_COOKIE, "", Some(0)));
    Ok(r)
}

/// The session cookie's Max-Age: the server's login lifetime.
fn login_max_age(state: &AppState) -> u32 {
    u32::try_from(state.config.login_ttl_secs).unwrap_or(u32::MAX)
}
