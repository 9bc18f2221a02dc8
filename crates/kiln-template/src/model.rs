//! The resolved template: inheritance merged, variables substituted, defaults
//! filled in, relative paths made relative to nothing. The build pipeline reads
//! this; `kiln template show` prints it, and what it prints is a valid template.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Serialize, Serializer};

use crate::size::Size;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Template {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub os: Os,
    /// The distribution's package mirror; `None` lets the builder pick its default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<String>,
    /// Whether the distribution's own repositories are configured (BoxGrinder's `default_repos`).
    pub default_repositories: bool,
    pub repositories: Vec<Repository>,
    pub packages: Vec<String>,
    pub files: Vec<FileEntry>,
    pub commands: Commands,
    pub groups: Vec<Group>,
    pub users: Vec<User>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_password: Option<Password>,
    pub services: Services,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    pub hardware: Hardware,
    pub disk: Disk,
    pub boot: BootMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_cmdline: Option<String>,
    pub outputs: Vec<Output>,
    /// Whether the kiln agent is installed into the image.
    pub agent: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Os {
    pub distribution: String,
    pub release: String,
    pub arch: Arch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    #[serde(rename = "x86_64")]
    X86_64,
    I386,
    Aarch64,
    Armv7l,
    Ppc64le,
    Ppc64,
    S390x,
}

impl Arch {
    /// Kernel names first (what `show` prints), then Debian's names as aliases.
    pub const WORDS: &[(&str, Arch)] = &[
        ("x86_64", Arch::X86_64),
        ("i386", Arch::I386),
        ("aarch64", Arch::Aarch64),
        ("armv7l", Arch::Armv7l),
        ("ppc64le", Arch::Ppc64le),
        ("ppc64", Arch::Ppc64),
        ("s390x", Arch::S390x),
        ("amd64", Arch::X86_64),
        ("arm64", Arch::Aarch64),
        ("armhf", Arch::Armv7l),
        ("ppc64el", Arch::Ppc64le),
    ];

    pub fn name(self) -> &'static str {
        Self::WORDS
            .iter()
            .find(|(_, a)| *a == self)
            .map(|(w, _)| *w)
            .expect("every arch has a word")
    }

    /// The name Debian's archive uses (`amd64` for `x86_64`).
    pub fn debian_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::I386 => "i386",
            Arch::Aarch64 => "arm64",
            Arch::Armv7l => "armhf",
            Arch::Ppc64le => "ppc64el",
            Arch::Ppc64 => "ppc64",
            Arch::S390x => "s390x",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Repository {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A yum-style mirror list (BoxGrinder); used instead of or besides `url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirrorlist: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<SigningKey>,
    /// Used while building only, removed from the image (BoxGrinder's `ephemeral`).
    pub build_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SigningKey {
    Path(PathBuf),
    Inline(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileEntry {
    /// Absolute path inside the image.
    pub path: String,
    pub source: FileSource,
    pub owner: String,
    pub group: String,
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FileSource {
    Content(String),
    /// Checked to decode when the template is read.
    Base64(String),
    /// A local file, resolved against the template that named it.
    Local(PathBuf),
    Url {
        url: String,
        sha256: String,
    },
}

impl Serialize for FileEntry {
    // Flat, as written in a template: the source is one of several sibling keys.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Flat<'a> {
            path: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            content: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            base64: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            source: Option<&'a PathBuf>,
            #[serde(skip_serializing_if = "Option::is_none")]
            url: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            sha256: Option<&'a str>,
            owner: &'a str,
            group: &'a str,
            mode: String,
        }
        let mut flat = Flat {
            path: &self.path,
            content: None,
            base64: None,
            source: None,
            url: None,
            sha256: None,
            owner: &self.owner,
            group: &self.group,
            mode: format!("{:04o}", self.mode),
        };
        match &self.source {
            FileSource::Content(c) => flat.content = Some(c),
            FileSource::Base64(b) => flat.base64 = Some(b),
            FileSource::Local(p) => flat.source = Some(p),
            FileSource::Url { url, sha256 } => {
                flat.url = Some(url);
                flat.sha256 = Some(sha256);
            }
        }
        flat.serialize(s)
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Commands {
    /// Run inside the image root before the packages are installed.
    pub before_packages: Vec<Command>,
    /// Run inside the image root after the packages are installed.
    pub after_packages: Vec<Command>,
    /// Run only when building for a platform (BoxGrinder's `post.vmware` …).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub platforms: BTreeMap<String, Vec<Command>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Command {
    /// A shell command line (or a whole script) run with `/bin/sh -c`.
    Shell(String),
    /// A local script file, resolved against the template that named it.
    Script { script: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct User {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    pub ssh_keys: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Password>,
    pub sudo: Sudo,
}

/// A password is stored hashed; a plain one must say so and is hashed at build.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Password {
    /// A crypt(3) hash such as `$6$salt$…` or `$y$…`.
    Hashed(String),
    Plain {
        plain: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sudo {
    None,
    /// sudo asks for the user's password.
    Password,
    /// sudo without a password, as cloud images do for their default user.
    Nopasswd,
}

impl Sudo {
    pub const WORDS: &[(&str, Sudo)] = &[
        ("none", Sudo::None),
        ("password", Sudo::Password),
        ("nopasswd", Sudo::Nopasswd),
    ];
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Services {
    pub enable: Vec<String>,
    pub disable: Vec<String>,
}

/// What the image's VM descriptors recommend (OVA, metadata).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hardware {
    pub cpus: u32,
    pub memory: Size,
}

impl Default for Hardware {
    fn default() -> Self {
        Hardware {
            cpus: 1,
            memory: Size::from_mib(1024),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Disk {
    /// `None`: the sum of the partitions, or the builder's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<Size>,
    /// Empty: the builder's default layout for the boot mode.
    pub partitions: Vec<Partition>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Partition {
    /// `None` for swap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
    /// `None`: the rest of the disk (one partition at most).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<Size>,
    pub fs: Filesystem,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<String>,
}

impl Partition {
    /// What identifies a partition across inherited templates.
    pub fn identity(&self) -> &str {
        self.mount.as_deref().unwrap_or("swap")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Filesystem {
    Ext4,
    Ext3,
    Vfat,
    Swap,
}

impl Filesystem {
    pub const WORDS: &[(&str, Filesystem)] = &[
        ("ext4", Filesystem::Ext4),
        ("ext3", Filesystem::Ext3),
        ("vfat", Filesystem::Vfat),
        ("swap", Filesystem::Swap),
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BootMode {
    Bios,
    Uefi,
    #[default]
    Both,
}

impl BootMode {
    pub const WORDS: &[(&str, BootMode)] = &[
        ("bios", BootMode::Bios),
        ("uefi", BootMode::Uefi),
        ("both", BootMode::Both),
    ];
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Output {
    pub format: Format,
    pub compression: Compression,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Raw,
    Qcow2,
    Vmdk,
    Vhd,
    Ova,
}

impl Format {
    pub const WORDS: &[(&str, Format)] = &[
        ("raw", Format::Raw),
        ("qcow2", Format::Qcow2),
        ("vmdk", Format::Vmdk),
        ("vhd", Format::Vhd),
        ("ova", Format::Ova),
    ];

    /// qcow2 compresses its clusters (zlib, zstd); an OVA holds a stream-optimised
    /// VMDK, compressed already; the others are compressed as whole files.
    pub fn compressions(self) -> &'static [Compression] {
        use Compression::*;
        match self {
            Format::Qcow2 => &[None, Zlib, Zstd],
            Format::Ova => &[None],
            Format::Raw | Format::Vmdk | Format::Vhd => &[None, Gzip, Xz, Zstd],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Zlib,
    Zstd,
    Gzip,
    Xz,
}

impl Compression {
    pub const WORDS: &[(&str, Compression)] = &[
        ("none", Compression::None),
        ("zlib", Compression::Zlib),
        ("zstd", Compression::Zstd),
        ("gzip", Compression::Gzip),
        ("xz", Compression::Xz),
    ];

    pub fn name(self) -> &'static str {
        Self::WORDS
            .iter()
            .find(|(_, c)| *c == self)
            .map(|(w, _)| *w)
            .expect("every compression has a word")
    }
}

/// How the builder lays down the root file system of a distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootstrapBackend {
    Debian,
    Ubuntu,
}

/// A template for an OS that converts fine but that kiln cannot build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoBootstrapBackend {
    pub distribution: String,
    pub release: String,
}

impl fmt::Display for NoBootstrapBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no bootstrap backend for {} {}: kiln builds Debian and Ubuntu",
            self.distribution, self.release
        )
    }
}

impl std::error::Error for NoBootstrapBackend {}

impl Template {
    /// The backend that builds this template's root file system, or why there is none.
    pub fn bootstrap_backend(&self) -> Result<BootstrapBackend, NoBootstrapBackend> {
        match self.os.distribution.to_ascii_lowercase().as_str() {
            "debian" => Ok(BootstrapBackend::Debian),
            "ubuntu" => Ok(BootstrapBackend::Ubuntu),
            _ => Err(NoBootstrapBackend {
                distribution: self.os.distribution.clone(),
                release: self.os.release.clone(),
            }),
        }
    }

    /// The template as YAML that `kiln template check` accepts: a literal `${`
    /// in a value is written `$${` so that it is not read as a variable.
    pub fn to_yaml(&self) -> Result<String, serde_saphyr::SerializeError> {
        // Keys never contain `${`, so escaping the emitted text escapes the values.
        Ok(serde_saphyr::to_string(self)?.replace("${", "$${"))
    }
}
