//! The metadata store: one interface, implemented over SQL for SQLite (the
//! embedded default) and PostgreSQL (shared by several servers).

mod schema;
mod sql;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::Result;
use crate::model::{
    Catalogue, Endorsement, EndorsementStatus, Entry, Role, Status, TokenKind, UploadSession, User,
};
use crate::query::{Page, Query, Scope};

pub use sql::SqlStore;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts a new entry (usually `queued`).
    async fn insert_entry(&self, entry: &Entry) -> Result<()>;
    /// Any entry by id, whatever its status.
    async fn entry(&self, id: Uuid) -> Result<Option<Entry>>;
    /// Replaces the stored entry if its status is still `expected`: the
    /// compare-and-set that makes publication atomic. Returns whether it did.
    async fn update_entry(&self, entry: &Entry, expected: Status) -> Result<bool>;
    async fn search(&self, query: &Query, scope: &Scope, now: DateTime<Utc>) -> Result<Page>;
    /// Entries still queued or uploading whose last sign of life is older than `before`.
    async fn stale_entries(&self, before: DateTime<Utc>) -> Result<Vec<Entry>>;
    /// Entry ids that hold a blob key (published or in flight), for the blob sweeper.
    async fn live_blob_keys(&self) -> Result<Vec<String>>;

    async fn insert_user(&self, user: &User) -> Result<()>;
    async fn user(&self, name: &str) -> Result<Option<User>>;
    async fn users(&self) -> Result<Vec<User>>;
    async fn set_password(&self, name: &str, hash: &str) -> Result<bool>;
    async fn set_role(&self, name: &str, role: Role) -> Result<bool>;
    /// Stores the hash of a token (never the token).
    async fn insert_token(&self, hash: &str, user: &str, kind: TokenKind) -> Result<()>;
    /// The user a token names, if it was issued at or after `issued_after`
    /// (web logins expire; API tokens pass `None`).
    async fn user_by_token(
        &self,
        hash: &str,
        kind: TokenKind,
        issued_after: Option<DateTime<Utc>>,
    ) -> Result<Option<User>>;
    /// Deletes the tokens of `kind` issued before `before`; returns how many.
    async fn delete_tokens_before(&self, kind: TokenKind, before: DateTime<Utc>) -> Result<u64>;
    /// Revokes a token (web logout); returns whether it existed.
    async fn delete_token(&self, hash: &str) -> Result<bool>;

    /// Creates or replaces a catalogue's name, visibility and description.
    async fn put_catalogue(&self, catalogue: &Catalogue) -> Result<()>;
    async fn catalogue(&self, name: &str) -> Result<Option<Catalogue>>;
    async fn catalogues(&self) -> Result<Vec<Catalogue>>;
    async fn add_member(&self, catalogue: &str, user: &str) -> Result<()>;
    async fn remove_member(&self, catalogue: &str, user: &str) -> Result<bool>;

    async fn insert_session(&self, session: &UploadSession) -> Result<()>;
    async fn session(&self, id: Uuid) -> Result<Option<UploadSession>>;
    /// Appends a chunk if the session is still at `expected_offset`.
    async fn advance_session(
        &self,
        id: Uuid,
        expected_offset: u64,
        chunk: &str,
        len: u64,
    ) -> Result<bool>;
    async fn delete_session(&self, id: Uuid) -> Result<()>;
    async fn sessions_of(&self, entry: Uuid) -> Result<Vec<UploadSession>>;
    /// Sessions with no chunk received since `before`.
    async fn stale_sessions(&self, before: DateTime<Utc>) -> Result<Vec<UploadSession>>;
    /// Marks an entry as alive (an upload into it is progressing).
    async fn touch_entry(&self, id: Uuid, now: DateTime<Utc>) -> Result<()>;

    async fn insert_endorsement(&self, endorsement: &Endorsement) -> Result<()>;
    async fn endorsement(&self, id: Uuid) -> Result<Option<Endorsement>>;
    /// An entry's endorsements, oldest first.
    async fn endorsements(&self, entry: Uuid) -> Result<Vec<Endorsement>>;
    /// Replaces a stored endorsement if its status is still `expected`.
    async fn update_endorsement(
        &self,
        endorsement: &Endorsement,
        expected: EndorsementStatus,
    ) -> Result<bool>;
}
