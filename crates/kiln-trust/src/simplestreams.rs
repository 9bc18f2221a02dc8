//! simplestreams export (the format of `sstream-query`, `sstream-mirror`,
//! LXD and MAAS): `streams/v1/index.json` names one products file per
//! catalogue, `streams/v1/<content_id>.json`, with the catalogue's images as
//! `image-downloads`. Paths are relative to the mirror root, which is the
//! marketplace's own root URL: items point at `api/v1/entries/{id}/file`.
//!
//! A product is a series (or a lone entry); its versions are the entries,
//! keyed by creation time; each version has one item, the disk image.
//! Deprecated and expired entries are left out.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::catalog::{Catalog, CatalogEntry};

pub const INDEX_PATH: &str = "streams/v1/index.json";

/// `org.kiln:<catalogue>:download`.
pub fn content_id(catalogue: &str) -> String {
    format!("org.kiln:{catalogue}:download")
}

pub fn products_path(catalogue: &str) -> String {
    format!("streams/v1/{}.json", content_id(catalogue))
}

/// simplestreams writes RFC 2822 dates.
fn date(t: DateTime<Utc>) -> String {
    t.to_rfc2822()
}

fn listed(catalog: &Catalog) -> impl Iterator<Item = &CatalogEntry> {
    catalog
        .entries
        .iter()
        .filter(|e| e.deprecated.is_none() && e.valid_until.is_none_or(|t| t > catalog.issued))
}

fn product_name(catalog: &Catalog, e: &CatalogEntry) -> String {
    let series = e.series.clone().unwrap_or_else(|| e.id.to_string());
    format!("org.kiln:{}:{series}", catalog.catalogue)
}

/// The products file of one catalogue.
pub fn products(catalog: &Catalog) -> Value {
    let mut products = Map::new();
    for e in listed(catalog) {
        let product = products.entry(product_name(catalog, e)).or_insert_with(|| {
            let mut p = Map::new();
            let mut put = |k: &str, v: &Option<String>| {
                if let Some(v) = v {
                    p.insert(k.into(), Value::String(v.clone()));
                }
            };
            put("arch", &e.arch);
            put("os", &e.os);
            put("release", &e.os_version);
            put("version", &e.os_version);
            p.insert("release_title".into(), Value::String(e.title.clone()));
            p.insert("supported".into(), Value::Bool(true));
            p.insert("versions".into(), Value::Object(Map::new()));
            Value::Object(p)
        });
        let versions = product["versions"]
            .as_object_mut()
            .expect("versions is an object");
        let mut serial = e.created.format("%Y%m%d_%H%M%S").to_string();
        if versions.contains_key(&serial) {
            serial = format!("{serial}_{}", e.id.simple());
        }
        let ftype = e.format.clone().unwrap_or_else(|| "disk.img".into());
        versions.insert(
            serial,
            json!({
                "label": e.version.clone().unwrap_or_else(|| "release".into()),
                "pubname": e.title,
                "items": {
                    ftype.clone(): {
                        "ftype": ftype,
                        "path": crate::catalog::blob_url(e.id).trim_start_matches('/'),
                        "size": e.size,
                        "sha256": e.sha256,
                        "id": e.id.to_string(),
                    }
                }
            }),
        );
    }
    json!({
        "content_id": content_id(&catalog.catalogue),
        "datatype": "image-downloads",
        "format": "products:1.0",
        "updated": date(catalog.issued),
        "products": products,
    })
}

/// The index over several catalogues.
pub fn index(catalogs: &[Catalog], now: DateTime<Utc>) -> Value {
    let mut index = Map::new();
    for c in catalogs {
        let mut names: Vec<String> = listed(c).map(|e| product_name(c, e)).collect();
        names.sort();
        names.dedup();
        index.insert(
            content_id(&c.catalogue),
            json!({
                "datatype": "image-downloads",
                "path": products_path(&c.catalogue),
                "format": "products:1.0",
                "updated": date(c.issued),
                "products": names,
            }),
        );
    }
    json!({"format": "index:1.0", "updated": date(now), "index": index})
}
