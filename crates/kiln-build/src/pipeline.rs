//! The build: stages in order, each reported, tree stages replayed from the
//! cache when their key is there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use kiln_assemble::filesystems::{self, Contents};
use kiln_assemble::layout::{Boot, Role};
use kiln_assemble::{gpt, grub};
use kiln_rootfs::bootstrap::{Bootstrap, Mmdebstrap};
use kiln_rootfs::files::TreeFile;
use kiln_rootfs::kernel::Kernel;
use kiln_rootfs::{Sandbox, apt, clean, files, kernel, system};
use kiln_template::Format;
use serde_json::{Value, json};

use crate::cache::{self, Cache};
use crate::manifest::{self, Manifest, PackageInfo};
use crate::output::{self, format_name};
use crate::ova::OvaSpec;
use crate::overlay::Overlay;
use crate::plan::{self, Plan, PlannedSource};
use crate::{BuildError, Error, Event, Stage, hash, publish};

/// Bumped when a stage's code changes what it produces: old cache entries
/// then stop matching.
const STAGE_LOGIC: u32 = 1;

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub template: PathBuf,
    pub output_dir: PathBuf,
    /// Overrides the template's outputs.
    pub formats: Option<Vec<Format>>,
    /// Rebuild every stage (the results are still stored).
    pub no_cache: bool,
    pub cache_dir: PathBuf,
    /// The kiln agent to install when the template asks for it.
    pub agent_binary: Option<PathBuf>,
    /// A directory of the agent's systemd units (`*.service`), installed and
    /// enabled with it; default: `kiln-agent*.service` beside the binary.
    pub agent_units: Option<PathBuf>,
    /// Overrides the template's mirror.
    pub mirror: Option<String>,
}

#[derive(Debug, Clone)]
pub struct BuildReport {
    pub manifest_path: PathBuf,
    pub manifest: Manifest,
}

struct Runner<'a> {
    events: &'a mut dyn FnMut(&Event),
    stages: Vec<manifest::StageInfo>,
}

impl Runner<'_> {
    fn run<T>(
        &mut self,
        stage: Stage,
        f: impl FnOnce(&mut Self) -> Result<(T, Option<String>), Error>,
    ) -> Result<T, BuildError> {
        let start = self.started(stage);
        match f(self) {
            Ok((value, detail)) => {
                self.finished(stage, start, false, detail);
                Ok(value)
            }
            Err(error) => {
                (self.events)(&Event::StageFailed {
                    stage,
                    seconds: start.elapsed().as_secs_f64(),
                    error: error.to_string(),
                });
                Err(BuildError { stage, error })
            }
        }
    }

    /// Announces `stage` and returns when it started.
    fn started(&mut self, stage: Stage) -> Instant {
        (self.events)(&Event::StageStarted {
            stage,
            number: stage.number(),
            total: Stage::ALL.len(),
            title: stage.title(),
        });
        Instant::now()
    }

    fn finished(&mut self, stage: Stage, start: Instant, cached: bool, detail: Option<String>) {
        let seconds = start.elapsed().as_secs_f64();
        self.stages.push(manifest::StageInfo {
            name: stage.name(),
            seconds,
            cached,
        });
        (self.events)(&Event::StageFinished {
            stage,
            seconds,
            cached,
            detail,
        });
    }

    fn warn(&mut self, stage: Stage, message: String) {
        tracing::debug!("{}: {message}", stage.name());
        (self.events)(&Event::Warning { stage, message });
    }
}

/// Removes the build's scratch directory however the build ends.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn epoch() -> (u64, bool) {
    match std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        Some(e) => (e, true),
        None => (
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            false,
        ),
    }
}

