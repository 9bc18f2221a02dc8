//! The spool: a local directory where incoming bytes land, hashed as they
//! arrive, before the safety inspector reads them and they are committed to
//! the blob store. A spool file is removed when dropped unless committed.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::Result;
use crate::digest::{Digests, Hasher};

#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    pub fn new(dir: impl Into<PathBuf>) -> Result<Spool> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Spool { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub async fn create(&self) -> Result<SpoolWriter> {
        let path = self.dir.join(format!("{}.part", Uuid::new_v4()));
        let file = tokio::fs::File::create(&path).await?;
        Ok(SpoolWriter {
            file: Some(tokio::io::BufWriter::with_capacity(1 << 20, file)),
            hasher: Some(Hasher::new()),
            len: 0,
            path: SpoolPath(Some(path)),
        })
    }

    /// Removes spool files untouched for `age`: what a killed server left.
    pub fn sweep(&self, age: Duration) -> Result<usize> {
        let mut removed = 0;
        let cutoff = SystemTime::now() - age;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let modified = entry.metadata()?.modified()?;
            if modified < cutoff && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// A path that is deleted when dropped, unless taken.
#[derive(Debug)]
pub struct SpoolPath(Option<PathBuf>);

impl SpoolPath {
    pub fn path(&self) -> &Path {
        self.0.as_deref().expect("spool path taken")
    }

    /// Keeps the file: the caller moved or removed it.
    pub fn take(mut self) -> PathBuf {
        self.0.take().expect("spool path taken")
    }
}

impl Drop for SpoolPath {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

pub struct SpoolWriter {
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    hasher: Option<Hasher>,
    len: u64,
    path: SpoolPath,
}

/// A complete spool file: its length and digests.
#[derive(Debug)]
pub struct Spooled {
    pub path: SpoolPath,
    pub len: u64,
    pub digests: Digests,
}

impl SpoolWriter {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.len += chunk.len() as u64;
        self.file.as_mut().expect("open").write_all(&chunk).await?;
        self.hasher.as_ref().expect("open").update(chunk);
        Ok(())
    }

    pub async fn finish(mut self) -> Result<Spooled> {
        let mut file = self.file.take().expect("open");
        file.flush().await?;
        file.into_inner().sync_all().await?;
        let hasher = self.hasher.take().expect("open");
        let digests = tokio::task::spawn_blocking(move || hasher.finish())
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let path = std::mem::replace(&mut self.path, SpoolPath(None));
        Ok(Spooled {
            path,
            len: self.len,
            digests,
        })
    }
}
