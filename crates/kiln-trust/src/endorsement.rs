//! Endorsements: a signature over an entry's *canonical metadata*, so that
//! it binds the image bytes (size and digests) and what the entry says about
//! them.
//!
//! The canonical form (`kiln-entry/1`) is one line of JSON, `\n`-terminated,
//! keys in this order (alphabetical), absent values as `null`, timestamps as
//! RFC 3339 UTC with milliseconds (`2027-01-31T00:00:00.000Z`):
//!
//! `arch, bytes, catalogue, format, hypervisor, id, md5, os, os_version,
//! publisher, schema ("kiln-entry/1"), series, sha1, sha256, sha512, title,
//! valid_until, version, virtual_size`
//!
//! Free-form fields an owner edits (description, tags, properties), and
//! server state (status, locations, timestamps, deprecation) are not part of
//! it: changing them leaves endorsements valid. Changing any field above
//! (say the sha256, or extending `valid_until`) invalidates every endorsement
//! made before.
//!
//! A status change (deprecate/revoke) is a signed statement, form
//! `kiln-endorsement-status/1`: one JSON line with `endorsement` (its id),
//! `entry`, `reason`, `schema`, `status`, in that order. The server accepts
//! it only when it verifies and is signed by the endorsement's own signer.

use chrono::{DateTime, SecondsFormat, Utc};
use kiln_catalog::model::{Endorsement, EndorsementStatus, Entry};
use serde::Serialize;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::signature::Signature;

pub const ENTRY_SCHEMA: &str = "kiln-entry/1";
pub const STATUS_SCHEMA: &str = "kiln-endorsement-status/1";

/// Field order is the byte order: keep it alphabetical.
#[derive(Serialize)]
struct Canonical<'a> {
    arch: Option<&'a str>,
    bytes: Option<u64>,
    catalogue: &'a str,
    format: Option<&'a str>,
    hypervisor: Option<&'a str>,
    id: String,
    md5: Option<&'a str>,
    os: Option<&'a str>,
    os_version: Option<&'a str>,
    publisher: &'a str,
    schema: &'static str,
    series: Option<&'a str>,
    sha1: Option<&'a str>,
    sha256: Option<&'a str>,
    sha512: Option<&'a str>,
    title: &'a str,
    valid_until: Option<String>,
    version: Option<&'a str>,
    virtual_size: Option<u64>,
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The bytes an endorsement signs. Refuses an entry without size and sha256:
/// an endorsement must bind the image bytes.
pub fn canonical_metadata(e: &Entry) -> Result<Vec<u8>> {
    if e.bytes.is_none() || e.checksums.sha256.is_none() {
        return Err(Error::Invalid(format!(
            "entry {} has no size or sha256 yet: only a published image can be endorsed",
            e.id
        )));
    }
    let c = Canonical {
        arch: e.arch.as_deref(),
        bytes: e.bytes,
        catalogue: &e.catalogue,
        format: e.format.as_deref(),
        hypervisor: e.hypervisor.as_deref(),
        id: e.id.to_string(),
        md5: e.checksums.md5.as_deref(),
        os: e.os.as_deref(),
        os_version: e.os_version.as_deref(),
        publisher: &e.publisher,
        schema: ENTRY_SCHEMA,
        series: e.series.as_deref(),
        sha1: e.checksums.sha1.as_deref(),
        sha256: e.checksums.sha256.as_deref(),
        sha512: e.checksums.sha512.as_deref(),
        title: &e.title,
        valid_until: e.valid_until.map(time),
        version: e.version.as_deref(),
        virtual_size: e.virtual_size,
    };
    let mut out = serde_json::to_vec(&c).expect("serializable");
    out.push(b'\n');
    Ok(out)
}

#[derive(Serialize)]
struct StatusStatement<'a> {
    endorsement: String,
    entry: String,
    reason: &'a str,
    schema: &'static str,
    status: &'static str,
}

/// The bytes an endorser signs to move its endorsement to `status`.
pub fn status_statement(
    endorsement: Uuid,
    entry: Uuid,
    status: EndorsementStatus,
    reason: &str,
) -> Vec<u8> {
    let s = StatusStatement {
        endorsement: endorsement.to_string(),
        entry: entry.to_string(),
        reason,
        schema: STATUS_SCHEMA,
        status: status.as_str(),
    };
    let mut out = serde_json::to_vec(&s).expect("serializable");
    out.push(b'\n');
    out
}

/// Parses the signature text an endorsement carries.
pub fn signature_of(e: &Endorsement) -> Result<Signature> {
    Signature::from_bytes(e.signature.as_bytes())
}

/// What the server checks before storing an endorsement: the signature is
/// well formed and matches the entry's current canonical metadata. Returns
/// the signer; whether to trust it is each site's decision.
pub fn check_new(entry: &Entry, signature_text: &str) -> Result<Identity> {
    let sig = Signature::from_bytes(signature_text.as_bytes())?;
    sig.verify_integrity(&canonical_metadata(entry)?)
}

/// What the server checks before a status change: the statement verifies
/// and was signed by the endorsement's own signer.
pub fn check_status_change(
    endorsement: &Endorsement,
    status: EndorsementStatus,
    reason: &str,
    signature_text: &str,
) -> Result<Identity> {
    let original = signature_of(endorsement)?;
    let statement = status_statement(endorsement.id, endorsement.entry_id, status, reason);
    let sig = Signature::from_bytes(signature_text.as_bytes())?;
    let who = sig.verify_integrity(&statement)?;
    let endorser = original_identity(&original, endorsement)?;
    if who != endorser {
        return Err(Error::BadSignature(format!(
            "the statement is signed by {who}, the endorsement by {endorser}"
        )));
    }
    Ok(who)
}

/// The identity a stored endorsement's signature names. For Ed25519 that is
/// the key it carries; for CMS the signer certificate it carries.
fn original_identity(sig: &Signature, e: &Endorsement) -> Result<Identity> {
    match sig {
        Signature::Ed25519 { public_key, .. } => Ok(Identity::of_key(public_key)),
        Signature::Cms { .. } => crate::signature::cms_identity(sig)
            .map_err(|err| Error::Format(format!("endorsement {}: {err}", e.id))),
    }
}
