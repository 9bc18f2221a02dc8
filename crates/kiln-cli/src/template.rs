//! `kiln template`: check, show and import appliance templates.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use kiln_template::Problems;

use crate::output::{EXIT_FAILURE, EXIT_NEGATIVE};

#[derive(Subcommand)]
pub enum TemplateCommand {
    /// Check a template and print every error in it; exit 0 only when it is valid.
    Check { file: PathBuf },
    /// Print the template fully resolved: inheritance merged, variables substituted.
    Show {
        file: PathBuf,
        /// Print JSON instead of YAML.
        #[arg(long)]
        json: bool,
    },
    /// Convert an Oz TDL (.tdl) or a BoxGrinder appliance (.appl) to a kiln template.
    Import {
        file: PathBuf,
        /// Write the template here instead of to standard output.
        #[arg(short, long, value_name = "OUT.yaml")]
        output: Option<PathBuf>,
    },
}

pub fn run(cmd: TemplateCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TemplateCommand::Check { file } => match kiln_template::load(&file) {
            Ok(t) => {
                println!(
                    "{}: ok ({} {} {})",
                    file.display(),
                    t.name,
                    t.os.distribution,
                    t.os.release
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(problems) => Ok(report(&problems, EXIT_NEGATIVE)),
        },
        TemplateCommand::Show { file, json } => match kiln_template::load(&file) {
            Ok(t) if json => {
                println!("{}", serde_json::to_string_pretty(&t)?);
                Ok(ExitCode::SUCCESS)
            }
            Ok(t) => {
                print!("{}", t.to_yaml()?);
                Ok(ExitCode::SUCCESS)
            }
            Err(problems) => Ok(report(&problems, EXIT_FAILURE)),
        },
        TemplateCommand::Import { file, output } => match kiln_template::import(&file) {
            Ok(imported) => {
                for note in &imported.notes {
                    eprintln!("note: {note}");
                }
                let yaml = imported.to_yaml(&file)?;
                write_or_print(output.as_deref(), &yaml)?;
                Ok(ExitCode::SUCCESS)
            }
            Err(problems) => Ok(report(&problems, EXIT_FAILURE)),
        },
    }
}

fn write_or_print(output: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// Prints every problem on stderr: miette's graphical report on a terminal,
/// `file:line:column: error: …` lines otherwise.
fn report(problems: &Problems, code: u8) -> ExitCode {
    if std::io::stderr().is_terminal() {
        let handler = miette::GraphicalReportHandler::new();
        for problem in &problems.0 {
            let mut out = String::new();
            match handler.render_report(&mut out, problem) {
                Ok(()) => eprint!("{out}"),
                Err(_) => eprintln!("{}", problem.plain()),
            }
        }
    } else {
        eprint!("{}", problems.plain());
    }
    let count = problems.0.len();
    eprintln!("{count} error{}", if count == 1 { "" } else { "s" });
    ExitCode::from(code)
}
