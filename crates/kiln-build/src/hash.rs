//! Digests: cache keys and output checksums.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256, Sha512};

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// SHA-256 and SHA-512 of a file, read once.
pub fn file_digests(path: &Path) -> std::io::Result<(String, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut a = Sha256::new();
    let mut b = Sha512::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        a.update(&buf[..n]);
        b.update(&buf[..n]);
    }
    Ok((hex(&a.finalize()), hex(&b.finalize())))
}

/// A cache key: the SHA-256 of the previous key and this stage's inputs.
pub fn key(parent: &str, stage: &str, inputs: &serde_json::Value) -> String {
    let mut h = Sha256::new();
    h.update(parent.as_bytes());
    h.update([0]);
    h.update(stage.as_bytes());
    h.update([0]);
    h.update(inputs.to_string().as_bytes());
    hex(&h.finalize())
}
