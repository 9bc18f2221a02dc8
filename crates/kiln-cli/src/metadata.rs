//! `kiln metadata serve`: the metadata service (NoCloud-net, EC2 with
//! IMDSv2, OpenStack) for a set of VM descriptions.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use kiln_context::enc::Rules;
use kiln_context::metadata::{Imds, MetadataService, ServedVm};

#[derive(Subcommand)]
pub enum MetadataCommand {
    /// Serve metadata for the VMs until interrupted.
    Serve(ServeArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    vms: VmSet,
    /// Address and port to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8775")]
    listen: SocketAddr,
    /// Once listening, print one JSON line: the address and each VM's token and URLs.
    #[arg(long)]
    json: bool,
}

/// The VMs a metadata service answers for, and how; shared by
/// `kiln metadata serve` and `kiln serve`.
#[derive(Args)]
pub struct VmSet {
    /// A VM description (repeatable); each VM keeps its own ID. A VM is known
    /// by its token (`/t/TOKEN/...`, from METADATA_TOKEN or made at start) or
    /// by its NICs' addresses (and METADATA_ADDRESS).
    #[arg(long = "vm", value_name = "FILE")]
    vms: Vec<PathBuf>,
    /// A virtual network the VMs' NICs use (repeatable).
    #[arg(long = "network", value_name = "FILE", requires = "vms")]
    networks: Vec<PathBuf>,
    /// An image the VMs' disks use (repeatable).
    #[arg(long = "image", value_name = "FILE", requires = "vms")]
    images: Vec<PathBuf>,
    /// The VMs' owner.
    #[arg(long, value_name = "FILE", requires = "vms")]
    user: Option<PathBuf>,
    /// EC2 requests without an IMDSv2 session token: answered (optional) or refused (required).
    #[arg(long, value_enum, default_value_t = ImdsArg::Optional)]
    imds: ImdsArg,
    /// Node classifier rules: `/enc/NODE` answers as `kiln enc`.
    #[arg(long, value_name = "FILE")]
    enc_rules: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ImdsArg {
    Optional,
    Required,
}

impl VmSet {
    /// Nothing to serve: no VM and no classifier rules.
    pub fn is_empty(&self) -> bool {
        self.vms.is_empty() && self.enc_rules.is_none()
    }

    /// Loads every description and the rules; each VM gets a fresh token
    /// unless its context names one.
    pub fn service(&self) -> anyhow::Result<Arc<MetadataService>> {
        let mut vms = Vec::new();
        for path in &self.vms {
            let vm = crate::context::load_vm_files(
                path,
                &self.networks,
                &self.images,
                self.user.as_deref(),
                None,
            )?;
            vms.push(ServedVm::new(&vm, kiln_metadata::random_token())?);
        }
        let enc = match &self.enc_rules {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                Some(Rules::parse(&path.display().to_string(), &text)?)
            }
            None => None,
        };
        let imds = match self.imds {
            ImdsArg::Optional => Imds::Optional,
            ImdsArg::Required => Imds::Required,
        };
        Ok(Arc::new(MetadataService::new(
            vms,
            imds,
            enc,
            kiln_metadata::os_tokens(),
        )?))
    }
}

pub fn run(cmd: MetadataCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        MetadataCommand::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if args.vms.is_empty() {
        anyhow::bail!("nothing to serve: give at least one --vm FILE (or --enc-rules FILE)");
    }
    let service = args.vms.service()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let listing = Arc::clone(&service);
    let json = args.json;
    runtime
        .block_on(kiln_metadata::serve(service, args.listen, move |address| {
            let vms = urls(&listing, &format!("http://{address}"));
            if json {
                println!(
                    "{}",
                    serde_json::json!({"listen": address.to_string(), "vms": vms})
                );
            } else {
                println!("kiln metadata service on http://{address}/");
                print_vms(&vms);
            }
            use std::io::Write as _;
            let _ = std::io::stdout().flush();
            tracing::info!(%address, vms = vms.len(), "metadata service listening");
        }))
        .with_context(|| format!("cannot serve on {}", args.listen))?;
    Ok(ExitCode::SUCCESS)
}

/// Where each VM finds its metadata when the service's root is `base`
/// (`http://HOST:PORT`, plus `/metadata` inside `kiln serve`).
pub fn urls(service: &MetadataService, base: &str) -> Vec<serde_json::Value> {
    service
        .vms()
        .iter()
        .map(|vm| {
            let seedfrom = format!("{base}/t/{}/", vm.token);
            serde_json::json!({
                "id": vm.id,
                "name": vm.name,
                "instance_id": vm.instance_id,
                "token": vm.token,
                "addresses": vm.addresses,
                "seedfrom": seedfrom,
                "kernel_cmdline": format!("ds=nocloud;s={seedfrom}"),
            })
        })
        .collect()
}

/// One line a VM: `  VM ID (NAME): seedfrom URL`.
pub fn print_vms(vms: &[serde_json::Value]) {
    for vm in vms {
        println!(
            "  VM {} ({}): seedfrom {}",
            vm["id"],
            vm["name"].as_str().unwrap_or(""),
            vm["seedfrom"].as_str().unwrap_or("")
        );
    }
}
