//! cloud-config `write_files`: encodings, owner, mode, append, defer.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;

use base64::Engine as _;
use kiln_context::cloudconfig::WriteFile;

use super::{Done, Env};
use crate::accounts::Accounts;
use crate::files::write_atomic;

pub fn now(env: &Env<'_>) -> Result<Done, String> {
    write(env, false)
}

/// The files marked `defer: true`, written after users exist (final stage).
pub fn deferred(env: &Env<'_>) -> Result<Done, String> {
    write(env, true)
}

fn write(env: &Env<'_>, deferred: bool) -> Result<Done, String> {
    let files: Vec<&WriteFile> = env
        .context
        .config
        .write_files
        .iter()
        .filter(|f| f.defer.unwrap_or(false) == deferred)
        .collect();
    if files.is_empty() {
        return Ok(Done::Skipped("no files".into()));
    }
    // Every file is tried; the errors are reported together.
    let mut written = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        match write_one(env, file) {
            Ok(()) => written.push(file.path.clone()),
            Err(e) => errors.push(format!("{}: {e}", file.path)),
        }
    }
    if errors.is_empty() {
        Ok(Done::Applied(written.join(", ")))
    } else {
        Err(errors.join("; "))
    }
}

fn decode(file: &WriteFile) -> Result<Vec<u8>, String> {
    let encoding = file
        .encoding
        .as_deref()
        .unwrap_or("text/plain")
        .to_ascii_lowercase();
    let base64 = |text: &str| {
        let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(clean)
            .map_err(|e| format!("bad base64: {e}"))
    };
    let gunzip = |bytes: &[u8]| {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(256 * 1024 * 1024)
            .read_to_end(&mut out)
            .map_err(|e| format!("bad gzip data: {e}"))?;
        Ok::<_, String>(out)
    };
    match encoding.as_str() {
        "text/plain" | "" => Ok(file.content.clone().into_bytes()),
        "b64" | "base64" => base64(&file.content),
        "gz+b64" | "gzip+base64" | "gz+base64" | "gzip+b64" => gunzip(&base64(&file.content)?),
        "gz" | "gzip" => gunzip(file.content.as_bytes()),
        other => Err(format!("unknown encoding {other:?}")),
    }
}

/// `user:group`, `user` (its group then), names or numbers; default root:root.
fn owner(env: &Env<'_>, spec: Option<&str>) -> Result<(u32, u32), String> {
    let Some(spec) = spec.filter(|s| !s.is_empty()) else {
        return Ok((0, 0));
    };
    let accounts = Accounts::load(env.root)?;
    let (user, group) = spec.split_once(':').unwrap_or((spec, ""));
    let account = accounts.user(user);
    let uid = match user.parse::<u32>() {
        Ok(uid) => uid,
        Err(_) => {
            account
                .as_ref()
                .ok_or_else(|| format!("unknown user {user:?}"))?
                .uid
        }
    };
    let gid = match (group, group.parse::<u32>()) {
        ("", _) => account.map_or(uid, |a| a.gid),
        (_, Ok(gid)) => gid,
        (name, Err(_)) => accounts
            .group_id(name)
            .ok_or_else(|| format!("unknown group {name:?}"))?,
    };
    Ok((uid, gid))
}

fn mode(spec: Option<&str>) -> Result<u32, String> {
    let Some(spec) = spec else {
        return Ok(0o644);
    };
    let digits = spec.trim().trim_start_matches("0o");
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("permissions {spec:?} is not an octal mode"))
}

fn write_one(env: &Env<'_>, file: &WriteFile) -> Result<(), String> {
    let path = env.root.join(&file.path)?;
    let bytes = decode(file)?;
    let owner = owner(env, file.owner.as_deref())?;
    let mode = mode(file.permissions.as_deref())?;
    if file.append.unwrap_or(false) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        let mut handle = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| e.to_string())?;
        handle.write_all(&bytes).map_err(|e| e.to_string())?;
        handle
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| e.to_string())?;
        std::os::unix::fs::chown(&path, Some(owner.0), Some(owner.1)).map_err(|e| e.to_string())
    } else {
        write_atomic(&path, &bytes, mode, Some(owner))
    }
}
