//! The files of a seed image and the filesystem that carries them.

use crate::error::{Error, Result};

/// One file of a seed: a `/`-separated relative path, its bytes and its mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedFile {
    pub path: String,
    pub contents: Vec<u8>,
    /// POSIX permission bits, shown through Rock Ridge.
    pub mode: u32,
}

impl SeedFile {
    pub fn new(path: impl Into<String>, contents: Vec<u8>) -> Self {
        SeedFile {
            path: path.into(),
            contents,
            mode: 0o644,
        }
    }
}

/// A labelled set of files: what goes on a context CD or a cloud-init seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    pub label: String,
    pub files: Vec<SeedFile>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filesystem {
    Iso9660,
    Vfat,
}

impl Seed {
    pub fn new(label: impl Into<String>) -> Self {
        Seed {
            label: label.into(),
            files: Vec::new(),
        }
    }

    pub fn add(&mut self, path: &str, contents: Vec<u8>) -> Result<()> {
        self.add_file(SeedFile::new(path, contents))
    }

    /// Adds a file; its path must be relative, without `.`/`..`, and new.
    pub fn add_file(&mut self, file: SeedFile) -> Result<()> {
        let valid = !file.path.is_empty()
            && file
                .path
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'));
        if !valid {
            return Err(Error::Invalid(format!(
                "seed file path {:?} is not a plain relative path",
                file.path
            )));
        }
        if self.files.iter().any(|f| f.path == file.path) {
            return Err(Error::Invalid(format!(
                "seed file {:?} is given twice",
                file.path
            )));
        }
        self.files.push(file);
        Ok(())
    }

    pub fn file(&self, path: &str) -> Option<&SeedFile> {
        self.files.iter().find(|f| f.path == path)
    }

    /// The image bytes; `epoch` (seconds since 1970) stamps every timestamp,
    /// so the same seed always gives the same bytes.
    pub fn to_image(&self, filesystem: Filesystem, epoch: i64) -> Result<Vec<u8>> {
        match filesystem {
            Filesystem::Iso9660 => crate::iso9660::write(self, epoch),
            Filesystem::Vfat => crate::vfat::write(self, epoch),
        }
    }
}
