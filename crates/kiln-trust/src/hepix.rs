//! HEPiX image lists, as vmcaster wrote them and vmcatcher read them: a JSON
//! `hv:imagelist` (sorted keys, indented) signed S/MIME — a detached
//! `multipart/signed` whose first part is the JSON itself and whose second
//! is the CMS signature of the signer's X.509 certificate. `openssl smime
//! -verify` accepts what [`sign_smime`] writes; [`read_smime`] reads what
//! `openssl smime -sign` (with or without `-binary`) writes.
//!
//! The JSON is written with CRLF line ends: S/MIME canonical text, so text
//! mode and binary mode verifiers digest the same bytes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::signature::{Signature, Signer};

/// The document: `{"hv:imagelist": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    #[serde(rename = "hv:imagelist")]
    pub imagelist: ImageList,
}

// Fields are in the alphabetical order of their JSON names: vmcaster wrote
// lists with sorted keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageList {
    #[serde(rename = "dc:date:created")]
    pub created: String,
    #[serde(rename = "dc:date:expires")]
    pub expires: String,
    #[serde(rename = "dc:description", default)]
    pub description: String,
    #[serde(rename = "dc:identifier")]
    pub identifier: String,
    #[serde(rename = "dc:source", default)]
    pub source: String,
    #[serde(rename = "dc:title", default)]
    pub title: String,
    #[serde(rename = "hv:endorser")]
    pub endorser: Endorser,
    #[serde(rename = "hv:images", default)]
    pub images: Vec<ImageSlot>,
    #[serde(rename = "hv:uri", default)]
    pub uri: String,
    #[serde(rename = "hv:version")]
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endorser {
    #[serde(rename = "hv:x509")]
    pub x509: X509Endorser,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct X509Endorser {
    #[serde(rename = "dc:creator", default)]
    pub creator: String,
    #[serde(rename = "hv:ca")]
    pub ca: String,
    #[serde(rename = "hv:dn")]
    pub dn: String,
    #[serde(rename = "hv:email", default)]
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageSlot {
    #[serde(rename = "hv:image")]
    pub image: Image,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    #[serde(
        rename = "dc:date:expires",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub expires: Option<String>,
    #[serde(rename = "dc:description", default)]
    pub description: String,
    #[serde(rename = "dc:identifier")]
    pub identifier: String,
    #[serde(rename = "dc:title", default)]
    pub title: String,
    #[serde(rename = "hv:format", default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(
        rename = "hv:hypervisor",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub hypervisor: Option<String>,
    #[serde(
        rename = "hv:ram_minimum",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ram_minimum: Option<String>,
    #[serde(rename = "hv:size", deserialize_with = "number_or_string")]
    pub size: u64,
    #[serde(rename = "hv:uri")]
    pub uri: String,
    #[serde(rename = "hv:version", default)]
    pub version: String,
    #[serde(rename = "sl:arch", default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(rename = "sl:checksum:sha512")]
    pub sha512: String,
    #[serde(
        rename = "sl:comments",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub comments: Option<String>,
    #[serde(rename = "sl:os", default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(
        rename = "sl:osversion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

/// vmcaster wrote `hv:size` as a number, AppDB as a string.
fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        N(u64),
        S(String),
    }
    match Size::deserialize(d)? {
        Size::N(n) => Ok(n),
        Size::S(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("hv:size {s:?} is not a number"))),
    }
}

/// HEPiX dates: ISO 8601 in UTC with a `Z`.
pub fn format_date(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn parse_date(field: &str, s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Error::Invalid(format!("{field} {s:?} is not an ISO 8601 date: {e}")))
}

impl ImageList {
    /// A marketplace catalog as a HEPiX list. `list_uri` is where the list
    /// is served; relative image locations are resolved against it.
    /// Deprecated and expired entries are left out: a HEPiX list holds the
    /// images its endorser vouches for now.
    pub fn from_catalog(
        catalog: &Catalog,
        list_uri: &url::Url,
        endorser: &Identity,
    ) -> Result<ImageList> {
        let Identity::X509 { subject, issuer } = endorser else {
            return Err(Error::Key(
                "a HEPiX image list is signed with an X.509 certificate; the marketplace's signing key is Ed25519".into(),
            ));
        };
        let mut images = Vec::new();
        for e in &catalog.entries {
            if e.deprecated.is_some() || e.valid_until.is_some_and(|t| t <= catalog.issued) {
                continue;
            }
            let Some(location) = e.locations.first() else {
                continue;
            };
            let uri = list_uri
                .join(location)
                .map_err(|err| Error::Invalid(format!("location {location:?}: {err}")))?;
            images.push(ImageSlot {
                image: Image {
                    expires: e.valid_until.map(format_date),
                    description: e.description.clone(),
                    identifier: e.id.to_string(),
                    title: e.title.clone(),
                    format: e.format.clone(),
                    hypervisor: e.hypervisor.clone(),
                    ram_minimum: e.min_ram_mib.map(|m| m.to_string()),
                    size: e.size,
                    uri: uri.to_string(),
                    version: e.version.clone().unwrap_or_default(),
                    arch: e.arch.clone(),
                    sha512: e.sha512.clone(),
                    comments: None,
                    os: e.os.clone(),
                    os_version: e.os_version.clone(),
                },
            });
        }
        Ok(ImageList {
            created: format_date(catalog.issued),
            expires: format_date(catalog.expires),
            description: format!("kiln marketplace catalogue {}", catalog.catalogue),
            identifier: list_identifier(list_uri),
            source: list_uri.to_string(),
            title: catalog.catalogue.clone(),
            endorser: Endorser {
                x509: X509Endorser {
                    creator: subject.clone(),
                    ca: issuer.clone(),
                    dn: subject.clone(),
                    email: String::new(),
                },
            },
            images,
            uri: list_uri.to_string(),
            version: catalog.version.to_string(),
        })
    }

