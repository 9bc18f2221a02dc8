//! The root directory every step works in: `/` on a running guest, a
//! scratch tree in tests (`--root DIR`).

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Root {
    path: PathBuf,
}

impl Root {
    pub fn new(path: impl Into<PathBuf>) -> Root {
        Root { path: path.into() }
    }

    /// The running system: devices, kernel command line and services are real.
    pub fn is_live(&self) -> bool {
        self.path == Path::new("/")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An absolute guest path inside the root. `..` is refused, so a
    /// context cannot name a file outside it.
    pub fn join(&self, guest_path: &str) -> Result<PathBuf, String> {
        if !guest_path.starts_with('/') {
            return Err(format!("{guest_path:?} is not an absolute path"));
        }
        let relative = guest_path.trim_start_matches('/');
        if relative.split('/').any(|c| c == "..") || guest_path.contains('\0') {
            return Err(format!("{guest_path:?} leaves the root"));
        }
        Ok(self.path.join(relative))
    }

    /// Like [`Root::join`] for paths the agent itself names.
    pub fn at(&self, guest_path: &str) -> PathBuf {
        self.join(guest_path)
            .expect("the agent's own paths are absolute and plain")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside() {
        let root = Root::new("/tmp/r");
        assert_eq!(
            root.join("/etc/hosts").unwrap(),
            PathBuf::from("/tmp/r/etc/hosts")
        );
        assert!(root.join("/etc/../../x").is_err());
        assert!(root.join("etc/hosts").is_err());
        assert!(!root.is_live());
        assert!(Root::new("/").is_live());
    }
}
