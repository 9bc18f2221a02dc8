//! A throwaway PKI made with the openssl command line, for tests here and in
//! other crates: a CA, signers (RSA or ECDSA) it certifies, revocation and a
//! CRL, and a grid-style CA directory. A missing `openssl` binary panics: the
//! tests fail, they do not skip.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestPki {
    pub dir: tempfile::TempDir,
}

/// Which key a test signer gets.
#[derive(Debug, Clone, Copy)]
pub enum KeyType {
    Rsa,
    Ecdsa,
}

pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const CA_CONFIG: &str = "[ ca ]\ndefault_ca = CA_default\n[ CA_default ]\ndatabase = index.txt\n\
crlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 30\ncertificate = ca.pem\nprivate_key = ca.key\n";

impl TestPki {
    /// A new CA, `/C=CH/O=Kiln Test/CN=<name>`, in a fresh directory.
    pub fn new(name: &str) -> TestPki {
        let dir = tempfile::tempdir().expect("temporary directory");
        let p = dir.path();
        std::fs::write(p.join("ca.cnf"), CA_CONFIG).unwrap();
        std::fs::write(p.join("index.txt"), "").unwrap();
        std::fs::write(p.join("crlnumber"), "01\n").unwrap();
        openssl(
            p,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "30",
                "-subj",
                &format!("/C=CH/O=Kiln Test/CN={name}"),
            ],
        );
        TestPki { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// A signer certified by the CA: returns (certificate, key) paths,
    /// `<name>.pem` and `<name>.key`, subject `/C=CH/O=Kiln Test/CN=<name>`.
    pub fn signer(&self, name: &str, key: KeyType) -> (PathBuf, PathBuf) {
        let p = self.dir.path();
        let keyfile = format!("{name}.key");
        let csr = format!("{name}.csr");
        let subj = format!("/C=CH/O=Kiln Test/CN={name}");
        let mut args = vec!["req", "-newkey"];
        match key {
            KeyType::Rsa => args.push("rsa:2048"),
            KeyType::Ecdsa => args.extend(["ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]),
        }
        args.extend(["-nodes", "-keyout", &keyfile, "-out", &csr, "-subj", &subj]);
        openssl(p, &args);
        openssl(
            p,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "30",
            ],
        );
        (self.path(&format!("{name}.pem")), self.path(&keyfile))
    }

    /// Revokes a signer's certificate in the CA's database (then call [`crl`]).
    pub fn revoke(&self, name: &str) {
        openssl(
            self.dir.path(),
            &[
                "ca",
                "-config",
                "ca.cnf",
                "-batch",
                "-revoke",
                &format!("{name}.pem"),
            ],
        );
    }

    /// A current CRL of the CA, `ca.crl`.
    pub fn crl(&self) -> PathBuf {
        openssl(
            self.dir.path(),
            &[
                "ca", "-config", "ca.cnf", "-batch", "-gencrl", "-out", "ca.crl",
            ],
        );
        self.path("ca.crl")
    }

    /// A grid-style CA directory: `<hash>.0` (the CA) and `<hash>.r0` (its
    /// CRL, when `with_crl`), plus an `.info` file verifiers ignore.
    pub fn ca_dir(&self, with_crl: bool) -> PathBuf {
        let d = self.path("certificates");
        std::fs::create_dir_all(&d).unwrap();
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-hash", "-in"])
            .arg(self.ca_cert())
            .output()
            .expect("openssl x509 -hash");
        let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
        std::fs::copy(self.ca_cert(), d.join(format!("{hash}.0"))).unwrap();
        std::fs::write(d.join(format!("{hash}.info")), "alias = kiln-test\n").unwrap();
        if with_crl {
            std::fs::copy(self.crl(), d.join(format!("{hash}.r0"))).unwrap();
        }
        d
    }
}
