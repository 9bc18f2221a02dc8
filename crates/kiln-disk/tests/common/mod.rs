//! Helpers shared by the disk-format integration tests: sparse raw images
//! with random content, running qemu-img (the oracle), and comparing guest
//! contents. Every test binary uses a different subset of them.
#![allow(dead_code)]

use std::fs::{File, OpenOptions as FsOpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_disk::convert::{Comparison, compare, convert};
use kiln_disk::inspect::Structure;
use kiln_disk::{CreateOptions, DiskRead, Format, OpenOptions};

/// A small deterministic generator (SplitMix64): tests are reproducible from
/// their seed without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Writes a sparse raw image of `size` bytes: runs of random data, of
/// compressible text, of explicitly written zeros, and holes, with data in
/// the first and last bytes (so an unaligned tail is exercised when `size`
/// is not a multiple of 512).
pub fn make_sparse_raw(path: &Path, size: u64, seed: u64) {
    let mut rng = Rng::new(seed);
    let file = File::create(path).unwrap();
    file.set_len(size).unwrap();
    let mut pos = 0;
    while pos < size {
        let (len, bytes) = match rng.below(4) {
            0 => {
                let len = 1 + rng.below(300 << 10);
                let mut b = vec![0u8; len as usize];
                rng.fill(&mut b);
                (len, Some(b))
            }
            1 => {
                let len = 1 + rng.below(200 << 10);
                let text = format!("kiln test line {} ", rng.next_u64());
                (len, Some(text.bytes().cycle().take(len as usize).collect()))
            }
            2 => {
                let len = 1 + rng.below(200 << 10);
                (len, Some(vec![0u8; len as usize]))
            }
            _ => (1 + rng.below(4 << 20), None),
        };
        let len = len.min(size - pos);
        if let Some(bytes) = bytes {
            file.write_all_at(&bytes[..len as usize], pos).unwrap();
        }
        pos += len;
    }
    let mut edge = [0u8; 3];
    rng.fill(&mut edge);
    file.write_all_at(&edge[..1], 0).unwrap();
    file.write_all_at(&edge[1..2], size - 1).unwrap();
}

/// A sparse raw source image in `dir` (see [`make_sparse_raw`]).
pub fn sparse_source(dir: &tempfile::TempDir, seed: u64, size: u64) -> PathBuf {
    let path = dir.path().join(format!("src-{seed}.raw"));
    make_sparse_raw(&path, size, seed);
    path
}

/// Runs qemu-img; a missing qemu-img fails the test (it is the oracle).
pub fn qemu_img(args: &[&str]) -> Output {
    Command::new("qemu-img")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("qemu-img is needed as the test oracle (apt-get install qemu-utils): {e}")
        })
}

/// Runs qemu-img, asserts success and returns its standard output.
pub fn qemu_img_ok(args: &[&str]) -> String {
    let out = qemu_img(args);
    assert!(
        out.status.success(),
        "qemu-img {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs qemu-io (shipped with qemu-img) and asserts success.
pub fn qemu_io_ok(args: &[&str]) {
    let out = Command::new("qemu-io")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("qemu-io comes with qemu-utils, the test oracle: {e}"));
    assert!(
        out.status.success(),
        "qemu-io {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `qemu-img info --output=json` of `path` read as `format`.
pub fn qemu_info(path: &Path, format: &str) -> serde_json::Value {
    let text = qemu_img_ok(&[
        "info",
        "--output=json",
        "-f",
        format,
        path.to_str().unwrap(),
    ]);
    serde_json::from_str(&text).unwrap()
}

/// Asserts that qemu-img compare finds `a` and `b` identical.
pub fn qemu_compare(a: &Path, a_format: &str, b: &Path, b_format: &str) {
    qemu_img_ok(&[
        "compare",
        "-f",
        a_format,
        "-F",
        b_format,
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
}

pub fn open(path: &Path) -> Box<dyn DiskRead> {
    kiln_disk::open(path, &OpenOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn open_allowing_external(path: &Path) -> Box<dyn DiskRead> {
    let opts = OpenOptions {
        allow_external: true,
        ..Default::default()
    };
    kiln_disk::open(path, &opts).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Asserts that two images read the same guest contents (the larger one's
/// extra part as zeros, as qemu-img compare does); `what` names the case.
pub fn assert_same_guest(a: &dyn DiskRead, b: &dyn DiskRead, what: &str) {
    let result = compare(a, b, &mut |_| {}).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(result, Comparison::Identical, "{what}");
}

/// Converts `src` into a new image at `dst` with kiln.
pub fn kiln_convert(src: &Path, dst: &Path, opts: &CreateOptions) {
    let source = open(src);
    let writer = kiln_disk::create(dst, opts, source.virtual_size()).unwrap();
    convert(source.as_ref(), writer, &mut |_| {}).unwrap();
}

/// Overwrites bytes of a file in place.
pub fn poke(path: &Path, offset: u64, bytes: &[u8]) {
    let file = FsOpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

/// Reads the whole guest disk (for images small enough), which must not
/// panic whatever the image holds; returns whether every read succeeded.
pub fn read_everything(image: &dyn DiskRead, limit: u64) -> bool {
    let size = image.virtual_size().min(limit);
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0;
    while pos < size {
        let n = (size - pos).min(buf.len() as u64);
        if image.block_status(pos, n).is_err()
            || image.read_at(&mut buf[..n as usize], pos).is_err()
        {
            return false;
        }
        pos += n;
    }
    true
}

/// A format's structural entry points, as the mutation tests call them.
pub struct Parsers {
    pub format: Format,
    pub inspect_structure: fn(&File, u64) -> Structure,
    pub check: fn(&File) -> kiln_disk::Result<Vec<String>>,
}

/// Feeds damaged image bytes (cut to `cut` modulo their length, if given)
/// to every parser of a format, and reads what opens: none may panic.
pub fn survive(parsers: &Parsers, mut bytes: Vec<u8>, cut: Option<u32>) {
    if let Some(cut) = cut {
        bytes.truncate(cut as usize % (bytes.len() + 1));
    }
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("mutant");
    std::fs::write(&path, &bytes).unwrap();
    let file = File::open(&path).unwrap();
    let _ = (parsers.inspect_structure)(&file, bytes.len() as u64);
    let _ = (parsers.check)(&file);
    let opts = OpenOptions {
        format: Some(parsers.format),
        ..Default::default()
    };
    if let Ok(image) = kiln_disk::open(&path, &opts) {
        let _ = image.info();
        read_everything(image.as_ref(), 64 << 20);
    }
}

/// A copy of `src` next to it, named `name`, with `bytes` written at `offset`.
pub fn damaged_copy(src: &Path, name: &str, offset: u64, bytes: &[u8]) -> PathBuf {
    let path = src.with_file_name(name);
    std::fs::copy(src, &path).unwrap();
    poke(&path, offset, bytes);
    path
}

/// A copy of `src` next to it cut to `len` bytes.
pub fn truncated_copy(src: &Path, len: u64) -> PathBuf {
    let path = src.with_file_name(format!(
        "cut-{len}-{}",
        src.file_name().unwrap().to_string_lossy()
    ));
    std::fs::copy(src, &path).unwrap();
    FsOpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len)
        .unwrap();
    path
}

/// Asserts that the safety inspector refuses `path` with a problem that
/// mentions every one of `words`.
pub fn assert_problem(path: &Path, words: &[&str]) {
    let report = kiln_disk::inspect::inspect_file(path).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| words.iter().all(|w| p.contains(w))),
        "{}: no problem mentions {words:?}: {:?}",
        path.display(),
        report.problems
    );
}
