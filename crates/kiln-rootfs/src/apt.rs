//! apt inside the image root: sources, signing keys, installs, the package list.

use crate::files::{TreeFile, install};
use crate::{Error, Result, Sandbox};

/// A repository added to the image's apt sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    /// Names the files kiln writes: `/etc/apt/sources.list.d/kiln-NAME.list`.
    pub name: String,
    pub url: String,
    pub suite: String,
    pub components: Vec<String>,
    /// An ASCII-armoured or binary OpenPGP key the repository is signed with.
    pub key: Option<Vec<u8>>,
}

fn check_word(what: &str, value: &str, extra: &[char]) -> Result<()> {
    let ok = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{what} {value:?} has characters apt does not accept here"
        )))
    }
}

impl AptSource {
    fn list_path(&self) -> String {
        format!("/etc/apt/sources.list.d/kiln-{}.list", self.name)
    }

    fn key_path(&self) -> String {
        let armoured = self
            .key
            .as_deref()
            .is_some_and(|k| k.starts_with(b"-----BEGIN PGP"));
        let ext = if armoured { "asc" } else { "gpg" };
        format!("/etc/apt/keyrings/kiln-{}.{ext}", self.name)
    }

    /// The one-line source entry.
    pub fn line(&self) -> Result<String> {
        check_word("repository name", &self.name, &['-', '_', '.'])?;
        check_word("suite", &self.suite, &['-', '_', '.', '/'])?;
        for c in &self.components {
            check_word("component", c, &['-', '_', '.', '/'])?;
        }
        if self.url.chars().any(|c| c.is_whitespace() || c == ']') {
            return Err(Error::Invalid(format!(
                "repository {}: the URL {:?} has spaces or ']'",
                self.name, self.url
            )));
        }
        let options = match &self.key {
            Some(_) => format!("[signed-by={}] ", self.key_path()),
            None => String::new(),
        };
        let components = if self.components.is_empty() {
            "main".to_string()
        } else {
            self.components.join(" ")
        };
        Ok(format!(
            "deb {options}{} {} {components}\n",
            self.url, self.suite
        ))
    }
}

/// Writes each source's list file and key.
pub fn add_sources(sandbox: &Sandbox, sources: &[AptSource]) -> Result<()> {
    let mut files = Vec::new();
    for source in sources {
        files.push(TreeFile::new(source.list_path(), source.line()?, 0o644));
        if let Some(key) = &source.key {
            files.push(TreeFile::new(source.key_path(), key.clone(), 0o644));
        }
    }
    install(sandbox, &files)
}

/// Removes what [`add_sources`] wrote for `sources` (build-only repositories).
pub fn remove_sources(sandbox: &Sandbox, sources: &[AptSource]) -> Result<()> {
    let mut argv = vec!["rm".to_string(), "-f".into(), "--".into()];
    for source in sources {
        argv.push(source.list_path());
        argv.push(source.key_path());
    }
    if sources.is_empty() {
        return Ok(());
    }
    sandbox.run(&argv)?;
    Ok(())
}

/// Drops the distribution's own sources (a template without default repositories).
pub fn remove_default_sources(sandbox: &Sandbox) -> Result<()> {
    sandbox.run(&["rm", "-f", "/etc/apt/sources.list"])?;
    Ok(())
}

/// What keeps package scripts from starting services in the image root.
pub const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";
const POLICY_RC_D_TEXT: &str =
    "#!/bin/sh\n# kiln: no service starts while the image is built\nexit 101\n";

pub fn deny_service_starts(sandbox: &Sandbox) -> Result<()> {
    install(
        sandbox,
        &[TreeFile::new(POLICY_RC_D, POLICY_RC_D_TEXT, 0o755)],
    )
}

/// Checks a package argument: a name, optionally with `=version`, `/suite` or `:arch`.
pub fn check_package(name: &str) -> Result<()> {
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.:=/~_".contains(c));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{name:?} is not a Debian package name (lower-case letters, digits, + - . and an optional =version, /suite or :arch)"
        )))
    }
}

/// `apt-get update` then installs `packages` (recommends as apt is configured).
pub fn install_packages(sandbox: &Sandbox, packages: &[String]) -> Result<()> {
    for p in packages {
        check_package(p)?;
    }
    sandbox.run(&["apt-get", "update", "-q"])?;
    if packages.is_empty() {
        return Ok(());
    }
    let mut argv: Vec<String> = [
        "apt-get",
        "install",
        "-y",
        "-q",
        // A failed build is thrown away: fsync after every file buys nothing.
        "-o",
        "DPkg::Options::=--force-unsafe-io",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend(packages.iter().cloned());
    sandbox.run(&argv)?;
    Ok(())
}

/// An installed package, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub architecture: String,
}

/// Every installed package, sorted by name.
pub fn installed(sandbox: &Sandbox) -> Result<Vec<Package>> {
    let out = sandbox.run(&[
        "dpkg-query",
        "--show",
        "--showformat=${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n",
    ])?;
    let mut packages: Vec<Package> = out
        .lines()
        .filter_map(|line| {
            let mut f = line.split('\t');
            let status = f.next()?;
            // "ii " is installed; "rc " left only its configuration behind.
            if !status.starts_with("ii") {
                return None;
            }
            Some(Package {
                name: f.next()?.to_string(),
                version: f.next()?.to_string(),
                architecture: f.next()?.to_string(),
            })
        })
        .collect();
    packages.sort();
    Ok(packages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_lines() {
        let mut s = AptSource {
            name: "backports".into(),
            url: "http://deb.debian.org/debian".into(),
            suite: "bookworm-backports".into(),
            components: vec!["main".into(), "contrib".into()],
            key: None,
        };
        assert_eq!(
            s.line().unwrap(),
            "deb http://deb.debian.org/debian bookworm-backports main contrib\n"
        );
        s.key = Some(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n".to_vec());
        assert_eq!(
            s.line().unwrap(),
            "deb [signed-by=/etc/apt/keyrings/kiln-backports.asc] http://deb.debian.org/debian bookworm-backports main contrib\n"
        );
        s.suite = "x y".into();
        assert!(s.line().is_err());
    }

    #[test]
    fn package_names() {
        for ok in [
            "linux-image-amd64",
            "g++",
            "libc6:amd64",
            "sudo=1.9",
            "curl/bookworm-backports",
        ] {
            check_package(ok).unwrap();
        }
        for bad in ["-o", "Foo", "a b", "", "$(x)"] {
            assert!(check_package(bad).is_err(), "{bad}");
        }
    }
}
