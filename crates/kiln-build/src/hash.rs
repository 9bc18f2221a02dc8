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

/// SHA-256 and SHA-512 of a file.
pub fn file_digests(path: &Path) -> std::io::Result<(String, String)> {
    // One thread per digest: each reads the file on its own (the second
    // from the page cache), so the two run side by side on two cores.
    std::thread::scope(|s| {
        let sha512 = s.spawn(|| digest_file::<Sha512>(path));
        let sha256 = digest_file::<Sha256>(path)?;
        let sha512 = sha512.join().expect("the SHA-512 thread panicked")?;
        Ok((sha256, sha512))
    })
}

fn digest_file<D: Digest>(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut digest = D::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
    }
    Ok(hex(&digest.finalize()))
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
