//! Writing files safely: atomic replacement, modes and owners.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::Path;

/// Writes `bytes` through a temporary file in the same directory and a rename,
/// so a reader never sees half a file; parent directories are created. Not
/// synced here: a run makes what a stage wrote durable with one
/// [`sync_filesystems`] before it records any of its steps as done.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<(), String> {
    let dir = path
        .parent()
        .ok_or_else(|| format!("{} has no directory", path.display()))?;
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temp = dir.join(format!(".{name}.kiln-agent.{}", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&temp)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        if let Some((uid, gid)) = owner {
            chown(&temp, Some(uid), Some(gid))?;
        }
        file.write_all(bytes)?;
        fs::rename(&temp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&temp);
        format!("cannot write {}: {e}", path.display())
    })
}

/// Creates a directory (and its parents) with a mode and owner for the last one.
pub fn ensure_dir(path: &Path, mode: u32, owner: Option<(u32, u32)>) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot create {}: {e}", path.display());
    if !path.is_dir() {
        fs::create_dir_all(path).map_err(fail)?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(fail)?;
    }
    if let Some((uid, gid)) = owner {
        chown(path, Some(uid), Some(gid)).map_err(fail)?;
    }
    Ok(())
}

pub fn read_text(path: &Path) -> Result<String, String> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// The permission bits of a file, or `default` when it does not exist.
pub fn mode_of(path: &Path, default: u32) -> u32 {
    fs::metadata(path).map_or(default, |m| m.permissions().mode() & 0o7777)
}

/// The owner of a file, if it exists.
pub fn owner_of(path: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt as _;
    fs::metadata(path).ok().map(|m| (m.uid(), m.gid()))
}

/// Makes everything written so far durable, with sync(2): one call per stage
/// rather than an fsync per file, each of which cost tens of milliseconds of
/// a boot under software emulation.
pub fn sync_filesystems() {
    // SAFETY: sync(2) takes no arguments, touches no memory of ours and
    // cannot fail.
    unsafe { libc::sync() }
}
