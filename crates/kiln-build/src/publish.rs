//! Putting finished files into the output directory so that a reader never
//! sees half of one: a rename on the same filesystem; across filesystems, a
//! copy into an unnamed O_TMPFILE that is given its name only when complete
//! (a build killed during the copy leaves nothing behind).

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::Error;

/// Moves the complete file `src` to `dest`, replacing what was there.
pub fn place(src: &Path, dest: &Path) -> Result<(), Error> {
    match std::fs::rename(src, dest) {
        Ok(()) => return sync_dir(dest),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {}
        Err(e) => return Err(Error::new(format!("{}: {e}", dest.display()))),
    }
    let dir = dest.parent().unwrap_or(Path::new("."));
    let mut tmp = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o644)
        .open(dir)
        .map_err(|e| Error::new(format!("{}: {e}", dir.display())))?;
    let mut input = File::open(src)?;
    std::io::copy(&mut input, &mut tmp)?;
    tmp.flush()?;
    tmp.sync_all()?;
    link_tmpfile(&tmp, dest)?;
    std::fs::remove_file(src)?;
    sync_dir(dest)
}

/// Writes `data` to `dest` the same way.
pub fn write(dest: &Path, data: &[u8]) -> Result<(), Error> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let mut tmp = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o644)
        .open(dir)
        .map_err(|e| Error::new(format!("{}: {e}", dir.display())))?;
    tmp.write_all(data)?;
    tmp.sync_all()?;
    link_tmpfile(&tmp, dest)?;
    sync_dir(dest)
}

/// Names an O_TMPFILE: linked under a hidden name beside `dest`, then renamed
/// over it, so an existing `dest` is replaced in one step.
fn link_tmpfile(tmp: &File, dest: &Path) -> Result<(), Error> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = dest.with_file_name(format!(".{name}.kiln-{}", std::process::id()));
    let _ = std::fs::remove_file(&staging);
    let fd_path = CString::new(format!("/proc/self/fd/{}", tmp.as_raw_fd())).expect("no NUL");
    let to = CString::new(staging.as_os_str().as_bytes())
        .map_err(|_| Error::new(format!("{}: a NUL in the path", dest.display())))?;
    // SAFETY: both paths are valid C strings for the call's duration.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            fd_path.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc != 0 {
        return Err(Error::new(format!(
            "{}: {}",
            dest.display(),
            std::io::Error::last_os_error()
        )));
    }
    std::fs::rename(&staging, dest).map_err(|e| Error::new(format!("{}: {e}", dest.display())))
}

fn sync_dir(dest: &Path) -> Result<(), Error> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_and_place_replace_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.json");
        write(&dest, b"one").unwrap();
        write(&dest, b"two").unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"two");
        let src = dir.path().join("src.bin");
        std::fs::write(&src, b"image").unwrap();
        place(&src, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"image");
        assert!(!src.exists());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.json")]);
    }
}
