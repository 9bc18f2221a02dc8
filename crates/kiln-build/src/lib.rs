//! The image build pipeline behind `kiln build`.
//!
//! A build runs explicit [`Stage`]s in order: resolve the template, bootstrap
//! the root, repositories, packages, files, commands, users, agent, clean-up,
//! kernel, bootloader, filesystem image, partition table, output formats,
//! manifest. Each stage from bootstrap to bootloader changes the image root;
//! its change is kept in the [`cache`] as a layer under a key that hashes
//! everything the stage depends on (its inputs and the key of the stage
//! before); the root after the packages stage is also kept unpacked, and the
//! later stages run on an overlay over it. A rebuild replays only the stages
//! whose key is not cached. The disk is assembled in memory when it fits: it
//! is read once, by the outputs stage. Every step is reported as an
//! [`Event`], which the CLI shows as progress or prints as JSON.

pub mod cache;
mod error;
pub mod event;
pub mod hash;
pub mod manifest;
pub mod output;
pub mod ova;
mod overlay;
mod pipeline;
pub mod plan;
pub mod publish;
pub mod stage;

pub use error::{BuildError, Error};
pub use event::Event;
pub use pipeline::{BuildOptions, BuildReport, build};
pub use stage::Stage;
