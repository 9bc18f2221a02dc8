//! Root filesystem trees for VM images.
//!
//! - [`bootstrap`]: the [`Bootstrap`](bootstrap::Bootstrap) interface and its
//!   mmdebstrap backend (Debian; Ubuntu given an Ubuntu mirror).
//! - [`sandbox`]: runs a command inside a tree with /proc, /sys and /dev
//!   provided, in a private mount and PID namespace: whatever way kiln ends
//!   (error, panic, Ctrl-C, SIGKILL), the kernel tears the mounts down with
//!   the namespace, so nothing stays mounted and nothing runs on.
//! - [`apt`], [`files`], [`system`], [`clean`], [`kernel`]: the steps that
//!   turn a bootstrapped tree into an image's root, each one plain data in
//!   and commands in the sandbox out.

pub mod apt;
pub mod bootstrap;
pub mod clean;
pub mod files;
pub mod kernel;
pub mod sandbox;
pub mod system;

pub use sandbox::Sandbox;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command failed; `output` is the tail of what it printed.
    #[error("{command} failed ({status}){output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}
