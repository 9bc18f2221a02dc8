//! `kiln enc`: a node classifier usable as Puppet's `external_nodes` command.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use kiln_context::enc::Rules;

use crate::output::EXIT_NEGATIVE;

#[derive(Args)]
pub struct EncArgs {
    /// The node's name (Puppet passes the certname last).
    node: String,
    /// The rules file (YAML): see docs/context.md.
    #[arg(long, value_name = "FILE")]
    rules: PathBuf,
    /// Facts about the node (YAML or JSON map), added to the rules' inventory.
    #[arg(long, value_name = "FILE")]
    facts: Option<PathBuf>,
    /// A tag of the node (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Output: Puppet ENC YAML or a chef-solo node JSON.
    #[arg(long, value_enum, default_value_t = Format::Puppet)]
    format: Format,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Puppet,
    Chef,
}

/// Prints the classification; a node no rule matches exits 1 with nothing on
/// stdout, which Puppet reads as "node not found".
pub fn run(args: EncArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.rules)
        .with_context(|| format!("cannot read {}", args.rules.display()))?;
    let rules = Rules::parse(&args.rules.display().to_string(), &text)?;
    let facts = match &args.facts {
        None => serde_json::Map::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            kiln_context::enc::parse_facts(&path.display().to_string(), &text)?
        }
    };
    let node = rules.node(
        &args.node,
        args.tags.into_iter().collect::<BTreeSet<_>>(),
        facts,
    );
    let Some(outcome) = rules.classify(&node) else {
        eprintln!(
            "kiln: node {:?} matches no rule and the rules have no default",
            args.node
        );
        return Ok(ExitCode::from(EXIT_NEGATIVE));
    };
    match args.format {
        Format::Puppet => print!("{}", outcome.to_puppet_yaml()),
        Format::Chef => println!("{}", serde_json::to_string_pretty(&outcome.to_chef_json())?),
    }
    Ok(ExitCode::SUCCESS)
}
