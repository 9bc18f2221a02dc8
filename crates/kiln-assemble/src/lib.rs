//! A bootable raw disk from an image root, the way mkosi makes one: no loop
//! device and no mount. The partition plan ([`layout`]) fixes every offset and
//! identifier first; then each filesystem is written from data straight into
//! its partition's bytes ([`filesystems`]: ext4 by `mke2fs -d`, the ESP by
//! kiln-fs, swap by its header); then kiln writes the GPT and the BIOS boot
//! code ([`gpt`], [`grub`]).

pub mod filesystems;
pub mod gpt;
pub mod grub;
pub mod layout;
pub mod uuid;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("{tool} failed: {message}")]
    Tool { tool: String, message: String },
    #[error(transparent)]
    Fs(#[from] kiln_fs::Error),
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
