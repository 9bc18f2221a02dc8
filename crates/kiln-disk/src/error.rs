use std::io;

/// Errors of the disk crate. Parser errors say which structure is wrong, so a
/// user (and the safety inspector) can tell *why* an image is refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The file is not a valid image of the format it claims to be.
    #[error("invalid {format} image: {reason}")]
    Invalid {
        format: &'static str,
        reason: String,
    },
    /// A valid image that uses a feature kiln does not implement.
    #[error("unsupported {format} feature: {reason}")]
    Unsupported {
        format: &'static str,
        reason: String,
    },
    /// The image refers to another file (backing file, external extent or data
    /// file) and the caller did not allow that.
    #[error(
        "{format} image refers to an external file {path:?}; refused unless external files are explicitly allowed"
    )]
    External { format: &'static str, path: String },
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub fn invalid(format: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            format,
            reason: reason.into(),
        }
    }
    pub fn unsupported(format: &'static str, reason: impl Into<String>) -> Self {
        Error::Unsupported {
            format,
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
