//! Detached signatures over any document, and their verification.
//!
//! Two kinds, one API:
//!
//! * **Ed25519** (the default; keys from `kiln key gen`). The signature is a
//!   one-line JSON text, sorted keys, `\n`-terminated:
//!   `{"algorithm":"ed25519","format":"kiln-signature/1","key":"ed25519:<hex>","public_key":"<base64>","signature":"<base64>"}`
//!   — `signature` is the 64-byte Ed25519 signature of the document's bytes,
//!   `public_key` the signer's 32-byte key and `key` its fingerprint (checked
//!   against `public_key` on reading).
//! * **X.509 / CMS** (grid style): a CMS (PKCS#7) SignedData, detached, binary
//!   content, carrying the signer certificate — what `openssl cms -sign -binary`
//!   makes and what `openssl cms -verify -binary -content DOC` accepts.
//!   [`Signature::to_bytes`] writes PEM (`-----BEGIN CMS-----`);
//!   [`Signature::from_bytes`] also reads DER and `BEGIN PKCS7` PEM.
//!
//! Use:
//!
//! ```no_run
//! # fn main() -> kiln_trust::Result<()> {
//! use kiln_trust::{Signer, Signature, TrustRoots};
//! use std::path::Path;
//! let signer = Signer::load(Path::new("alice.key"), None)?;        // or (key, Some(cert))
//! let sig = signer.sign(b"document")?;
//! std::fs::write("doc.sig", sig.to_bytes()).unwrap();
//!
//! let mut roots = TrustRoots::new();
//! roots.add_file(Path::new("alice.pub"))?;                         // or add_ca_dir(...)
//! let sig = Signature::from_bytes(&std::fs::read("doc.sig").unwrap())?;
//! let who = roots.verify(b"document", &sig)?;                      // Identity, or why not
//! # Ok(()) }
//! ```
//!
//! [`Signature::verify_integrity`] checks only that a signature matches the
//! document and names its signer, without any trust decision: what a server
//! does before storing an endorsement that sites judge later.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::store::{X509Lookup, X509Store, X509StoreBuilder};
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{X509, X509StoreContext};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::identity::{Identity, fingerprint, read_public_key, read_secret_key, read_text};

const FORMAT: &str = "kiln-signature/1";

/// A private key able to sign: an Ed25519 key, or an X.509 certificate with
/// its RSA or ECDSA key.
// Few signers live at a time: not worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Signer {
    Ed25519(SigningKey),
    X509 { cert: X509, key: PKey<Private> },
}

impl Signer {
    /// `key` alone: an Ed25519 PKCS#8 PEM key (`kiln key gen`). `key` with
    /// `cert`: a PEM certificate and its PEM private key (RSA or ECDSA).
    pub fn load(key: &Path, cert: Option<&Path>) -> Result<Signer> {
        let key_text = read_text(key)?;
        match cert {
            None => read_secret_key(&key_text)
                .map(Signer::Ed25519)
                .map_err(|e| {
                    Error::Key(format!(
                        "{}: {e} (an RSA or ECDSA key needs its certificate too)",
                        key.display()
                    ))
                }),
            Some(cert_path) => {
                let cert = X509::from_pem(read_text(cert_path)?.as_bytes()).map_err(|e| {
                    Error::Key(format!(
                        "{}: not a PEM certificate: {e}",
                        cert_path.display()
                    ))
                })?;
                let pkey = PKey::private_key_from_pem(key_text.as_bytes()).map_err(|e| {
                    Error::Key(format!("{}: not a PEM private key: {e}", key.display()))
                })?;
                if !cert.public_key()?.public_eq(&pkey) {
                    return Err(Error::Key(format!(
                        "{} is not the key of {}",
                        key.display(),
                        cert_path.display()
                    )));
                }
                Ok(Signer::X509 { cert, key: pkey })
            }
        }
    }

    pub fn identity(&self) -> Identity {
        match self {
            Signer::Ed25519(k) => Identity::of_key(&k.verifying_key()),
            Signer::X509 { cert, .. } => Identity::of_certificate(cert),
        }
    }

