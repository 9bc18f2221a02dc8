//! kiln trust: who vouches for an image and how a site checks it.
//!
//! * [`identity`]: [`Identity`] (an Ed25519 fingerprint, or an X.509 subject
//!   and issuer) and Ed25519 key files.
//! * [`signature`]: [`Signer`], [`Signature`] and [`TrustRoots`] — detached
//!   signatures over any bytes, Ed25519 or CMS (openssl-compatible).
//!
//! Nothing here talks to the network; callers bring the bytes.

pub mod catalog;
pub mod endorsement;
pub mod error;
pub mod hepix;
pub mod identity;
pub mod policy;
pub mod signature;
pub mod simplestreams;
pub mod subscribe;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use error::{Error, Result};
pub use identity::Identity;
pub use signature::{Signature, Signer, TrustRoots};
