//! `kiln`: the command-line front. Each area lives in its own module and calls
//! into its library crate; this file only dispatches.

mod build;
mod context;
mod enc;
mod img;
mod market;
mod metadata;
mod output;
mod subscribe;
mod template;
mod trust;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// kiln builds, publishes and contextualizes virtual machine images.
#[derive(Parser)]
#[command(name = "kiln", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Log more (-v info, -vv debug, -vvv trace); KILN_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Log format on stderr: text, or json (one object a line) for log collectors.
    #[arg(
        long,
        value_enum,
        global = true,
        default_value = "text",
        env = "KILN_LOG_FORMAT"
    )]
    log_format: output::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Disk images: info, convert, check, compare, create, resize, inspect.
    #[command(subcommand)]
    Img(img::ImgCommand),
    /// Build images from a template: bootstrap, configure, assemble, convert.
    Build(build::BuildArgs),
    /// Appliance templates: check, show, import (Oz TDL, BoxGrinder).
    #[command(subcommand)]
    Template(template::TemplateCommand),
    /// VM context: OpenNebula context CD, cloud-init NoCloud and ConfigDrive seeds.
    #[command(subcommand)]
    Context(context::ContextCommand),
    /// Classify a node for Puppet (external_nodes) or chef-solo.
    Enc(enc::EncArgs),
    #[command(flatten)]
    Market(market::MarketCommand),
    #[command(flatten)]
    Trust(trust::TrustCommand),
    /// The metadata service: NoCloud-net, EC2 (IMDSv2) and OpenStack for VM descriptions.
    #[command(subcommand)]
    Metadata(metadata::MetadataCommand),
    /// Keep an image cache in sync with a signed list (kiln catalog or HEPiX image list).
    Subscribe(subscribe::SubscribeArgs),
    /// Print shell completions for bash, zsh, fish, elvish or powershell.
    Completions { shell: clap_complete::Shell },
    /// Write man pages for kiln and every subcommand into DIR.
    Manpages { dir: std::path::PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A server logs what it does (info) unless told otherwise.
    let serving = matches!(&cli.command, Command::Market(m) if market::is_serve(m))
        || matches!(&cli.command, Command::Metadata(_));
    output::init_logging(
        if serving {
            cli.verbose.max(1)
        } else {
            cli.verbose
        },
        cli.log_format,
    );
    let result = match cli.command {
        Command::Img(cmd) => img::run(cmd),
        Command::Build(args) => build::run(args),
        Command::Template(cmd) => template::run(cmd),
        Command::Context(cmd) => context::run(cmd),
        Command::Enc(args) => enc::run(args),
        Command::Market(cmd) => market::run(cmd),
        Command::Trust(cmd) => trust::run(cmd),
        Command::Metadata(cmd) => metadata::run(cmd),
        Command::Subscribe(args) => subscribe::run(args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "kiln", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Manpages { dir } => output::write_manpages(Cli::command(), &dir),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kiln: {e:#}");
            ExitCode::from(output::EXIT_FAILURE)
        }
    }
}
