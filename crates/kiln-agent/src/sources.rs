//! Finding the context, in order, each with a bounded wait: a block device
//! labelled `CONTEXT`, `cidata`/`CIDATA` or `config-2`/`CONFIG-2` (read
//! directly, never mounted); a NoCloud seed on the kernel command line
//! (`ds=nocloud;s=...`); then a metadata service (EC2 IMDSv2, NoCloud-net,
//! OpenStack).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kiln_context::seedread;

use crate::context::{Found, Kind};
use crate::http::Client;
use crate::log;
use crate::root::Root;

/// Where the link-local metadata service lives.
pub const DEFAULT_METADATA: &str = "http://169.254.169.254";

/// How to search.
#[derive(Debug, Clone)]
pub struct Search {
    pub root: Root,
    /// Images or devices to look at instead of scanning /sys/class/block.
    pub devices: Vec<PathBuf>,
    pub device_wait: Duration,
    /// The kernel command line.
    pub cmdline: String,
    pub metadata_url: String,
    pub metadata_wait: Duration,
}

/// `ds=nocloud;s=URL;i=ID;h=HOST` from the kernel command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NocloudLine {
    pub seedfrom: Option<String>,
    pub overrides: BTreeMap<String, String>,
}

pub fn nocloud_line(cmdline: &str) -> Option<NocloudLine> {
    let word = cmdline
        .split_whitespace()
        .find(|w| w.starts_with("ds=nocloud"))?;
    let mut line = NocloudLine::default();
    for (index, part) in word.split(';').enumerate() {
        if index == 0 {
            continue;
        }
        let Some((key, value)) = part.split_once('=') else {
            continue;
        };
        match key {
            "s" | "seedfrom" => line.seedfrom = Some(value.to_string()),
            "i" | "instance-id" => {
                line.overrides.insert("instance-id".into(), value.into());
            }
            "h" | "local-hostname" => {
                line.overrides.insert("local-hostname".into(), value.into());
            }
            _ => {}
        }
    }
    Some(line)
}

/// A `key=value` word of the kernel command line.
pub fn cmdline_value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// What a label says about the seed.
fn kind_of(label: &str) -> Option<Kind> {
    match label {
        "CONTEXT" => Some(Kind::OpenNebula),
        "cidata" | "CIDATA" => Some(Kind::NoCloud),
        "config-2" | "CONFIG-2" => Some(Kind::ConfigDrive),
        _ => None,
    }
}

/// Block devices worth probing: CD-ROMs first, no loop, RAM or zram devices.
fn block_devices(root: &Root) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root.at("/sys/class/block")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            !["loop", "ram", "zram", "dm-", "md"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .collect();
    names.sort_by_key(|n| (!n.starts_with("sr"), n.clone()));
    names
        .into_iter()
        .map(|n| root.at(&format!("/dev/{n}")))
        .collect()
}

/// The best seed among the devices: CONTEXT, then cidata, then config-2.
fn probe_devices(devices: &[PathBuf]) -> Option<(Kind, PathBuf, String)> {
    let mut best: Option<(Kind, PathBuf, String)> = None;
    for device in devices {
        let Ok(mut file) = std::fs::File::open(device) else {
            continue;
        };
        let Ok(Some((_, label))) = seedread::probe(&mut file) else {
            continue;
        };
        if let Some(kind) = kind_of(&label) {
            let rank = |k: Kind| k as u8;
            if best.as_ref().is_none_or(|(b, _, _)| rank(kind) < rank(*b)) {
                best = Some((kind, device.clone(), label));
            }
        }
    }
    best
}

fn read_device(kind: Kind, device: &Path, label: &str) -> Result<Found, String> {
    let mut file = std::fs::File::open(device)
        .map_err(|e| format!("cannot open {}: {e}", device.display()))?;
    let seed = seedread::read_seed(&mut file).map_err(|e| format!("{}: {e}", device.display()))?;
    Ok(Found {
        kind,
        origin: format!("{} ({label})", device.display()),
        files: seed
            .files
            .into_iter()
            .map(|f| (f.path, f.contents))
            .collect(),
        service: None,
        overrides: BTreeMap::new(),
    })
}

