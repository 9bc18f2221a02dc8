//! An overlay mount over a kept root tree, private to the building thread.
//!
//! Replaying cached stages by extracting their layers costs a copy of the
//! whole root on every rebuild. Instead the root after the packages stage is
//! kept unpacked in the cache, and later stages run on an overlayfs whose
//! lower layer is that tree: it is shared read-only, each build writes only
//! its own upper directory.
//!
//! The mount lives in a mount namespace of the building thread's own (and of
//! the processes it starts), so it never appears on the host, and the kernel
//! drops it with the namespace however kiln ends, SIGKILL included.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::Error;

/// A mounted overlay; unmounted when dropped.
pub struct Overlay {
    target: PathBuf,
}

fn c_path(path: &Path) -> Result<CString, Error> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::new(format!("{}: a NUL byte in the path", path.display())))
}

fn os_error(what: String) -> Error {
    Error::new(format!("{what}: {}", std::io::Error::last_os_error()))
}

/// Moves the calling thread, and every thread and process it starts from now
/// on, into a mount namespace of its own in which nothing propagates back to
/// the host. Calling it again only makes a fresh private copy.
fn enter_private_namespace() -> Result<(), Error> {
    // SAFETY: plain syscalls; the string arguments are NUL-terminated literals.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(os_error(
                "a private mount namespace for the build (kiln build runs as root)".into(),
            ));
        }
        if libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err(os_error("making the build's mounts private".into()));
        }
    }
    Ok(())
}

impl Overlay {
    /// Mounts `lower` (read-only) under `upper` at `target`; `scratch` is
    /// overlayfs's work directory. All four must be directories; `upper` and
    /// `scratch` on the same filesystem.
    pub fn mount(
        lower: &Path,
        upper: &Path,
        scratch: &Path,
        target: &Path,
    ) -> Result<Overlay, Error> {
        for path in [lower, upper, scratch] {
            // overlayfs splits its options on these.
            if path
                .as_os_str()
                .as_bytes()
                .iter()
                .any(|b| b",:\\".contains(b))
            {
                return Err(Error::new(format!(
                    "{}: a cache path may not hold ',', ':' or '\\'",
                    path.display()
                )));
            }
        }
        enter_private_namespace()?;
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            scratch.display()
        );
        let options =
            CString::new(options).map_err(|_| Error::new("a NUL byte in a cache path"))?;
        let c_target = c_path(target)?;
        // SAFETY: NUL-terminated strings that outlive the call.
        let r = unsafe {
            libc::mount(
                c"overlay".as_ptr(),
                c_target.as_ptr(),
                c"overlay".as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        if r != 0 {
            return Err(os_error(format!(
                "mounting an overlay at {}",
                target.display()
            )));
        }
        Ok(Overlay {
            target: target.to_path_buf(),
        })
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let Ok(target) = c_path(&self.target) else {
            return;
        };
        // SAFETY: a NUL-terminated path. Detached: a straggling reader cannot
        // keep it busy, and the namespace goes with the process anyway.
        if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } != 0 {
            tracing::warn!(
                "unmounting {}: {}",
                self.target.display(),
                std::io::Error::last_os_error()
            );
        }
    }
}
