//! The marketplace's signed catalogs: built from the store, signed with the
//! configured key, and kept per catalogue so that the document and its
//! signature fetched one after the other belong together. A catalog is
//! re-signed (with a higher version) when its content changes or half of
//! its lifetime has passed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use chrono::{DateTime, Utc};
use kiln_catalog::Store;
use kiln_catalog::query::{MAX_LIMIT, Query, Scope, Sort, StatusFilter};
use kiln_trust::Signer;
use kiln_trust::catalog::{Catalog, CatalogEntry};

use crate::config::SigningConfig;

pub struct CatalogSigner {
    pub signer: Signer,
    lifetime: chrono::Duration,
    pub public_url: Option<url::Url>,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    last_version: u64,
    signed: HashMap<String, Arc<SignedCatalog>>,
}

/// A catalog, the exact bytes served and their detached signature.
pub struct SignedCatalog {
    pub catalog: Catalog,
    pub bytes: Vec<u8>,
    pub signature: Vec<u8>,
}

impl CatalogSigner {
    pub fn load(config: &SigningConfig) -> anyhow::Result<CatalogSigner> {
        let signer = Signer::load(&config.key, config.cert.as_deref())
            .with_context(|| format!("loading the signing key {}", config.key.display()))?;
        let public_url = config
            .public_url
            .as_deref()
            .map(url::Url::parse)
            .transpose()
            .context("signing.public_url")?;
        tracing::info!(signer = %signer.identity(), "signed catalogs enabled");
        Ok(CatalogSigner {
            signer,
            lifetime: chrono::Duration::seconds(config.lifetime_secs.max(60) as i64),
            public_url,
            cache: Mutex::new(Cache::default()),
        })
    }

    /// The current signed catalog of `catalogue` with these `entries`.
    pub fn current(
        &self,
        catalogue: &str,
        entries: Vec<CatalogEntry>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Arc<SignedCatalog>> {
        let mut cache = self.cache.lock().expect("catalog cache lock");
        if let Some(s) = cache.signed.get(catalogue)
            && s.catalog.entries == entries
            && now < s.catalog.issued + self.lifetime / 2
        {
            return Ok(s.clone());
        }
        let version = (now.timestamp().max(0) as u64).max(cache.last_version + 1);
        let catalog = Catalog::new(catalogue, version, now, self.lifetime, entries);
        let (bytes, sig) = catalog.sign(&self.signer)?;
        tracing::info!(catalogue, version, "catalog signed");
        let signed = Arc::new(SignedCatalog {
            catalog,
            bytes,
            signature: sig.to_bytes(),
        });
        cache.last_version = version;
        cache.signed.insert(catalogue.to_string(), signed.clone());
        Ok(signed)
    }
}

/// Every entry of `catalogue` a subscriber can use, oldest first.
pub async fn catalog_entries(
    store: &dyn Store,
    catalogue: &str,
    now: DateTime<Utc>,
) -> kiln_catalog::Result<Vec<CatalogEntry>> {
    let scope = Scope {
        all: true,
        ..Default::default()
    };
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let q = Query {
            catalogue: Some(catalogue.to_string()),
            status: StatusFilter::All,
            sort: Sort::Oldest,
            limit: Some(MAX_LIMIT),
            offset: Some(offset),
            ..Default::default()
        };
        let page = store.search(&q, &scope, now).await?;
        let n = page.entries.len() as u32;
        out.extend(page.entries.iter().filter_map(CatalogEntry::from_entry));
        offset += n;
        if n == 0 || u64::from(offset) >= page.total {
            return Ok(out);
        }
    }
}
