//! The resolve stage: a template becomes a [`Plan`], every input read (local
//! files, scripts, keys), checked and hashed, before anything is built.

use std::path::{Path, PathBuf};

use base64::Engine;
use kiln_assemble::layout::{self, Boot, Fs, Layout, PartitionRequest};
use kiln_rootfs::apt::AptSource;
use kiln_rootfs::bootstrap::{BootstrapSpec, Distribution};
use kiln_rootfs::system::{GroupSpec, PasswordSpec, SudoRule, UserSpec};
use kiln_template::{
    BootMode, BootstrapBackend, Command, Compression, FileSource, Filesystem, Format, Output,
    Password, SigningKey, Sudo, Template,
};
use serde::Serialize;
use serde_json::json;

use crate::Error;
use crate::hash::sha256_hex;

/// A file for the image, its bytes known unless it comes from a URL.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedFile {
    pub path: String,
    pub mode: u32,
    pub owner: String,
    pub group: String,
    #[serde(skip)]
    pub source: PlannedSource,
    /// The SHA-256 of the contents (for a URL, the one the template requires).
    pub sha256: String,
}

#[derive(Debug, Clone)]
pub enum PlannedSource {
    Bytes(Vec<u8>),
    Url(String),
}

/// A command for the image root, as shell text.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedCommand {
    /// What the progress display and errors call it.
    pub name: String,
    pub script: String,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub template: Template,
    pub template_path: PathBuf,
    /// SHA-256 of the resolved template and every local input it names.
    pub digest: String,
    pub bootstrap: BootstrapSpec,
    pub sources: Vec<AptSource>,
    pub build_only: Vec<AptSource>,
    pub packages: Vec<String>,
    pub before_packages: Vec<PlannedCommand>,
    pub after_packages: Vec<PlannedCommand>,
    pub files: Vec<PlannedFile>,
    pub groups: Vec<GroupSpec>,
    pub users: Vec<UserSpec>,
    pub root_password: Option<PasswordSpec>,
    pub hostname: String,
    pub layout: Layout,
    pub outputs: Vec<Output>,
    pub kernel_cmdline: String,
    pub warnings: Vec<String>,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::new(format!("{what} {}: {e}", path.display())))
}

fn command(c: &Command, n: usize, when: &str) -> Result<PlannedCommand, Error> {
    Ok(match c {
        Command::Shell(text) => PlannedCommand {
            name: format!("{when} command {n}"),
            script: text.clone(),
        },
        Command::Script { script } => PlannedCommand {
            name: format!("{when} script {}", script.display()),
            script: String::from_utf8(read(script, "script")?).map_err(|_| {
                Error::new(format!("script {} is not UTF-8 text", script.display()))
            })?,
        },
    })
}

fn password(p: &Password) -> PasswordSpec {
    match p {
        Password::Hashed(h) => PasswordSpec::Hashed(h.clone()),
        Password::Plain { plain } => PasswordSpec::Plain(plain.clone()),
    }
}

fn bytes(size: kiln_template::Size, what: &str) -> Result<u64, Error> {
    u64::try_from(size.bytes()).map_err(|_| Error::new(format!("{what} is too large")))
}

