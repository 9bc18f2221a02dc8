//! Signatures: Ed25519 and CMS round trips, every refusal, and interop with
//! the openssl command line in both directions.

use std::path::Path;
use std::process::Command;

use kiln_trust::identity::{generate_key, write_key_pair};
use kiln_trust::testkit::{KeyType, TestPki, openssl};
use kiln_trust::{Error, Identity, Signature, Signer, TrustRoots};

const DOC: &[u8] = b"{\"id\":\"an entry\",\"sha256\":\"abc\"}\n";

fn ed25519_pair(dir: &Path, name: &str) -> (Signer, std::path::PathBuf) {
    let (secret, public) = write_key_pair(&dir.join(name), &generate_key().unwrap()).unwrap();
    (Signer::load(&secret, None).unwrap(), public)
}

#[test]
fn ed25519_round_trip_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, alice_pub) = ed25519_pair(dir.path(), "alice");
    let (mallory, _) = ed25519_pair(dir.path(), "mallory");
    let sig = alice.sign(DOC).unwrap();
    let bytes = sig.to_bytes();
    assert!(bytes.ends_with(b"\n") && bytes.starts_with(b"{"));
    let back = Signature::from_bytes(&bytes).unwrap();
    assert_eq!(back, sig);

    let mut roots = TrustRoots::new();
    roots.add_file(&alice_pub).unwrap();
    let who = roots.verify(DOC, &back).unwrap();
    assert_eq!(who, alice.identity());
    let Identity::Ed25519 { fingerprint } = &who else {
        panic!("{who:?}")
    };
    assert!(fingerprint.starts_with("ed25519:") && fingerprint.len() == 8 + 64);

    // Tampered bytes.
    let mut tampered = DOC.to_vec();
    tampered[3] ^= 1;
    assert!(matches!(
        roots.verify(&tampered, &back),
        Err(Error::BadSignature(_))
    ));
    // Unknown signer: valid signature, key not trusted.
    let other = mallory.sign(DOC).unwrap();
    match roots.verify(DOC, &other) {
        Err(Error::UnknownSigner(id)) => assert_eq!(id, mallory.identity()),
        r => panic!("{r:?}"),
    }
    // A signature claiming another key's fingerprint is malformed.
    let text = String::from_utf8(other.to_bytes()).unwrap();
    let forged = text.replace(
        &mallory.identity().to_string(),
        &alice.identity().to_string(),
    );
    assert!(matches!(
        Signature::from_bytes(forged.as_bytes()),
        Err(Error::Format(_))
    ));
}

#[test]
fn key_files_are_private_and_openssl_readable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = write_key_pair(&dir.path().join("k"), &generate_key().unwrap()).unwrap();
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    openssl(dir.path(), &["pkey", "-in", "k.key", "-noout"]);
    openssl(dir.path(), &["pkey", "-pubin", "-in", "k.pub", "-noout"]);
    // Never overwrites.
    assert!(write_key_pair(&dir.path().join("k"), &generate_key().unwrap()).is_err());
    assert!(public.exists());
}

fn cms_verify_with_openssl(
    dir: &Path,
    doc: &Path,
    sig: &Path,
    ca_bundle: &Path,
) -> std::process::Output {
    Command::new("openssl")
        .args([
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "PEM",
            "-crl_check_all",
            "-out",
            "/dev/null",
        ])
        .arg("-in")
        .arg(sig)
        .arg("-content")
        .arg(doc)
        .arg("-CAfile")
        .arg(ca_bundle)
        .current_dir(dir)
        .output()
        .expect("openssl")
}

#[test]
fn openssl_accepts_kiln_cms_signatures() {
    let pki = TestPki::new("Kiln Test CA");
    let crl = pki.crl();
    let bundle = pki.path("bundle.pem");
    let mut text = std::fs::read(pki.ca_cert()).unwrap();
    text.extend(std::fs::read(&crl).unwrap());
    std::fs::write(&bundle, text).unwrap();
    for (name, kind) in [("rsa-signer", KeyType::Rsa), ("ec-signer", KeyType::Ecdsa)] {
        let (cert, key) = pki.signer(name, kind);
        let signer = Signer::load(&key, Some(&cert)).unwrap();
        assert_eq!(
            signer.identity(),
            Identity::X509 {
                subject: format!("/C=CH/O=Kiln Test/CN={name}"),
                issuer: "/C=CH/O=Kiln Test/CN=Kiln Test CA".into(),
            }
        );
        let doc = pki.path("doc");
        std::fs::write(&doc, DOC).unwrap();
        let sig = pki.path(&format!("{name}.sig"));
        std::fs::write(&sig, signer.sign(DOC).unwrap().to_bytes()).unwrap();
        let out = cms_verify_with_openssl(pki.dir.path(), &doc, &sig, &bundle);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // openssl refuses it over other bytes.
        std::fs::write(&doc, b"other bytes").unwrap();
        let out = cms_verify_with_openssl(pki.dir.path(), &doc, &sig, &bundle);
        assert!(
            !out.status.success(),
            "{name}: openssl accepted tampered bytes"
        );
    }
}

