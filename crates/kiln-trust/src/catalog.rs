//! The signed catalog: one document per marketplace catalogue listing its
//! published entries, with a `version` that only grows and an `expires` time,
//! signed (detached) by the marketplace's key.
//!
//! A subscriber verifies the signature against its trust roots, then refuses
//! a catalog whose version is lower than the last one it saw (rollback) and
//! one past its expiry (freeze) — TUF's two protections against a mirror or
//! an attacker serving old, correctly signed catalogs.
//!
//! Locations are URL references: absolute for images stored elsewhere,
//! `/api/v1/entries/{id}/file` for the marketplace's own blobs, resolved
//! against the catalog's own URL by the reader.

use chrono::{DateTime, Utc};
use kiln_catalog::model::{Entry, Location, Status};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::signature::{Signature, Signer, TrustRoots};

pub const FORMAT: &str = "kiln-catalog/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Always [`FORMAT`].
    pub format: String,
    /// The marketplace catalogue this document lists.
    pub catalogue: String,
    /// Grows with every new document (the issue time in seconds since the
    /// epoch, bumped past the previous one if the clock did not move).
    pub version: u64,
    pub issued: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    pub entries: Vec<CatalogEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    pub id: Uuid,
    pub title: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The image's own version (StratusLab/HEPiX `version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypervisor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    pub size: u64,
    pub sha256: String,
    pub sha512: String,
    pub locations: Vec<String>,
    pub created: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<DateTime<Utc>>,
    /// The deprecation reason; a deprecated entry is listed so that
    /// subscribers learn about it, but they do not keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ram_mib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_cpus: Option<u32>,
}

/// The marketplace-relative URL of an entry's own blob.
pub fn blob_url(id: Uuid) -> String {
    format!("/api/v1/entries/{id}/file")
}

impl CatalogEntry {
    /// The catalog's view of a marketplace entry; `None` for entries a
    /// subscriber cannot use (unpublished, deactivated, or without size and
    /// both digests).
    pub fn from_entry(e: &Entry) -> Option<CatalogEntry> {
        if !matches!(
            e.status,
            Status::Active | Status::Deprecated | Status::Expired
        ) {
            return None;
        }
        let locations = e
            .locations
            .iter()
            .map(|l| match l {
                Location::Blob { .. } => blob_url(e.id),
                Location::External { url } => url.clone(),
            })
            .collect();
        Some(CatalogEntry {
            id: e.id,
            title: e.title.clone(),
            description: e.description.clone(),
            version: e.version.clone(),
            series: e.series.clone(),
            os: e.os.clone(),
            os_version: e.os_version.clone(),
            arch: e.arch.clone(),
            hypervisor: e.hypervisor.clone(),
            format: e.format.clone(),
            size: e.bytes?,
            sha256: e.checksums.sha256.clone()?,
            sha512: e.checksums.sha512.clone()?,
            locations,
            created: e.created,
            valid_until: e.valid_until,
            deprecated: e.deprecated.clone(),
            min_ram_mib: e.min_ram_mib,
            min_cpus: e.min_cpus,
        })
    }
}

impl Catalog {
    /// A catalog of `entries` (in the order given) issued `now`, valid for
    /// `lifetime`.
    pub fn new(
        catalogue: &str,
        version: u64,
        now: DateTime<Utc>,
        lifetime: chrono::Duration,
        entries: Vec<CatalogEntry>,
    ) -> Catalog {
        Catalog {
            format: FORMAT.to_string(),
            catalogue: catalogue.to_string(),
            version,
            issued: now,
            expires: now + lifetime,
            entries,
        }
    }