/// Sources that need no network: labelled devices, then a `file://` seed
/// on the command line. Devices are scanned again until `device_wait`.
pub fn find_local(search: &Search) -> Option<Found> {
    let deadline = Instant::now() + search.device_wait;
    let line = nocloud_line(&search.cmdline);
    loop {
        let devices = if search.devices.is_empty() {
            block_devices(&search.root)
        } else {
            search.devices.clone()
        };
        if let Some((kind, device, label)) = probe_devices(&devices) {
            match read_device(kind, &device, &label) {
                Ok(mut found) => {
                    if kind == Kind::NoCloud
                        && let Some(line) = &line
                    {
                        found.overrides = line.overrides.clone();
                    }
                    return Some(found);
                }
                Err(e) => log::warn(&e),
            }
        }
        // A seed named on the command line is the answer: no need to wait.
        if let Some(found) = line.as_ref().and_then(|l| file_seed(&search.root, l)) {
            return Some(found);
        }
        if Instant::now() >= deadline || line.as_ref().is_some_and(|l| l.seedfrom.is_some()) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `s=file:///dir/`: a seed directory in the root.
fn file_seed(root: &Root, line: &NocloudLine) -> Option<Found> {
    let dir = line.seedfrom.as_deref()?.strip_prefix("file://")?;
    let mut files = BTreeMap::new();
    for name in ["meta-data", "user-data", "vendor-data", "network-config"] {
        let path = root
            .join(&format!("{}/{name}", dir.trim_end_matches('/')))
            .ok()?;
        if let Ok(bytes) = std::fs::read(&path) {
            files.insert(name.to_string(), bytes);
        }
    }
    files.contains_key("meta-data").then(|| Found {
        kind: Kind::NoCloud,
        origin: format!("file://{dir}"),
        files,
        service: None,
        overrides: line.overrides.clone(),
    })
}

/// Sources over the network: a NoCloud-net `seedfrom`, else the metadata
/// service's EC2, NoCloud-net and OpenStack dialects, tried until
/// `metadata_wait` runs out.
pub fn find_network(search: &Search) -> Option<Found> {
    let deadline = Instant::now() + search.metadata_wait;
    let line = nocloud_line(&search.cmdline);
    let seedfrom = line
        .as_ref()
        .and_then(|l| l.seedfrom.clone())
        .filter(|s| s.starts_with("http://") || s.starts_with("https://"));
    loop {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(500));
        let client = Client::new(left.min(Duration::from_secs(5)));
        let attempt = match &seedfrom {
            Some(url) => nocloud_net(&client, url, line.as_ref()),
            None => metadata_service(&client, &search.metadata_url),
        };
        match attempt {
            Ok(Some(found)) => return Some(found),
            Ok(None) => return None,
            Err(e) if Instant::now() < deadline => {
                log::info(&format!("metadata not there yet: {e}"));
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => {
                log::info(&format!("no metadata service: {e}"));
                return None;
            }
        }
    }
}

fn is_kiln(reply: &crate::http::Reply) -> bool {
    reply
        .server
        .as_deref()
        .is_some_and(|s| s.starts_with("kiln-metadata"))
}

/// NoCloud-net: `<seedfrom>meta-data` and friends (the URL ends in `/`).
fn nocloud_net(
    client: &Client,
    base: &str,
    line: Option<&NocloudLine>,
) -> Result<Option<Found>, String> {
    let base = if base.ends_with('/') {
        base.to_string()
    } else {
        format!("{base}/")
    };
    let mut files = BTreeMap::new();
    let mut kiln = false;
    for name in ["meta-data", "user-data", "vendor-data", "network-config"] {
        let reply = client.get(&format!("{base}{name}"), &[])?;
        kiln |= is_kiln(&reply);
        match reply.status {
            200 => {
                files.insert(name.to_string(), reply.body);
            }
            404 if name != "meta-data" => {}
            status => return Err(format!("{base}{name}: HTTP {status}")),
        }
    }
    Ok(Some(Found {
        kind: Kind::NoCloud,
        origin: base.clone(),
        files,
        service: kiln.then_some(base),
        overrides: line.map(|l| l.overrides.clone()).unwrap_or_default(),
    }))
}

/// The metadata service at `base`: EC2 (with an IMDSv2 session), else
/// NoCloud-net at its root, else OpenStack.
fn metadata_service(client: &Client, base: &str) -> Result<Option<Found>, String> {
    let base = base.trim_end_matches('/');
    let session = client.request(
        "PUT",
        &format!("{base}/latest/api/token"),
        &[("X-aws-ec2-metadata-token-ttl-seconds", "300")],
        Some(b""),
    )?;
    let token = session
        .ok()
        .then(|| String::from_utf8_lossy(&session.body).trim().to_string());
    let headers: Vec<(&str, &str)> = token
        .iter()
        .map(|t| ("X-aws-ec2-metadata-token", t.as_str()))
        .collect();
    let instance = client.get(&format!("{base}/latest/meta-data/instance-id"), &headers)?;
    if instance.ok() {
        let kiln = is_kiln(&instance);
        return ec2(client, base, &headers, instance.body, kiln).map(Some);
    }
    let meta = client.get(&format!("{base}/meta-data"), &[])?;
    if meta.ok() {
        return nocloud_net(client, &format!("{base}/"), None);
    }
    let openstack = client.get(&format!("{base}/openstack/latest/meta_data.json"), &[])?;
    if openstack.ok() {
        let mut files = BTreeMap::from([(
            "openstack/latest/meta_data.json".to_string(),
            openstack.body.clone(),
        )]);
        for name in ["network_data.json", "user_data"] {
            let reply = client.get(&format!("{base}/openstack/latest/{name}"), &[])?;
            if reply.ok() {
                files.insert(format!("openstack/latest/{name}"), reply.body);
            }
        }
        return Ok(Some(Found {
            kind: Kind::ConfigDrive,
            origin: format!("{base}/openstack/"),
            files,
            service: is_kiln(&openstack).then(|| base.to_string()),
            overrides: BTreeMap::new(),
        }));
    }
    Ok(None)
}

fn ec2(
    client: &Client,
    base: &str,
    headers: &[(&str, &str)],
    instance_id: Vec<u8>,
    kiln: bool,
) -> Result<Found, String> {
    let get = |path: &str| -> Result<Option<Vec<u8>>, String> {
        let reply = client.get(&format!("{base}/latest/{path}"), headers)?;
        Ok(reply.ok().then_some(reply.body))
    };
    let mut files = BTreeMap::from([("meta-data/instance-id".to_string(), instance_id)]);
    if let Some(host) = get("meta-data/local-hostname")? {
        files.insert("meta-data/local-hostname".into(), host);
    }
    let mut keys = Vec::new();
    if let Some(listing) = get("meta-data/public-keys/")? {
        for entry in String::from_utf8_lossy(&listing).lines() {
            let index = entry
                .split('=')
                .next()
                .unwrap_or_default()
                .trim_end_matches('/');
            if let Some(key) = get(&format!("meta-data/public-keys/{index}/openssh-key"))? {
                keys.extend(key);
                keys.push(b'\n');
            }
        }
    }
    files.insert("meta-data/public-keys".into(), keys);
    if let Some(data) = get("user-data")? {
        files.insert("user-data".into(), data);
    }
    Ok(Found {
        kind: Kind::Ec2,
        origin: format!("{base}/latest/"),
        files,
        service: kiln.then(|| base.to_string()),
        overrides: BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_command_line() {
        let line = nocloud_line(
            "quiet ds=nocloud;s=http://10.0.2.2:8775/t/abc/;i=iid-1;h=web root=/dev/vda1",
        )
        .unwrap();
        assert_eq!(
            line.seedfrom.as_deref(),
            Some("http://10.0.2.2:8775/t/abc/")
        );
        assert_eq!(line.overrides["instance-id"], "iid-1");
        assert_eq!(line.overrides["local-hostname"], "web");
        assert!(nocloud_line("quiet root=/dev/vda1").is_none());
        assert_eq!(
            cmdline_value("a kiln.metadata=http://x b", "kiln.metadata"),
            Some("http://x")
        );
    }
}