pub fn build(
    opts: &BuildOptions,
    events: &mut dyn FnMut(&Event),
) -> Result<BuildReport, BuildError> {
    let started = Instant::now();
    let (build_epoch, from_env) = epoch();
    events(&Event::BuildStarted {
        template: opts.template.display().to_string(),
        stages: Stage::ALL.iter().map(|s| s.name()).collect(),
    });
    let mut r = Runner {
        events,
        stages: Vec::new(),
    };
    let backend = Mmdebstrap;

    let (plan, bootstrap_identity, bootstrap_arguments) = r.run(Stage::Resolve, |_| {
        let plan = plan::resolve(
            &opts.template,
            opts.formats.as_deref(),
            opts.mirror.as_deref(),
        )?;
        let identity = backend.identity()?;
        // The backend's exact command line (the root a placeholder) keys the
        // bootstrap stage: a change in how kiln calls it is a new root.
        let arguments = backend.arguments(&plan.bootstrap, Path::new("ROOT"))?;
        let detail = format!(
            "{} {} {} ({}), digest {}",
            plan.template.name,
            plan.bootstrap.distribution.name(),
            plan.bootstrap.release,
            plan.bootstrap.arch,
            &plan.digest[..12]
        );
        Ok(((plan, identity, arguments), Some(detail)))
    })?;
    for w in plan.warnings.clone() {
        r.warn(Stage::Resolve, w);
    }
    if !opts.output_dir.is_dir() {
        std::fs::create_dir_all(&opts.output_dir).map_err(|e| BuildError {
            stage: Stage::Resolve,
            error: Error::new(format!("{}: {e}", opts.output_dir.display())),
        })?;
    }

    let cache = Cache::open(&opts.cache_dir).map_err(|error| BuildError {
        stage: Stage::Resolve,
        error,
    })?;
    let work = WorkDir(cache.work_dir().map_err(|error| BuildError {
        stage: Stage::Resolve,
        error,
    })?);
    let agent = AgentInput::new(
        plan.template.agent,
        opts.agent_binary.as_deref(),
        opts.agent_units.as_deref(),
    )
    .map_err(|error| BuildError {
        stage: Stage::Agent,
        error,
    })?;

    // Keys: each tree stage hashes its inputs with the key before it.
    let bootstrap = json!({"backend": bootstrap_identity, "arguments": bootstrap_arguments});
    let mut keys = Vec::new();
    let mut parent = String::new();
    for &stage in Stage::TREE {
        let inputs = json!({
            "kiln": env!("CARGO_PKG_VERSION"),
            "logic": STAGE_LOGIC,
            "inputs": stage_inputs(&plan, stage, &bootstrap, &agent),
        });
        parent = hash::key(&parent, stage.name(), &inputs);
        keys.push(parent.clone());
    }
    let disk = build_disk(
        &mut r,
        &plan,
        &cache,
        &work.0,
        &keys,
        &agent,
        &backend,
        build_epoch,
        !opts.no_cache,
    )?;

    let outputs = r.run(Stage::Outputs, |r| {
        let staging = work.0.join("outputs");
        std::fs::create_dir_all(&staging)?;
        let ova = OvaSpec {
            name: &plan.template.name,
            cpus: plan.template.hardware.cpus,
            memory_mib: u64::try_from(plan.template.hardware.memory.bytes() >> 20)
                .unwrap_or(u64::MAX),
            os_description: format!(
                "{} {}",
                capitalize(plan.bootstrap.distribution.name()),
                plan.bootstrap.release
            ),
            boot: plan.layout.boot,
            epoch: build_epoch,
        };
        let mut infos = Vec::new();
        for out in &plan.outputs {
            let file = output::write(&disk.path, &staging, &plan.stem(), out, &ova)?;
            let size = std::fs::metadata(&file.path)?.len();
            let (sha256, sha512) = hash::file_digests(&file.path)?;
            let name = file
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let dest = opts.output_dir.join(&name);
            publish::place(&file.path, &dest)?;
            (r.events)(&Event::Output {
                path: dest.display().to_string(),
                format: format_name(file.format).into(),
                bytes: size,
            });
            infos.push(manifest::OutputInfo {
                file: name,
                format: format_name(file.format),
                compression: file.compression.name(),
                size,
                sha256,
                sha512,
            });
        }
        let detail = infos
            .iter()
            .map(|i| i.file.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        Ok((infos, Some(detail)))
    })?;

    let manifest_path = opts
        .output_dir
        .join(format!("{}.manifest.json", plan.stem()));
    let manifest = r.run(Stage::Manifest, |r| {
        let packages: Vec<PackageInfo> = serde_json::from_value(disk.packages.clone())?;
        let mut stages = r.stages.clone();
        stages.push(manifest::StageInfo {
            name: Stage::Manifest.name(),
            seconds: 0.0,
            cached: false,
        });
        let manifest = Manifest {
            kiln_version: env!("CARGO_PKG_VERSION"),
            template: manifest::TemplateInfo {
                name: plan.template.name.clone(),
                version: plan.template.version.clone(),
                file: plan.template_path.display().to_string(),
                digest: plan.digest.clone(),
            },
            build: manifest::BuildInfo {
                timestamp: build_epoch,
                source_date_epoch: from_env,
                duration_seconds: started.elapsed().as_secs_f64(),
                bootstrap: bootstrap_identity.clone(),
            },
            os: manifest::OsInfo {
                distribution: plan.bootstrap.distribution.name().into(),
                release: plan.bootstrap.release.clone(),
                arch: plan.template.os.arch.name().into(),
                mirror: plan.bootstrap.mirror.clone(),
            },
            kernel: Some(disk.kernel.clone()),
            disk: manifest::DiskInfo {
                size: plan.layout.disk_size,
                boot: match plan.layout.boot {
                    Boot::Bios => "bios",
                    Boot::Uefi => "uefi",
                    Boot::Both => "both",
                }
                .into(),
                partitions: plan
                    .layout
                    .partitions
                    .iter()
                    .map(|p| manifest::PartitionInfo {
                        number: p.number,
                        role: p.role.name(),
                        offset: p.offset,
                        size: p.size,
                        partuuid: p.part_uuid.clone(),
                        uuid: p.fs_uuid.clone(),
                    })
                    .collect(),
            },
            packages,
            outputs,
            stages,
        };
        let mut text = serde_json::to_string_pretty(&manifest)?;
        text.push('\n');
        publish::write(&manifest_path, text.as_bytes())?;
        Ok((manifest, Some(manifest_path.display().to_string())))
    })?;
    if let Err(e) = cache.prune("trees", 2) {
        tracing::warn!("pruning kept trees: {e}");
    }
    (r.events)(&Event::BuildFinished {
        manifest: manifest_path.display().to_string(),
        seconds: started.elapsed().as_secs_f64(),
    });
    drop(disk);
    drop(work);
    Ok(BuildReport {
        manifest_path,
        manifest,
    })
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The kiln agent, if the template asks for it and a binary is at hand.
struct AgentInput {
    requested: bool,
    binary: Option<(PathBuf, Vec<u8>)>,
    /// (file name, contents) of each systemd unit, sorted by name.
    units: Vec<(String, Vec<u8>)>,
}

/// Where the agent's units (crates/kiln-agent/systemd) point their ExecStart.
const AGENT_PATH: &str = "/usr/bin/kiln-agent";

impl AgentInput {
    fn new(requested: bool, binary: Option<&Path>, units: Option<&Path>) -> Result<Self, Error> {
        let binary = match (requested, binary) {
            (true, Some(path)) => Some((
                path.to_path_buf(),
                std::fs::read(path)
                    .map_err(|e| Error::new(format!("kiln agent {}: {e}", path.display())))?,
            )),
            _ => None,
        };
        let mut found = Vec::new();
        if let Some((path, _)) = &binary {
            let (dir, beside) = match units {
                Some(dir) => (dir.to_path_buf(), false),
                None => (path.parent().unwrap_or(Path::new(".")).to_path_buf(), true),
            };
            let entries = std::fs::read_dir(&dir)
                .map_err(|e| Error::new(format!("kiln agent units {}: {e}", dir.display())))?;
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let wanted =
                    name.ends_with(".service") && (!beside || name.starts_with("kiln-agent"));
                if wanted && entry.path().is_file() {
                    found.push((name, std::fs::read(entry.path())?));
                }
            }
            found.sort();
        }
        Ok(AgentInput {
            requested,
            binary,
            units: found,
        })
    }

    fn key(&self) -> Value {
        json!({
            "requested": self.requested,
            "binary": self.binary.as_ref().map(|(_, b)| hash::sha256_hex(b)),
            "units": self.units.iter().map(|(n, u)| (n, hash::sha256_hex(u))).collect::<Vec<_>>(),
        })
    }
}

fn stage_inputs(plan: &Plan, stage: Stage, bootstrap: &Value, agent: &AgentInput) -> Value {
    let t = &plan.template;
    match stage {
        Stage::Bootstrap => json!({
            "backend": bootstrap,
            "distribution": plan.bootstrap.distribution.name(),
            "release": plan.bootstrap.release,
            "arch": plan.bootstrap.arch,
            "mirror": plan.bootstrap.mirror,
            "components": plan.bootstrap.components,
        }),
        Stage::Repositories => json!({
            "default": t.default_repositories,
            "sources": plan.sources.iter().map(|s| json!({
                "line": s.line().ok(),
                "key": s.key.as_ref().map(|k| hash::sha256_hex(k)),
            })).collect::<Vec<_>>(),
        }),
        Stage::Packages => json!({
            "packages": plan.packages,
            "before": plan.before_packages,
        }),
        Stage::Files => json!({"files": plan.files}),
        Stage::Commands => json!({"after": plan.after_packages}),
        Stage::Users => json!({
            "hostname": plan.hostname,
            "groups": t.groups,
            "users": t.users,
            "root_password": t.root_password,
            "services": t.services,
            "timezone": t.timezone,
            "locale": t.locale,
            "owners": plan.files.iter().map(|f| (&f.path, &f.owner, &f.group)).collect::<Vec<_>>(),
        }),
        Stage::Agent => agent.key(),
        Stage::Cleanup => json!({
            "build_only": plan.build_only.iter().map(|s| &s.name).collect::<Vec<_>>(),
        }),
        Stage::Kernel => json!({}),
        Stage::Bootloader => json!({
            "layout": format!("{:?}", plan.layout),
            "cmdline": plan.kernel_cmdline,
            "title": t.name,
        }),
        _ => json!(null),
    }
}

/// The assembled disk, and what the manifest tells of its root.
struct AssembledDisk {
    /// Keeps a memory-backed disk alive; `path` names it.
    _memory: Option<std::fs::File>,
    path: PathBuf,
    packages: Value,
    kernel: String,
}

/// Where the disk is assembled. It is an intermediate, read once by the
/// outputs stage: in a memory file (memfd) nothing of it goes to the disk
/// and mke2fs's fsync costs nothing. A disk larger than half the available
/// memory (its size is an upper bound: it is sparse) goes to the work dir.
fn assembly_file(work: &Path, disk_size: u64) -> (Option<std::fs::File>, PathBuf) {
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemAvailable:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024);
    if disk_size <= available / 2 {
        // SAFETY: memfd_create with a NUL-terminated name; the descriptor is ours.
        let fd = unsafe { libc::memfd_create(c"kiln-disk".as_ptr(), libc::MFD_CLOEXEC) };
        if fd >= 0 {
            use std::os::fd::FromRawFd;
            // SAFETY: a fresh descriptor owned by nothing else.
            let file = unsafe { std::fs::File::from_raw_fd(fd) };
            // Tools kiln runs (mke2fs) open it by this name.
            let path = PathBuf::from(format!("/proc/{}/fd/{fd}", std::process::id()));
            return (Some(file), path);
        }
    }
    (None, work.join("disk.raw"))
}

