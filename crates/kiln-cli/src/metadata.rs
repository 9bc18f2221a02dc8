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
    /// A VM description (repeatable); each VM keeps its own ID. A VM is known
    /// by its token (`/t/TOKEN/...`, from METADATA_TOKEN or made at start) or
    /// by its NICs' addresses (and METADATA_ADDRESS).
    #[arg(long = "vm", value_name = "FILE", required = true)]
    vms: Vec<PathBuf>,
    /// A virtual network the VMs' NICs use (repeatable).
    #[arg(long = "network", value_name = "FILE")]
    networks: Vec<PathBuf>,
    /// An image the VMs' disks use (repeatable).
    #[arg(long = "image", value_name = "FILE")]
    images: Vec<PathBuf>,
    /// The VMs' owner.
    #[arg(long, value_name = "FILE")]
    user: Option<PathBuf>,
    /// Address and port to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8775")]
    listen: SocketAddr,
    /// EC2 requests without an IMDSv2 session token: answered (optional) or refused (required).
    #[arg(long, value_enum, default_value_t = ImdsArg::Optional)]
    imds: ImdsArg,
    /// Node classifier rules: `/enc/NODE` answers as `kiln enc`.
    #[arg(long, value_name = "FILE")]
    enc_rules: Option<PathBuf>,
    /// Once listening, print one JSON line: the address and each VM's token and URLs.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum ImdsArg {
    Optional,
    Required,
}

pub fn run(cmd: MetadataCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        MetadataCommand::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut vms = Vec::new();
    for path in &args.vms {
        let vm = crate::context::load_vm_files(
            path,
            &args.networks,
            &args.images,
            args.user.as_deref(),
            None,
        )?;
        vms.push(ServedVm::new(&vm, kiln_metadata::random_token())?);
    }
    let enc = match &args.enc_rules {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Some(Rules::parse(&path.display().to_string(), &text)?)
        }
        None => None,
    };
    let imds = match args.imds {
        ImdsArg::Optional => Imds::Optional,
        ImdsArg::Required => Imds::Required,
    };
    let service = Arc::new(MetadataService::new(
        vms,
        imds,
        enc,
        kiln_metadata::os_tokens(),
    )?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let listing = Arc::clone(&service);
    let json = args.json;
    runtime
        .block_on(kiln_metadata::serve(service, args.listen, move |address| {
            announce(&listing, address, json)
        }))
        .with_context(|| format!("cannot serve on {}", args.listen))?;
    Ok(ExitCode::SUCCESS)
}

/// Tells where each VM finds its metadata.
fn announce(service: &MetadataService, address: SocketAddr, json: bool) {
    let vms: Vec<serde_json::Value> = service
        .vms()
        .iter()
        .map(|vm| {
            let base = format!("http://{address}/t/{}/", vm.token);
            serde_json::json!({
                "id": vm.id,
                "name": vm.name,
                "instance_id": vm.instance_id,
                "token": vm.token,
                "addresses": vm.addresses,
                "seedfrom": base,
                "kernel_cmdline": format!("ds=nocloud;s={base}"),
            })
        })
        .collect();
    if json {
        println!(
            "{}",
            serde_json::json!({"listen": address.to_string(), "vms": vms})
        );
    } else {
        println!("kiln metadata service on http://{address}/");
        for vm in &vms {
            println!(
                "  VM {} ({}): seedfrom {}",
                vm["id"],
                vm["name"].as_str().unwrap_or(""),
                vm["seedfrom"].as_str().unwrap_or("")
            );
        }
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    tracing::info!(%address, vms = vms.len(), "metadata service listening");
}
