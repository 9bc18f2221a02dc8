//! What every handler shares.

use std::sync::Arc;

use kiln_catalog::spool::Spool;
use kiln_catalog::{Blobs, SqlStore, Store};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::signing::CatalogSigner;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub blobs: Blobs,
    pub spool: Spool,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// For imports by URL.
    pub http: reqwest::Client,
    /// Signs catalogs when the configuration names a key.
    pub catalogs: Option<Arc<CatalogSigner>>,
}

impl AppState {
    /// Opens the stores named by `config` (creating the schema if needed).
    pub async fn open(config: Config) -> anyhow::Result<AppState> {
        crate::install_crypto_provider();
        let store = SqlStore::connect(&config.database_url).await?;
        let blobs = Blobs::open(&config.blobs)?;
        let spool = Spool::new(&config.spool_dir)?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("kiln-market/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let catalogs = match &config.signing {
            Some(c) => Some(Arc::new(CatalogSigner::load(c)?)),
            None => None,
        };
        Ok(AppState {
            store: Arc::new(store),
            blobs,
            spool,
            config: Arc::new(config),
            metrics: Arc::new(Metrics::default()),
            http,
            catalogs,
        })
    }
}
