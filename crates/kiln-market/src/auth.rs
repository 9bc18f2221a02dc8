//! Who is calling. A request carries an API token (`Authorization: Bearer`)
//! or, for the web UI, a session token in the `kiln_session` cookie; both are
//! stored only as sha256 hashes. No credential means anonymous; a wrong one
//! is refused rather than downgraded.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kiln_catalog::model::{Role, TokenKind, User};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "kiln_session";
/// The header a web page sends its CSRF token in when it calls the API.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The authenticated user, or none for an anonymous request.
#[derive(Debug, Clone, Default)]
pub struct Caller(pub Option<User>);

impl Caller {
    pub fn name(&self) -> Option<&str> {
        self.0.as_ref().map(|u| u.name.as_str())
    }
    pub fn role(&self) -> Option<Role> {
        self.0.as_ref().map(|u| u.role)
    }
    pub fn is_admin(&self) -> bool {
        self.role() == Some(Role::Admin)
    }
    /// The user, or 401.
    pub fn user(&self) -> Result<&User, ApiError> {
        self.0.as_ref().ok_or_else(ApiError::unauthorized)
    }
    /// At least `role`, or 401/403.
    pub fn require(&self, role: Role) -> Result<&User, ApiError> {
        let user = self.user()?;
        if user.role < role {
            return Err(ApiError::forbidden(format!(
                "this needs the {} role",
                role.as_str()
            )));
        }
        Ok(user)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, ApiError> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or_default())
    }
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token: `kiln_` and 64 hex digits (256 bits).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom_fill(&mut bytes);
    format!("kiln_{}", hex::encode(bytes))
}

fn getrandom_fill(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the OS random generator is available");
}

/// Creates and stores a token for `user`; returns the token itself (shown once).
pub async fn issue_token(
    state: &AppState,
    user: &str,
    kind: TokenKind,
) -> Result<String, ApiError> {
    let token = new_token();
    state
        .store
        .insert_token(&hash_token(&token), user, kind)
        .await?;
    Ok(token)
}

/// An Argon2id PHC string with a random salt.
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(ApiError::internal)
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

enum Credential {
    Bearer(String),
    Cookie(String),
}

fn credential(req: &Request) -> Result<Option<Credential>, ApiError> {
    if let Some(value) = req.headers().get(AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| ApiError::bad_request("malformed Authorization header"))?;
        let token = value
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::bad_request("Authorization must be `Bearer <token>`"))?;
        return Ok(Some(Credential::Bearer(token.trim().to_string())));
    }
    Ok(cookie(req.headers(), SESSION_COOKIE).map(Credential::Cookie))
}

/// The value of the cookie `name`, if the request carries it.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
}

/// The CSRF token that goes with a browser secret (the session token, or the
/// anonymous `kiln_csrf` cookie before login). A page from this site can
/// carry it; another site cannot compute it, since the secret is HttpOnly.
pub fn csrf_token(secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"kiln-csrf\0");
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

/// Whether `given` is the CSRF token of `secret` (compared in constant time).
pub fn csrf_ok(secret: &str, given: &str) -> bool {
    let want = csrf_token(secret);
    want.len() == given.len()
        && want
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Middleware: resolves the credential into a [`Caller`] request extension.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let caller = match credential(&req) {
        Err(e) => return e.into_response(),
        Ok(None) => Caller(None),
        Ok(Some(cred)) => {
            let (token, kind) = match cred {
                Credential::Bearer(t) => (t, TokenKind::Api),
                Credential::Cookie(t) => (t, TokenKind::Session),
            };
            let api = req.uri().path().starts_with("/api/");
            // A browser's cookie rides along on requests other sites make:
            // the API takes a cookie-authenticated change only with the
            // page's CSRF token (the web UI checks its own forms).
            if kind == TokenKind::Session && api && !req.method().is_safe() {
                let given = req
                    .headers()
                    .get(CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !csrf_ok(&token, given) {
                    return ApiError::forbidden("missing or wrong CSRF token").into_response();
                }
            }
            let issued_after = (kind == TokenKind::Session)
                .then(|| state.config.logins_issued_after(chrono::Utc::now()));
            match state
                .store
                .user_by_token(&hash_token(&token), kind, issued_after)
                .await
            {
                Ok(Some(user)) => Caller(Some(user)),
                // A stale session cookie makes a web page anonymous (the
                // page offers to log in again); the API refuses it.
                Ok(None) if kind == TokenKind::Session && !api => Caller(None),
                Ok(None) => {
                    return ApiError::new(axum::http::StatusCode::UNAUTHORIZED, "invalid token")
                        .into_response();
                }
                Err(e) => return ApiError::from(e).into_response(),
            }
        }
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}