    pub fn sign(&self, document: &[u8]) -> Result<Signature> {
        match self {
            Signer::Ed25519(k) => Ok(Signature::Ed25519 {
                public_key: k.verifying_key(),
                signature: k.sign(document),
            }),
            Signer::X509 { cert, key } => {
                let cms = CmsContentInfo::sign(
                    Some(cert),
                    Some(key),
                    None,
                    Some(document),
                    CMSOptions::DETACHED | CMSOptions::BINARY,
                )?;
                Ok(Signature::Cms { der: cms.to_der()? })
            }
        }
    }
}

/// A detached signature (see the module documentation for the byte forms).
// Few signatures live at a time: not worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    Ed25519 {
        public_key: VerifyingKey,
        signature: ed25519_dalek::Signature,
    },
    /// DER of a CMS ContentInfo holding SignedData.
    Cms { der: Vec<u8> },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ed25519Text {
    algorithm: String,
    format: String,
    key: String,
    public_key: String,
    signature: String,
}

impl Signature {
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Signature::Ed25519 {
                public_key,
                signature,
            } => {
                let text = Ed25519Text {
                    algorithm: "ed25519".into(),
                    format: FORMAT.into(),
                    key: fingerprint(public_key),
                    public_key: B64.encode(public_key.as_bytes()),
                    signature: B64.encode(signature.to_bytes()),
                };
                let mut out = serde_json::to_vec(&text).expect("serializable");
                out.push(b'\n');
                out
            }
            Signature::Cms { der } => {
                let mut out = b"-----BEGIN CMS-----\n".to_vec();
                let b64 = B64.encode(der);
                for line in b64.as_bytes().chunks(64) {
                    out.extend_from_slice(line);
                    out.push(b'\n');
                }
                out.extend_from_slice(b"-----END CMS-----\n");
                out
            }
        }
    }

    /// Reads the kiln Ed25519 text, or a CMS/PKCS#7 signature in PEM or DER.
    pub fn from_bytes(bytes: &[u8]) -> Result<Signature> {
        let trimmed = bytes.trim_ascii_start();
        if trimmed.starts_with(b"{") {
            let text: Ed25519Text = serde_json::from_slice(trimmed)
                .map_err(|e| Error::Format(format!("kiln signature JSON: {e}")))?;
            if text.format != FORMAT || text.algorithm != "ed25519" {
                return Err(Error::Format(format!(
                    "unsupported signature {} / {}",
                    text.format, text.algorithm
                )));
            }
            let decode = |what: &str, s: &str| {
                B64.decode(s)
                    .map_err(|e| Error::Format(format!("{what} is not base64: {e}")))
            };
            let pk: [u8; 32] = decode("public_key", &text.public_key)?
                .try_into()
                .map_err(|_| Error::Format("public_key is not 32 bytes".into()))?;
            let public_key = VerifyingKey::from_bytes(&pk)
                .map_err(|e| Error::Format(format!("public_key: {e}")))?;
            let sig: [u8; 64] = decode("signature", &text.signature)?
                .try_into()
                .map_err(|_| Error::Format("signature is not 64 bytes".into()))?;
            if fingerprint(&public_key) != text.key {
                return Err(Error::Format(format!(
                    "key {} is not the fingerprint of the public key it carries",
                    text.key
                )));
            }
            return Ok(Signature::Ed25519 {
                public_key,
                signature: ed25519_dalek::Signature::from_bytes(&sig),
            });
        }
        let cms = if trimmed.starts_with(b"-----BEGIN") {
            CmsContentInfo::from_pem(trimmed).or_else(|_| {
                Pkcs7::from_pem(trimmed).and_then(|p| CmsContentInfo::from_der(&p.to_der()?))
            })
        } else {
            CmsContentInfo::from_der(bytes)
        }
        .map_err(|e| Error::Format(format!("neither a kiln signature nor CMS/PKCS#7: {e}")))?;
        Ok(Signature::Cms { der: cms.to_der()? })
    }

    /// Checks that the signature matches `document` and returns who made
    /// it, without deciding whether that signer is trusted.
    pub fn verify_integrity(&self, document: &[u8]) -> Result<Identity> {
        match self {
            Signature::Ed25519 {
                public_key,
                signature,
            } => {
                public_key.verify(document, signature).map_err(|_| {
                    Error::BadSignature(format!(
                        "the document does not match the signature by {}",
                        fingerprint(public_key)
                    ))
                })?;
                Ok(Identity::of_key(public_key))
            }
            Signature::Cms { der } => {
                let (signer, _) = cms_signer(der, document)?;
                Ok(Identity::of_certificate(&signer))
            }
        }
    }
}

