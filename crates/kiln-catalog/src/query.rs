//! Searching the catalogue: filters, StratusLab's status classes, paging,
//! sort and latest-per-series.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::model::Entry;

/// StratusLab's status classes. `valid` (the default) is active and not past
/// `valid_until`; `all` is everything published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusFilter {
    #[default]
    Valid,
    Expired,
    Deprecated,
    Deactivated,
    All,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Sort {
    /// Newest first.
    #[default]
    Newest,
    Oldest,
    Title,
}

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 1000;

/// The filters of `GET /api/v1/entries`; every one is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct Query {
    pub os: Option<String>,
    pub arch: Option<String>,
    pub format: Option<String>,
    pub tag: Option<String>,
    pub publisher: Option<String>,
    pub catalogue: Option<String>,
    pub series: Option<String>,
    /// Free text, matched case-insensitively against title and description.
    pub q: Option<String>,
    pub status: StatusFilter,
    /// Only the newest entry of each series.
    pub latest: bool,
    pub sort: Sort,
    /// Page size (default 50, at most 1000).
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

impl Query {
    pub fn limit(&self) -> u32 {
        self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
    }
}

/// Who is asking, as the store needs it: which catalogues they may read and
/// whose deactivated entries they may see. Built by the server from the caller.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Admins see everything.
    pub all: bool,
    /// Catalogues readable by the caller (public ones and memberships).
    pub catalogues: Vec<String>,
    /// The caller's name: owners see their own deactivated entries.
    pub user: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Page {
    /// Matches before paging.
    pub total: u64,
    pub offset: u32,
    pub limit: u32,
    pub entries: Vec<Entry>,
}
