//! Filesystems built from data, never mounted: a FAT volume written in memory
//! from a list of files ([`fat`]), and ext2/3/4 written by `mke2fs -d` from a
//! directory straight into a partition of an image file ([`ext`]).

pub mod ext;
pub mod fat;
mod time;

pub use time::civil_from_days;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("{tool} failed: {message}")]
    Tool { tool: String, message: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;