/// Runs or replays the tree stages, then assembles the disk.
#[allow(clippy::too_many_arguments)]
fn build_disk(
    r: &mut Runner<'_>,
    plan: &Plan,
    cache: &Cache,
    work: &Path,
    keys: &[String],
    agent: &AgentInput,
    backend: &dyn Bootstrap,
    build_epoch: u64,
    replay: bool,
) -> Result<AssembledDisk, BuildError> {
    let root = work.join("root");
    let sandbox = Sandbox::new(&root);
    let mut data: BTreeMap<Stage, Value> = BTreeMap::new();
    let mut extras: BTreeMap<Stage, PathBuf> = BTreeMap::new();

    // The tree after the packages stage is kept unpacked in the cache, and
    // the stages after it run on an overlay over it (overlay.rs): a rebuild
    // after a change to files or commands copies nothing of the root.
    let kept_at = Stage::TREE
        .iter()
        .position(|&s| s == Stage::Packages)
        .expect("packages is a tree stage");
    let mut overlay = None;
    let mut first = 0;
    if let Some(tree) = replay.then(|| cache.tree_entry(&keys[kept_at])).flatten() {
        let entries: Option<Vec<PathBuf>> = keys[..=kept_at]
            .iter()
            .map(|k| cache.stage_entry(k))
            .collect();
        if let Some(entries) = entries {
            for (&stage, entry) in Stage::TREE.iter().zip(entries) {
                let start = r.started(stage);
                let meta = cache::read_meta(&entry).map_err(|error| BuildError { stage, error })?;
                let detail = meta["detail"].as_str().map(|d| format!("{d} (kept tree)"));
                data.insert(stage, meta["data"].clone());
                extras.insert(stage, entry);
                r.finished(stage, start, true, detail);
            }
            overlay = Some(
                mount_root(work, &tree.join("root"), &root).map_err(|error| BuildError {
                    stage: Stage::Packages,
                    error,
                })?,
            );
            first = kept_at + 1;
        }
    }

    // Then the longest run of cached layers is replayed, and the rest run.
    let mut replaying = replay;
    // The tree as the last stage left it, when that stage ran here: the next
    // stage's starting point without walking the tree again.
    let mut last_snapshot: Option<cache::Snapshot> = None;
    for (i, &stage) in Stage::TREE.iter().enumerate().skip(first) {
        let key = &keys[i];
        let cached = if replaying {
            cache.stage_entry(key)
        } else {
            None
        };
        let entry = match cached {
            Some(entry) => {
                let start = r.started(stage);
                let applied = std::fs::create_dir_all(&root)
                    .map_err(Error::from)
                    .and_then(|_| cache::apply_layer(&root, &entry))
                    .and_then(|_| cache::read_meta(&entry));
                match applied {
                    Ok(meta) => {
                        let detail = meta["detail"].as_str().map(|d| format!("{d} (cached)"));
                        data.insert(stage, meta["data"].clone());
                        r.finished(stage, start, true, detail);
                        entry
                    }
                    Err(error) => {
                        (r.events)(&Event::StageFailed {
                            stage,
                            seconds: start.elapsed().as_secs_f64(),
                            error: error.to_string(),
                        });
                        return Err(BuildError { stage, error });
                    }
                }
            }
            None => {
                replaying = false;
                r.run(stage, |r| {
                    let before = match last_snapshot.take() {
                        Some(snapshot) => snapshot,
                        None if stage == Stage::Bootstrap => cache::Snapshot::new(),
                        None => cache::snapshot(&root)?,
                    };
                    let tmp = cache.begin(key)?;
                    let (value, detail) =
                        run_tree_stage(r, stage, plan, &sandbox, &data, agent, backend, &tmp)?;
                    let after = cache::snapshot(&root)?;
                    let (changed, removed) = cache::diff(&before, &after);
                    cache::write_layer(&root, &tmp, &changed, &removed)?;
                    let meta = json!({
                        "stage": stage.name(),
                        "data": value,
                        "detail": detail,
                        "changed": changed.len(),
                        "removed": removed.len(),
                    });
                    let entry = cache.commit("stages", key, &tmp, &meta)?;
                    data.insert(stage, value);
                    last_snapshot = Some(after);
                    Ok((entry, detail))
                })?
            }
        };
        extras.insert(stage, entry);
        if i == kept_at && overlay.is_none() {
            last_snapshot = None;
            let kept = cache
                .keep_tree(key, &root)
                .and_then(|tree| mount_root(work, &tree, &root));
            overlay = Some(kept.map_err(|error| BuildError { stage, error })?);
        }
    }

    let kernel: Kernel = serde_json::from_value::<KernelData>(data[&Stage::Kernel].clone())
        .map(|k| Kernel {
            version: k.version,
            image: k.image,
            initrd: k.initrd,
        })
        .map_err(|e| BuildError {
            stage: Stage::Kernel,
            error: Error::new(format!("cached kernel data: {e}")),
        })?;
    let boot_entry = extras[&Stage::Bootloader].clone();
    let (memory, image) = assembly_file(work, plan.layout.disk_size);
    r.run(Stage::Filesystem, |_| {
        let efi = if plan.layout.boot.uefi() {
            Some(std::fs::read(boot_entry.join("BOOTX64.EFI"))?)
        } else {
            None
        };
        filesystems::write(
            &image,
            &plan.layout,
            &Contents {
                root: &root,
                efi_image: efi.as_deref(),
                epoch: build_epoch as i64,
            },
        )?;
        let root_part = plan.layout.root();
        Ok((
            (),
            Some(format!(
                "ext4 {} MiB at {} MiB",
                root_part.size >> 20,
                root_part.offset >> 20
            )),
        ))
    })?;
    r.run(Stage::PartitionTable, |_| {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&image)?;
        gpt::write(&mut file, &plan.layout)?;
        if plan.layout.boot.bios() {
            let core = std::fs::read(boot_entry.join("core.img"))?;
            grub::install_bios(&file, &plan.layout, &core)?;
        }
        drop(file);
        Ok((
            (),
            Some(format!(
                "GPT with {} partitions",
                plan.layout.partitions.len()
            )),
        ))
    })?;
    Ok(AssembledDisk {
        _memory: memory,
        path: image,
        packages: data[&Stage::Cleanup]["packages"].clone(),
        kernel: kernel.version,
    })
}

