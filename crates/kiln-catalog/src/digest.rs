//! sha256 and sha512 of a byte stream, computed on the fly. The two hashes
//! run on their own threads so that an upload is limited by the slower hash,
//! not by their sum.

use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digests {
    pub sha256: String,
    pub sha512: String,
}

struct Lane {
    tx: SyncSender<Bytes>,
    thread: JoinHandle<String>,
}

impl Lane {
    fn spawn<D: Digest + Send + 'static>(name: &str) -> Lane {
        let (tx, rx) = sync_channel::<Bytes>(16);
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let mut d = D::new();
                for chunk in rx {
                    d.update(&chunk);
                }
                hex::encode(d.finalize())
            })
            .expect("spawn hash thread");
        Lane { tx, thread }
    }

    fn finish(self) -> String {
        drop(self.tx);
        self.thread.join().expect("hash thread panicked")
    }
}

/// Feeds every chunk to both hashes. `update` blocks when a hash falls more
/// than 16 chunks behind, so memory stays bounded.
pub struct Hasher {
    sha256: Lane,
    sha512: Lane,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher::new()
    }
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher {
            sha256: Lane::spawn::<Sha256>("kiln-sha256"),
            sha512: Lane::spawn::<Sha512>("kiln-sha512"),
        }
    }

    pub fn update(&self, chunk: Bytes) {
        // A lane only closes when its thread died, which `finish` reports.
        let _ = self.sha256.tx.send(chunk.clone());
        let _ = self.sha512.tx.send(chunk);
    }

    pub fn finish(self) -> Digests {
        Digests {
            sha256: self.sha256.finish(),
            sha512: self.sha512.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        let h = Hasher::new();
        h.update(Bytes::from_static(b"ab"));
        h.update(Bytes::from_static(b"c"));
        let d = h.finish();
        assert_eq!(
            d.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(d.sha512.starts_with("ddaf35a193617aba"));
    }
}
