//! The upload form. The page only renders the form: its script
//! (`static/upload.js`) creates the entry and sends the file through the
//! resumable upload session API in chunks, showing progress.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use kiln_catalog::model::Role;
use serde::Deserialize;

use super::page::{Ctx, UiResult};
use crate::access::can_publish_in;
use crate::state::AppState;

/// 8 MiB chunks by default: a few requests for a small image, and a lost
/// chunk costs little to send again.
const DEFAULT_CHUNK_KIB: u32 = 8 * 1024;

#[derive(Template, WebTemplate)]
#[template(path = "upload.html")]
struct UploadPage<'a> {
    ctx: &'a Ctx,
    catalogues: Vec<String>,
    chunk_bytes: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Options {
    /// Chunk size in KiB (64 KiB – 64 MiB).
    chunk_kib: Option<u32>,
}

pub async fn page(State(state): State<AppState>, ctx: Ctx, Query(o): Query<Options>) -> UiResult {
    ctx.require(Role::Developer)?;
    let catalogues = state
        .store
        .catalogues()
        .await?
        .into_iter()
        .filter(|c| can_publish_in(&ctx.caller, c))
        .map(|c| c.name)
        .collect();
    let kib = o
        .chunk_kib
        .unwrap_or(DEFAULT_CHUNK_KIB)
        .clamp(64, 64 * 1024);
    let page = UploadPage {
        ctx: &ctx,
        catalogues,
        chunk_bytes: u64::from(kib) * 1024,
    };
    Ok(ctx.render(StatusCode::OK, page))
}
