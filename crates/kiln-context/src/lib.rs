//! kiln-context: everything a VM needs to learn who it is at boot.
//!
//! One VM description ([`vm::VmSource`], read by [`description`] from kiln's
//! YAML/JSON or OpenNebula's template syntax) becomes an OpenNebula context
//! image, a cloud-init NoCloud seed or an OpenStack ConfigDrive. CONTEXT values
//! use OpenNebula's substitution language ([`subst`]). Images are ISO 9660
//! with Joliet and Rock Ridge ([`iso9660`]) or VFAT ([`vfat`]), byte-identical
//! for the same input. [`enc`] classifies nodes for Puppet and chef-solo.

pub mod cloudconfig;
pub mod cloudinit;
pub mod description;
pub mod enc;
pub mod error;
pub mod iso9660;
pub mod metadata;
pub mod netconfig;
pub mod onecontext;
pub mod seed;
pub mod seedread;
pub mod subst;
pub mod template;
pub mod vfat;
pub mod vm;

pub use error::{Error, Position, Result, SyntaxError};
pub use seed::{Filesystem, Seed, SeedFile};
