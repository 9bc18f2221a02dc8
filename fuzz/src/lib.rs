//! What every fuzz target does with its input: put the bytes in a file and
//! run every parser of the format over it — the safety inspector, check, open
//! and a bounded read of the guest. None may panic, hang or allocate beyond
//! what the file can back (libFuzzer's -rss_limit_mb catches that).

use std::fs::File;
use std::io::Write;

use kiln_disk::{Format, OpenOptions};

/// Guest bytes read from an image that opens; enough to reach every table.
const READ_LIMIT: u64 = 8 << 20;

pub fn exercise(data: &[u8], format: Option<Format>) {
    // tmpfs, one file per fuzzing process.
    let path = std::path::PathBuf::from(format!("/dev/shm/kiln-fuzz-{}", std::process::id()));
    File::create(&path).and_then(|mut f| f.write_all(data)).expect("write the input");
    let _ = kiln_disk::inspect::inspect_file(&path);
    let _ = kiln_disk::check::check_file(&path, format);
    if let Ok(image) = kiln_disk::open(&path, &OpenOptions { format, allow_external: false }) {
        let _ = image.info();
        let size = image.virtual_size().min(READ_LIMIT);
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0;
        while at < size {
            let n = (size - at).min(buf.len() as u64);
            if image.block_status(at, n).is_err() || image.read_at(&mut buf[..n as usize], at).is_err() {
                break;
            }
            at += n;
        }
    }
}
