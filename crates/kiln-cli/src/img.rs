//! `kiln img`: disk image commands in qemu-img's habits.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum ImgCommand {}

pub fn run(cmd: ImgCommand) -> anyhow::Result<ExitCode> {
    match cmd {}
}
