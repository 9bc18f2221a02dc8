//! Writing files into an image root. Every write goes through `tar -x` run
//! inside the sandbox, so a symlink in the tree resolves inside the tree and
//! never points a write at the host.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Error, Result, Sandbox};

/// A file to place in the image: owned by root, with `mode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeFile {
    /// Absolute path inside the image.
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

impl TreeFile {
    pub fn new(path: impl Into<String>, contents: impl Into<Vec<u8>>, mode: u32) -> Self {
        TreeFile {
            path: path.into(),
            contents: contents.into(),
            mode,
        }
    }
}

/// Checks that `path` is absolute and names something below the root.
pub fn check_path(path: &str) -> Result<&str> {
    let relative = path
        .strip_prefix('/')
        .ok_or_else(|| Error::Invalid(format!("{path:?}: an image path must be absolute")))?;
    let bad = relative.is_empty()
        || path.contains('\0')
        || relative
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(Error::Invalid(format!(
            "{path:?}: an image path must name a file below / without '.', '..' or '//'"
        )));
    }
    Ok(relative)
}

/// Seconds since 1970 for the files kiln writes: SOURCE_DATE_EPOCH or now.
pub fn build_epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        })
}

/// Places `files` in the image; missing directories are made 0755 root.
pub fn install(sandbox: &Sandbox, files: &[TreeFile]) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    let epoch = build_epoch();
    let mut archive = tar::Builder::new(Vec::new());
    for file in files {
        let relative = check_path(&file.path)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(file.contents.len() as u64);
        header.set_mode(file.mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(epoch);
        header.set_entry_type(tar::EntryType::Regular);
        archive
            .append_data(&mut header, relative, file.contents.as_slice())
            .map_err(crate::io_error(format!("packing {}", file.path)))?;
    }
    let data = archive
        .into_inner()
        .map_err(crate::io_error("packing files"))?;
    sandbox.run_with_input(
        &[
            "tar",
            "--extract",
            "--file=-",
            "--directory=/",
            "--preserve-permissions",
            "--numeric-owner",
            "--no-overwrite-dir",
        ],
        Some(&data),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_path;

    #[test]
    fn paths_must_stay_below_the_root() {
        assert_eq!(check_path("/etc/motd").unwrap(), "etc/motd");
        for bad in ["etc/motd", "/", "/etc/../../x", "/etc//x", "/./x", "/x/"] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }
}
