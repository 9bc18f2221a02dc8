//! The entry model: the union of the StratusLab, OpenNebula, Glance, HEPiX and
//! simplestreams fields (see docs/market.md), plus users, tokens, catalogues
//! and upload sessions. Plain data; the stores persist it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Glance's lifecycle. `queued` and `uploading` entries are never listed; an
/// upload that fails or is abandoned ends `deleted` and its bytes are collected.
/// `expired` is not stored: an active entry past `valid_until` reads as expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Uploading,
    Active,
    Deprecated,
    Expired,
    Deactivated,
    Deleted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Uploading => "uploading",
            Status::Active => "active",
            Status::Deprecated => "deprecated",
            Status::Expired => "expired",
            Status::Deactivated => "deactivated",
            Status::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "queued" => Status::Queued,
            "uploading" => Status::Uploading,
            "active" => Status::Active,
            "deprecated" => Status::Deprecated,
            "expired" => Status::Expired,
            "deactivated" => Status::Deactivated,
            "deleted" => Status::Deleted,
            _ => return None,
        })
    }

    /// Whether the entry's bytes are complete and committed.
    pub fn is_published(self) -> bool {
        matches!(
            self,
            Status::Active | Status::Deprecated | Status::Expired | Status::Deactivated
        )
    }
}

/// Lowercase hex digests. sha256 and sha512 are computed by the server for
/// every stored blob; md5 and sha1 are only carried over from legacy sources.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Checksums {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha512: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
}

/// Where the bytes are: a blob in the marketplace's own store, or an external
/// URL (served by redirect, StratusLab/HEPiX style).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Location {
    Blob { key: String },
    External { url: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Entry {
    pub id: Uuid,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub version: Option<String>,
    pub os: Option<String>,
    pub os_version: Option<String>,
    pub arch: Option<String>,
    pub hypervisor: Option<String>,
    /// Disk format as the safety inspector found it (raw, qcow2, vmdk, vhd, vdi).
    pub format: Option<String>,
    pub virtual_size: Option<u64>,
    /// Size of the stored file in bytes.
    pub bytes: Option<u64>,
    pub checksums: Checksums,
    pub locations: Vec<Location>,
    /// Name of the user who published the entry (its owner).
    pub publisher: String,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
    pub status: Status,
    /// Why the entry was deprecated; set together with status `deprecated`.
    pub deprecated: Option<String>,
    pub replaces: Option<Uuid>,
    pub replaced_by: Option<Uuid>,
    /// Entries of one series are versions of one appliance; queries can ask
    /// for the latest of each series only.
    pub series: Option<String>,
    pub tags: Vec<String>,
    pub catalogue: String,
    pub min_ram_mib: Option<u64>,
    pub min_cpus: Option<u32>,
    /// Contextualization the image expects: `opennebula`, `cloud-init`, `none`.
    pub context_kind: Option<String>,
    pub properties: BTreeMap<String, String>,
    /// Endorsements (signatures) for the trust layer: kept and returned as
    /// given, never interpreted here.
    #[schema(value_type = Vec<Object>)]
    pub endorsements: Vec<serde_json::Value>,
}

impl Entry {
    /// The status a reader sees at `now`: active entries past `valid_until`
    /// are expired.
    pub fn effective_status(&self, now: DateTime<Utc>) -> Status {
        match (self.status, self.valid_until) {
            (Status::Active, Some(until)) if until <= now => Status::Expired,
            (status, _) => status,
        }
    }

    pub fn blob_key(&self) -> Option<&str> {
        self.locations.iter().find_map(|l| match l {
            Location::Blob { key } => Some(key.as_str()),
            Location::External { .. } => None,
        })
    }

    pub fn external_url(&self) -> Option<&str> {
        self.locations.iter().find_map(|l| match l {
            Location::External { url } => Some(url.as_str()),
            Location::Blob { .. } => None,
        })
    }
}

/// What a publisher says about a new entry; the server fills in the rest.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEntry {
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub os_version: Option<String>,
    #[serde(default)]
    pub arch: Option<String>,
    #[serde(default)]
    pub hypervisor: Option<String>,
    #[serde(default)]
    pub valid_until: Option<DateTime<Utc>>,
    #[serde(default)]
    pub replaces: Option<Uuid>,
    #[serde(default)]
    pub series: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Defaults to `public`.
    #[serde(default)]
    pub catalogue: Option<String>,
    #[serde(default)]
    pub min_ram_mib: Option<u64>,
    #[serde(default)]
    pub min_cpus: Option<u32>,
    #[serde(default)]
    pub context_kind: Option<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Size and digests declared up front: an upload that does not match is refused.
    #[serde(default)]
    pub bytes: Option<u64>,
    #[serde(default)]
    pub checksums: Checksums,
    /// Register an image that stays at this URL (served by redirect). Requires
    /// `bytes` and `checksums.sha256`; the entry is active at once.
    #[serde(default)]
    pub external_url: Option<String>,
    /// Further http(s) URLs that serve the same bytes, tried in this order
    /// after the entry's own copy (the stored upload, or `external_url`).
    /// Clients verify what any of them serves against the entry's size and
    /// digests.
    #[serde(default)]
    pub mirrors: Vec<String>,
}

