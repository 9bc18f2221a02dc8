//! Entries as the templates show them: plain strings, computed once.

use chrono::{DateTime, Utc};
use kiln_catalog::model::{Endorsement, Entry, Location};

/// 1536 → "1.5 KiB".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub fn date(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn or_dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "—".to_string())
}

/// One line of a result list.
pub struct Row {
    pub id: String,
    pub title: String,
    pub version: String,
    pub os: String,
    pub arch: String,
    pub format: String,
    pub size: String,
    pub publisher: String,
    pub catalogue: String,
    pub created: String,
    pub status: String,
}

impl Row {
    pub fn new(e: &Entry, now: DateTime<Utc>) -> Row {
        let os = match (&e.os, &e.os_version) {
            (Some(os), Some(v)) => format!("{os} {v}"),
            (os, _) => or_dash(os),
        };
        Row {
            id: e.id.to_string(),
            title: e.title.clone(),
            version: e.version.clone().unwrap_or_default(),
            os,
            arch: or_dash(&e.arch),
            format: or_dash(&e.format),
            size: e.bytes.map(human_bytes).unwrap_or_else(|| "—".into()),
            publisher: e.publisher.clone(),
            catalogue: e.catalogue.clone(),
            created: date(e.created),
            status: e.effective_status(now).as_str().to_string(),
        }
    }
}

/// A labelled value of the entry page.
pub struct Field {
    pub label: &'static str,
    pub value: String,
}

/// The entry page's view of one entry.
pub struct Detail {
    pub row: Row,
    pub description: String,
    pub fields: Vec<Field>,
    /// (algorithm, hex digest), strongest first.
    pub checksums: Vec<(&'static str, String)>,
    pub stored: bool,
    /// External URLs (the registered one, then mirrors), in the order clients try them.
    pub external: Vec<String>,
    pub tags: Vec<String>,
    pub properties: Vec<(String, String)>,
    /// The endorsements the marketplace verified when they were submitted.
    pub endorsements: Vec<EndorsementRow>,
    /// Endorsements carried in imported metadata (a legacy marketplace's),
    /// as compact JSON: never verified here.
    pub carried: Vec<String>,
    pub deprecated: Option<String>,
    pub replaces: Option<String>,
    pub replaced_by: Option<String>,
}

/// One verified endorsement on the entry page.
pub struct EndorsementRow {
    /// `ed25519:<hex>` or a certificate's subject and issuer.
    pub endorser: String,
    pub status: &'static str,
    pub submitted_by: String,
    pub created: String,
    /// The endorser's reason for deprecating or revoking it.
    pub reason: Option<String>,
}

impl EndorsementRow {
    pub fn new(e: &Endorsement) -> EndorsementRow {
        EndorsementRow {
            endorser: e.endorser.clone(),
            status: e.status.as_str(),
            submitted_by: e.submitted_by.clone(),
            created: date(e.created),
            reason: e.reason.clone(),
        }
    }
}

impl Detail {
    pub fn new(e: &Entry, endorsements: &[Endorsement], now: DateTime<Utc>) -> Detail {
        let mut fields = Vec::new();
        let mut add = |label: &'static str, value: Option<String>| {
            if let Some(value) = value {
                fields.push(Field { label, value });
            }
        };
        add("Version", e.version.clone());
        add("Operating system", e.os.clone());
        add("OS version", e.os_version.clone());
        add("Architecture", e.arch.clone());
        add("Hypervisor", e.hypervisor.clone());
        add("Format", e.format.clone());
        add(
            "Virtual size",
            e.virtual_size
                .map(|n| format!("{} ({n} bytes)", human_bytes(n))),
        );
        add(
            "File size",
            e.bytes.map(|n| format!("{} ({n} bytes)", human_bytes(n))),
        );
        add("Series", e.series.clone());
        add("Catalogue", Some(e.catalogue.clone()));
        add("Status", Some(e.effective_status(now).as_str().to_string()));
        add("Created", Some(date(e.created)));
        add("Updated", Some(date(e.updated)));
        add("Valid until", e.valid_until.map(date));
        add("Minimum RAM", e.min_ram_mib.map(|m| format!("{m} MiB")));
        add("Minimum CPUs", e.min_cpus.map(|c| c.to_string()));
        add("Context", e.context_kind.clone());
        let c = &e.checksums;
        let checksums = [
            ("sha512", &c.sha512),
            ("sha256", &c.sha256),
            ("sha1", &c.sha1),
            ("md5", &c.md5),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.clone().map(|v| (name, v)))
        .collect();
        Detail {
            row: Row::new(e, now),
            description: e.description.clone(),
            fields,
            checksums,
            stored: e
                .locations
                .iter()
                .any(|l| matches!(l, Location::Blob { .. })),
            external: e
                .locations
                .iter()
                .filter_map(|l| match l {
                    Location::External { url } => Some(url.clone()),
                    Location::Blob { .. } => None,
                })
                .collect(),
            tags: e.tags.clone(),
            properties: e
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            endorsements: endorsements.iter().map(EndorsementRow::new).collect(),
            carried: e.endorsements.iter().map(|v| v.to_string()).collect(),
            deprecated: e.deprecated.clone(),
            replaces: e.replaces.map(|u| u.to_string()),
            replaced_by: e.replaced_by.map(|u| u.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn sizes_read_as_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(10 << 20), "10.0 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
