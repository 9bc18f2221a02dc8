//! Laying down a distribution's base system into an empty directory.
//!
//! [`Bootstrap`] is the interface; [`Mmdebstrap`] the one backend (Debian,
//! and Ubuntu given an Ubuntu mirror). Another backend lands with a real test.

use std::path::Path;
use std::process::Command;

use crate::sandbox::{finish, isolated};
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    Debian,
    Ubuntu,
}

impl Distribution {
    pub fn name(self) -> &'static str {
        match self {
            Distribution::Debian => "debian",
            Distribution::Ubuntu => "ubuntu",
        }
    }
}

/// What to bootstrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapSpec {
    pub distribution: Distribution,
    /// A suite or code name: bookworm, trixie, noble.
    pub release: String,
    /// Debian's architecture name: amd64, arm64.
    pub arch: String,
    pub mirror: String,
    pub components: Vec<String>,
    /// Suites beside the release, each `(URI, suite)`: by default its
    /// -updates and -security (see [`standard_suites`]).
    pub extra_suites: Vec<(String, String)>,
}

impl BootstrapSpec {
    /// One-line apt sources: the release at the mirror, then the extra suites.
    pub fn sources(&self) -> Vec<String> {
        let components = self.components.join(" ");
        std::iter::once((self.mirror.as_str(), self.release.as_str()))
            .chain(
                self.extra_suites
                    .iter()
                    .map(|(uri, suite)| (uri.as_str(), suite.as_str())),
            )
            .map(|(uri, suite)| format!("deb {uri} {suite} {components}"))
            .collect()
    }
}

/// What a distribution's own images take updates from beside `release`:
/// `RELEASE-updates` at the mirror, and `RELEASE-security` — on Ubuntu at
/// the mirror, on Debian in the `debian-security` archive beside a mirror
/// whose path ends in `/debian` (as on deb.debian.org). Development releases
/// have neither. Returns the suites and, when the security suite cannot be
/// placed, a warning saying so.
pub fn standard_suites(
    distribution: Distribution,
    release: &str,
    mirror: &str,
) -> (Vec<(String, String)>, Option<String>) {
    if matches!(release, "sid" | "unstable" | "experimental" | "devel") {
        return (Vec::new(), None);
    }
    let mut suites = vec![(mirror.to_string(), format!("{release}-updates"))];
    let security = match distribution {
        Distribution::Ubuntu => Some(mirror.to_string()),
        Distribution::Debian => mirror
            .trim_end_matches('/')
            .strip_suffix("/debian")
            .map(|base| format!("{base}/debian-security")),
    };
    match security {
        Some(uri) => {
            suites.push((uri, format!("{release}-security")));
            (suites, None)
        }
        None => (
            suites,
            Some(format!(
                "no security archive known beside the mirror {mirror}: the image gets no \
                 {release}-security updates unless a repository in the template names them"
            )),
        ),
    }
}

pub trait Bootstrap {
    /// A name and version for cache keys and the manifest: `mmdebstrap 1.3.5`.
    fn identity(&self) -> Result<String>;
    /// Fills the empty or absent directory `root` with the base system.
    fn bootstrap(&self, spec: &BootstrapSpec, root: &Path) -> Result<()>;
}

/// mmdebstrap in root mode, variant minbase (Essential and apt): the template's
/// packages go on top through apt, so the image holds what it names.
#[derive(Debug, Default)]
pub struct Mmdebstrap;

impl Mmdebstrap {
    /// The command line, without the namespaces it runs in.
    pub fn arguments(&self, spec: &BootstrapSpec, root: &Path) -> Result<Vec<String>> {
        let mut args = vec![
            "--mode=root".to_string(),
            "--variant=minbase".into(),
            format!("--architectures={}", spec.arch),
            format!("--components={}", spec.components.join(",")),
            // A build is thrown away when it fails: fsync buys nothing here.
            "--dpkgopt=force-unsafe-io".into(),
        ];
        if spec.distribution == Distribution::Ubuntu {
            let keyring = Path::new(UBUNTU_KEYRING);
            if !keyring.exists() {
                return Err(Error::Invalid(format!(
                    "bootstrapping Ubuntu needs its archive key at {UBUNTU_KEYRING}: install ubuntu-keyring"
                )));
            }
            args.push(format!("--keyring={UBUNTU_KEYRING}"));
            // Ubuntu gives apt Priority: important, so minbase (Essential and
            // required) leaves out the tool every later stage installs with.
            args.push("--include=ubuntu-keyring,apt".into());
        }
        args.push(spec.release.clone());
        args.push(root.display().to_string());
        args.extend(spec.sources());
        Ok(args)
    }
}

const UBUNTU_KEYRING: &str = "/usr/share/keyrings/ubuntu-archive-keyring.gpg";

impl Bootstrap for Mmdebstrap {
    fn identity(&self) -> Result<String> {
        let out = finish(
            {
                let mut c = Command::new("mmdebstrap");
                c.arg("--version");
                c
            },
            None,
            "mmdebstrap --version",
        )?;
        Ok(out.trim().to_string())
    }

