//! qcow2, versions 2 (compat 0.10) and 3 (compat 1.1).

mod check;
mod compress;
mod header;
mod reader;
mod resize;
mod snapshot;
mod tables;
mod writer;

pub use check::{check, inspect_structure};
pub use header::Header;
pub use reader::Qcow2Reader;
pub use resize::grow;
pub use writer::Qcow2Writer;
