//! The marketplace client: typed calls for every endpoint the CLI uses, plus
//! `push` (resumable chunked upload with size and digests declared up front)
//! and `pull` (resumable, verified, atomic download).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use kiln_catalog::digest::{Digests, Hasher};
use kiln_catalog::model::{Endorsement, EndorsementStatus, Entry, Location, NewEntry, User};
use kiln_catalog::query::{Page, Query};
use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, RANGE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::api::accounts::{IssuedToken, Login, NewUser};
use crate::api::endorsements::{EndorsementChange, NewEndorsement};
use crate::api::entries::Deprecation;
use crate::api::uploads::{Import, SessionInfo};
use crate::ingest::Declared;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the server answered {status}: {message}")]
    Api { status: StatusCode, message: String },
    #[error("talking to the server: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("verification failed: {0}")]
    Verify(String),
    #[error("{0}")]
    Invalid(String),
    /// The site's policy refused the entry; nothing was downloaded.
    #[error("refused by the site policy: {0}")]
    Refused(String),
    /// No location of the entry gave verified bytes; nothing was written.
    #[error("every location failed: {}", list_failures(.0))]
    Locations(Vec<LocationFailure>),
}

/// Why one location of an entry could not be used.
#[derive(Debug)]
pub struct LocationFailure {
    pub url: url::Url,
    pub error: ClientError,
}