/// Changes an owner or admin may make to an entry's description.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub version: Option<String>,
    pub os: Option<String>,
    pub os_version: Option<String>,
    pub arch: Option<String>,
    pub hypervisor: Option<String>,
    pub valid_until: Option<DateTime<Utc>>,
    pub tags: Option<Vec<String>>,
    pub min_ram_mib: Option<u64>,
    pub min_cpus: Option<u32>,
    pub context_kind: Option<String>,
    pub properties: Option<BTreeMap<String, String>>,
}

impl EntryPatch {
    pub fn apply(self, e: &mut Entry) {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { e.$f = v; } )* };
        }
        macro_rules! set_opt {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { e.$f = Some(v); } )* };
        }
        set!(title, description, tags, properties);
        set_opt!(
            version,
            os,
            os_version,
            arch,
            hypervisor,
            valid_until,
            min_ram_mib,
            min_cpus,
            context_kind
        );
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reader,
    Developer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Developer => "developer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "reader" => Role::Reader,
            "developer" => Role::Developer,
            "admin" => Role::Admin,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub created: DateTime<Utc>,
    /// Argon2id PHC string for password login; never serialized.
    #[serde(skip)]
    pub password_hash: Option<String>,
}

/// What a stored token is for: API tokens go in `Authorization: Bearer`,
/// session tokens in the web UI's cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Api,
    Session,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Api => "api",
            TokenKind::Session => "session",
        }
    }
}

/// A catalogue groups entries. Public catalogues are readable by anyone,
/// private ones by their members (and admins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Catalogue {
    pub name: String,
    pub public: bool,
    pub description: String,
    pub members: Vec<String>,
}

/// Where an endorsement stands. Only its endorser changes it, by a signed
/// statement; `revoked` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EndorsementStatus {
    Active,
    Deprecated,
    Revoked,
}

impl EndorsementStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EndorsementStatus::Active => "active",
            EndorsementStatus::Deprecated => "deprecated",
            EndorsementStatus::Revoked => "revoked",
        }
    }
}

/// An endorser's detached signature over an entry's canonical metadata.
/// kiln-trust defines that byte form and verifies the signature before the
/// server stores it; here it is plain data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Endorsement {
    pub id: Uuid,
    pub entry_id: Uuid,
    /// Who signed, as kiln-trust names it: `ed25519:<hex>` or the
    /// certificate's `subject "…" issuer "…"`.
    pub endorser: String,
    /// The signature as text: kiln's Ed25519 JSON line, or PEM CMS.
    pub signature: String,
    /// The marketplace user who submitted it.
    pub submitted_by: String,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub status: EndorsementStatus,
    /// The endorser's reason for deprecating or revoking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The endorser's signed statement that changed the status, kept as evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_signature: Option<String>,
}

/// A resumable upload in progress. Its chunks are blobs under
/// `uploads/<id>/`; `offset` is the number of bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadSession {
    pub id: Uuid,
    pub entry_id: Uuid,
    pub offset: u64,
    pub chunks: Vec<String>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}