    /// Sorted, indented JSON with CRLF line ends (see the module doc).
    pub fn to_bytes(&self) -> Vec<u8> {
        let doc = Document {
            imagelist: self.clone(),
        };
        let text = serde_json::to_string_pretty(&doc).expect("serializable");
        let mut out = text.replace('\n', "\r\n");
        out.push_str("\r\n");
        out.into_bytes()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<ImageList> {
        let doc: Document = serde_json::from_slice(bytes)
            .map_err(|e| Error::Invalid(format!("not a HEPiX image list: {e}")))?;
        Ok(doc.imagelist)
    }

    /// vmcatcher's check 12: the certificate that signed the list is the
    /// endorser the list names.
    pub fn check_endorser(&self, signer: &Identity) -> Result<()> {
        let x = &self.endorser.x509;
        match signer {
            Identity::X509 { subject, issuer } if *subject == x.dn && *issuer == x.ca => Ok(()),
            _ => Err(Error::Invalid(format!(
                "the list names endorser hv:dn {:?} hv:ca {:?} but was signed by {signer}",
                x.dn, x.ca
            ))),
        }
    }
}

/// A stable UUID-shaped identifier for the list served at `uri`.
fn list_identifier(uri: &url::Url) -> String {
    let h = Sha256::digest(uri.as_str().as_bytes());
    let mut b: [u8; 16] = h[..16].try_into().expect("16 bytes");
    // An RFC 4122 name-based UUID (version 8: custom hash).
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b).to_string()
}

/// Signs `content` with an X.509 signer and wraps content and CMS signature
/// in a detached S/MIME `multipart/signed` message, as `openssl smime -sign`
/// writes it.
pub fn sign_smime(content: &[u8], signer: &Signer) -> Result<Vec<u8>> {
    let Signature::Cms { der } = signer.sign(content)? else {
        return Err(Error::Key(
            "S/MIME needs an X.509 certificate and its key, not an Ed25519 key".into(),
        ));
    };
    let boundary = format!("----kiln{}", &hex::encode(Sha256::digest(content))[..32]);
    let mut out = Vec::with_capacity(content.len() + der.len() * 2 + 512);
    out.extend_from_slice(
        format!(
            "MIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol=\"application/x-pkcs7-signature\"; micalg=\"sha-256\"; boundary=\"{boundary}\"\r\n\r\nThis is an S/MIME signed message\r\n\r\n--{boundary}\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(content);
    out.extend_from_slice(
        format!(
            "\r\n--{boundary}\r\nContent-Type: application/x-pkcs7-signature; name=\"smime.p7s\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"smime.p7s\"\r\n\r\n"
        )
        .as_bytes(),
    );
    for line in B64.encode(&der).as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n\r\n").as_bytes());
    Ok(out)
}

/// Whether these bytes look like an S/MIME message.
pub fn sniff(bytes: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).to_ascii_lowercase();
    head.contains("multipart/signed") || head.starts_with("mime-version")
}

/// Splits a detached S/MIME message into the signed bytes (the first part,
/// exactly as signed) and its CMS signature.
pub fn read_smime(message: &[u8]) -> Result<(Vec<u8>, Signature)> {
    let bad = |why: &str| Error::Format(format!("not a detached S/MIME message: {why}"));
    let (headers, body) = split_headers(message).ok_or_else(|| bad("no header section"))?;
    let content_type =
        header_value(headers, "content-type").ok_or_else(|| bad("no Content-Type"))?;
    if !content_type
        .to_ascii_lowercase()
        .starts_with("multipart/signed")
    {
        return Err(bad(&format!(
            "Content-Type is {content_type:?}, not multipart/signed (opaque signing is not supported)"
        )));
    }
    let boundary = parameter(&content_type, "boundary").ok_or_else(|| bad("no boundary"))?;
    let delimiter = format!("--{boundary}").into_bytes();
    let first = find_line_start(body, &delimiter, 0).ok_or_else(|| bad("no first part"))?;
    let content_start = line_end(body, first + delimiter.len());
    let second =
        find_line_start(body, &delimiter, content_start).ok_or_else(|| bad("no signature part"))?;
    // The line break before a delimiter belongs to the delimiter.
    let mut content_end = second;
    if body[..content_end].ends_with(b"\r\n") {
        content_end -= 2;
    } else if body[..content_end].ends_with(b"\n") {
        content_end -= 1;
    }
    let content = body[content_start..content_end.max(content_start)].to_vec();
    let sig_part_start = line_end(body, second + delimiter.len());
    let sig_part_end = find_line_start(body, &delimiter, sig_part_start).unwrap_or(body.len());
    let (sig_headers, sig_body) = split_headers(&body[sig_part_start..sig_part_end])
        .ok_or_else(|| bad("signature part without headers"))?;
    let sig_type = header_value(sig_headers, "content-type").unwrap_or_default();
    if !sig_type.to_ascii_lowercase().contains("pkcs7-signature") {
        return Err(bad(&format!(
            "second part is {sig_type:?}, not a PKCS#7 signature"
        )));
    }
    let b64: Vec<u8> = sig_body
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = B64
        .decode(&b64)
        .map_err(|e| bad(&format!("signature is not base64: {e}")))?;
    Ok((content, Signature::from_bytes(&der)?))
}

/// Headers (unfolded lines) and the body after the first empty line.
fn split_headers(part: &[u8]) -> Option<(Vec<String>, &[u8])> {
    let mut lines: Vec<String> = Vec::new();
    let mut pos = 0;
    while pos < part.len() {
        let end = line_end(part, pos);
        let line = String::from_utf8_lossy(&part[pos..end]);
        let line = line.trim_end_matches(['\r', '\n']);
        pos = end;
        if line.is_empty() {
            return Some((lines, &part[pos..]));
        }
        match lines.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => {
                last.push(' ');
                last.push_str(line.trim());
            }
            _ => lines.push(line.to_string()),
        }
    }
    None
}