fn list_failures(failures: &[LocationFailure]) -> String {
    failures
        .iter()
        .enumerate()
        .map(|(i, f)| format!("({}) {}: {}", i + 1, f.url, with_causes(&f.error)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// An error and what caused it ("connection refused" sits in a source).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

impl ClientError {
    /// A verdict on the image rather than a failure to get one: the site
    /// policy refused it, or its bytes did not verify (from every location
    /// tried). A script can tell "do not use this" from "try again later".
    pub fn is_refusal(&self) -> bool {
        match self {
            ClientError::Refused(_) | ClientError::Verify(_) => true,
            ClientError::Locations(failures) => failures.iter().all(|f| f.error.is_refusal()),
            _ => false,
        }
    }
}

/// A verified download: the entry and the location its bytes came from.
#[derive(Debug)]
pub struct Pulled {
    pub entry: Entry,
    pub location: url::Url,
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// Receives transfer progress (the CLI draws a bar).
pub trait Progress: Send + Sync {
    fn start(&self, _total: u64, _done: u64) {}
    fn advance(&self, _bytes: u64) {}
}

pub struct NoProgress;
impl Progress for NoProgress {}

#[derive(Clone)]
pub struct Client {
    base: url::Url,
    token: Option<String>,
    http: reqwest::Client,
}

/// What `push` remembers to resume an interrupted upload.
#[derive(Debug, Serialize, Deserialize)]
struct PushState {
    server: String,
    entry_id: Uuid,
    session_id: Uuid,
}

pub const DEFAULT_CHUNK: u64 = 64 << 20;

impl Client {
    pub fn new(server: &str, token: Option<String>) -> Result<Client> {
        crate::install_crypto_provider();
        let mut base = url::Url::parse(server)
            .map_err(|e| ClientError::Invalid(format!("server URL {server:?}: {e}")))?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Client { base, token, http })
    }

    pub fn server(&self) -> &str {
        self.base.as_str()
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let url = self
            .base
            .join(path.trim_start_matches('/'))
            .expect("relative API path");
        let r = self.http.request(method, url);
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn check(response: Response) -> Result<Response> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or(text);
        Err(ClientError::Api { status, message })
    }

    async fn json<T: serde::de::DeserializeOwned>(r: RequestBuilder) -> Result<T> {
        Ok(Self::check(r.send().await?).await?.json().await?)
    }

    pub async fn me(&self) -> Result<User> {
        Self::json(self.request(Method::GET, "api/v1/me")).await
    }

    pub async fn login(&self, name: &str, password: &str) -> Result<IssuedToken> {
        let body = Login {
            name: name.to_string(),
            password: password.to_string(),
        };
        Self::json(self.request(Method::POST, "api/v1/login").json(&body)).await
    }

    pub async fn add_user(&self, user: &NewUser) -> Result<IssuedToken> {
        Self::json(self.request(Method::POST, "api/v1/users").json(user)).await
    }

    pub async fn search(&self, query: &Query) -> Result<Page> {
        Self::json(self.request(Method::GET, "api/v1/entries").query(query)).await
    }

    pub async fn entry(&self, id: Uuid) -> Result<Entry> {
        Self::json(self.request(Method::GET, &format!("api/v1/entries/{id}"))).await
    }

    pub async fn create_entry(&self, new: &NewEntry) -> Result<Entry> {
        Self::json(self.request(Method::POST, "api/v1/entries").json(new)).await
    }

    pub async fn deprecate(&self, id: Uuid, reason: &str) -> Result<Entry> {
        let body = Deprecation {
            reason: reason.to_string(),
        };
        Self::json(
            self.request(Method::POST, &format!("api/v1/entries/{id}/deprecate"))
                .json(&body),
        )
        .await
    }

    pub async fn delete(&self, id: Uuid) -> Result<()> {
        Self::check(
            self.request(Method::DELETE, &format!("api/v1/entries/{id}"))
                .send()
                .await?,
        )
        .await?;
        Ok(())
    }

    pub async fn import(&self, id: Uuid, import: &Import) -> Result<Entry> {
        Self::json(
            self.request(Method::POST, &format!("api/v1/entries/{id}/import"))
                .json(import),
        )
        .await
    }

    /// Uploads `path` in one streamed request.
    pub async fn put_file(&self, id: Uuid, path: &Path, declared: &Declared) -> Result<Entry> {
        let file = tokio::fs::File::open(path).await?;
        let len = file.metadata().await?.len();
        let body =
            reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
        let mut q: Vec<(&str, String)> = vec![("size", len.to_string())];
        if let Some(s) = &declared.sha256 {
            q.push(("sha256", s.clone()));
        }
        Self::json(
            self.request(Method::PUT, &format!("api/v1/entries/{id}/file"))
                .query(&q)
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(body),
        )
        .await
    }

    pub async fn start_session(&self, entry: Uuid) -> Result<SessionInfo> {
        Self::json(self.request(Method::POST, &format!("api/v1/entries/{entry}/uploads"))).await
    }

    pub async fn session(&self, sid: Uuid) -> Result<SessionInfo> {
        Self::json(self.request(Method::GET, &format!("api/v1/uploads/{sid}"))).await
    }

    pub async fn send_chunk(&self, sid: Uuid, offset: u64, chunk: Bytes) -> Result<SessionInfo> {
        let end = offset + chunk.len() as u64;
        let range = format!("bytes {offset}-{}/*", end.saturating_sub(1));
        Self::json(
            self.request(Method::PATCH, &format!("api/v1/uploads/{sid}"))
                .header(CONTENT_RANGE, range)
                .body(chunk),
        )
        .await
    }

    pub async fn finish_session(&self, sid: Uuid, declared: &Declared) -> Result<Entry> {
        let mut q: Vec<(&str, String)> = Vec::new();
        if let Some(s) = declared.size {
            q.push(("size", s.to_string()));
        }
        if let Some(s) = &declared.sha256 {
            q.push(("sha256", s.clone()));
        }
        Self::json(
            self.request(Method::PUT, &format!("api/v1/uploads/{sid}"))
                .query(&q),
        )
        .await
    }

    /// Publishes `path` as a new entry through a resumable session. If an
    /// earlier push of the same file to the same server was interrupted, its
    /// state in `state_dir` lets this one continue where that one stopped.
    pub async fn push(
        &self,
        path: &Path,
        mut new: NewEntry,
        state_dir: &Path,
        chunk: u64,
        progress: &dyn Progress,
    ) -> Result<Entry> {
        let owned = path.to_path_buf();
        let (len, digests) = tokio::task::spawn_blocking(move || hash_file(&owned, None))
            .await
            .map_err(std::io::Error::other)??;
        new.bytes = Some(len);
        new.checksums.sha256 = Some(digests.sha256.clone());
        new.checksums.sha512 = Some(digests.sha512.clone());
        std::fs::create_dir_all(state_dir)?;
        let state_path = state_dir.join(format!("{}.json", digests.sha256));

        let (entry_id, sid, mut offset) = match self.resume(&state_path).await {
            Some((state, offset)) => {
                tracing::info!(entry = %state.entry_id, offset, "resuming an interrupted push");
                (state.entry_id, state.session_id, offset)
            }
            None => {
                let entry = self.create_entry(&new).await?;
                let session = self.start_session(entry.id).await?;
                let state = PushState {
                    server: self.server().to_string(),
                    entry_id: entry.id,
                    session_id: session.id,
                };
                write_atomic(
                    &state_path,
                    &serde_json::to_vec(&state).expect("serializable"),
                )?;
                (entry.id, session.id, 0)
            }
        };
        progress.start(len, offset);
        let mut file = std::fs::File::open(path)?;
        while offset < len {
            let n = chunk.min(len - offset) as usize;
            let mut buf = vec![0u8; n];
            file.seek(SeekFrom::Start(offset))?;
            file.read_exact(&mut buf)?;
            let info = self.send_chunk(sid, offset, Bytes::from(buf)).await?;
            progress.advance(info.offset - offset);
            offset = info.offset;
        }
        let declared = Declared {
            size: Some(len),
            sha256: Some(digests.sha256),
            sha512: None,
        };
        let result = self.finish_session(sid, &declared).await;
        if !matches!(&result, Err(ClientError::Api { status, .. }) if status.is_server_error()) {
            let _ = std::fs::remove_file(&state_path);
        }
        let entry = result?;
        debug_assert_eq!(entry.id, entry_id);
        Ok(entry)
    }

    /// The saved push state and the server's offset, if the session lives.
    async fn resume(&self, state_path: &Path) -> Option<(PushState, u64)> {
        let state: PushState = serde_json::from_slice(&std::fs::read(state_path).ok()?).ok()?;
        if state.server != self.server() {
            return None;
        }
        match self.session(state.session_id).await {
            Ok(info) => Some((state, info.offset)),
            Err(e) => {
                tracing::info!(error = %e, "the interrupted upload cannot be resumed; starting again");
                None
            }
        }
    }

    /// Downloads an entry's image to `dest`: resumes from `dest.part`,
    /// verifies size and sha256, and renames into place only when both match.
    pub async fn pull(&self, id: Uuid, dest: &Path, progress: &dyn Progress) -> Result<Pulled> {
        self.pull_checked(id, dest, progress, |_| Ok(())).await
    }

    /// `pull` that first lets `admit` judge the entry's metadata (a site
    /// policy: endorsements, expiry, deny lists) and refuses before any byte
    /// is written; then tries the entry's locations in order until one gives
    /// verified bytes. When none does, the error lists each one's failure
    /// and nothing is left behind.
    pub async fn pull_checked(
        &self,
        id: Uuid,
        dest: &Path,
        progress: &dyn Progress,
        admit: impl FnOnce(&Entry) -> std::result::Result<(), String>,
    ) -> Result<Pulled> {
        let entry = self.entry(id).await?;
        admit(&entry).map_err(ClientError::Refused)?;
        let size = entry
            .bytes
            .ok_or_else(|| ClientError::Invalid(format!("entry {id} has no size")))?;
        let sha256 = entry
            .checksums
            .sha256
            .clone()
            .ok_or_else(|| ClientError::Invalid(format!("entry {id} has no sha256")))?;
        let expected = Expected {
            size,
            sha256: Some(sha256),
            sha512: entry.checksums.sha512.clone(),
        };
        let server_copy = self.url(&format!("api/v1/entries/{id}/file"));
        let mut sources: Vec<url::Url> = Vec::new();
        for l in &entry.locations {
            let url = match l {
                Location::Blob { .. } => server_copy.clone(),
                Location::External { url } => url::Url::parse(url)
                    .map_err(|e| ClientError::Invalid(format!("location {url:?}: {e}")))?,
            };
            if !sources.contains(&url) {
                sources.push(url);
            }
        }
        if sources.is_empty() {
            sources.push(server_copy);
        }
        // With one location a partial download stays to be resumed; with
        // several, bytes from one location are never resumed from another.
        let several = sources.len() > 1;
        let mut failures = Vec::new();
        for url in sources {
            match self.download(&url, dest, &expected, progress).await {
                Ok(()) => {
                    if !failures.is_empty() {
                        tracing::info!(%url, "pulled from a later location");
                    }
                    return Ok(Pulled {
                        entry,
                        location: url,
                    });
                }
                Err(error) => {
                    tracing::warn!(%url, error = %with_causes(&error), "location failed");
                    if several {
                        let _ = std::fs::remove_file(part_path(dest));
                    }
                    failures.push(LocationFailure { url, error });
                }
            }
        }
        if several {
            Err(ClientError::Locations(failures))
        } else {
            Err(failures.pop().expect("one location").error)
        }
    }

    pub async fn endorse(&self, id: Uuid, signature: &str) -> Result<Endorsement> {
        let body = NewEndorsement {
            signature: signature.to_string(),
        };
        Self::json(
            self.request(Method::POST, &format!("api/v1/entries/{id}/endorsements"))
                .json(&body),
        )
        .await
    }

    pub async fn change_endorsement(
        &self,
        id: Uuid,
        endorsement: Uuid,
        status: EndorsementStatus,
        reason: &str,
        signature: &str,
    ) -> Result<Endorsement> {
        let body = EndorsementChange {
            status,
            reason: reason.to_string(),
            signature: signature.to_string(),
        };
        Self::json(
            self.request(
                Method::POST,
                &format!("api/v1/entries/{id}/endorsements/{endorsement}/status"),
            )
            .json(&body),
        )
        .await
    }

    /// An absolute URL under the server's base.
    pub fn url(&self, path: &str) -> url::Url {
        self.base
            .join(path.trim_start_matches('/'))
            .expect("relative API path")
    }

    /// A GET of any URL; the token goes only to the server it is for.
    fn get_url(&self, url: &url::Url) -> RequestBuilder {
        let r = self.http.get(url.clone());
        match &self.token {
            Some(t) if url.origin() == self.base.origin() => r.bearer_auth(t),
            _ => r,
        }
    }

    /// The bytes at `url` (a signed list, a signature).
    pub async fn get_bytes(&self, url: &url::Url) -> Result<Vec<u8>> {
        let response = Self::check(self.get_url(url).send().await?).await?;
        Ok(response.bytes().await?.to_vec())
    }

    /// Downloads `url` to `dest`: resumes from `dest.part`, verifies the size
    /// and every digest `expected` has (at least one), and renames into place
    /// only when all match. A mismatch leaves nothing behind.
    pub async fn download(
        &self,
        url: &url::Url,
        dest: &Path,
        expected: &Expected,
        progress: &dyn Progress,
    ) -> Result<()> {
        let size = expected.size;
        if expected.sha256.is_none() && expected.sha512.is_none() {
            return Err(ClientError::Invalid(format!(
                "{url}: no checksum to verify the download against"
            )));
        }
        let part = part_path(dest);
        let mut have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        if have > size {
            have = 0;
        }
        // The bytes already there count towards the digest.
        let mut hasher = Hasher::new();
        if have > 0 {
            let owned = part.clone();
            hasher = tokio::task::spawn_blocking(move || {
                let h = Hasher::new();
                hash_into(&owned, &h, Some(have)).map(|_| h)
            })
            .await
            .map_err(std::io::Error::other)??;
        }
        let mut req = self.get_url(url);
        if have > 0 {
            req = req.header(RANGE, format!("bytes={have}-"));
            // Without a strong validator a resumed range could come from other bytes.
            if let Some(sha256) = &expected.sha256 {
                req = req.header(IF_RANGE, format!("\"sha256:{sha256}\""));
            }
        }
        let response = if have == size {
            None
        } else {
            Some(Self::check(req.send().await?).await?)
        };
        if let Some(response) = response {
            let etag = response
                .headers()
                .get(ETAG)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            if let (Some(etag), Some(sha256)) = (
                etag.filter(|e| e.starts_with("\"sha256:")),
                &expected.sha256,
            ) && etag != format!("\"sha256:{sha256}\"")
            {
                return Err(ClientError::Verify(format!(
                    "the server sent {etag}, the entry says sha256:{sha256}"
                )));
            }
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&part)
                .await?;
            if response.status() != StatusCode::PARTIAL_CONTENT && have > 0 {
                // The server sent the whole file: start over.
                file.set_len(0).await?;
                have = 0;
                hasher = Hasher::new();
            }
            progress.start(size, have);
            let mut stream = response.bytes_stream();
            let mut got = have;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                got += chunk.len() as u64;
                if got > size {
                    drop(file);
                    let _ = std::fs::remove_file(&part);
                    return Err(ClientError::Verify(format!(
                        "received more than the {size} bytes expected"
                    )));
                }
                file.write_all(&chunk).await?;
                progress.advance(chunk.len() as u64);
                hasher.update(chunk);
            }
            file.flush().await?;
            file.sync_all().await?;
        }
        let digests = tokio::task::spawn_blocking(move || hasher.finish())
            .await
            .map_err(std::io::Error::other)?;
        let got = std::fs::metadata(&part)?.len();
        let verdict = if got != size {
            Some(format!("received {got} bytes, expected {size}"))
        } else if let Some(sha256) = expected.sha256.as_ref().filter(|s| **s != digests.sha256) {
            Some(format!(
                "received sha256 {}, expected {sha256}",
                digests.sha256
            ))
        } else if let Some(sha512) = expected.sha512.as_ref().filter(|s| **s != digests.sha512) {
            Some(format!(
                "received sha512 {}, expected {sha512}",
                digests.sha512
            ))
        } else {
            None
        };
        if let Some(problem) = verdict {
            let _ = std::fs::remove_file(&part);
            return Err(ClientError::Verify(problem));
        }
        std::fs::rename(&part, dest)?;
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// What a download must be: its size and at least one digest (lowercase hex).
#[derive(Debug, Clone, Default)]
pub struct Expected {
    pub size: u64,
    pub sha256: Option<String>,
    pub sha512: Option<String>,
}

/// `kiln subscribe`'s network: this client, with a progress display.
pub struct SubscribeFetch<'a> {
    pub client: &'a Client,
    pub progress: &'a dyn Progress,
}

impl kiln_trust::subscribe::Fetch for SubscribeFetch<'_> {
    async fn get(&self, url: &url::Url) -> std::result::Result<Vec<u8>, String> {
        self.client.get_bytes(url).await.map_err(|e| e.to_string())
    }

    async fn download(
        &self,
        url: &url::Url,
        dest: &Path,
        image: &kiln_trust::subscribe::ListedImage,
    ) -> std::result::Result<(), String> {
        let expected = Expected {
            size: image.size,
            sha256: image.sha256.clone(),
            sha512: image.sha512.clone(),
        };
        self.client
            .download(url, dest, &expected, self.progress)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Where `pull` keeps a partial download.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".part");
    dest.with_file_name(name)
}

fn hash_into(path: &Path, hasher: &Hasher, limit: Option<u64>) -> std::io::Result<u64> {
    let file = std::fs::File::open(path)?;
    let mut reader: Box<dyn Read> = match limit {
        Some(n) => Box::new(file.take(n)),
        None => Box::new(file),
    };
    let mut total = 0;
    loop {
        let mut buf = vec![0u8; 4 << 20];
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        buf.truncate(n);
        total += n as u64;
        hasher.update(Bytes::from(buf));
    }
}

/// Size and digests of a file.
pub fn hash_file(path: &Path, limit: Option<u64>) -> std::io::Result<(u64, Digests)> {
    let hasher = Hasher::new();
    let n = hash_into(path, &hasher, limit)?;
    Ok((n, hasher.finish()))
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(tmp, path)
}
