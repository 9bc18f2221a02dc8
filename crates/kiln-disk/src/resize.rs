//! `resize`: change an image's virtual size in place.

use std::fs::OpenOptions;
use std::path::Path;

use crate::{Error, Format, Result, qcow2};

/// Sets the virtual size of the image at `path` to `new_size`. Growing is
/// always allowed; shrinking discards data and needs `shrink`, and only raw
/// images can shrink.
pub fn resize(path: &Path, format: Format, new_size: u64, shrink: bool) -> Result<()> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    match format {
        Format::Raw => {
            let old = file.metadata()?.len();
            if new_size < old && !shrink {
                return Err(Error::Usage(format!(
                    "shrinking from {old} to {new_size} bytes discards data: pass --shrink to do it"
                )));
            }
            file.set_len(new_size)?;
            file.sync_all()?;
            Ok(())
        }
        Format::Qcow2 => qcow2::grow(&file, new_size),
        other => Err(Error::unsupported(
            other.name(),
            "resize: convert to raw or qcow2, resize, and convert back",
        )),
    }
}
