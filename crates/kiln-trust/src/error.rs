//! One error type for the trust layer. The variants a verifier returns say
//! *why* something is refused, so callers can report the exact reason.

use std::path::PathBuf;

use crate::identity::Identity;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A key, certificate or CA file that cannot be used.
    #[error("{0}")]
    Key(String),
    /// Bytes that are not a signature kiln can read.
    #[error("malformed signature: {0}")]
    Format(String),
    /// The signature does not match the document: tampered bytes, or signed
    /// by another key than the one it names.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// A valid signature by a key the trust roots do not hold.
    #[error("unknown signer {0}")]
    UnknownSigner(Identity),
    /// A valid CMS signature whose certificate does not verify against the
    /// CA directory (unknown CA, revoked, expired, no CRL, ...).
    #[error("untrusted signer {identity}: {reason}")]
    Untrusted { identity: Identity, reason: String },
    #[error("openssl: {0}")]
    Openssl(#[from] openssl::error::ErrorStack),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