    /// The exact bytes that are signed and served: indented JSON, fields in
    /// declaration order, `\n`-terminated.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("serializable");
        out.push(b'\n');
        out
    }

    /// Parses a document. This does not check its signature: use [`verify`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Catalog> {
        let catalog: Catalog = serde_json::from_slice(bytes)
            .map_err(|e| Error::Invalid(format!("not a kiln signed catalog: {e}")))?;
        if catalog.format != FORMAT {
            return Err(Error::Invalid(format!(
                "unsupported catalog format {:?} (this kiln reads {FORMAT})",
                catalog.format
            )));
        }
        Ok(catalog)
    }

    /// Whether these bytes look like a kiln catalog (rather than a HEPiX list).
    pub fn sniff(bytes: &[u8]) -> bool {
        bytes.trim_ascii_start().starts_with(b"{")
            && std::str::from_utf8(&bytes[..bytes.len().min(256)]).is_ok_and(|s| s.contains(FORMAT))
    }

    /// Signs the document: its bytes and their detached signature.
    pub fn sign(&self, signer: &Signer) -> Result<(Vec<u8>, Signature)> {
        let bytes = self.to_bytes();
        let sig = signer.sign(&bytes)?;
        Ok((bytes, sig))
    }
}

/// Checks the signature over `bytes` against `roots` and only then parses
/// them. Freshness (rollback, expiry) is [`check_fresh`]'s job.
pub fn verify(bytes: &[u8], sig: &Signature, roots: &TrustRoots) -> Result<(Catalog, Identity)> {
    let who = roots.verify(bytes, sig)?;
    Ok((Catalog::from_bytes(bytes)?, who))
}

/// Why a correctly signed list is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stale {
    /// vmcatcher's error 17; TUF's rollback attack.
    #[error(
        "rolled back: the list has version {got}, lower than version {seen} seen before (a mirror or an attacker is serving an old list)"
    )]
    Rollback { got: String, seen: String },
    /// TUF's freeze attack: an old list kept being served.
    #[error("expired: the list expired at {expires} (now {now}); refusing a stale list")]
    Expired {
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    },
}

/// Refuses a list older than the last one seen or past its expiry.
/// Versions compare as dotted numbers (`10 > 9`, `1.10 > 1.9`).
pub fn check_fresh(
    version: &str,
    expires: DateTime<Utc>,
    seen: Option<&str>,
    now: DateTime<Utc>,
) -> std::result::Result<(), Stale> {
    if let Some(seen) = seen
        && compare_versions(version, seen) == std::cmp::Ordering::Less
    {
        return Err(Stale::Rollback {
            got: version.to_string(),
            seen: seen.to_string(),
        });
    }
    if expires <= now {
        return Err(Stale::Expired { expires, now });
    }
    Ok(())
}

/// Orders versions by their dot-separated parts: numerically where both
/// parts are numbers, else as text.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let mut a_parts = a.trim().split('.');
    let mut b_parts = b.trim().split('.');
    loop {
        match (a_parts.next(), b_parts.next()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(x), Some(y)) => {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => x.cmp(y),
                };
                if order != std::cmp::Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(s, 0).unwrap()
    }

    #[test]
    fn versions_order_numerically() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_versions("10", "9"), Greater);
        assert_eq!(compare_versions("1.10", "1.9"), Greater);
        assert_eq!(compare_versions("2", "2"), Equal);
        assert_eq!(compare_versions("1.2", "1.2.1"), Less);
    }

    #[test]
    fn fresh_rollback_and_expired() {
        assert!(check_fresh("5", t(100), Some("5"), t(50)).is_ok());
        assert!(check_fresh("6", t(100), None, t(50)).is_ok());
        assert!(matches!(
            check_fresh("4", t(100), Some("5"), t(50)),
            Err(Stale::Rollback { .. })
        ));
        assert!(matches!(
            check_fresh("6", t(100), Some("5"), t(100)),
            Err(Stale::Expired { .. })
        ));
    }

    #[test]
    fn bytes_round_trip_and_sniff() {
        let c = Catalog::new("public", 7, t(1000), chrono::Duration::days(1), vec![]);
        let bytes = c.to_bytes();
        assert!(Catalog::sniff(&bytes));
        assert_eq!(Catalog::from_bytes(&bytes).unwrap(), c);
        assert!(!Catalog::sniff(b"MIME-Version: 1.0\r\n"));
    }
}