#[test]
fn kiln_verifies_openssl_cms_signatures_against_a_ca_dir() {
    let pki = TestPki::new("Kiln Test CA");
    let (cert, key) = pki.signer("alice", KeyType::Rsa);
    let (bob_cert, bob_key) = pki.signer("bob", KeyType::Ecdsa);
    pki.revoke("bob");
    let ca_dir = pki.ca_dir(true);
    std::fs::write(pki.path("doc"), DOC).unwrap();
    let sign = |cert: &Path, key: &Path, out: &str, form: &str| {
        openssl(
            pki.dir.path(),
            &[
                "cms",
                "-sign",
                "-binary",
                "-in",
                "doc",
                "-signer",
                cert.to_str().unwrap(),
                "-inkey",
                key.to_str().unwrap(),
                "-outform",
                form,
                "-out",
                out,
            ],
        );
        Signature::from_bytes(&std::fs::read(pki.path(out)).unwrap()).unwrap()
    };
    let mut roots = TrustRoots::new();
    roots.add_ca_dir(&ca_dir).unwrap();

    for form in ["PEM", "DER"] {
        let sig = sign(&cert, &key, &format!("alice.{form}"), form);
        let who = roots.verify(DOC, &sig).unwrap();
        assert_eq!(who, Signer::load(&key, Some(&cert)).unwrap().identity());
        // Tampered bytes.
        assert!(matches!(
            roots.verify(b"tampered", &sig),
            Err(Error::BadSignature(_))
        ));
    }
    // Revoked key: the CRL in the CA directory names bob's certificate.
    let bob = sign(&bob_cert, &bob_key, "bob.pem.sig", "PEM");
    match roots.verify(DOC, &bob) {
        Err(Error::Untrusted { reason, .. }) => assert!(reason.contains("revoked"), "{reason}"),
        r => panic!("a revoked certificate verified: {r:?}"),
    }
    // Unknown signer: a certificate from another CA.
    let other = TestPki::new("Other CA");
    let (ocert, okey) = other.signer("eve", KeyType::Rsa);
    std::fs::write(other.path("doc"), DOC).unwrap();
    openssl(
        other.dir.path(),
        &[
            "cms",
            "-sign",
            "-binary",
            "-in",
            "doc",
            "-signer",
            ocert.to_str().unwrap(),
            "-inkey",
            okey.to_str().unwrap(),
            "-outform",
            "PEM",
            "-out",
            "eve.sig",
        ],
    );
    let eve = Signature::from_bytes(&std::fs::read(other.path("eve.sig")).unwrap()).unwrap();
    assert!(matches!(
        roots.verify(DOC, &eve),
        Err(Error::Untrusted { .. })
    ));
    // Integrity alone needs no roots.
    assert!(eve.verify_integrity(DOC).is_ok());
}

#[test]
fn a_ca_dir_without_crls_accepts_and_a_pinned_signer_certificate_is_an_anchor() {
    let pki = TestPki::new("Kiln Test CA");
    let (cert, key) = pki.signer("carol", KeyType::Ecdsa);
    let signer = Signer::load(&key, Some(&cert)).unwrap();
    let sig = signer.sign(DOC).unwrap();
    let mut by_dir = TrustRoots::new();
    by_dir.add_ca_dir(&pki.ca_dir(false)).unwrap();
    assert_eq!(by_dir.verify(DOC, &sig).unwrap(), signer.identity());
    let mut pinned = TrustRoots::new();
    pinned.add_file(&cert).unwrap();
    assert_eq!(pinned.verify(DOC, &sig).unwrap(), signer.identity());
    // A certificate with the wrong key is refused on loading.
    let (_, other_key) = pki.signer("dave", KeyType::Ecdsa);
    assert!(matches!(
        Signer::load(&other_key, Some(&cert)),
        Err(Error::Key(_))
    ));
}
