//! What every command shares: logging, exit codes, progress bars, man pages.

use std::path::Path;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};

/// Exit codes that mean something to scripts (docs/trust.md, "Exit codes"):
/// 0 success; 1 a negative answer, a verdict kiln reached by checking
/// (images differ, image unsafe, a signature refused, an entry refused by
/// the site policy, bytes that do not verify, a rolled-back or expired
/// list); 2 an error, no verdict (bad arguments, unreachable server, I/O,
/// a failed build).
pub const EXIT_NEGATIVE: u8 = 1;
pub const EXIT_FAILURE: u8 = 2;

/// How log lines are written: `text` for people, `json` (one object a line:
/// timestamp, level, target, fields, span) for log collectors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

pub fn init_logging(verbose: u8, format: LogFormat) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KILN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().with_current_span(true).init(),
    }
}

/// A byte progress bar on stderr, hidden when stderr is not a terminal or
/// `quiet` is set (JSON output, scripts).
pub fn byte_progress(total: u64, quiet: bool) -> ProgressBar {
    if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

pub fn write_manpages(cmd: clap::Command, dir: &Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir)?;
    write_page(&cmd, dir, "kiln")?;
    Ok(ExitCode::SUCCESS)
}

fn write_page(cmd: &clap::Command, dir: &Path, name: &str) -> anyhow::Result<()> {
    // Man::title names the page; the command keeps its own name for usage lines.
    let page = clap_mangen::Man::new(cmd.clone()).title(name.to_string());
    let mut out = Vec::new();
    page.render(&mut out)?;
    std::fs::write(dir.join(format!("{name}.1")), out)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_page(sub, dir, &format!("{name}-{}", sub.get_name()))?;
    }
    Ok(())
}
