//! The REST API under /api/v1. Every handler carries its OpenAPI description
//! (`#[utoipa::path]`), so the document at /api/v1/openapi.json is generated
//! from the code that serves it.

pub mod accounts;
pub mod catalogs;
pub mod download;
pub mod endorsements;
pub mod entries;
pub mod uploads;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "kiln marketplace", description = "VM image marketplace: entries, uploads, downloads, accounts."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "entries", description = "Catalogue entries and their lifecycle"),
        (name = "endorsements", description = "Signed endorsements of entries"),
        (name = "uploads", description = "Uploads, resumable sessions and imports"),
        (name = "downloads", description = "Image data"),
        (name = "accounts", description = "Users and tokens"),
        (name = "catalogues", description = "Catalogues and their members"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("kiln token")
                    .build(),
            ),
        );
    }
}

/// The API routes and their OpenAPI document.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(entries::search))
        .routes(routes!(entries::create))
        .routes(routes!(entries::show))
        .routes(routes!(entries::update))
        .routes(routes!(entries::delete))
        .routes(routes!(entries::deprecate))
        .routes(routes!(entries::deactivate))
        .routes(routes!(entries::reactivate))
        .routes(routes!(uploads::put_file))
        .routes(routes!(uploads::import))
        .routes(routes!(uploads::start_session))
        .routes(routes!(uploads::session_status))
        .routes(routes!(uploads::put_chunk))
        .routes(routes!(uploads::finish_session))
        .routes(routes!(uploads::cancel_session))
        .routes(routes!(download::download))
        .routes(routes!(endorsements::list, endorsements::create))
        .routes(routes!(endorsements::change_status))
        .routes(routes!(accounts::create_user))
        .routes(routes!(accounts::list_users))
        .routes(routes!(accounts::set_role))
        .routes(routes!(accounts::me))
        .routes(routes!(accounts::new_token))
        .routes(routes!(accounts::login))
        .routes(routes!(accounts::list_catalogues))
        .routes(routes!(accounts::put_catalogue))
        .routes(routes!(accounts::add_member))
        .routes(routes!(accounts::remove_member))
        .routes(routes!(catalogs::signed_catalog))
        .routes(routes!(catalogs::signed_catalog_signature))
        .routes(routes!(catalogs::hepix_list))
        .routes(routes!(catalogs::streams_index))
        .routes(routes!(catalogs::streams_products))
}
