//! user-data as cloud-init reads it: gzip, MIME multipart, `#cloud-config`
//! parts (merged in order) and shell scripts.

use std::io::Read as _;

use base64::Engine as _;

/// The parts of a user-data text.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UserData {
    /// `#cloud-config` documents, in order.
    pub configs: Vec<String>,
    /// Shell scripts (`#!`), by file name, in order.
    pub scripts: Vec<(String, Vec<u8>)>,
    /// Parts the agent does not handle, by content type.
    pub ignored: Vec<String>,
}

/// gzip, when the bytes start with its magic number.
pub fn gunzip_if_needed(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(64 * 1024 * 1024)
        .read_to_end(&mut out)
        .map_err(|e| format!("user-data: bad gzip data: {e}"))?;
    Ok(out)
}

pub fn parse(bytes: &[u8]) -> Result<UserData, String> {
    let bytes = gunzip_if_needed(bytes)?;
    let mut data = UserData::default();
    add_part(&mut data, &bytes, None, "part-001")?;
    Ok(data)
}

fn add_part(
    data: &mut UserData,
    bytes: &[u8],
    content_type: Option<&str>,
    name: &str,
) -> Result<(), String> {
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Ok(());
    }
    let head = trimmed
        .lines()
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let multipart = head.starts_with("content-type:") || head.starts_with("mime-version:");
    if multipart {
        return add_multipart(data, &text);
    }
    match content_type {
        Some("text/cloud-config") => data.configs.push(text.into_owned()),
        Some("text/x-shellscript") => data.scripts.push((name.to_string(), bytes.to_vec())),
        Some(other) if other != "text/plain" && other != "text/x-not-multipart" => {
            data.ignored.push(other.to_string())
        }
        _ if trimmed.starts_with("#cloud-config") => data.configs.push(text.into_owned()),
        _ if trimmed.starts_with("#!") => data.scripts.push((name.to_string(), bytes.to_vec())),
        _ => data
            .ignored
            .push(kiln_context::cloudinit::content_type(trimmed).to_string()),
    }
    Ok(())
}

/// Headers of one MIME entity: lower-case names, unfolded values.
fn headers(block: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    out
}

fn parameter(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (key, v) = p.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

fn split_head(text: &str) -> (&str, &str) {
    for separator in ["\r\n\r\n", "\n\n"] {
        if let Some(at) = text.find(separator) {
            return (&text[..at], &text[at + separator.len()..]);
        }
    }
    (text, "")
}

fn add_multipart(data: &mut UserData, text: &str) -> Result<(), String> {
    let (head, body) = split_head(text);
    let top = headers(head);
    let content_type = top
        .iter()
        .find(|(n, _)| n == "content-type")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let Some(boundary) = parameter(&content_type, "boundary") else {
        return Err("user-data: MIME message without a boundary".into());
    };
    let delimiter = format!("--{boundary}");
    for (index, chunk) in body.split(&delimiter).enumerate().skip(1) {
        if chunk.starts_with("--") {
            break;
        }
        let chunk = chunk
            .strip_prefix("\r\n")
            .or_else(|| chunk.strip_prefix('\n'))
            .unwrap_or(chunk);
        let (head, body) = split_head(chunk);
        let fields = headers(head);
        let get = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let media = get("content-type").unwrap_or("text/plain");
        let media_type = media
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let filename = get("content-disposition")
            .and_then(|d| parameter(d, "filename"))
            .filter(|f| !f.is_empty() && !f.contains('/'))
            .unwrap_or_else(|| format!("part-{index:03}"));
        let bytes = match get("content-transfer-encoding")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("base64") => {
                let clean: String = body.chars().filter(|c| !c.is_whitespace()).collect();
                base64::engine::general_purpose::STANDARD
                    .decode(clean)
                    .map_err(|e| format!("user-data part {filename}: bad base64: {e}"))?
            }
            _ => body.trim_end_matches(['\r', '\n']).as_bytes().to_vec(),
        };
        let bytes = gunzip_if_needed(&bytes)?;
        add_part(data, &bytes, Some(&media_type), &filename)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_context::cloudinit::{Part, user_data};

    #[test]
    fn kiln_multipart_round_trip() {
        let parts = vec![
            Part {
                content_type: "text/cloud-config".into(),
                filename: "cloud-config.txt".into(),
                body: "#cloud-config\nhostname: a\n".into(),
            },
            Part {
                content_type: "text/x-shellscript".into(),
                filename: "start-script.sh".into(),
                body: "#!/bin/sh\necho --boundary\n".into(),
            },
        ];
        let data = parse(user_data(&parts).as_bytes()).unwrap();
        assert_eq!(data.configs, ["#cloud-config\nhostname: a\n"]);
        assert_eq!(
            data.scripts,
            [(
                "start-script.sh".to_string(),
                b"#!/bin/sh\necho --boundary\n".to_vec()
            )]
        );
    }

    #[test]
    fn single_documents_and_gzip() {
        assert_eq!(parse(b"#cloud-config\na: 1\n").unwrap().configs.len(), 1);
        assert_eq!(parse(b"#!/bin/sh\ntrue\n").unwrap().scripts.len(), 1);
        assert_eq!(
            parse(b"#include\nhttp://x\n").unwrap().ignored,
            ["text/x-include-url"]
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, b"#cloud-config\nb: 2\n").unwrap();
        let data = parse(&gz.finish().unwrap()).unwrap();
        assert_eq!(data.configs, ["#cloud-config\nb: 2\n"]);
        assert_eq!(parse(b"").unwrap(), UserData::default());
    }

    #[test]
    fn plain_mime_parts() {
        let text = "Content-Type: multipart/mixed; boundary=\"XX\"\nMIME-Version: 1.0\n\n--XX\nContent-Type: text/cloud-config\n\n#cloud-config\nc: 3\n--XX\nContent-Type: text/x-shellscript; charset=\"us-ascii\"\nContent-Disposition: attachment; filename=\"s.sh\"\n\n#!/bin/sh\necho hi\n--XX--\n";
        let data = parse(text.as_bytes()).unwrap();
        assert_eq!(data.configs, ["#cloud-config\nc: 3"]);
        assert_eq!(data.scripts[0].0, "s.sh");
    }
}
