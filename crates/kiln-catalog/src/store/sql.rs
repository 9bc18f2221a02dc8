//! [`Store`] over sqlx's runtime-chosen driver: `sqlite:` URLs give the
//! embedded store, `postgres:` URLs the shared one. The SQL is the same for
//! both (see `schema.rs`); `Dialect` holds the few places they differ.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Row};
use uuid::Uuid;

use super::Store;
use super::schema::MIGRATIONS;
use crate::model::{
    Catalogue, Endorsement, EndorsementStatus, Entry, Role, Status, TokenKind, UploadSession, User,
};
use crate::query::{Page, Query, Scope, Sort, StatusFilter};
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
}

/// A value bound to a `$n` placeholder.
enum Arg {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
}

/// A statement under construction: text with `$n` placeholders and their values.
#[derive(Default)]
struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    fn new(text: &str) -> Sql {
        Sql {
            text: text.to_string(),
            args: Vec::new(),
        }
    }

    /// Adds a value and returns its placeholder.
    fn bind(&mut self, arg: Arg) -> String {
        self.args.push(arg);
        format!("${}", self.args.len())
    }

    fn push(&mut self, s: &str) -> &mut Sql {
        self.text.push_str(s);
        self
    }

    fn query(&self) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
        // Safe: the text is built from constant SQL and `$n` placeholders only;
        // every value is bound.
        let mut q = sqlx::query(AssertSqlSafe(self.text.clone()));
        for a in &self.args {
            q = match a {
                Arg::Text(s) => q.bind(s.clone()),
                Arg::OptText(s) => q.bind(s.clone()),
                Arg::Int(i) => q.bind(*i),
                Arg::OptInt(i) => q.bind(*i),
            };
        }
        q
    }
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_millis(ms: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| Error::Corrupt(format!("timestamp {ms}")))
}

fn entry_from(row: &AnyRow) -> Result<Entry> {
    let doc: String = row.try_get("doc")?;
    serde_json::from_str(&doc).map_err(|e| Error::Corrupt(format!("entry document: {e}")))
}

fn endorsement_from(row: &AnyRow) -> Result<Endorsement> {
    let doc: String = row.try_get("doc")?;
    serde_json::from_str(&doc).map_err(|e| Error::Corrupt(format!("endorsement document: {e}")))
}

fn endorsement_doc(e: &Endorsement) -> Result<String> {
    serde_json::to_string(e).map_err(|e| Error::Corrupt(e.to_string()))
}

fn user_from(row: &AnyRow) -> Result<User> {
    let role: String = row.try_get("role")?;
    Ok(User {
        name: row.try_get("name")?,
        role: Role::parse(&role).ok_or_else(|| Error::Corrupt(format!("role {role}")))?,
        created: from_millis(row.try_get("created")?)?,
        password_hash: row.try_get("password_hash")?,
    })
}

fn session_from(row: &AnyRow) -> Result<UploadSession> {
    let id: String = row.try_get("id")?;
    let entry: String = row.try_get("entry_id")?;
    let chunks: String = row.try_get("chunks")?;
    let corrupt = |what: &str| Error::Corrupt(format!("upload session {id}: {what}"));
    Ok(UploadSession {
        id: id.parse().map_err(|_| corrupt("id"))?,
        entry_id: entry.parse().map_err(|_| corrupt("entry id"))?,
        offset: row.try_get::<i64, _>("received")? as u64,
        chunks: serde_json::from_str(&chunks).map_err(|_| corrupt("chunks"))?,
        created: from_millis(row.try_get("created")?)?,
        updated: from_millis(row.try_get("updated")?)?,
    })
}

