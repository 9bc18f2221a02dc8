//! `kiln context`: context images and cloud-init seeds from one VM description.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use kiln_context::cloudconfig::{self, CloudConfig};
use kiln_context::template::Template;
use kiln_context::vm::{Vm, VmSource};
use kiln_context::{Filesystem, Seed, SeedFile, cloudinit, description, netconfig, onecontext};

#[derive(Subcommand)]
pub enum ContextCommand {
    /// OpenNebula context CD (label CONTEXT): context.sh plus the CONTEXT FILES.
    Iso(ImageArgs),
    /// cloud-init NoCloud seed (label cidata): meta-data, user-data, network-config, vendor-data.
    Nocloud(ImageArgs),
    /// OpenStack ConfigDrive (label config-2): openstack/latest/{meta_data.json, network_data.json, user_data}.
    Configdrive(ImageArgs),
    /// Print the context.sh oned would write for the VM.
    Vars(VmArgs),
    /// Translate a cloud-config (and a network-config v2) into an OpenNebula CONTEXT section.
    FromCloudConfig {
        /// A cloud-config file (`#cloud-config`).
        cloud_config: PathBuf,
        /// A network-config version 2 file: its interfaces become ETHn_* variables.
        #[arg(long)]
        network_config: Option<PathBuf>,
    },
}

/// The VM description and what it refers to.
#[derive(Args)]
pub struct VmArgs {
    /// The VM: kiln YAML/JSON, or OpenNebula template syntax (`NAME = "..."`, `NIC = [ ... ]`).
    vm: PathBuf,
    /// A virtual network the VM's NICs use (repeatable; YAML or OpenNebula syntax).
    #[arg(long = "network", value_name = "FILE")]
    networks: Vec<PathBuf>,
    /// An image the VM's disks use (repeatable).
    #[arg(long = "image", value_name = "FILE")]
    images: Vec<PathBuf>,
    /// The VM's owner, whose attributes `$USER[...]` reads.
    #[arg(long, value_name = "FILE")]
    user: Option<PathBuf>,
    /// The VM id ($VMID); overrides the description's ID.
    #[arg(long)]
    vmid: Option<u64>,
}

#[derive(Args)]
pub struct ImageArgs {
    #[command(flatten)]
    vm: VmArgs,
    /// Where to write the image.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Filesystem of the image.
    #[arg(long, value_enum, default_value_t = FsArg::Iso9660)]
    fs: FsArg,
    /// Timestamp of every file and of the volume, in seconds since 1970.
    #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = 0)]
    epoch: i64,
}

#[derive(Clone, Copy, ValueEnum)]
enum FsArg {
    Iso9660,
    Vfat,
}

pub fn run(cmd: ContextCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ContextCommand::Iso(args) => write_image(&args, |vm| {
            let variables = onecontext::context_variables(vm)?;
            let base = args.vm.vm.parent().unwrap_or(Path::new("."));
            let files = onecontext::context_file_paths(&variables)
                .iter()
                .map(|path| read_context_file(base, path))
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(onecontext::context_seed(&variables, files)?)
        }),
        ContextCommand::Nocloud(args) => write_image(&args, |vm| Ok(cloudinit::nocloud_seed(vm)?)),
        ContextCommand::Configdrive(args) => {
            write_image(&args, |vm| Ok(cloudinit::configdrive_seed(vm)?))
        }
        ContextCommand::Vars(args) => {
            let vm = load_vm(&args)?;
            print!(
                "{}",
                onecontext::context_sh(&onecontext::context_variables(&vm)?)
            );
            Ok(ExitCode::SUCCESS)
        }
        ContextCommand::FromCloudConfig {
            cloud_config,
            network_config,
        } => from_cloud_config(&cloud_config, network_config.as_deref()),
    }
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn load_vm(args: &VmArgs) -> anyhow::Result<Vm> {
    load_vm_files(
        &args.vm,
        &args.networks,
        &args.images,
        args.user.as_deref(),
        args.vmid,
    )
}

/// A VM description with the networks, images and owner it refers to.
pub(crate) fn load_vm_files(
    vm: &Path,
    networks: &[PathBuf],
    images: &[PathBuf],
    user: Option<&Path>,
    vmid: Option<u64>,
) -> anyhow::Result<Vm> {
    let origin = |path: &Path| path.display().to_string();
    let mut source: VmSource = description::parse_vm(&origin(vm), &read_text(vm)?)?;
    for path in networks {
        source.networks.push(description::parse_resource(
            &origin(path),
            &read_text(path)?,
        )?);
    }
    for path in images {
        source.images.push(description::parse_resource(
            &origin(path),
            &read_text(path)?,
        )?);
    }
    if let Some(path) = user {
        source.owner = Some(description::parse_resource(
            &origin(path),
            &read_text(path)?,
        )?);
    }
    Ok(Vm::instantiate(source, vmid)?)
}

fn write_image(
    args: &ImageArgs,
    seed: impl FnOnce(&Vm) -> anyhow::Result<Seed>,
) -> anyhow::Result<ExitCode> {
    let vm = load_vm(&args.vm)?;
    let filesystem = match args.fs {
        FsArg::Iso9660 => Filesystem::Iso9660,
        FsArg::Vfat => Filesystem::Vfat,
    };
    let image = seed(&vm)?.to_image(filesystem, args.epoch)?;
    std::fs::write(&args.output, image)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// A CONTEXT FILES entry: a regular file, relative paths taken from the VM
/// description's directory, stored flat under its name as oned does.
fn read_context_file(base: &Path, path: &str) -> anyhow::Result<SeedFile> {
    let full = base.join(path);
    let name = full
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("CONTEXT FILES entry {path:?} has no file name"))?
        .to_string();
    let metadata = std::fs::metadata(&full)
        .with_context(|| format!("CONTEXT FILES entry {}", full.display()))?;
    anyhow::ensure!(
        metadata.is_file(),
        "CONTEXT FILES entry {} is not a regular file",
        full.display()
    );
    let contents =
        std::fs::read(&full).with_context(|| format!("cannot read {}", full.display()))?;
    let mode = std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o777;
    Ok(SeedFile {
        path: name,
        contents,
        mode,
    })
}

fn from_cloud_config(path: &Path, network_config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (config, untranslated): (CloudConfig, Vec<String>) = CloudConfig::parse(&read_text(path)?)?;
    for key in untranslated {
        eprintln!(
            "kiln: {}: {key:?} has no OpenNebula context equivalent; left out",
            path.display()
        );
    }
    let mut variables = cloudconfig::to_variables(&config);
    if let Some(network_path) = network_config {
        let network = netconfig::NetworkConfig::parse(&read_text(network_path)?)
            .with_context(|| network_path.display().to_string())?;
        variables.extend(netconfig::variables_from_interfaces(
            &netconfig::interfaces_from_network_config(&network)?,
        ));
    }
    let mut template = Template::default();
    template.push_vector("CONTEXT", variables);
    print!("{}", template.to_one_syntax());
    Ok(ExitCode::SUCCESS)
}
