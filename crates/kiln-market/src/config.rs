//! Server configuration. With none, `kiln serve --data DIR` runs on the
//! embedded default: SQLite at DIR/kiln.db and blobs under DIR/blobs. A TOML
//! file can point at PostgreSQL and S3 instead, so that several servers share
//! one state.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use kiln_catalog::BlobConfig;
use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// 64 GiB: well above any VM image we expect, below what fills a disk by accident.
pub const DEFAULT_MAX_UPLOAD: u64 = 64 << 30;
pub const DEFAULT_SESSION_TTL_SECS: u64 = 3600;
/// A working day: long enough not to interrupt one, short enough that a
/// forgotten browser does not stay logged in.
pub const DEFAULT_LOGIN_TTL_SECS: u64 = 12 * 3600;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// `sqlite://PATH?mode=rwc` or `postgres://user@host:port/db`.
    pub database_url: String,
    pub blobs: BlobConfig,
    /// Where uploads are received and inspected before they are committed;
    /// local to each server.
    pub spool_dir: PathBuf,
    #[serde(default = "default_max_upload")]
    pub max_upload_bytes: u64,
    /// An upload with no progress for this long is abandoned and collected.
    #[serde(default = "default_ttl")]
    pub session_ttl_secs: u64,
    /// How long a web login lasts: the cookie's Max-Age, after which the
    /// server refuses the session and the sweeper deletes it.
    #[serde(default = "default_login_ttl")]
    pub login_ttl_secs: u64,
    /// How often the sweeper runs (default: a tenth of the TTL, at most a minute).
    #[serde(default)]
    pub sweep_interval_secs: Option<u64>,
    /// The marketplace's signing key: with it the server publishes signed
    /// catalogs (and, with a certificate, HEPiX image lists).
    #[serde(default)]
    pub signing: Option<SigningConfig>,
}

/// `[signing]`: the key signed catalogs are signed with (docs/trust.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// An Ed25519 key (`kiln key gen`), or the PEM private key of `cert`.
    pub key: PathBuf,
    /// An X.509 certificate (PEM); needed for S/MIME signed HEPiX lists.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// How long a signed catalog is valid (default a week); it is re-signed
    /// when its content changes or half of this has passed.
    #[serde(default = "default_catalog_lifetime")]
    pub lifetime_secs: u64,
    /// The marketplace's URL as subscribers reach it, for the absolute image
    /// URLs of HEPiX lists (default: http:// and the request's Host).
    #[serde(default)]
    pub public_url: Option<String>,
}

pub const DEFAULT_CATALOG_LIFETIME_SECS: u64 = 7 * 24 * 3600;

fn default_catalog_lifetime() -> u64 {
    DEFAULT_CATALOG_LIFETIME_SECS
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN.parse().expect("valid default")
}
fn default_max_upload() -> u64 {
    DEFAULT_MAX_UPLOAD
}
fn default_ttl() -> u64 {
    DEFAULT_SESSION_TTL_SECS
}
fn default_login_ttl() -> u64 {
    DEFAULT_LOGIN_TTL_SECS
}

impl Config {
    /// The embedded default under `data`.
    pub fn embedded(data: &Path) -> anyhow::Result<Config> {
        std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
        let data = data.canonicalize()?;
        Ok(Config {
            listen: default_listen(),
            database_url: format!("sqlite://{}?mode=rwc", data.join("kiln.db").display()),
            blobs: BlobConfig::Dir {
                path: data.join("blobs"),
            },
            spool_dir: data.join("spool"),
            max_upload_bytes: DEFAULT_MAX_UPLOAD,
            session_ttl_secs: DEFAULT_SESSION_TTL_SECS,
            login_ttl_secs: DEFAULT_LOGIN_TTL_SECS,
            sweep_interval_secs: None,
            signing: None,
        })
    }

    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// `--config` wins; otherwise the embedded default under `--data`.
    pub fn resolve(config: Option<&Path>, data: Option<&Path>) -> anyhow::Result<Config> {
        match (config, data) {
            (Some(_), Some(_)) => anyhow::bail!("give either --config or --data, not both"),
            (Some(c), None) => Config::load(c),
            (None, d) => Config::embedded(d.unwrap_or(Path::new("kiln-data"))),
        }
    }

    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_ttl_secs)
    }

    /// Web logins issued before this have expired.
    pub fn logins_issued_after(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> chrono::DateTime<chrono::Utc> {
        now - chrono::Duration::seconds(
            i64::try_from(self.login_ttl_secs).unwrap_or(i64::MAX / 1000),
        )
    }

    pub fn sweep_interval(&self) -> Duration {
        Duration::from_secs(
            self.sweep_interval_secs
                .unwrap_or((self.session_ttl_secs / 10).clamp(1, 60)),
        )
    }
}
