//! Virtual disk image formats: raw, qcow2, VMDK, VHD and VDI.
//!
//! Every format is a plain data structure (its header and tables) plus the I/O
//! that reads or writes it. Readers implement [`DiskRead`], a guest-visible view
//! with allocation status, so that conversion skips holes and zeros; writers
//! implement [`DiskWrite`] and take data in ascending guest order, which lets
//! them stream (VMDK streamOptimized, qcow2) without seeking back over data.
//!
//! Formats are detected by content ([`detect`]), never by file name.

pub(crate) mod blocks;
pub mod check;
pub mod convert;
pub mod detect;
pub mod error;
pub mod inspect;
pub mod io;
pub mod open;
pub mod options;
pub mod parallel;
pub mod qcow2;
pub mod raw;
pub mod resize;
pub mod vdi;
pub mod vhd;
pub mod vmdk;
pub(crate) mod writeback;

pub use detect::{Format, detect, detect_all};
pub use error::{Error, Result};
pub use io::{Allocation, DiskRead, DiskWrite, ImageInfo};
pub use open::{OpenOptions, create, open};
pub use options::{Compression, CreateOptions};