/// Reads the template at `path` and every input it names.
pub fn resolve(
    path: &Path,
    formats: Option<&[Format]>,
    mirror_override: Option<&str>,
) -> Result<Plan, Error> {
    let template =
        kiln_template::load(path).map_err(|p| Error::new(p.plain().trim_end().to_string()))?;
    let backend = template
        .bootstrap_backend()
        .map_err(|e| Error::new(e.to_string()))?;
    let distribution = match backend {
        BootstrapBackend::Debian => Distribution::Debian,
        BootstrapBackend::Ubuntu => Distribution::Ubuntu,
    };
    let mut warnings = Vec::new();
    let mut local_inputs: Vec<(String, String)> = Vec::new();

    let mirror = match (mirror_override, &template.mirror) {
        (Some(m), _) => m.to_string(),
        (None, Some(m)) => m.clone(),
        (None, None) => kiln_rootfs::bootstrap::host_mirror(distribution)?,
    };
    let components = match distribution {
        Distribution::Debian => vec!["main".to_string()],
        Distribution::Ubuntu => vec!["main".to_string(), "universe".to_string()],
    };
    let extra_suites = if template.default_repositories {
        let (suites, warning) =
            kiln_rootfs::bootstrap::standard_suites(distribution, &template.os.release, &mirror);
        warnings.extend(warning);
        suites
    } else {
        Vec::new()
    };
    let bootstrap = BootstrapSpec {
        distribution,
        release: template.os.release.clone(),
        arch: template.os.arch.debian_name().to_string(),
        mirror,
        components,
        extra_suites,
    };

    let mut sources = Vec::new();
    let mut build_only = Vec::new();
    for r in &template.repositories {
        let Some(url) = &r.url else {
            return Err(Error::new(format!(
                "repository {}: a mirrorlist (yum) repository cannot be used by apt; give `url`",
                r.name
            )));
        };
        let key = match &r.key {
            None => None,
            Some(SigningKey::Inline(text)) => Some(text.clone().into_bytes()),
            Some(SigningKey::Path(p)) => {
                let data = read(p, "signing key")?;
                local_inputs.push((p.display().to_string(), sha256_hex(&data)));
                Some(data)
            }
        };
        let source = AptSource {
            name: r.name.clone(),
            url: url.clone(),
            suite: r
                .suite
                .clone()
                .unwrap_or_else(|| template.os.release.clone()),
            components: r.components.clone(),
            key,
        };
        source.line()?;
        if r.build_only {
            build_only.push(source.clone());
        }
        sources.push(source);
    }

    let mut packages: Vec<String> = Vec::new();
    for p in &template.packages {
        kiln_rootfs::apt::check_package(p)?;
        if !packages.contains(p) {
            packages.push(p.clone());
        }
    }

    let mut before_packages = Vec::new();
    for (i, c) in template.commands.before_packages.iter().enumerate() {
        before_packages.push(command(c, i + 1, "before-packages")?);
    }
    let mut after_packages = Vec::new();
    for (i, c) in template.commands.after_packages.iter().enumerate() {
        after_packages.push(command(c, i + 1, "after-packages")?);
    }
    for platform in template.commands.platforms.keys() {
        warnings.push(format!(
            "commands for platform {platform} are not run: kiln builds one image for every output"
        ));
    }
    for c in before_packages.iter().chain(&after_packages) {
        local_inputs.push((c.name.clone(), sha256_hex(c.script.as_bytes())));
    }

    let mut files = Vec::new();
    for f in &template.files {
        kiln_rootfs::files::check_path(&f.path)?;
        let (source, sha256) = match &f.source {
            FileSource::Content(text) => {
                let data = text.clone().into_bytes();
                let sum = sha256_hex(&data);
                (PlannedSource::Bytes(data), sum)
            }
            FileSource::Base64(text) => {
                let data = base64::engine::general_purpose::STANDARD
                    .decode(text.split_whitespace().collect::<String>())
                    .map_err(|e| Error::new(format!("file {}: base64: {e}", f.path)))?;
                let sum = sha256_hex(&data);
                (PlannedSource::Bytes(data), sum)
            }
            FileSource::Local(p) => {
                let data = read(p, &format!("file {} from", f.path))?;
                let sum = sha256_hex(&data);
                local_inputs.push((p.display().to_string(), sum.clone()));
                (PlannedSource::Bytes(data), sum)
            }
            FileSource::Url { url, sha256 } => {
                (PlannedSource::Url(url.clone()), sha256.to_ascii_lowercase())
            }
        };
        files.push(PlannedFile {
            path: f.path.clone(),
            mode: f.mode,
            owner: f.owner.clone(),
            group: f.group.clone(),
            source,
            sha256,
        });
    }

    let groups = template
        .groups
        .iter()
        .map(|g| GroupSpec {
            name: g.name.clone(),
            gid: g.gid,
        })
        .collect();
    let users = template
        .users
        .iter()
        .map(|u| UserSpec {
            name: u.name.clone(),
            uid: u.uid,
            groups: u.groups.clone(),
            shell: u.shell.clone(),
            ssh_keys: u.ssh_keys.clone(),
            password: u.password.as_ref().map(password),
            sudo: match u.sudo {
                Sudo::None => SudoRule::None,
                Sudo::Password => SudoRule::Password,
                Sudo::Nopasswd => SudoRule::Nopasswd,
            },
        })
        .collect();

    let outputs = match formats {
        Some(list) => list
            .iter()
            .map(|f| {
                template
                    .outputs
                    .iter()
                    .find(|o| o.format == *f)
                    .cloned()
                    .unwrap_or(Output {
                        format: *f,
                        compression: Compression::None,
                    })
            })
            .collect(),
        None if template.outputs.is_empty() => vec![Output {
            format: Format::Qcow2,
            compression: Compression::None,
        }],
        None => template.outputs.clone(),
    };

    let yaml = template
        .to_yaml()
        .map_err(|e| Error::new(format!("serialising the template: {e}")))?;
    local_inputs.sort();
    let digest = sha256_hex(
        json!({"template": yaml, "inputs": local_inputs})
            .to_string()
            .as_bytes(),
    );

    let boot = match template.boot {
        BootMode::Bios => Boot::Bios,
        BootMode::Uefi => Boot::Uefi,
        BootMode::Both => Boot::Both,
    };
    let mut requests = Vec::new();
    for p in &template.disk.partitions {
        requests.push(PartitionRequest {
            mount: p.mount.clone(),
            size: p.size.map(|s| bytes(s, "a partition size")).transpose()?,
            fs: match p.fs {
                Filesystem::Ext4 => Fs::Ext4,
                Filesystem::Ext3 => Fs::Ext3,
                Filesystem::Vfat => Fs::Vfat,
                Filesystem::Swap => Fs::Swap,
            },
            options: p.options.clone(),
        });
    }
    let disk_size = template
        .disk
        .size
        .map(|s| bytes(s, "the disk size"))
        .transpose()?;
    let layout = layout::plan(boot, disk_size, &requests, digest.as_bytes())?;
    if template.os.arch != kiln_template::Arch::X86_64 {
        return Err(Error::new(format!(
            "kiln boots x86_64 images for now; {} is not supported yet",
            template.os.arch.name()
        )));
    }

    Ok(Plan {
        hostname: kiln_rootfs::system::hostname_for(&template.name),
        kernel_cmdline: template.kernel_cmdline.clone().unwrap_or_default(),
        root_password: template.root_password.as_ref().map(password),
        template_path: path.to_path_buf(),
        digest,
        bootstrap,
        sources,
        build_only,
        packages,
        before_packages,
        after_packages,
        files,
        groups,
        users,
        layout,
        outputs,
        warnings,
        template,
    })
}

impl Plan {
    /// The file name stem of every output: the template name, made safe.
    pub fn stem(&self) -> String {
        let stem: String = self
            .template
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        stem.trim_start_matches('.').to_string()
    }
}
