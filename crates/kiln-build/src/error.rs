use std::fmt;

use crate::Stage;

/// What went wrong inside a stage.
#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl Error {
    pub fn new(message: impl Into<String>) -> Self {
        Error(message.into())
    }
}

macro_rules! from_display {
    ($($t:ty),*) => {
        $(impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error(e.to_string())
            }
        })*
    };
}

from_display!(
    kiln_rootfs::Error,
    kiln_assemble::Error,
    kiln_disk::Error,
    std::io::Error,
    serde_json::Error
);

/// A failed build: the stage it failed in and why.
#[derive(Debug)]
pub struct BuildError {
    pub stage: Stage,
    pub error: Error,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stage {} failed: {}", self.stage.name(), self.error)
    }
}

impl std::error::Error for BuildError {}