/// The signer a CMS signature names, without checking it against any document.
pub(crate) fn cms_identity(sig: &Signature) -> Result<Identity> {
    let Signature::Cms { der } = sig else {
        return Err(Error::Format("not a CMS signature".into()));
    };
    let p7 = Pkcs7::from_der(der)?;
    let empty = Stack::new()?;
    let signers = p7.signers(&empty, Pkcs7Flags::empty())?;
    signers
        .iter()
        .next()
        .map(Identity::of_certificate)
        .ok_or_else(|| Error::Format("the CMS signature carries no signer certificate".into()))
}

/// Verifies the CMS signature over `document` (no chain check) and returns
/// the signer certificate and the other certificates the signature carries.
fn cms_signer(der: &[u8], document: &[u8]) -> Result<(X509, Stack<X509>)> {
    let mut cms = CmsContentInfo::from_der(der)?;
    cms.verify(
        None,
        None,
        Some(document),
        None,
        CMSOptions::BINARY | CMSOptions::NO_SIGNER_CERT_VERIFY,
    )
    .map_err(|e| {
        Error::BadSignature(format!(
            "the document does not match the CMS signature ({e})"
        ))
    })?;
    let p7 = Pkcs7::from_der(der)?;
    let carried = p7
        .signed()
        .and_then(|s| s.certificates())
        .map(|s| s.iter().map(|c| c.to_owned()).collect::<Vec<_>>())
        .unwrap_or_default();
    let empty = Stack::new()?;
    let signers = p7.signers(&empty, Pkcs7Flags::empty())?;
    let signer =
        signers.iter().next().map(|c| c.to_owned()).ok_or_else(|| {
            Error::Format("the CMS signature carries no signer certificate".into())
        })?;
    if signers.len() != 1 {
        return Err(Error::Format(
            "kiln accepts CMS signatures with exactly one signer".into(),
        ));
    }
    let mut chain = Stack::new()?;
    for c in carried {
        chain.push(c)?;
    }
    Ok((signer, chain))
}

/// What a verifier trusts: Ed25519 public keys, and/or X.509 anchors (a CA
/// directory like /etc/grid-security/certificates with its CRLs, or
/// individual CA or signer certificates).
///
/// CRLs: when any CRL was loaded, every certificate of a chain must be
/// covered by a current CRL of its issuer (openssl's `-crl_check_all`), as on
/// grid sites where fetch-crl keeps them fresh. Certificates given one by one
/// are accepted as anchors even when they are not self-signed (openssl's
/// `-partial_chain`), so `--trust signer.pem` pins one signer.
#[derive(Default)]
pub struct TrustRoots {
    keys: Vec<VerifyingKey>,
    fingerprints: Vec<String>,
    certs: Vec<X509>,
    crl_files: Vec<std::path::PathBuf>,
}

impl TrustRoots {
    pub fn new() -> TrustRoots {
        TrustRoots::default()
    }

    pub fn add_key(&mut self, key: VerifyingKey) {
        self.keys.push(key);
    }

