//! kiln-agent: the in-guest half of contextualization.
//!
//! At boot it finds the VM's context ([`sources`]): a block device labelled
//! `CONTEXT` (OpenNebula), `cidata` (NoCloud) or `config-2` (ConfigDrive),
//! read straight from the device; a NoCloud seed named on the kernel command
//! line; or a metadata service (EC2 IMDSv2, NoCloud-net, OpenStack). Both
//! dialects — OpenNebula variables and cloud-config — become one
//! [`context::Context`], which [`steps`] applies: hostname, network, users,
//! keys, passwords, timezone, files, scripts, growing the root filesystem,
//! the ready report and the hand-off to configuration management.
//!
//! Every step works on a target root directory ([`root::Root`]), `/` in a
//! guest, a scratch tree in tests. A failing step is logged and the others
//! go on; what ran and how long it took is kept in [`state`].

pub mod accounts;
pub mod context;
pub mod files;
pub mod grow;
pub mod http;
pub mod log;
pub mod online;
pub mod root;
pub mod sources;
pub mod state;
pub mod steps;
pub mod userdata;
