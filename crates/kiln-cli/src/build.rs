//! `kiln build`: a template to images, stage by stage.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use kiln_build::{BuildOptions, Event};
use kiln_template::Format;

use crate::output::EXIT_FAILURE;

#[derive(clap::Args)]
pub struct BuildArgs {
    /// The template (native YAML; import Oz TDL or BoxGrinder first).
    file: PathBuf,
    /// Directory for the images and the manifest.
    #[arg(short, long, default_value = ".")]
    output: PathBuf,
    /// Output formats instead of the template's: raw, qcow2, vmdk, vhd, ova.
    #[arg(long, value_delimiter = ',', value_parser = parse_format)]
    format: Vec<Format>,
    /// Run every stage again instead of replaying cached ones.
    #[arg(long)]
    no_cache: bool,
    /// The stage cache [default: $XDG_CACHE_HOME/kiln or ~/.cache/kiln].
    #[arg(long, env = "KILN_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// The kiln agent binary installed when the template asks for the agent.
    #[arg(long, env = "KILN_AGENT_BINARY")]
    agent_binary: Option<PathBuf>,
    /// Directory of the agent's systemd units, installed and enabled with it
    /// [default: kiln-agent*.service beside the binary].
    #[arg(long, env = "KILN_AGENT_UNITS")]
    agent_units: Option<PathBuf>,
    /// The distribution mirror, instead of the template's or the host's.
    #[arg(long)]
    mirror: Option<String>,
    /// Print the build's events as JSON lines on stdout instead of progress.
    #[arg(long)]
    json: bool,
    /// Sign the manifest with this key (Ed25519, or the key of --sign-cert):
    /// writes the detached signature beside it as `<manifest>.sig`.
    #[arg(long, value_name = "KEY")]
    sign: Option<PathBuf>,
    /// Sign the manifest with this X.509 certificate (CMS) and --sign's key.
    #[arg(long, value_name = "CERT", requires = "sign")]
    sign_cert: Option<PathBuf>,
}

fn parse_format(s: &str) -> Result<Format, String> {
    Format::WORDS
        .iter()
        .find(|(w, _)| *w == s)
        .map(|(_, f)| *f)
        .ok_or_else(|| format!("unknown format {s:?} (raw, qcow2, vmdk, vhd, ova)"))
}

/// Stage lines on stderr: a spinner while a stage runs on a terminal, one
/// line with its time when it ends.
struct Progress {
    bar: Option<ProgressBar>,
    tty: bool,
}

impl Progress {
    fn show(&mut self, event: &Event) {
        match event {
            Event::StageStarted {
                number,
                total,
                title,
                ..
            } => {
                if self.tty {
                    let bar = ProgressBar::new_spinner();
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} [{prefix}] {msg} {elapsed}")
                            .expect("valid template"),
                    );
                    bar.set_prefix(format!("{number:>2}/{total}"));
                    bar.set_message(title.to_string());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    self.bar = Some(bar);
                }
            }
            Event::StageFinished {
                stage,
                seconds,
                cached,
                detail,
            } => {
                let line = format!(
                    "[{:>2}/{}] {:<36} {:>7.1}s{}{}",
                    stage.number(),
                    kiln_build::Stage::ALL.len(),
                    stage.title(),
                    seconds,
                    if *cached { "  cached" } else { "" },
                    detail
                        .as_deref()
                        .map(|d| format!("  {d}"))
                        .unwrap_or_default()
                );
                self.line(&line);
            }
            Event::StageFailed { stage, seconds, .. } => {
                let line = format!(
                    "[{:>2}/{}] {:<36} {:>7.1}s  FAILED",
                    stage.number(),
                    kiln_build::Stage::ALL.len(),
                    stage.title(),
                    seconds
                );
                self.line(&line);
            }
            Event::Warning { stage, message } => {
                self.line(&format!("warning: {}: {message}", stage.name()))
            }
            Event::Output { path, bytes, .. } => {
                self.line(&format!("  wrote {path} ({bytes} bytes)"))
            }
            Event::BuildFinished { manifest, seconds } => {
                self.line(&format!("built in {seconds:.1}s; manifest {manifest}"))
            }
            Event::BuildStarted { .. } => {}
        }
    }

    fn line(&mut self, text: &str) {
        match self.bar.take() {
            Some(bar) => {
                bar.finish_and_clear();
                eprintln!("{text}");
            }
            None => eprintln!("{text}"),
        }
    }
}

pub fn run(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let opts = BuildOptions {
        template: args.file,
        output_dir: args.output,
        formats: (!args.format.is_empty()).then_some(args.format),
        no_cache: args.no_cache,
        cache_dir: args
            .cache_dir
            .unwrap_or_else(kiln_build::cache::default_dir),
        agent_binary: args.agent_binary,
        agent_units: args.agent_units,
        mirror: args.mirror,
    };
    let json = args.json;
    let mut progress = Progress {
        bar: None,
        tty: std::io::stderr().is_terminal(),
    };
    let mut stdout = std::io::stdout().lock();
    let mut on_event = |event: &Event| {
        if json {
            if let Ok(line) = serde_json::to_string(event) {
                let _ = writeln!(stdout, "{line}");
                let _ = stdout.flush();
            }
        } else {
            progress.show(event);
        }
    };
    // A bad key fails before the build, not after it.
    let signer = match &args.sign {
        Some(key) => Some(kiln_trust::Signer::load(key, args.sign_cert.as_deref())?),
        None => None,
    };
    match kiln_build::build(&opts, &mut on_event) {
        Ok(report) => {
            if let Some(signer) = signer {
                let manifest = std::fs::read(&report.manifest_path)?;
                let mut sig_path = report.manifest_path.into_os_string();
                sig_path.push(".sig");
                let sig_path = PathBuf::from(sig_path);
                crate::trust::write_atomic(&sig_path, &signer.sign(&manifest)?.to_bytes())?;
                tracing::info!(signature = %sig_path.display(), signer = %signer.identity(), "manifest signed");
                if !json {
                    eprintln!(
                        "kiln: manifest signed by {} ({})",
                        signer.identity(),
                        sig_path.display()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!(
                "kiln: build failed in stage {}: {}",
                e.stage.name(),
                e.error
            );
            Ok(ExitCode::from(EXIT_FAILURE))
        }
    }
}