fn header_value(headers: Vec<String>, name: &str) -> Option<String> {
    headers.into_iter().find_map(|h| {
        let (k, v) = h.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

fn parameter(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The index just past the line starting at `pos` (its line break included).
fn line_end(data: &[u8], pos: usize) -> usize {
    data[pos.min(data.len())..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(data.len(), |i| pos + i + 1)
}

/// The first line at or after `from` that starts with `prefix`.
fn find_line_start(data: &[u8], prefix: &[u8], from: usize) -> Option<usize> {
    let mut pos = from;
    while pos < data.len() {
        if data[pos..].starts_with(prefix) {
            return Some(pos);
        }
        pos = line_end(data, pos);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_vmcaster_style_list_with_string_sizes() {
        let json = r#"{"hv:imagelist": {"dc:date:created": "2011-03-10T17:09:12Z",
          "dc:date:expires": "2011-04-07T17:09:12Z", "dc:identifier": "63175437-7d59-4851-b333-c96cb6545a86",
          "hv:endorser": {"hv:x509": {"hv:ca": "/C=DE/O=GermanGrid/CN=GridKa-CA", "hv:dn": "/C=DE/O=KIT/CN=Owen"}},
          "hv:images": [{"hv:image": {"dc:identifier": "488dcdc4-9ab1-4fc8-a7ba-b7a5428ecb3d",
            "hv:size": "2147483648", "hv:uri": "http://example.org/img.qcow2", "hv:version": "1",
            "sl:checksum:sha512": "abc", "ad:vo": "extra fields are kept out"}}],
          "hv:version": "3.3"}}"#;
        let list = ImageList::from_bytes(json.as_bytes()).unwrap();
        assert_eq!(list.version, "3.3");
        assert_eq!(list.images[0].image.size, 2147483648);
        assert!(
            list.check_endorser(&Identity::X509 {
                subject: "/C=DE/O=KIT/CN=Owen".into(),
                issuer: "/C=DE/O=GermanGrid/CN=GridKa-CA".into()
            })
            .is_ok()
        );
        assert!(
            list.check_endorser(&Identity::X509 {
                subject: "/C=DE/O=KIT/CN=Mallory".into(),
                issuer: "/C=DE/O=GermanGrid/CN=GridKa-CA".into()
            })
            .is_err()
        );
    }

    #[test]
    fn mime_parts_split_at_delimiters() {
        let msg = b"MIME-Version: 1.0\nContent-Type: multipart/signed;\n boundary=\"XX\"\n\npreamble\n--XX\nline one\r\nline two\r\n\n--XX\nContent-Type: application/pkcs7-signature\n\nAAAA\n--XX--\n";
        let err = read_smime(msg).unwrap_err().to_string();
        // The parts are found; the 3 zero bytes are no CMS signature.
        assert!(err.contains("CMS"), "{err}");
        let (headers, body) = split_headers(msg).unwrap();
        assert_eq!(
            parameter(&header_value(headers, "content-type").unwrap(), "boundary").as_deref(),
            Some("XX")
        );
        let first = find_line_start(body, b"--XX", 0).unwrap();
        assert_eq!(&body[line_end(body, first)..][..8], b"line one");
    }
}
