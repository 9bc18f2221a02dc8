//! kiln marketplace catalogue: the entry model and its lifecycle, queries,
//! the metadata [`Store`] (SQLite or PostgreSQL), blob storage (a directory or
//! S3) and the local spool where uploads are received and hashed.
//!
//! Invariant: an entry's metadata names a blob only after the blob is
//! complete, and an entry is listed only once published; everything else a
//! crash leaves behind (spool files, chunks, unreferenced blobs, queued
//! entries) is garbage that the sweeper collects.

pub mod blobs;
pub mod digest;
pub mod error;
pub mod model;
pub mod query;
pub mod spool;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use blobs::{BlobConfig, Blobs};
pub use error::{Error, Result};
pub use store::{SqlStore, Store};
