//! The stages of a build, in order.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Resolve,
    Bootstrap,
    Repositories,
    Packages,
    Files,
    Commands,
    Users,
    Agent,
    Cleanup,
    Kernel,
    Bootloader,
    Filesystem,
    PartitionTable,
    Outputs,
    Manifest,
}

impl Stage {
    pub const ALL: [Stage; 15] = [
        Stage::Resolve,
        Stage::Bootstrap,
        Stage::Repositories,
        Stage::Packages,
        Stage::Files,
        Stage::Commands,
        Stage::Users,
        Stage::Agent,
        Stage::Cleanup,
        Stage::Kernel,
        Stage::Bootloader,
        Stage::Filesystem,
        Stage::PartitionTable,
        Stage::Outputs,
        Stage::Manifest,
    ];

    /// The stages that change the image root, each kept as a cache layer:
    /// bootstrap through bootloader.
    pub const TREE: &[Stage] = Stage::ALL.split_at(1).1.split_at(10).0;

    pub fn name(self) -> &'static str {
        match self {
            Stage::Resolve => "resolve",
            Stage::Bootstrap => "bootstrap",
            Stage::Repositories => "repositories",
            Stage::Packages => "packages",
            Stage::Files => "files",
            Stage::Commands => "commands",
            Stage::Users => "users",
            Stage::Agent => "agent",
            Stage::Cleanup => "cleanup",
            Stage::Kernel => "kernel",
            Stage::Bootloader => "bootloader",
            Stage::Filesystem => "filesystem",
            Stage::PartitionTable => "partition-table",
            Stage::Outputs => "outputs",
            Stage::Manifest => "manifest",
        }
    }

    /// What the progress display says.
    pub fn title(self) -> &'static str {
        match self {
            Stage::Resolve => "resolve template",
            Stage::Bootstrap => "bootstrap root filesystem",
            Stage::Repositories => "repositories",
            Stage::Packages => "packages",
            Stage::Files => "files",
            Stage::Commands => "commands",
            Stage::Users => "users, SSH keys, passwords, services",
            Stage::Agent => "kiln agent",
            Stage::Cleanup => "clean-up",
            Stage::Kernel => "kernel and initramfs",
            Stage::Bootloader => "bootloader",
            Stage::Filesystem => "filesystem image",
            Stage::PartitionTable => "partition table",
            Stage::Outputs => "output formats",
            Stage::Manifest => "manifest",
        }
    }

    pub fn number(self) -> usize {
        Stage::ALL.iter().position(|s| *s == self).unwrap_or(0) + 1
    }
}
