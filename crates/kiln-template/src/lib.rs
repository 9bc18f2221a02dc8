//! kiln appliance templates.
//!
//! A template describes a VM image: the OS, packages, files, commands, users,
//! disk layout and outputs. The native format is YAML (docs/templates.md);
//! Oz TDL and BoxGrinder appliance definitions can be imported into it.
//!
//! - [`load`] reads a native template, merges what it `extends`, substitutes
//!   `${variables}` and checks everything, returning a [`Template`] or every
//!   [`Problem`] found, each pointing into the file it is in.
//! - [`import`] converts a `.tdl` or `.appl` file, detected by its content.

mod appl;
mod diag;
mod import;
mod inherit;
mod model;
mod native;
mod size;
mod tdl;
mod vars;
mod yaml;

pub use diag::{Problem, Problems, SourceFile};
pub use import::{Imported, import};
pub use model::*;
pub use native::load;
pub use size::Size;
