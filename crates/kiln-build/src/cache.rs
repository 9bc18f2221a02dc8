//! The stage cache.
//!
//! ```text
//! CACHE/lock                 held (flock) for the whole of a build
//! CACHE/stages/KEY/          one tree stage: layer.tar, removed, meta.json, extra files
//! CACHE/trees/KEY/           the root after the stage KEY, unpacked: root/, meta.json
//! CACHE/tmp/                 entries being written
//! CACHE/work/                the build's scratch space: root tree, outputs
//! ```
//!
//! An entry is written under tmp/ and renamed into place only when complete,
//! so a build killed at any point leaves only whole entries behind; tmp/ and
//! work/ are emptied by the next build, which holds the lock.
//!
//! A layer holds what a stage changed in the root: the paths it added or
//! modified (found by comparing inode, ctime, mtime, size, mode and owner
//! before and after) as a GNU tar with xattrs, and the paths it removed.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

pub struct Cache {
    dir: PathBuf,
    _lock: File,
}

/// The default place: $KILN_CACHE_DIR, else $XDG_CACHE_HOME/kiln, else ~/.cache/kiln.
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_CACHE_DIR") {
        return dir.into();
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Path::new(&dir).join("kiln");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".cache/kiln")
}

fn ctx(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::new(format!("{what}: {e}"))
}

impl Cache {
    /// Opens (creating) the cache and takes its lock, waiting for another
    /// build that holds it; then clears what a dead build left in tmp/ and work/.
    pub fn open(dir: &Path) -> Result<Cache, Error> {
        fs::create_dir_all(dir).map_err(ctx(dir.display()))?;
        let lock_path = dir.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(ctx(lock_path.display()))?;
        // SAFETY: flock on a descriptor we own.
        let busy = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0;
        if busy {
            tracing::warn!("another build holds {}: waiting", lock_path.display());
            // SAFETY: as above.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(Error::new(format!(
                    "locking {}: {}",
                    lock_path.display(),
                    std::io::Error::last_os_error()
                )));
            }
        }
        for sub in ["tmp", "work"] {
            let path = dir.join(sub);
            if path.exists() {
                fs::remove_dir_all(&path).map_err(ctx(path.display()))?;
            }
        }
        for sub in ["stages", "trees", "tmp", "work"] {
            fs::create_dir_all(dir.join(sub)).map_err(ctx(dir.join(sub).display()))?;
        }
        Ok(Cache {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A fresh scratch directory for this build.
    pub fn work_dir(&self) -> Result<PathBuf, Error> {
        let path = self.dir.join("work").join(std::process::id().to_string());
        fs::create_dir_all(&path).map_err(ctx(path.display()))?;
        Ok(path)
    }

    pub fn stage_entry(&self, key: &str) -> Option<PathBuf> {
        let path = self.dir.join("stages").join(key);
        path.join("meta.json").exists().then_some(path)
    }

    /// A directory to fill with a new entry; [`Cache::commit`] puts it in place.
    pub fn begin(&self, key: &str) -> Result<PathBuf, Error> {
        let path = self.dir.join("tmp").join(key);
        if path.exists() {
            fs::remove_dir_all(&path).map_err(ctx(path.display()))?;
        }
        fs::create_dir_all(&path).map_err(ctx(path.display()))?;
        Ok(path)
    }

    /// Writes `meta.json` last, syncs the entry and renames it into `kind/KEY`.
    pub fn commit(
        &self,
        kind: &str,
        key: &str,
        tmp: &Path,
        meta: &serde_json::Value,
    ) -> Result<PathBuf, Error> {
        let meta_path = tmp.join("meta.json");
        let mut f = File::create(&meta_path).map_err(ctx(meta_path.display()))?;
        f.write_all(serde_json::to_string_pretty(meta)?.as_bytes())
            .map_err(ctx(meta_path.display()))?;
        f.sync_all().map_err(ctx(meta_path.display()))?;
        for entry in fs::read_dir(tmp).map_err(ctx(tmp.display()))? {
            let entry = entry.map_err(ctx(tmp.display()))?;
            File::open(entry.path())
                .and_then(|f| f.sync_all())
                .map_err(ctx(entry.path().display()))?;
        }
        let dest = self.dir.join(kind).join(key);
        if dest.exists() {
            // A stale entry without meta.json: replace it.
            fs::remove_dir_all(&dest).map_err(ctx(dest.display()))?;
        }
        fs::rename(tmp, &dest).map_err(ctx(dest.display()))?;
        File::open(self.dir.join(kind))
            .and_then(|d| d.sync_all())
            .map_err(ctx(kind))?;
        Ok(dest)
    }

    /// The kept root tree after the stage `key`, marked as just used.
    pub fn tree_entry(&self, key: &str) -> Option<PathBuf> {
        let path = self.dir.join("trees").join(key);
        if !path.join("meta.json").exists() {
            return None;
        }
        // Pruning keeps the most recently used trees.
        let used = File::open(&path).and_then(|d| d.set_modified(std::time::SystemTime::now()));
        if let Err(e) = used {
            tracing::warn!("marking {} as used: {e}", path.display());
        }
        Some(path)
    }

    /// Moves the tree at `root` into the cache as the tree after the stage
    /// `key` and returns where it now is (`ENTRY/root`). `root` must be on the
    /// cache's filesystem (it is under work/).
    pub fn keep_tree(&self, key: &str, root: &Path) -> Result<PathBuf, Error> {
        let tmp = self.begin(key)?;
        fs::rename(root, tmp.join("root")).map_err(ctx(root.display()))?;
        // The tree's files were written by the stages, not synced: sync the
        // whole filesystem once before the entry can be seen as complete.
        let dir = File::open(&tmp).map_err(ctx(tmp.display()))?;
        // SAFETY: syncfs on a descriptor we own.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(Error::new(format!(
                "syncing the cache: {}",
                std::io::Error::last_os_error()
            )));
        }
        let entry = self.commit("trees", key, &tmp, &serde_json::json!({ "key": key }))?;
        Ok(entry.join("root"))
    }

    /// Keeps the `keep` most recently used entries of `kind` (kept trees are
    /// large); stage layers stay.
    pub fn prune(&self, kind: &str, keep: usize) -> Result<(), Error> {
        let dir = self.dir.join(kind);
        let mut entries: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(&dir)
            .map_err(ctx(dir.display()))?
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        entries.sort();
        let excess = entries.len().saturating_sub(keep);
        for (_, path) in entries.into_iter().take(excess) {
            fs::remove_dir_all(&path).map_err(ctx(path.display()))?;
        }
        Ok(())
    }
}

