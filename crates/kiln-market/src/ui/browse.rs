//! Browse and search, the entry page, publisher pages.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use kiln_catalog::query::{self, Page, Sort, StatusFilter};
use serde::Deserialize;
use uuid::Uuid;

use super::page::{Ctx, UiError, UiResult};
use super::view::{Detail, Row};
use crate::access::{can_read_catalogue, readable_entry, scope};
use crate::state::AppState;

const PAGE_SIZE: u32 = 25;

/// The search form's fields. Empty fields mean "any" (a form sends them
/// all), so they are strings here and become the API's [`query::Query`].
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Params {
    q: String,
    os: String,
    arch: String,
    format: String,
    tag: String,
    publisher: String,
    catalogue: String,
    status: String,
    sort: String,
    latest: String,
    page: u32,
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

impl Params {
    fn query(&self) -> Result<query::Query, UiError> {
        let status = match self.status.as_str() {
            "" | "valid" => StatusFilter::Valid,
            "expired" => StatusFilter::Expired,
            "deprecated" => StatusFilter::Deprecated,
            "deactivated" => StatusFilter::Deactivated,
            "all" => StatusFilter::All,
            other => return Err(bad(format!("unknown status {other:?}"))),
        };
        let sort = match self.sort.as_str() {
            "" | "newest" => Sort::Newest,
            "oldest" => Sort::Oldest,
            "title" => Sort::Title,
            other => return Err(bad(format!("unknown sort {other:?}"))),
        };
        Ok(query::Query {
            os: some(&self.os),
            arch: some(&self.arch),
            format: some(&self.format),
            tag: some(&self.tag),
            publisher: some(&self.publisher),
            catalogue: some(&self.catalogue),
            series: None,
            q: some(&self.q),
            status,
            latest: !self.latest.is_empty(),
            sort,
            limit: Some(PAGE_SIZE),
            offset: Some(self.page.saturating_mul(PAGE_SIZE)),
        })
    }

    /// This search's URL at another page.
    fn page_url(&self, base: &str, page: u32) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("q", &self.q),
            ("os", &self.os),
            ("arch", &self.arch),
            ("format", &self.format),
            ("tag", &self.tag),
            ("publisher", &self.publisher),
            ("catalogue", &self.catalogue),
            ("status", &self.status),
            ("sort", &self.sort),
            ("latest", &self.latest),
        ] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        if page > 0 {
            s.append_pair("page", &page.to_string());
        }
        let q = s.finish();
        if q.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{q}")
        }
    }
}

fn bad(message: String) -> UiError {
    UiError::page(StatusCode::BAD_REQUEST, message)
}

/// Paging links and the "n–m of total" line.
pub struct Pager {
    pub first: u64,
    pub last: u64,
    pub total: u64,
    pub prev: Option<String>,
    pub next: Option<String>,
}

impl Pager {
    fn new(page: &Page, params: &Params, base: &str) -> Pager {
        let n = params.page;
        let shown = page.entries.len() as u64;
        let end = u64::from(page.offset) + shown;
        Pager {
            first: if shown == 0 {
                0
            } else {
                u64::from(page.offset) + 1
            },
            last: end,
            total: page.total,
            prev: (n > 0).then(|| params.page_url(base, n - 1)),
            next: (end < page.total).then(|| params.page_url(base, n + 1)),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "browse.html")]
struct BrowsePage<'a> {
    ctx: &'a Ctx,
    params: &'a Params,
    catalogues: Vec<String>,
    rows: Vec<Row>,
    pager: Pager,
}

pub async fn index(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(params): Query<Params>,
) -> UiResult {
    let query = params.query()?;
    let catalogues = state.store.catalogues().await?;
    let scope = scope(&state, &ctx.caller).await?;
    let page = state.store.search(&query, &scope, Utc::now()).await?;
    let now = Utc::now();
    let rows = page.entries.iter().map(|e| Row::new(e, now)).collect();
    let body = BrowsePage {
        ctx: &ctx,
        params: &params,
        catalogues: catalogues
            .into_iter()
            .filter(|c| can_read_catalogue(&ctx.caller, c))
            .map(|c| c.name)
            .collect(),
        rows,
        pager: Pager::new(&page, &params, "/"),
    };
    Ok(ctx.render(StatusCode::OK, body))
}

#[derive(Template, WebTemplate)]
#[template(path = "entry.html")]
struct EntryPage<'a> {
    ctx: &'a Ctx,
    e: Detail,
    /// Other entries of its series, newest first (this one included).
    versions: Vec<Row>,
}

pub async fn entry(State(state): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> UiResult {
    let id = Uuid::parse_str(&id).map_err(|_| bad(format!("{id:?} is not an entry id")))?;
    let entry = readable_entry(&state, &ctx.caller, id).await?;
    let now = Utc::now();
    let versions = match &entry.series {
        Some(series) => {
            let q = query::Query {
                series: Some(series.clone()),
                catalogue: Some(entry.catalogue.clone()),
                status: StatusFilter::All,
                limit: Some(50),
                ..Default::default()
            };
            let scope = scope(&state, &ctx.caller).await?;
            let page = state.store.search(&q, &scope, now).await?;
            page.entries.iter().map(|e| Row::new(e, now)).collect()
        }
        None => Vec::new(),
    };
    let endorsements = state.store.endorsements(entry.id).await?;
    let body = EntryPage {
        ctx: &ctx,
        e: Detail::new(&entry, &endorsements, now),
        versions,
    };
    Ok(ctx.render(StatusCode::OK, body))
}

#[derive(Template, WebTemplate)]
#[template(path = "publisher.html")]
struct PublisherPage<'a> {
    ctx: &'a Ctx,
    name: String,
    since: String,
    rows: Vec<Row>,
    pager: Pager,
}

pub async fn publisher(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
    Query(params): Query<Params>,
) -> UiResult<Response> {
    let user =
        state.store.user(&name).await?.ok_or_else(|| {
            UiError::page(StatusCode::NOT_FOUND, format!("no publisher {name:?}"))
        })?;
    let mut query = params.query()?;
    query.publisher = Some(user.name.clone());
    let scope = scope(&state, &ctx.caller).await?;
    let now = Utc::now();
    let page = state.store.search(&query, &scope, now).await?;
    let base = format!("/publishers/{}", user.name);
    let body = PublisherPage {
        ctx: &ctx,
        pager: Pager::new(&page, &params, &base),
        rows: page.entries.iter().map(|e| Row::new(e, now)).collect(),
        since: super::view::date(user.created),
        name: user.name,
    };
    Ok(ctx.render(StatusCode::OK, body))
}