/// Escapes LIKE wildcards so free text matches literally.
fn like_pattern(text: &str) -> String {
    let mut p = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

const PUBLISHED: &str = "('active','deprecated','deactivated')";

/// The status class of `filter` for rows aliased `a`, at the time bound as `now`.
fn status_condition(a: &str, filter: StatusFilter, now: &str) -> String {
    match filter {
        StatusFilter::Valid => format!(
            "{a}.status = 'active' AND ({a}.valid_until IS NULL OR {a}.valid_until > {now})"
        ),
        StatusFilter::Expired => format!("{a}.status = 'active' AND {a}.valid_until <= {now}"),
        StatusFilter::Deprecated => format!("{a}.status = 'deprecated'"),
        StatusFilter::Deactivated => format!("{a}.status = 'deactivated'"),
        StatusFilter::All => format!("{a}.status IN {PUBLISHED}"),
    }
}

/// What the caller may see of rows aliased `a`.
fn scope_condition(a: &str, scope: &Scope, sql: &mut Sql) -> String {
    if scope.all {
        return "1 = 1".to_string();
    }
    let mut cats: Vec<String> = scope
        .catalogues
        .iter()
        .map(|c| sql.bind(Arg::Text(c.clone())))
        .collect();
    if cats.is_empty() {
        cats.push("NULL".to_string());
    }
    let owner = match &scope.user {
        Some(u) => format!(" OR {a}.publisher = {}", sql.bind(Arg::Text(u.clone()))),
        None => String::new(),
    };
    format!(
        "{a}.catalogue IN ({}) AND ({a}.status <> 'deactivated'{owner})",
        cats.join(", ")
    )
}

impl SqlStore {
    /// Connects to `url` (`sqlite://PATH?mode=rwc` or `postgres://…`) and
    /// brings the schema up to date.
    pub async fn connect(url: &str) -> Result<SqlStore> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            return Err(Error::Config(format!(
                "unsupported database URL {url:?}: use sqlite:// or postgres://"
            )));
        };
        let mut options =
            AnyPoolOptions::new().max_connections(if dialect == Dialect::Sqlite { 8 } else { 16 });
        if dialect == Dialect::Sqlite {
            // WAL lets readers run beside the writer; NORMAL sync is still safe
            // against a killed process (only a power loss can drop the last commits).
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::raw_sql("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000;")
                        .execute(conn)
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(url).await?;
        let store = SqlStore { pool, dialect };
        store.migrate().await?;
        Ok(store)
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    async fn migrate(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if self.dialect == Dialect::Postgres {
            // Several servers may start at once against one database.
            sqlx::query("SELECT pg_advisory_xact_lock(74115)")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::raw_sql("CREATE TABLE IF NOT EXISTS kiln_schema (version BIGINT PRIMARY KEY)")
            .execute(&mut *tx)
            .await?;
        let done: i64 = sqlx::query("SELECT count(*) AS n FROM kiln_schema")
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        for (i, ddl) in MIGRATIONS.iter().enumerate().skip(done as usize) {
            tracing::info!(version = i + 1, "applying schema migration");
            sqlx::raw_sql(*ddl).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO kiln_schema (version) VALUES ($1)")
                .bind(i as i64 + 1)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn fetch_entries(&self, sql: &Sql) -> Result<Vec<Entry>> {
        sql.query()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(entry_from)
            .collect()
    }

    async fn write_tags(tx: &mut sqlx::Transaction<'_, sqlx::Any>, entry: &Entry) -> Result<()> {
        let id = entry.id.to_string();
        sqlx::query("DELETE FROM entry_tags WHERE entry_id = $1")
            .bind(&id)
            .execute(&mut **tx)
            .await?;
        let mut tags = entry.tags.clone();
        tags.sort();
        tags.dedup();
        for tag in tags {
            sqlx::query("INSERT INTO entry_tags (entry_id, tag) VALUES ($1, $2)")
                .bind(&id)
                .bind(tag)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

/// The indexed columns of an entry, in schema order after `id`.
fn entry_columns(e: &Entry) -> Result<Vec<Arg>> {
    let doc = serde_json::to_string(e).map_err(|err| Error::Corrupt(err.to_string()))?;
    Ok(vec![
        Arg::Text(e.title.clone()),
        Arg::Text(e.description.clone()),
        Arg::OptText(e.os.clone()),
        Arg::OptText(e.arch.clone()),
        Arg::OptText(e.format.clone()),
        Arg::Text(e.publisher.clone()),
        Arg::Text(e.catalogue.clone()),
        Arg::OptText(e.series.clone()),
        Arg::Text(e.status.as_str().to_string()),
        Arg::OptInt(e.valid_until.map(millis)),
        Arg::Int(millis(e.created)),
        Arg::Int(millis(e.updated)),
        Arg::OptText(e.blob_key().map(str::to_string)),
        Arg::Text(doc),
    ])
}

const ENTRY_COLUMNS: [&str; 14] = [
    "title",
    "description",
    "os",
    "arch",
    "format",
    "publisher",
    "catalogue",
    "series",
    "status",
    "valid_until",
    "created",
    "updated",
    "blob_key",
    "doc",
];

#[async_trait]
impl Store for SqlStore {
    async fn insert_entry(&self, entry: &Entry) -> Result<()> {
        let mut sql = Sql::default();
        let id = sql.bind(Arg::Text(entry.id.to_string()));
        let values: Vec<String> = entry_columns(entry)?
            .into_iter()
            .map(|a| sql.bind(a))
            .collect();
        sql.text = format!(
            "INSERT INTO entries (id, {}) VALUES ({id}, {})",
            ENTRY_COLUMNS.join(", "),
            values.join(", ")
        );
        let mut tx = self.pool.begin().await?;
        sql.query().execute(&mut *tx).await?;
        Self::write_tags(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn entry(&self, id: Uuid) -> Result<Option<Entry>> {
        let row = sqlx::query("SELECT doc FROM entries WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(entry_from).transpose()
    }

    async fn update_entry(&self, entry: &Entry, expected: Status) -> Result<bool> {
        let mut sql = Sql::default();
        let sets: Vec<String> = entry_columns(entry)?
            .into_iter()
            .zip(ENTRY_COLUMNS)
            .map(|(a, col)| format!("{col} = {}", sql.bind(a)))
            .collect();
        let id = sql.bind(Arg::Text(entry.id.to_string()));
        let status = sql.bind(Arg::Text(expected.as_str().to_string()));
        sql.text = format!(
            "UPDATE entries SET {} WHERE id = {id} AND status = {status}",
            sets.join(", ")
        );
        let mut tx = self.pool.begin().await?;
        if sql.query().execute(&mut *tx).await?.rows_affected() == 0 {
            return Ok(false);
        }
        Self::write_tags(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn search(&self, query: &Query, scope: &Scope, now: DateTime<Utc>) -> Result<Page> {
        let mut sql = Sql::default();
        let now = sql.bind(Arg::Int(millis(now)));
        let mut conds = vec![
            status_condition("e", query.status, &now),
            scope_condition("e", scope, &mut sql),
        ];
        for (col, value) in [
            ("os", &query.os),
            ("arch", &query.arch),
            ("format", &query.format),
            ("publisher", &query.publisher),
            ("catalogue", &query.catalogue),
            ("series", &query.series),
        ] {
            if let Some(v) = value {
                conds.push(format!("e.{col} = {}", sql.bind(Arg::Text(v.clone()))));
            }
        }
        if let Some(tag) = &query.tag {
            let p = sql.bind(Arg::Text(tag.clone()));
            conds.push(format!(
                "EXISTS (SELECT 1 FROM entry_tags t WHERE t.entry_id = e.id AND t.tag = {p})"
            ));
        }
        if let Some(text) = query.q.as_deref().filter(|t| !t.trim().is_empty()) {
            let p = sql.bind(Arg::Text(like_pattern(text.trim())));
            conds.push(format!(
                "(lower(e.title) LIKE {p} ESCAPE '\\' OR lower(e.description) LIKE {p} ESCAPE '\\')"
            ));
        }
        if query.latest {
            // No newer entry of the same series that the caller could see in
            // this class. `n.created >= e.created` lets the (series,
            // catalogue, created) index seek instead of scanning the series.
            let newer_status = status_condition("n", query.status, &now);
            let newer_scope = scope_condition("n", scope, &mut sql);
            conds.push(format!(
                "(e.series IS NULL OR NOT EXISTS (SELECT 1 FROM entries n WHERE n.series = e.series \
                 AND n.catalogue = e.catalogue AND n.created >= e.created AND {newer_status} \
                 AND {newer_scope} AND (n.created > e.created OR n.id > e.id)))"
            ));
        }
        let filter = conds.join(" AND ");
        sql.text = format!("SELECT count(*) AS n FROM entries e WHERE {filter}");
        let total: i64 = sql.query().fetch_one(&self.pool).await?.try_get("n")?;

        let order = match query.sort {
            Sort::Newest => "e.created DESC, e.id DESC",
            Sort::Oldest => "e.created ASC, e.id ASC",
            Sort::Title => "lower(e.title) ASC, e.id ASC",
        };
        let (limit, offset) = (query.limit(), query.offset.unwrap_or(0));
        let lp = sql.bind(Arg::Int(limit.into()));
        let op = sql.bind(Arg::Int(offset.into()));
        sql.text = format!(
            "SELECT e.doc FROM entries e WHERE {filter} ORDER BY {order} LIMIT {lp} OFFSET {op}"
        );
        let entries = self.fetch_entries(&sql).await?;
        Ok(Page {
            total: total as u64,
            offset,
            limit,
            entries,
        })
    }

    async fn stale_entries(&self, before: DateTime<Utc>) -> Result<Vec<Entry>> {
        let mut sql = Sql::new(
            "SELECT doc FROM entries WHERE status IN ('queued', 'uploading') AND updated < ",
        );
        let p = sql.bind(Arg::Int(millis(before)));
        sql.push(&p);
        self.fetch_entries(&sql).await
    }

    async fn live_blob_keys(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT blob_key FROM entries WHERE blob_key IS NOT NULL AND status <> 'deleted'",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("blob_key")?)).collect()
    }

    async fn insert_user(&self, user: &User) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO users (name, role, created, password_hash) VALUES ($1, $2, $3, $4)",
        )
        .bind(&user.name)
        .bind(user.role.as_str())
        .bind(millis(user.created))
        .bind(user.password_hash.as_deref())
        .execute(&self.pool)
        .await;
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(Error::Conflict(
                format!("user {} already exists", user.name),
            )),
            other => other.map(|_| ()).map_err(Error::from),
        }
    }

    async fn user(&self, name: &str) -> Result<Option<User>> {
        let row =
            sqlx::query("SELECT name, role, created, password_hash FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(user_from).transpose()
    }

    async fn users(&self) -> Result<Vec<User>> {
        let rows =
            sqlx::query("SELECT name, role, created, password_hash FROM users ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(user_from).collect()
    }

    async fn set_password(&self, name: &str, hash: &str) -> Result<bool> {
        let r = sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
            .bind(hash)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn set_role(&self, name: &str, role: Role) -> Result<bool> {
        let r = sqlx::query("UPDATE users SET role = $1 WHERE name = $2")
            .bind(role.as_str())
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn insert_token(&self, hash: &str, user: &str, kind: TokenKind) -> Result<()> {
        sqlx::query("INSERT INTO tokens (hash, user_name, kind, created) VALUES ($1, $2, $3, $4)")
            .bind(hash)
            .bind(user)
            .bind(kind.as_str())
            .bind(millis(Utc::now()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn user_by_token(
        &self,
        hash: &str,
        kind: TokenKind,
        issued_after: Option<DateTime<Utc>>,
    ) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT u.name, u.role, u.created, u.password_hash FROM tokens t JOIN users u ON u.name = t.user_name \
             WHERE t.hash = $1 AND t.kind = $2 AND t.created >= $3",
        )
        .bind(hash)
        .bind(kind.as_str())
        .bind(issued_after.map_or(i64::MIN, millis))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from).transpose()
    }

    async fn delete_tokens_before(&self, kind: TokenKind, before: DateTime<Utc>) -> Result<u64> {
        let r = sqlx::query("DELETE FROM tokens WHERE kind = $1 AND created < $2")
            .bind(kind.as_str())
            .bind(millis(before))
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn delete_token(&self, hash: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM tokens WHERE hash = $1")
            .bind(hash)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn put_catalogue(&self, c: &Catalogue) -> Result<()> {
        sqlx::query(
            "INSERT INTO catalogues (name, public, description) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET public = excluded.public, description = excluded.description",
        )
        .bind(&c.name)
        .bind(i64::from(c.public))
        .bind(&c.description)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn catalogue(&self, name: &str) -> Result<Option<Catalogue>> {
        Ok(self
            .catalogues()
            .await?
            .into_iter()
            .find(|c| c.name == name))
    }

    async fn catalogues(&self) -> Result<Vec<Catalogue>> {
        let rows = sqlx::query("SELECT name, public, description FROM catalogues ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        let members =
            sqlx::query("SELECT catalogue, user_name FROM catalogue_members ORDER BY user_name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                let name: String = r.try_get("name")?;
                let mut names = Vec::new();
                for m in &members {
                    if m.try_get::<String, _>("catalogue")? == name {
                        names.push(m.try_get("user_name")?);
                    }
                }
                Ok(Catalogue {
                    public: r.try_get::<i64, _>("public")? != 0,
                    description: r.try_get("description")?,
                    members: names,
                    name,
                })
            })
            .collect()
    }

    async fn add_member(&self, catalogue: &str, user: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO catalogue_members (catalogue, user_name) VALUES ($1, $2) ON CONFLICT (catalogue, user_name) DO NOTHING",
        )
        .bind(catalogue)
        .bind(user)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn remove_member(&self, catalogue: &str, user: &str) -> Result<bool> {
        let r =
            sqlx::query("DELETE FROM catalogue_members WHERE catalogue = $1 AND user_name = $2")
                .bind(catalogue)
                .bind(user)
                .execute(&self.pool)
                .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn insert_session(&self, s: &UploadSession) -> Result<()> {
        sqlx::query(
            "INSERT INTO upload_sessions (id, entry_id, received, chunks, created, updated) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(s.id.to_string())
        .bind(s.entry_id.to_string())
        .bind(s.offset as i64)
        .bind(serde_json::to_string(&s.chunks).map_err(|e| Error::Corrupt(e.to_string()))?)
        .bind(millis(s.created))
        .bind(millis(s.updated))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn session(&self, id: Uuid) -> Result<Option<UploadSession>> {
        let row = sqlx::query("SELECT * FROM upload_sessions WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(session_from).transpose()
    }

    async fn advance_session(
        &self,
        id: Uuid,
        expected_offset: u64,
        chunk: &str,
        len: u64,
    ) -> Result<bool> {
        let Some(mut session) = self.session(id).await? else {
            return Ok(false);
        };
        if session.offset != expected_offset {
            return Ok(false);
        }
        session.chunks.push(chunk.to_string());
        let now = Utc::now();
        // The offset in the WHERE clause is the compare-and-set: of two
        // writers at one offset, one wins.
        let r = sqlx::query(
            "UPDATE upload_sessions SET received = $1, chunks = $2, updated = $3 WHERE id = $4 AND received = $5",
        )
        .bind((expected_offset + len) as i64)
        .bind(serde_json::to_string(&session.chunks).map_err(|e| Error::Corrupt(e.to_string()))?)
        .bind(millis(now))
        .bind(id.to_string())
        .bind(expected_offset as i64)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 1 {
            self.touch_entry(session.entry_id, now).await?;
        }
        Ok(r.rows_affected() == 1)
    }

    async fn delete_session(&self, id: Uuid) -> Result<()> {
        sqlx::query("DELETE FROM upload_sessions WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn sessions_of(&self, entry: Uuid) -> Result<Vec<UploadSession>> {
        let rows = sqlx::query("SELECT * FROM upload_sessions WHERE entry_id = $1")
            .bind(entry.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(session_from).collect()
    }

    async fn stale_sessions(&self, before: DateTime<Utc>) -> Result<Vec<UploadSession>> {
        let rows = sqlx::query("SELECT * FROM upload_sessions WHERE updated < $1")
            .bind(millis(before))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(session_from).collect()
    }

    async fn touch_entry(&self, id: Uuid, now: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "UPDATE entries SET updated = $1 WHERE id = $2 AND status IN ('queued', 'uploading')",
        )
        .bind(millis(now))
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn insert_endorsement(&self, e: &Endorsement) -> Result<()> {
        sqlx::query(
            "INSERT INTO endorsements (id, entry_id, endorser, status, created, updated, doc) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.id.to_string())
        .bind(e.entry_id.to_string())
        .bind(e.endorser.clone())
        .bind(e.status.as_str())
        .bind(millis(e.created))
        .bind(millis(e.updated))
        .bind(endorsement_doc(e)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn endorsement(&self, id: Uuid) -> Result<Option<Endorsement>> {
        let row = sqlx::query("SELECT doc FROM endorsements WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(endorsement_from).transpose()
    }

    async fn endorsements(&self, entry: Uuid) -> Result<Vec<Endorsement>> {
        let rows =
            sqlx::query("SELECT doc FROM endorsements WHERE entry_id = $1 ORDER BY created, id")
                .bind(entry.to_string())
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(endorsement_from).collect()
    }

    async fn update_endorsement(
        &self,
        e: &Endorsement,
        expected: EndorsementStatus,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE endorsements SET status = $1, updated = $2, doc = $3 WHERE id = $4 AND status = $5",
        )
        .bind(e.status.as_str())
        .bind(millis(e.updated))
        .bind(endorsement_doc(e)?)
        .bind(e.id.to_string())
        .bind(expected.as_str())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }
}