pub fn read_meta(entry: &Path) -> Result<serde_json::Value, Error> {
    let path = entry.join("meta.json");
    let text = fs::read_to_string(&path).map_err(ctx(path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// What identifies a path's state for change detection. ctime changes on
/// every write and metadata change and cannot be set from user space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    ino: u64,
    ctime: (i64, i64),
    mtime: (i64, i64),
    size: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

pub type Snapshot = BTreeMap<PathBuf, Stat>;

/// Every path under `root` (relative), with its state.
pub fn snapshot(root: &Path) -> Result<Snapshot, Error> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for entry in fs::read_dir(&dir).map_err(ctx(dir.display()))? {
            let entry = entry.map_err(ctx(dir.display()))?;
            let path = rel.join(entry.file_name());
            let m = entry.metadata().map_err(ctx(root.join(&path).display()))?;
            if m.is_dir() {
                stack.push(path.clone());
            }
            out.insert(
                path,
                Stat {
                    ino: m.ino(),
                    ctime: (m.ctime(), m.ctime_nsec()),
                    mtime: (m.mtime(), m.mtime_nsec()),
                    size: m.size(),
                    mode: m.mode(),
                    uid: m.uid(),
                    gid: m.gid(),
                },
            );
        }
    }
    Ok(out)
}

/// The change from `before` to `after`: paths to store, paths to remove first.
pub fn diff(before: &Snapshot, after: &Snapshot) -> (Vec<PathBuf>, Vec<PathBuf>) {
    const TYPE: u32 = libc::S_IFMT;
    let changed = after
        .iter()
        .filter(|(p, s)| before.get(*p) != Some(*s))
        .map(|(p, _)| p.clone())
        .collect();
    let removed = before
        .iter()
        .filter(|(p, s)| match after.get(*p) {
            None => true,
            Some(a) => a.mode & TYPE != s.mode & TYPE,
        })
        .map(|(p, _)| p.clone())
        .collect();
    (changed, removed)
}

const TAR_XATTRS: [&str; 3] = ["--xattrs", "--xattrs-include=*", "--numeric-owner"];

fn run_tar(cmd: &mut Command, what: &str) -> Result<(), Error> {
    let out = cmd
        .output()
        .map_err(|e| Error::new(format!("{what}: cannot run tar: {e}")))?;
    if !out.status.success() {
        return Err(Error::new(format!(
            "{what}: tar failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Writes the layer of `changed` and `removed` paths of `root` into `entry`.
pub fn write_layer(
    root: &Path,
    entry: &Path,
    changed: &[PathBuf],
    removed: &[PathBuf],
) -> Result<(), Error> {
    let mut list = Vec::new();
    for p in changed {
        list.extend_from_slice(b"./");
        list.extend_from_slice(p.as_os_str().as_bytes());
        list.push(0);
    }
    let list_path = entry.join("changed");
    fs::write(&list_path, &list).map_err(ctx(list_path.display()))?;
    let mut gone = Vec::new();
    for p in removed {
        gone.extend_from_slice(p.as_os_str().as_bytes());
        gone.push(0);
    }
    fs::write(entry.join("removed"), &gone).map_err(ctx("writing the removed list"))?;
    run_tar(
        Command::new("tar")
            .arg("--create")
            .arg("--file")
            .arg(entry.join("layer.tar"))
            .arg("--directory")
            .arg(root)
            .args(["--no-recursion", "--null", "--files-from"])
            .arg(&list_path)
            .args(TAR_XATTRS),
        "storing a layer",
    )?;
    fs::remove_file(&list_path).map_err(ctx(list_path.display()))?;
    Ok(())
}

/// Applies a layer to `root`: its removals, then its files.
pub fn apply_layer(root: &Path, entry: &Path) -> Result<(), Error> {
    let gone = fs::read(entry.join("removed")).map_err(ctx("reading a layer"))?;
    for name in gone.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let rel = Path::new(std::ffi::OsStr::from_bytes(name));
        if rel.is_absolute() || rel.components().any(|c| c.as_os_str() == "..") {
            return Err(Error::new(format!(
                "a cache layer names {rel:?}: refusing it"
            )));
        }
        let path = root.join(rel);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&path).map_err(ctx(path.display()))?,
            Ok(_) => fs::remove_file(&path).map_err(ctx(path.display()))?,
            Err(_) => {}
        }
    }
    run_tar(
        Command::new("tar")
            .arg("--extract")
            .arg("--file")
            .arg(entry.join("layer.tar"))
            .arg("--directory")
            .arg(root)
            .args(["--preserve-permissions", "--same-owner"])
            .args(TAR_XATTRS),
        "restoring a layer",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn layers_replay_changes_removals_and_type_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("etc/old")).unwrap();
        fs::write(root.join("etc/keep"), "same").unwrap();
        fs::write(root.join("etc/edit"), "v1").unwrap();
        fs::write(root.join("etc/gone"), "x").unwrap();
        fs::write(root.join("etc/old/f"), "x").unwrap();
        // The base, as a first layer from nothing.
        let base = dir.path().join("base");
        fs::create_dir(&base).unwrap();
        let (changed, removed) = diff(&Snapshot::new(), &snapshot(&root).unwrap());
        write_layer(&root, &base, &changed, &removed).unwrap();

        let before = snapshot(&root).unwrap();
        fs::write(root.join("etc/edit"), "v2").unwrap();
        fs::remove_file(root.join("etc/gone")).unwrap();
        fs::remove_dir_all(root.join("etc/old")).unwrap();
        fs::write(root.join("etc/old"), "now a file").unwrap();
        fs::write(root.join("etc/new"), "new").unwrap();
        fs::set_permissions(root.join("etc/keep"), fs::Permissions::from_mode(0o600)).unwrap();
        let after = snapshot(&root).unwrap();
        let (changed, removed) = diff(&before, &after);
        assert!(!changed.contains(&PathBuf::from("etc/gone")));
        assert!(removed.contains(&PathBuf::from("etc/gone")));
        assert!(removed.contains(&PathBuf::from("etc/old")));
        let top = dir.path().join("top");
        fs::create_dir(&top).unwrap();
        write_layer(&root, &top, &changed, &removed).unwrap();

        let copy = dir.path().join("copy");
        fs::create_dir(&copy).unwrap();
        apply_layer(&copy, &base).unwrap();
        apply_layer(&copy, &top).unwrap();
        assert_eq!(fs::read_to_string(copy.join("etc/edit")).unwrap(), "v2");
        assert_eq!(fs::read_to_string(copy.join("etc/new")).unwrap(), "new");
        assert_eq!(
            fs::read_to_string(copy.join("etc/old")).unwrap(),
            "now a file"
        );
        assert!(!copy.join("etc/gone").exists());
        let mode = fs::metadata(copy.join("etc/keep"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn entries_appear_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let tmp = cache.begin("k1").unwrap();
        fs::write(tmp.join("data"), "x").unwrap();
        assert!(cache.stage_entry("k1").is_none());
        cache
            .commit("stages", "k1", &tmp, &serde_json::json!({"a": 1}))
            .unwrap();
        let entry = cache.stage_entry("k1").unwrap();
        assert_eq!(read_meta(&entry).unwrap()["a"], 1);
        // A half-written entry left by a killed build is gone after reopening.
        let half = cache.begin("k2").unwrap();
        drop(cache);
        assert!(half.exists());
        let cache = Cache::open(dir.path()).unwrap();
        assert!(!half.exists());
        assert!(cache.stage_entry("k1").is_some());
    }
}
