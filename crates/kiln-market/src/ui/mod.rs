//! The server-rendered web UI: browse and search, entry and publisher pages,
//! login/logout, the upload form (its script drives the resumable upload
//! API), and admin pages for users and catalogues. Templates are askama's
//! (compiled in, from `templates/`), static files are embedded from
//! `static/`. Every form POST carries a CSRF token derived from the
//! browser's HttpOnly secret ([`crate::auth::csrf_token`]).

mod admin;
mod assets;
mod browse;
mod page;
mod session;
mod upload;
mod view;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(browse::index))
        .route("/entries/{id}", get(browse::entry))
        .route("/publishers/{name}", get(browse::publisher))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/upload", get(upload::page))
        .route("/admin/users", get(admin::users).post(admin::create_user))
        .route("/admin/users/{name}/role", post(admin::set_role))
        .route(
            "/admin/catalogues",
            get(admin::catalogues).post(admin::put_catalogue),
        )
        .route("/admin/catalogues/{name}/members", post(admin::add_member))
        .route(
            "/admin/catalogues/{name}/members/{user}/remove",
            post(admin::remove_member),
        )
        .route("/static/{*path}", get(assets::serve))
}
