//! What every page needs: who is calling, the CSRF token of their browser,
//! whether cookies must be `Secure`; rendering, redirects and error pages.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::FromRequestParts;
use axum::http::header::{CACHE_CONTROL, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kiln_catalog::model::Role;

use crate::auth::{Caller, SESSION_COOKIE, cookie, csrf_ok, csrf_token, new_token};
use crate::error::ApiError;

/// The anonymous browser secret the login form's CSRF token comes from.
pub const ANON_COOKIE: &str = "kiln_csrf";

/// The caller and their browser's CSRF token, for handlers and templates.
pub struct Ctx {
    pub caller: Caller,
    pub csrf: String,
    /// Whether cookies get `Secure`: served over https, or behind a proxy
    /// that says so.
    pub secure: bool,
    /// The path and query of this request (where login sends one back).
    pub here: String,
    /// Set when the browser had no secret yet: sent as a cookie with the page.
    new_secret: Option<String>,
    /// The secret the CSRF token is checked against (none on a first visit).
    secret: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Ctx, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        // Logged in: the session token is the secret. Else the anonymous one.
        let secret = if caller.0.is_some() {
            cookie(&parts.headers, SESSION_COOKIE)
        } else {
            cookie(&parts.headers, ANON_COOKIE)
        };
        let new_secret = secret.is_none().then(new_token);
        let csrf = csrf_token(secret.as_deref().or(new_secret.as_deref()).unwrap_or(""));
        Ok(Ctx {
            caller,
            csrf,
            secure: is_https(&parts.headers, parts.uri.scheme_str()),
            here: parts
                .uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.to_string()),
            new_secret,
            secret,
        })
    }
}

fn is_https(headers: &HeaderMap, scheme: Option<&str>) -> bool {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    scheme == Some("https")
        || header("x-forwarded-proto").split(',').next().map(str::trim) == Some("https")
        || header("forwarded")
            .split([';', ','])
            .any(|p| p.trim() == "proto=https")
}

impl Ctx {
    pub fn user_name(&self) -> &str {
        self.caller.name().unwrap_or("")
    }
    pub fn logged_in(&self) -> bool {
        self.caller.0.is_some()
    }
    pub fn is_admin(&self) -> bool {
        self.caller.is_admin()
    }
    pub fn can_upload(&self) -> bool {
        self.caller.role().is_some_and(|r| r >= Role::Developer)
    }

    /// Refuses a form whose CSRF token is not this browser's.
    pub fn check_csrf(&self, given: &str) -> Result<(), UiError> {
        match &self.secret {
            Some(secret) if csrf_ok(secret, given) => Ok(()),
            _ => {
                tracing::warn!(path = %self.here, "form refused: missing or wrong CSRF token");
                Err(UiError::page(
                    StatusCode::FORBIDDEN,
                    "This form has expired or did not come from this site (CSRF check). Reload the page and try again.",
                ))
            }
        }
    }

    /// The user with at least `role`; anonymous callers are sent to log in.
    pub fn require(&self, role: Role) -> Result<(), UiError> {
        match self.caller.role() {
            None => Err(UiError::Login(self.here.clone())),
            Some(r) if r < role => Err(UiError::page(
                StatusCode::FORBIDDEN,
                format!("This page needs the {} role.", role.as_str()),
            )),
            Some(_) => Ok(()),
        }
    }

    /// A cookie with the attributes every kiln cookie has.
    pub fn cookie(&self, name: &str, value: &str, max_age: Option<u32>) -> HeaderValue {
        let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
        if self.secure {
            c.push_str("; Secure");
        }
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        HeaderValue::from_str(&c).expect("cookie values are hex")
    }

    /// Adds what every page response carries: a new anonymous secret, and no
    /// caching of pages that hold a CSRF token.
    pub fn finish(&self, mut response: Response) -> Response {
        if let Some(secret) = &self.new_secret {
            let c = self.cookie(ANON_COOKIE, secret, None);
            response.headers_mut().append(SET_COOKIE, c);
        }
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
        response
    }

    pub fn render(&self, status: StatusCode, page: impl IntoResponse) -> Response {
        let mut r = page.into_response();
        *r.status_mut() = status;
        self.finish(r)
    }
}

/// 303 See Other to a local path.
pub fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut().insert(
        LOCATION,
        HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")),
    );
    r
}

/// Only paths on this site are followed after login (no open redirect).
pub fn local_path(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/"
    }
}

/// Why a page could not be shown.
#[derive(Debug)]
pub enum UiError {
    Page(StatusCode, String),
    /// Log in first, then come back to this path.
    Login(String),
}

pub type UiResult<T = Response> = Result<T, UiError>;

impl UiError {
    pub fn page(status: StatusCode, message: impl Into<String>) -> UiError {
        UiError::Page(status, message.into())
    }
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> UiError {
        UiError::Page(e.status, e.message)
    }
}

impl From<kiln_catalog::Error> for UiError {
    fn from(e: kiln_catalog::Error) -> UiError {
        ApiError::from(e).into()
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        match self {
            UiError::Login(next) => {
                let q: String = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("next", &next)
                    .finish();
                see_other(&format!("/login?{q}"))
            }
            UiError::Page(status, message) => {
                if status.is_server_error() {
                    tracing::error!(status = status.as_u16(), %message, "page failed");
                }
                let page = ErrorPage {
                    status: status.as_u16(),
                    reason: status.canonical_reason().unwrap_or("Error"),
                    message: &message,
                };
                let mut r = page.into_response();
                *r.status_mut() = status;
                r
            }
        }
    }
}
