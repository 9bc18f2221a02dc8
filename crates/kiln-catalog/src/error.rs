use thiserror::Error;

/// What can go wrong in the catalogue. Storage failures keep their source;
/// everything a caller did wrong is `Invalid` or `Conflict` with a sentence.
#[derive(Debug, Error)]
pub enum Error {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("blob store: {0}")]
    Blobs(#[from] object_store::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("configuration: {0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, Error>;
