//! `kiln subscribe`: keeps a site's image cache in sync with a signed list
//! (a kiln signed catalog or a HEPiX image list), as vmcatcher did.
//!
//! One run: fetch the list → verify its signature against the trust roots
//! (HEPiX: and that the signer is the endorser the list names) → refuse a
//! version lower than the last one seen and an expired list → download new
//! or changed images, verified by size and checksum → move images that left
//! the list (or were deprecated or expired) from `valid/` to `expired/` →
//! record the version. The network is the caller's [`Fetch`].
//!
//! Cache layout: `DIR/valid/<id>` (images in the current list, verified),
//! `DIR/expired/<id>` (images that left it), `DIR/subscribe.json` (versions
//! seen per list URL and what `valid/` holds), `DIR/.lock` (one run at a time).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::catalog::{self, Catalog, Stale};
use crate::hepix::{self, ImageList};
use crate::identity::Identity;
use crate::signature::{Signature, TrustRoots};

/// The network, as `sync` needs it.
pub trait Fetch {
    /// The bytes at `url`.
    fn get(&self, url: &Url) -> impl Future<Output = Result<Vec<u8>, String>> + Send;
    /// Downloads `image` from `url` to `dest`, verifying its size and every
    /// checksum it has; `dest` appears only when all match.
    fn download(
        &self,
        url: &Url,
        dest: &Path,
        image: &ListedImage,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// A list's content, whatever its format.
#[derive(Debug, Clone)]
pub struct Listing {
    pub format: &'static str,
    pub version: String,
    pub expires: DateTime<Utc>,
    pub images: Vec<ListedImage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListedImage {
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha512: Option<String>,
    /// Absolute URLs, in the order to try.
    #[serde(skip)]
    pub urls: Vec<Url>,
    /// Why a listed image is not to be kept (deprecated, expired).
    #[serde(skip)]
    pub unusable: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("fetching {url}: {message}")]
    Fetch { url: String, message: String },
    /// vmcatcher's errors 11 (signature, chain, CRL) and 12 (signer is not
    /// the endorser the list names).
    #[error("the list at {url} is refused: {source}")]
    Signature {
        url: String,
        source: Box<crate::Error>,
    },
    #[error("the list at {url} is refused: {source}")]
    Stale { url: String, source: Stale },
    #[error("{0}")]
    Invalid(String),
    #[error("cache {}: {source}", path.display())]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl SyncError {
    fn cache(path: &Path) -> impl FnOnce(std::io::Error) -> SyncError + '_ {
        move |source| SyncError::Cache {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What one run did (`kiln subscribe --json` prints it).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    pub format: &'static str,
    pub signer: Identity,
    pub version: String,
    pub previous_version: Option<String>,
    pub expires: DateTime<Utc>,
    pub downloaded: Vec<ListedImage>,
    pub kept: Vec<String>,
    pub expired: Vec<String>,
    pub failed: Vec<Failure>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub id: String,
    pub error: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// Per list URL: the highest version seen.
    #[serde(default)]
    lists: BTreeMap<String, SeenList>,
    /// What `valid/` holds, by image id.
    #[serde(default)]
    images: BTreeMap<String, CachedImage>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SeenList {
    version: String,
    signer: Identity,
    synced: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedImage {
    list: String,
    size: u64,
    sha256: Option<String>,
    sha512: Option<String>,
}

const STATE_FILE: &str = "subscribe.json";

/// The signature of a kiln catalog is served next to it, at `URL.sig`.
pub fn signature_url(url: &Url) -> Url {
    let mut u = url.clone();
    u.set_path(&format!("{}.sig", url.path()));
    u
}

/// Verifies a fetched list and returns its content and signer. `signature`
/// is the detached signature of a kiln catalog (HEPiX lists carry theirs).
pub fn verify_list(
    url: &Url,
    bytes: &[u8],
    signature: Option<&[u8]>,
    roots: &TrustRoots,
    now: DateTime<Utc>,
) -> Result<(Listing, Identity), SyncError> {
    let refused = |source| SyncError::Signature {
        url: url.to_string(),
        source: Box::new(source),
    };
    if Catalog::sniff(bytes) {
        let sig = signature.ok_or_else(|| SyncError::Invalid(format!("{url}: no signature")))?;
        let sig = Signature::from_bytes(sig).map_err(refused)?;
        let (c, who) = catalog::verify(bytes, &sig, roots).map_err(refused)?;
        return Ok((catalog_listing(&c, url, now)?, who));
    }
    if hepix::sniff(bytes) {
        let (content, sig) = hepix::read_smime(bytes).map_err(refused)?;
        let who = roots.verify(&content, &sig).map_err(refused)?;
        let list = ImageList::from_bytes(&content).map_err(refused)?;
        list.check_endorser(&who).map_err(refused)?;
        return Ok((hepix_listing(&list, now).map_err(refused)?, who));
    }
    Err(SyncError::Invalid(format!(
        "{url} is neither a kiln signed catalog nor an S/MIME signed HEPiX image list"
    )))
}

fn catalog_listing(c: &Catalog, url: &Url, now: DateTime<Utc>) -> Result<Listing, SyncError> {
    let mut images = Vec::new();
    for e in &c.entries {
        let urls = e
            .locations
            .iter()
            .map(|l| url.join(l))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| SyncError::Invalid(format!("entry {}: bad location: {err}", e.id)))?;
        let unusable = match (&e.deprecated, e.valid_until) {
            (Some(reason), _) => Some(format!("deprecated: {reason}")),
            (None, Some(t)) if t <= now => Some(format!("expired at {t}")),
            _ => None,
        };
        images.push(ListedImage {
            id: e.id.to_string(),
            title: e.title.clone(),
            version: e.version.clone(),
            size: e.size,
            sha256: Some(e.sha256.clone()),
            sha512: Some(e.sha512.clone()),
            urls,
            unusable,
        });
    }
    Ok(Listing {
        format: "kiln-catalog",
        version: c.version.to_string(),
        expires: c.expires,
        images,
    })
}

fn hepix_listing(list: &ImageList, now: DateTime<Utc>) -> crate::Result<Listing> {
    let mut images = Vec::new();
    for slot in &list.images {
        let i = &slot.image;
        let uri = Url::parse(&i.uri)
            .map_err(|e| crate::Error::Invalid(format!("image {}: hv:uri: {e}", i.identifier)))?;
        let unusable = match &i.expires {
            Some(s) => {
                let t = hepix::parse_date("dc:date:expires", s)?;
                (t <= now).then(|| format!("expired at {t}"))
            }
            None => None,
        };
        images.push(ListedImage {
            id: i.identifier.clone(),
            title: i.title.clone(),
            version: Some(i.version.clone()).filter(|v| !v.is_empty()),
            size: i.size,
            sha256: None,
            sha512: Some(i.sha512.to_ascii_lowercase()),
            urls: vec![uri],
            unusable,
        });
    }
    Ok(Listing {
        format: "hepix",
        version: list.version.clone(),
        expires: hepix::parse_date("dc:date:expires", &list.expires)?,
        images,
    })
}

/// Image ids become file names: refuse anything that could leave the cache.
fn safe_id(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('.')
        && id.len() <= 200
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// One run against `url`, caching under `cache`.
pub async fn sync<F: Fetch>(
    fetch: &F,
    url: &Url,
    roots: &TrustRoots,
    cache: &Path,
    now: DateTime<Utc>,
) -> Result<Report, SyncError> {
    let valid_dir = cache.join("valid");
    let expired_dir = cache.join("expired");
    for d in [&valid_dir, &expired_dir] {
        std::fs::create_dir_all(d).map_err(SyncError::cache(d))?;
    }
    let lock_path = cache.join(".lock");
    let lock = std::fs::File::create(&lock_path).map_err(SyncError::cache(&lock_path))?;
    lock.try_lock().map_err(|_| SyncError::Cache {
        path: lock_path.clone(),
        source: std::io::Error::other("another kiln subscribe is using this cache"),
    })?;
    let state_path = cache.join(STATE_FILE);
    let mut state: State = match std::fs::read(&state_path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            SyncError::Invalid(format!("{}: unreadable state: {e}", state_path.display()))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
        Err(e) => return Err(SyncError::cache(&state_path)(e)),
    };

    let fetch_err = |u: &Url| {
        let u = u.to_string();
        move |message| SyncError::Fetch { url: u, message }
    };
    let bytes = fetch.get(url).await.map_err(fetch_err(url))?;
    let signature = if Catalog::sniff(&bytes) {
        let sig_url = signature_url(url);
        Some(fetch.get(&sig_url).await.map_err(fetch_err(&sig_url))?)
    } else {
        None
    };
    let (listing, signer) = verify_list(url, &bytes, signature.as_deref(), roots, now)?;
    let previous = state.lists.get(url.as_str()).map(|s| s.version.clone());
    catalog::check_fresh(&listing.version, listing.expires, previous.as_deref(), now).map_err(
        |source| SyncError::Stale {
            url: url.to_string(),
            source,
        },
    )?;
    tracing::info!(%url, version = %listing.version, %signer, "list verified");
    // The version is recorded as soon as it is verified: a later failure
    // must not let an older list back in.
    state.lists.insert(
        url.to_string(),
        SeenList {
            version: listing.version.clone(),
            signer: signer.clone(),
            synced: now,
        },
    );
    save_state(&state_path, &state)?;

    let mut report = Report {
        url: url.to_string(),
        format: listing.format,
        signer,
        version: listing.version.clone(),
        previous_version: previous,
        expires: listing.expires,
        downloaded: Vec::new(),
        kept: Vec::new(),
        expired: Vec::new(),
        failed: Vec::new(),
    };
    let mut wanted = BTreeMap::new();
    for image in &listing.images {
        if !safe_id(&image.id) {
            report.failed.push(Failure {
                id: image.id.clone(),
                error: "the id is not a safe file name".into(),
            });
            continue;
        }
        if image.unusable.is_none() {
            wanted.insert(image.id.clone(), image);
        }
    }

    // Images that left the list, or are no longer to be kept, expire first.
    let leaving: Vec<String> = state
        .images
        .iter()
        .filter(|(id, c)| c.list == url.as_str() && !wanted.contains_key(*id))
        .map(|(id, _)| id.clone())
        .collect();
    for id in leaving {
        expire(&valid_dir, &expired_dir, &id)?;
        tracing::info!(%id, "image left the list: expired");
        state.images.remove(&id);
        report.expired.push(id);
        save_state(&state_path, &state)?;
    }

    for (id, image) in wanted {
        let dest = valid_dir.join(&id);
        let same = state.images.get(&id).is_some_and(|c| {
            c.size == image.size
                && c.sha256 == image.sha256
                && c.sha512 == image.sha512
                && std::fs::metadata(&dest).is_ok_and(|m| m.len() == image.size)
        });
        if same {
            report.kept.push(id);
            continue;
        }
        if state.images.remove(&id).is_some() {
            // The list now names other bytes under this id: the old ones
            // leave the valid set whether or not the new ones arrive.
            expire(&valid_dir, &expired_dir, &id)?;
            save_state(&state_path, &state)?;
            report.expired.push(id.clone());
        }
        let mut errors = Vec::new();
        for u in &image.urls {
            match fetch.download(u, &dest, image).await {
                Ok(()) => {
                    errors.clear();
                    break;
                }
                Err(e) => errors.push(format!("{u}: {e}")),
            }
        }
        if image.urls.is_empty() {
            errors.push("the list gives no location".into());
        }
        if errors.is_empty() {
            tracing::info!(%id, size = image.size, "image downloaded and verified");
            state.images.insert(
                id.clone(),
                CachedImage {
                    list: url.to_string(),
                    size: image.size,
                    sha256: image.sha256.clone(),
                    sha512: image.sha512.clone(),
                },
            );
            save_state(&state_path, &state)?;
            report.downloaded.push(image.clone());
        } else {
            tracing::warn!(%id, "download failed");
            report.failed.push(Failure {
                id,
                error: errors.join("; "),
            });
        }
    }
    drop(lock);
    Ok(report)
}

/// Moves `valid/<id>` to `expired/<id>` (replacing an older expired copy).
fn expire(valid_dir: &Path, expired_dir: &Path, id: &str) -> Result<(), SyncError> {
    let from = valid_dir.join(id);
    match std::fs::rename(&from, expired_dir.join(id)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SyncError::cache(&from)(e)),
    }
}

fn save_state(path: &Path, state: &State) -> Result<(), SyncError> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(state).expect("serializable");
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(SyncError::cache(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_leave_the_cache_are_refused() {
        assert!(safe_id("488dcdc4-9ab1-4fc8-a7ba-b7a5428ecb3d"));
        for bad in ["", "..", "../etc", "a/b", ".hidden", "a b"] {
            assert!(!safe_id(bad), "{bad}");
        }
    }

    #[test]
    fn signature_url_appends_sig() {
        let u = Url::parse("http://h/api/v1/catalogues/public/signed").unwrap();
        assert_eq!(
            signature_url(&u).as_str(),
            "http://h/api/v1/catalogues/public/signed.sig"
        );
    }
}