    /// Trusts the Ed25519 key with this fingerprint (`ed25519:<hex>`): an
    /// Ed25519 signature carries its public key, which must hash to it.
    pub fn add_fingerprint(&mut self, fingerprint: &str) -> Result<()> {
        let hex = fingerprint.strip_prefix("ed25519:").unwrap_or_default();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Key(format!(
                "{fingerprint:?} is not a key fingerprint (ed25519: and 64 hex digits)"
            )));
        }
        self.fingerprints
            .push(format!("ed25519:{}", hex.to_ascii_lowercase()));
        Ok(())
    }

    pub fn add_certificate(&mut self, cert: X509) {
        self.certs.push(cert);
    }

    /// An Ed25519 public key (`NAME.pub`), or a PEM file of certificates
    /// and/or CRLs, recognised by content.
    pub fn add_file(&mut self, path: &Path) -> Result<()> {
        let text = read_text(path)?;
        if text.contains("-----BEGIN PUBLIC KEY-----") {
            let key = read_public_key(&text)
                .map_err(|e| Error::Key(format!("{}: {e}", path.display())))?;
            self.add_key(key);
            return Ok(());
        }
        let mut found = false;
        if text.contains("-----BEGIN CERTIFICATE-----") {
            for cert in X509::stack_from_pem(text.as_bytes()).map_err(|e| {
                Error::Key(format!("{}: unreadable certificate: {e}", path.display()))
            })? {
                self.certs.push(cert);
            }
            found = true;
        }
        if text.contains("-----BEGIN X509 CRL-----") {
            self.crl_files.push(path.to_path_buf());
            found = true;
        }
        if !found {
            return Err(Error::Key(format!(
                "{}: neither an Ed25519 public key nor PEM certificates or CRLs",
                path.display()
            )));
        }
        Ok(())
    }

    /// Every certificate and CRL in a CA directory (`*.0`/`*.pem` and
    /// `*.r0`/`*.crl` in grid layout; other files such as `.info`,
    /// `.signing_policy` or `.namespaces` are ignored).
    pub fn add_ca_dir(&mut self, dir: &Path) -> Result<()> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .map_err(Error::io(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        names.sort();
        let before = self.certs.len();
        for path in names {
            if !path.is_file() {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            if text.contains("-----BEGIN CERTIFICATE-----")
                || text.contains("-----BEGIN X509 CRL-----")
            {
                self.add_file(&path)?;
            }
        }
        if self.certs.len() == before {
            return Err(Error::Key(format!(
                "{}: no CA certificate in this directory",
                dir.display()
            )));
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.fingerprints.is_empty() && self.certs.is_empty()
    }

    fn store(&self) -> Result<X509Store> {
        let mut b = X509StoreBuilder::new()?;
        for c in &self.certs {
            b.add_cert(c.clone())?;
        }
        let mut flags = X509VerifyFlags::PARTIAL_CHAIN;
        if !self.crl_files.is_empty() {
            let lookup = b.add_lookup(X509Lookup::file())?;
            for f in &self.crl_files {
                lookup.load_crl_file(f, openssl::ssl::SslFiletype::PEM)?;
            }
            flags |= X509VerifyFlags::CRL_CHECK | X509VerifyFlags::CRL_CHECK_ALL;
        }
        b.set_flags(flags)?;
        Ok(b.build())
    }

    /// Verifies `sig` over `document` and returns the signer if these roots
    /// trust it. Errors say why not: [`Error::BadSignature`] (tampered),
    /// [`Error::UnknownSigner`] (valid, but no such key here),
    /// [`Error::Untrusted`] (certificate chain or CRL check failed).
    pub fn verify(&self, document: &[u8], sig: &Signature) -> Result<Identity> {
        match sig {
            Signature::Ed25519 { public_key, .. } => {
                let identity = sig.verify_integrity(document)?;
                if self.keys.iter().any(|k| k == public_key)
                    || self.fingerprints.contains(&fingerprint(public_key))
                {
                    Ok(identity)
                } else {
                    Err(Error::UnknownSigner(identity))
                }
            }
            Signature::Cms { der } => {
                let (signer, chain) = cms_signer(der, document)?;
                let identity = Identity::of_certificate(&signer);
                if self.certs.is_empty() {
                    return Err(Error::UnknownSigner(identity));
                }
                let store = self.store()?;
                let mut ctx = X509StoreContext::new()?;
                let verdict = ctx.init(&store, &signer, &chain, |c| {
                    Ok(c.verify_cert()?.then_some(()).ok_or(c.error()))
                })?;
                match verdict {
                    Ok(()) => Ok(identity),
                    Err(reason) => Err(Error::Untrusted {
                        identity,
                        reason: reason.error_string().to_string(),
                    }),
                }
            }
        }
    }
}