    fn bootstrap(&self, spec: &BootstrapSpec, root: &Path) -> Result<()> {
        let mut cmd = isolated("mmdebstrap");
        cmd.args(self.arguments(spec, root)?);
        finish(cmd, None, "mmdebstrap")?;
        Ok(())
    }
}

/// The mirror of the host's own apt sources for `distribution`: the first
/// source of a main suite (no `-updates`, `-security`, `-backports`) in
/// /etc/apt/sources.list and sources.list.d, when the host runs that distribution.
pub fn host_mirror(distribution: Distribution) -> Result<String> {
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let host = os_release
        .lines()
        .find_map(|l| l.strip_prefix("ID="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default();
    if host != distribution.name() {
        return Err(Error::Invalid(format!(
            "no mirror given for {}, and this host runs {host:?}: set `mirror:` in the template",
            distribution.name()
        )));
    }
    let mut texts = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push(t);
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<_> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if let Ok(t) = std::fs::read_to_string(&p) {
                texts.push(t);
            }
        }
    }
    texts
        .iter()
        .find_map(|t| mirror_in_sources(t))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "no {} mirror found in the host's apt sources: set `mirror:` in the template",
                distribution.name()
            ))
        })
}

/// The first URI serving a main suite, in one-line or deb822 format.
pub fn mirror_in_sources(text: &str) -> Option<String> {
    let main_suite = |s: &str| !s.contains('-') && !s.contains('/');
    // One-line: `deb [options] URI SUITE COMPONENTS…`.
    for line in text.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let rest = match rest.trim_start().strip_prefix('[') {
            Some(opts) => opts.split_once(']').map(|(_, r)| r)?,
            None => rest,
        };
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next())
            && main_suite(suite)
        {
            return Some(uri.to_string());
        }
    }
    // deb822: stanzas of `Key: value` separated by blank lines.
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let is_deb = field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let (Some(uris), Some(suites)) = (field("URIs"), field("Suites")) else {
            continue;
        };
        if is_deb && suites.split_whitespace().any(main_suite) {
            return uris.split_whitespace().next().map(str::to_string);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_from_one_line_and_deb822_sources() {
        let one_line = "# comment\ndeb http://deb.debian.org/debian-security bookworm-security main\n\
                        deb [arch=amd64 signed-by=/k.gpg] http://ftp.fr.debian.org/debian bookworm main\n";
        assert_eq!(
            mirror_in_sources(one_line).as_deref(),
            Some("http://ftp.fr.debian.org/debian")
        );
        let deb822 = "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\n\
                      Types: deb deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n";
        assert_eq!(
            mirror_in_sources(deb822).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        assert_eq!(
            mirror_in_sources("deb-src http://x/debian bookworm main"),
            None
        );
    }

    #[test]
    fn mmdebstrap_command_line() {
        let spec = BootstrapSpec {
            distribution: Distribution::Debian,
            release: "trixie".into(),
            arch: "amd64".into(),
            mirror: "http://deb.debian.org/debian".into(),
            components: vec!["main".into(), "contrib".into()],
            extra_suites: standard_suites(
                Distribution::Debian,
                "trixie",
                "http://deb.debian.org/debian/",
            )
            .0,
        };
        let args = Mmdebstrap.arguments(&spec, Path::new("/w/root")).unwrap();
        assert_eq!(
            args,
            [
                "--mode=root",
                "--variant=minbase",
                "--architectures=amd64",
                "--components=main,contrib",
                "--dpkgopt=force-unsafe-io",
                "trixie",
                "/w/root",
                "deb http://deb.debian.org/debian trixie main contrib",
                "deb http://deb.debian.org/debian/ trixie-updates main contrib",
                "deb http://deb.debian.org/debian-security trixie-security main contrib",
            ]
        );
    }

    #[test]
    fn standard_suites_per_distribution() {
        let (ubuntu, warning) = standard_suites(
            Distribution::Ubuntu,
            "noble",
            "http://archive.ubuntu.com/ubuntu",
        );
        assert_eq!(
            ubuntu,
            [
                (
                    "http://archive.ubuntu.com/ubuntu".into(),
                    "noble-updates".into()
                ),
                (
                    "http://archive.ubuntu.com/ubuntu".into(),
                    "noble-security".into()
                ),
            ]
        );
        assert_eq!(warning, None);
        let (debian, warning) = standard_suites(
            Distribution::Debian,
            "bookworm",
            "http://apt.example/mirror",
        );
        assert_eq!(
            debian,
            [(
                "http://apt.example/mirror".into(),
                "bookworm-updates".into()
            )]
        );
        assert!(warning.unwrap().contains("bookworm-security"));
        assert_eq!(
            standard_suites(Distribution::Debian, "sid", "http://deb.debian.org/debian"),
            (Vec::new(), None)
        );
    }
}
