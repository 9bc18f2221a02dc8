//! Who signed: an Ed25519 key (named by its fingerprint) or an X.509
//! certificate (named by subject and issuer, grid style), plus Ed25519 key
//! files.
//!
//! Key files are standard PEM, readable by openssl: `NAME.key` is the PKCS#8
//! private key ("PRIVATE KEY", mode 0600) and `NAME.pub` the SubjectPublicKeyInfo
//! ("PUBLIC KEY"). A key's fingerprint is `ed25519:` followed by the lowercase
//! hex sha256 of its 32 raw public-key bytes.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use openssl::x509::{X509NameRef, X509Ref};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A signer's identity as a verifier establishes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Identity {
    /// `fingerprint` is `ed25519:<hex sha256 of the public key>`.
    Ed25519 { fingerprint: String },
    /// Subject and issuer in openssl's one-line style: `/C=CH/O=CERN/CN=alice`.
    X509 { subject: String, issuer: String },
}

impl Identity {
    pub fn of_key(key: &VerifyingKey) -> Identity {
        Identity::Ed25519 {
            fingerprint: fingerprint(key),
        }
    }

    pub fn of_certificate(cert: &X509Ref) -> Identity {
        Identity::X509 {
            subject: oneline(cert.subject_name()),
            issuer: oneline(cert.issuer_name()),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Ed25519 { fingerprint } => f.write_str(fingerprint),
            Identity::X509 { subject, issuer } => {
                write!(f, "subject {subject:?} issuer {issuer:?}")
            }
        }
    }
}

/// `ed25519:` + hex sha256 of the raw public key.
pub fn fingerprint(key: &VerifyingKey) -> String {
    format!("ed25519:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

/// An X.509 name as `/KEY=value/...`, the form of `openssl x509 -subject
/// -nameopt compat`, grid CA directories and HEPiX `hv:dn`.
pub fn oneline(name: &X509NameRef) -> String {
    let mut out = String::new();
    for entry in name.entries() {
        let key = entry
            .object()
            .nid()
            .short_name()
            .map(str::to_string)
            .unwrap_or_else(|_| entry.object().to_string());
        let value = entry
            .data()
            .to_string()
            .unwrap_or_else(|_| String::from_utf8_lossy(entry.data().as_slice()).into_owned());
        out.push('/');
        out.push_str(&key);
        out.push('=');
        out.push_str(&value);
    }
    out
}

/// A new Ed25519 key from the operating system's random source.
pub fn generate_key() -> Result<SigningKey> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| Error::Key(format!("no randomness: {e}")))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Paths of a key pair named `name`: `name.key` and `name.pub`.
pub fn key_pair_paths(name: &Path) -> (PathBuf, PathBuf) {
    let with = |ext: &str| {
        let mut s = name.as_os_str().to_os_string();
        s.push(ext);
        PathBuf::from(s)
    };
    (with(".key"), with(".pub"))
}

/// Writes a new key pair as `name.key` (mode 0600) and `name.pub`. Refuses
/// to overwrite either file; on failure nothing is left behind.
pub fn write_key_pair(name: &Path, key: &SigningKey) -> Result<(PathBuf, PathBuf)> {
    use std::os::unix::fs::OpenOptionsExt;
    let (secret_path, public_path) = key_pair_paths(name);
    for p in [&secret_path, &public_path] {
        if p.exists() {
            return Err(Error::Key(format!(
                "{} exists; not overwriting a key",
                p.display()
            )));
        }
    }
    // PKCS#8 v1 (no embedded public key): the form `openssl genpkey` writes,
    // which OpenSSL 3.0 reads (it refuses the v2 form).
    let keypair = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    };
    let secret = keypair
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| Error::Key(format!("encoding the key: {e}")))?;
    let public = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| Error::Key(format!("encoding the public key: {e}")))?;
    let write = |path: &Path, text: &[u8], mode: u32| -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(Error::io(path))?;
        f.write_all(text)
            .and_then(|_| f.sync_all())
            .map_err(Error::io(path))
    };
    write(&secret_path, secret.as_bytes(), 0o600)?;
    if let Err(e) = write(&public_path, public.as_bytes(), 0o644) {
        let _ = std::fs::remove_file(&secret_path);
        let _ = std::fs::remove_file(&public_path);
        return Err(e);
    }
    Ok((secret_path, public_path))
}

/// Reads an Ed25519 private key (PKCS#8 PEM).
pub fn read_secret_key(pem: &str) -> Result<SigningKey> {
    SigningKey::from_pkcs8_pem(pem)
        .map_err(|e| Error::Key(format!("not an Ed25519 private key: {e}")))
}

/// Reads an Ed25519 public key (SubjectPublicKeyInfo PEM, as in `NAME.pub`).
pub fn read_public_key(pem: &str) -> Result<VerifyingKey> {
    VerifyingKey::from_public_key_pem(pem)
        .map_err(|e| Error::Key(format!("not an Ed25519 public key: {e}")))
}

pub(crate) fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(Error::io(path))
}