/// Mounts an overlay of `lower` at `root` (empty, made here), with its upper
/// and scratch directories in the build's work directory.
fn mount_root(work: &Path, lower: &Path, root: &Path) -> Result<Overlay, Error> {
    let (upper, scratch) = (work.join("upper"), work.join("overlay-work"));
    for dir in [root, &upper, &scratch] {
        std::fs::create_dir_all(dir)?;
    }
    Overlay::mount(lower, &upper, &scratch, root)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct KernelData {
    version: String,
    image: String,
    initrd: String,
}

/// One tree stage's work on the root; returns what later stages need.
#[allow(clippy::too_many_arguments)]
fn run_tree_stage(
    r: &mut Runner<'_>,
    stage: Stage,
    plan: &Plan,
    sandbox: &Sandbox,
    data: &BTreeMap<Stage, Value>,
    agent: &AgentInput,
    backend: &dyn Bootstrap,
    entry: &Path,
) -> Result<(Value, Option<String>), Error> {
    let t = &plan.template;
    match stage {
        Stage::Bootstrap => {
            backend.bootstrap(&plan.bootstrap, sandbox.root())?;
            let detail = format!(
                "{} {} from {}",
                plan.bootstrap.distribution.name(),
                plan.bootstrap.release,
                plan.bootstrap.mirror
            );
            Ok((Value::Null, Some(detail)))
        }
        Stage::Repositories => {
            if !t.default_repositories {
                apt::remove_default_sources(sandbox)?;
            }
            apt::add_sources(sandbox, &plan.sources)?;
            Ok((Value::Null, Some(format!("{} added", plan.sources.len()))))
        }
        Stage::Packages => {
            apt::deny_service_starts(sandbox)?;
            for c in &plan.before_packages {
                sandbox
                    .shell(&c.script)
                    .map_err(|e| Error::new(format!("{}: {e}", c.name)))?;
            }
            apt::install_packages(sandbox, &plan.packages)?;
            Ok((
                Value::Null,
                Some(format!("{} requested", plan.packages.len())),
            ))
        }
        Stage::Files => {
            let downloads = entry.join("downloads");
            let mut tree_files = Vec::new();
            for f in &plan.files {
                let contents = match &f.source {
                    PlannedSource::Bytes(b) => b.clone(),
                    PlannedSource::Url(url) => fetch(url, &f.sha256, &downloads)?,
                };
                tree_files.push(TreeFile::new(f.path.clone(), contents, f.mode));
            }
            let _ = std::fs::remove_dir_all(&downloads);
            files::install(sandbox, &tree_files)?;
            Ok((Value::Null, Some(format!("{} written", tree_files.len()))))
        }
        Stage::Commands => {
            for c in &plan.after_packages {
                sandbox
                    .shell(&c.script)
                    .map_err(|e| Error::new(format!("{}: {e}", c.name)))?;
            }
            Ok((
                Value::Null,
                Some(format!("{} run", plan.after_packages.len())),
            ))
        }
        Stage::Users => {
            system::set_hostname(sandbox, &plan.hostname)?;
            for g in &plan.groups {
                system::add_group(sandbox, g)?;
            }
            for u in &plan.users {
                system::add_user(sandbox, u)?;
            }
            if let Some(p) = &plan.root_password {
                system::set_password(sandbox, "root", p)?;
            }
            for f in plan
                .files
                .iter()
                .filter(|f| f.owner != "root" || f.group != "root")
            {
                system::chown(sandbox, &f.path, &f.owner, &f.group)?;
            }
            system::set_services(sandbox, &t.services.enable, &t.services.disable)?;
            if let Some(tz) = &t.timezone {
                system::set_timezone(sandbox, tz)?;
            }
            if let Some(l) = &t.locale {
                system::set_locale(sandbox, l)?;
            }
            Ok((
                Value::Null,
                Some(format!(
                    "{} users, {} groups, {} services",
                    plan.users.len(),
                    plan.groups.len(),
                    t.services.enable.len() + t.services.disable.len()
                )),
            ))
        }
        Stage::Agent => {
            let detail = match (agent.requested, &agent.binary) {
                (false, _) => "not requested by the template".to_string(),
                (true, None) => {
                    let msg = "the template asks for the kiln agent, but no binary is given (KILN_AGENT_BINARY): the image has none".to_string();
                    r.warn(Stage::Agent, msg);
                    "skipped: no agent binary".to_string()
                }
                (true, Some((path, bytes))) => {
                    let mut to_install = vec![TreeFile::new(AGENT_PATH, bytes.clone(), 0o755)];
                    for (name, unit) in &agent.units {
                        to_install.push(TreeFile::new(
                            format!("/etc/systemd/system/{name}"),
                            unit.clone(),
                            0o644,
                        ));
                    }
                    files::install(sandbox, &to_install)?;
                    let names: Vec<String> = agent.units.iter().map(|(n, _)| n.clone()).collect();
                    system::set_services(sandbox, &names, &[])?;
                    format!(
                        "installed {} as {AGENT_PATH}{}",
                        path.display(),
                        if names.is_empty() {
                            String::new()
                        } else {
                            format!(", enabled {}", names.join(", "))
                        }
                    )
                }
            };
            Ok((Value::Null, Some(detail)))
        }
        Stage::Cleanup => {
            apt::remove_sources(sandbox, &plan.build_only)?;
            clean::clean(sandbox)?;
            let packages = apt::installed(sandbox)?;
            let list: Vec<PackageInfo> = packages
                .into_iter()
                .map(|p| PackageInfo {
                    name: p.name,
                    version: p.version,
                    architecture: p.architecture,
                })
                .collect();
            let detail = format!("{} packages installed", list.len());
            Ok((json!({"packages": list}), Some(detail)))
        }
        Stage::Kernel => {
            let k = kernel::prepare(sandbox)?;
            let detail = format!("Linux {}", k.version);
            Ok((
                serde_json::to_value(KernelData {
                    version: k.version,
                    image: k.image,
                    initrd: k.initrd,
                })?,
                Some(detail),
            ))
        }
        Stage::Bootloader => {
            let k: KernelData = serde_json::from_value(data[&Stage::Kernel].clone())?;
            let layout = &plan.layout;
            let root = layout.root();
            let root_uuid = root.fs_uuid.clone().unwrap_or_default();
            let cfg = grub::config(
                &t.name,
                &k.image,
                &k.initrd,
                &root.part_uuid,
                &plan.kernel_cmdline,
            );
            files::install(
                sandbox,
                &[
                    TreeFile::new("/boot/grub/grub.cfg", cfg, 0o644),
                    TreeFile::new("/etc/fstab", layout.fstab(), 0o644),
                ],
            )?;
            let mut made = Vec::new();
            if layout.boot.bios() {
                std::fs::write(entry.join("core.img"), grub::bios_core(&root_uuid)?)?;
                made.push("BIOS core.img");
            }
            if layout.boot.uefi() {
                std::fs::write(entry.join("BOOTX64.EFI"), grub::efi_image(&root_uuid)?)?;
                made.push("EFI/BOOT/BOOTX64.EFI");
            }
            let esp = layout.find(Role::Esp).is_some();
            debug_assert_eq!(esp, layout.boot.uefi());
            Ok((
                Value::Null,
                Some(format!(
                    "GRUB: {}; root PARTUUID={}",
                    made.join(", "),
                    root.part_uuid
                )),
            ))
        }
        _ => Err(Error::new(format!("{} is not a tree stage", stage.name()))),
    }
}

/// Downloads `url` with curl and checks its SHA-256.
fn fetch(url: &str, sha256: &str, dir: &Path) -> Result<Vec<u8>, Error> {
    std::fs::create_dir_all(dir)?;
    let dest = dir.join(hash::sha256_hex(url.as_bytes()));
    let out = std::process::Command::new("curl")
        .args([
            "--fail",
            "--silent",
            "--show-error",
            "--location",
            "--proto",
            "=http,https",
            "--output",
        ])
        .arg(&dest)
        .arg("--")
        .arg(url)
        .output()
        .map_err(|e| Error::new(format!("cannot run curl ({e}): install curl")))?;
    if !out.status.success() {
        return Err(Error::new(format!(
            "downloading {url}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let data = std::fs::read(&dest)?;
    let got = hash::sha256_hex(&data);
    if got != sha256 {
        return Err(Error::new(format!(
            "{url}: sha256 is {got}, the template requires {sha256}"
        )));
    }
    Ok(data)
}
