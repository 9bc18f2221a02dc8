//! The metadata service's logic, without I/O: a request (method, path,
//! source address, headers, body) becomes a response. The HTTP server around
//! it lives in kiln-metadata.
//!
//! One service answers in three dialects, from the same VM descriptions as
//! the seed images:
//! - NoCloud-net (`seedfrom`): `meta-data`, `user-data`, `vendor-data`, `network-config`;
//! - EC2: `/<version>/meta-data/...`, `/<version>/user-data`,
//!   `/<version>/dynamic/instance-identity/document`, and IMDSv2 sessions
//!   (`PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds`, then
//!   `X-aws-ec2-metadata-token` on every request);
//! - OpenStack: `/openstack/<version>/{meta_data.json, network_data.json, user_data, vendor_data.json}`.
//!
//! A VM is known by its token, as a path prefix (`/t/<token>/...`) or the
//! OneGate header `X-ONEGATE-TOKEN`, or else by the request's source address
//! (its NICs' addresses and `METADATA_ADDRESS`). It reports itself ready with
//! OneGate's `PUT /vm` and the body `READY=YES`, or `PUT`/`POST /ready`
//! (what cloud-init's phone_home sends). `/enc/<node>` answers as `kiln enc`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;

use crate::cloudconfig::{self, UserEntry};
use crate::cloudinit;
use crate::enc::Rules;
use crate::error::Result;
use crate::netconfig;
use crate::onecontext::context_variables;
use crate::seed::Seed;
use crate::vm::Vm;

/// IMDSv2's limits on a session token's life, in seconds.
const MAX_TTL: u64 = 21_600;
/// Bodies of ready reports kept per VM, at most.
const MAX_REPORT: usize = 4096;

/// What the service serves for one VM.
#[derive(Debug, Clone)]
pub struct ServedVm {
    pub id: u64,
    pub name: String,
    pub token: String,
    pub addresses: BTreeSet<IpAddr>,
    pub instance_id: String,
    pub hostname: String,
    /// NoCloud's files (meta-data, user-data, vendor-data, network-config).
    pub nocloud: Seed,
    /// ConfigDrive's files (openstack/latest/...).
    pub configdrive: Seed,
    pub public_keys: Vec<String>,
    /// (MAC, IPv4 addresses, IPv6 addresses) per NIC.
    pub nics: Vec<(String, Vec<String>, Vec<String>)>,
}

impl ServedVm {
    /// The VM's files and identity. Its token is `METADATA_TOKEN` when the
    /// description holds one, else `token`.
    pub fn new(vm: &Vm, token: String) -> Result<ServedVm> {
        let variables = context_variables(vm)?;
        let config = cloudconfig::from_variables(&variables)?;
        let public_keys = config
            .users
            .iter()
            .flat_map(|u| match u {
                UserEntry::User(user) => user.ssh_authorized_keys.clone(),
                UserEntry::Named(_) => Vec::new(),
            })
            .chain(config.ssh_authorized_keys.iter().cloned())
            .collect();
        let mut addresses = BTreeSet::new();
        let mut nics = Vec::new();
        for nic in vm.template.vectors("NIC") {
            let ips: Vec<String> = nic.get("IP").into_iter().cloned().collect();
            let ip6s: Vec<String> = ["IP6_GLOBAL", "IP6"]
                .iter()
                .filter_map(|k| nic.get(*k).cloned())
                .take(1)
                .collect();
            addresses.extend(
                ips.iter()
                    .chain(&ip6s)
                    .filter_map(|a| a.parse::<IpAddr>().ok()),
            );
            if let Some(mac) = nic.get("MAC") {
                nics.push((mac.to_ascii_lowercase(), ips, ip6s));
            }
        }
        for interface in netconfig::interfaces_from_variables(&variables)? {
            addresses.extend(interface.ipv4.iter().map(|(ip, _)| IpAddr::V4(*ip)));
            addresses.extend(interface.ipv6.iter().map(|(ip, _)| IpAddr::V6(*ip)));
        }
        if let Some(extra) = vm.template.get("METADATA_ADDRESS") {
            for word in extra.split_whitespace() {
                addresses.insert(word.parse().map_err(|_| {
                    crate::Error::Invalid(format!("METADATA_ADDRESS={word:?} is not an IP address"))
                })?);
            }
        }
        let nocloud = cloudinit::nocloud_seed(vm)?;
        let hostname = variables
            .get("SET_HOSTNAME")
            .filter(|h| !h.is_empty())
            .cloned()
            .unwrap_or_else(|| vm.name.clone());
        Ok(ServedVm {
            id: vm.id,
            name: vm.name.clone(),
            token: vm
                .template
                .get("METADATA_TOKEN")
                .map_or(token, str::to_string),
            addresses,
            instance_id: cloudinit::instance_id(vm),
            hostname,
            configdrive: cloudinit::configdrive_seed(vm)?,
            nocloud,
            public_keys,
            nics,
        })
    }

    fn nocloud_file(&self, name: &str) -> Option<&[u8]> {
        self.nocloud.file(name).map(|f| f.contents.as_slice())
    }

    /// EC2's meta-data tree as leaf path → value.
    fn ec2_tree(&self) -> BTreeMap<String, String> {
        let mut tree = BTreeMap::new();
        let mut leaf = |path: String, value: String| {
            tree.insert(path, value);
        };
        leaf("instance-id".into(), self.instance_id.clone());
        leaf("ami-id".into(), "ami-kiln".into());
        leaf("instance-type".into(), "kiln.vm".into());
        leaf("hostname".into(), self.hostname.clone());
        leaf("local-hostname".into(), self.hostname.clone());
        leaf("placement/availability-zone".into(), "kiln".into());
        if let Some(ip) = self.nics.iter().flat_map(|n| n.1.first()).next() {
            leaf("local-ipv4".into(), ip.clone());
        }
        if let Some((mac, _, _)) = self.nics.first() {
            leaf("mac".into(), mac.clone());
        }
        for (index, key) in self.public_keys.iter().enumerate() {
            leaf(
                format!("public-keys/{index}/openssh-key"),
                format!("{key}\n"),
            );
        }
        for (index, (mac, ips, ip6s)) in self.nics.iter().enumerate() {
            let base = format!("network/interfaces/macs/{mac}");
            leaf(format!("{base}/mac"), mac.clone());
            leaf(format!("{base}/device-number"), index.to_string());
            if !ips.is_empty() {
                leaf(format!("{base}/local-ipv4s"), ips.join("\n"));
            }
            if !ip6s.is_empty() {
                leaf(format!("{base}/ipv6s"), ip6s.join("\n"));
            }
        }
        tree
    }

    fn identity_document(&self) -> String {
        let ip = self.nics.iter().flat_map(|n| n.1.first()).next();
        let document = json!({
            "instanceId": self.instance_id,
            "instanceType": "kiln.vm",
            "imageId": "ami-kiln",
            "availabilityZone": "kiln",
            "region": "kiln",
            "privateIp": ip,
            "accountId": "0",
            "architecture": "x86_64",
            "version": "2017-09-30",
        });
        serde_json::to_string_pretty(&document).expect("JSON values always serialize")
    }
}

/// An HTTP request, as far as the service cares.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    pub query: Option<String>,
    pub source: IpAddr,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn get(path: &str, source: IpAddr) -> Request {
        Request {
            method: "GET".into(),
            path: path.into(),
            query: None,
            source,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    fn text(body: impl Into<Vec<u8>>) -> Response {
        Response::new(200, "text/plain", body)
    }

    fn json(body: impl Into<Vec<u8>>) -> Response {
        Response::new(200, "application/json", body)
    }

    fn error(status: u16, message: impl Into<String>) -> Response {
        let mut body = message.into().into_bytes();
        body.push(b'\n');
        Response::new(status, "text/plain", body)
    }

    fn not_found() -> Response {
        Response::error(404, "not found")
    }
}

/// A ready report: when and what the VM sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyReport {
    pub at: SystemTime,
    pub data: String,
}

/// A VM's line in [`MetadataService::status`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct VmStatus {
    pub id: u64,
    pub name: String,
    pub instance_id: String,
    pub ready: bool,
    /// Seconds since 1970 of the last ready report.
    pub ready_at: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Imds {
    /// Requests without a session token are answered too (AWS's "optional").
    #[default]
    Optional,
    /// Every EC2 request needs an IMDSv2 session token.
    Required,
}

/// Something to tell the operator (the server logs these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Ready { id: u64, name: String, data: String },
}

#[derive(Default)]
struct State {
    /// IMDSv2 session token → (VM index, expiry).
    sessions: HashMap<String, (usize, Instant)>,
    ready: HashMap<usize, ReadyReport>,
}

/// Makes unguessable session tokens (the server uses the OS's randomness).
pub type TokenSource = Box<dyn Fn() -> String + Send + Sync>;

pub struct MetadataService {
    vms: Vec<ServedVm>,
    imds: Imds,
    enc: Option<Rules>,
    new_token: TokenSource,
    state: Mutex<State>,
}

impl MetadataService {
    /// Fails when two VMs share a token or an address.
    pub fn new(
        vms: Vec<ServedVm>,
        imds: Imds,
        enc: Option<Rules>,
        new_token: TokenSource,
    ) -> Result<Self> {
        let mut tokens = BTreeSet::new();
        let mut addresses = BTreeMap::new();
        for vm in &vms {
            if vm.token.is_empty() || !tokens.insert(vm.token.as_str()) {
                return Err(crate::Error::Invalid(format!(
                    "VM {} ({}) has an empty token or one another VM has",
                    vm.id, vm.name
                )));
            }
            for address in &vm.addresses {
                if let Some(other) = addresses.insert(*address, vm.id) {
                    return Err(crate::Error::Invalid(format!(
                        "VMs {other} and {} both have the address {address}",
                        vm.id
                    )));
                }
            }
        }
        Ok(MetadataService {
            vms,
            imds,
            enc,
            new_token,
            state: Mutex::new(State::default()),
        })
    }

    pub fn vms(&self) -> &[ServedVm] {
        &self.vms
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn status(&self) -> Vec<VmStatus> {
        let state = self.state();
        self.vms
            .iter()
            .enumerate()
            .map(|(index, vm)| {
                let report = state.ready.get(&index);
                VmStatus {
                    id: vm.id,
                    name: vm.name.clone(),
                    instance_id: vm.instance_id.clone(),
                    ready: report.is_some(),
                    ready_at: report.and_then(|r| {
                        r.at.duration_since(SystemTime::UNIX_EPOCH)
                            .ok()
                            .map(|d| d.as_secs())
                    }),
                }
            })
            .collect()
    }

    pub fn ready_report(&self, id: u64) -> Option<ReadyReport> {
        let index = self.vms.iter().position(|vm| vm.id == id)?;
        self.state().ready.get(&index).cloned()
    }

    /// Answers one request; `now` dates IMDSv2 sessions.
    pub fn handle(&self, request: &Request, now: Instant) -> (Response, Option<Event>) {
        let (token, path) = match request.path.strip_prefix("/t/") {
            Some(rest) => {
                let (token, path) = rest.split_once('/').unwrap_or((rest, ""));
                (Some(token), format!("/{path}"))
            }
            None => (request.header("x-onegate-token"), request.path.clone()),
        };
        if let Some(node) = path.strip_prefix("/enc/") {
            return (self.enc(node, request.query.as_deref()), None);
        }
        if path == "/kiln/vms" {
            let body = serde_json::to_vec_pretty(&self.status()).expect("plain data serializes");
            return (Response::json(body), None);
        }
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        // EC2's session token request names no VM but its source address.
        let index = match token {
            Some(token) => self.vms.iter().position(|vm| vm.token == token),
            None => self.by_session_or_address(request, now),
        };
        let Some(index) = index else {
            let why = match token {
                Some(_) => "unknown token".to_string(),
                None => format!("no VM is known at {}", request.source),
            };
            return (Response::error(404, why), None);
        };
        let vm = &self.vms[index];
        match (request.method.as_str(), segments.as_slice()) {
            ("PUT" | "POST", ["vm"] | ["ready"]) => self.ready(index, request, segments[0] == "vm"),
            ("PUT", [_, "api", "token"]) => (self.session(index, request, now), None),
            ("GET" | "HEAD", rest) => (self.get(vm, index, rest, request, now), None),
            _ => (Response::error(405, "method not allowed"), None),
        }
    }

    /// An IMDSv2 session token names its VM; else the source address does.
    fn by_session_or_address(&self, request: &Request, now: Instant) -> Option<usize> {
        if let Some(token) = request.header("x-aws-ec2-metadata-token") {
            let state = self.state();
            if let Some((index, expiry)) = state.sessions.get(token)
                && *expiry > now
            {
                return Some(*index);
            }
        }
        let source = match request.source {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(request.source, IpAddr::V4),
            v4 => v4,
        };
        self.vms
            .iter()
            .position(|vm| vm.addresses.contains(&source))
    }

    fn ready(&self, index: usize, request: &Request, onegate: bool) -> (Response, Option<Event>) {
        let vm = &self.vms[index];
        if let Some(claimed) = request.header("x-onegate-vmid")
            && claimed.trim() != vm.id.to_string()
        {
            return (
                Response::error(403, "X-ONEGATE-VMID does not match the token"),
                None,
            );
        }
        let mut data = String::from_utf8_lossy(&request.body).into_owned();
        data.truncate(data.floor_char_boundary(MAX_REPORT));
        if onegate
            && !data
                .split(['\n', '&'])
                .any(|pair| pair.trim().eq_ignore_ascii_case("READY=YES"))
        {
            return (Response::error(400, "expected READY=YES"), None);
        }
        self.state().ready.insert(
            index,
            ReadyReport {
                at: SystemTime::now(),
                data: data.clone(),
            },
        );
        let event = Event::Ready {
            id: vm.id,
            name: vm.name.clone(),
            data,
        };
        (Response::error(200, "ready"), Some(event))
    }

    /// `PUT /<version>/api/token`: a new IMDSv2 session for the VM.
    fn session(&self, index: usize, request: &Request, now: Instant) -> Response {
        // AWS refuses token requests that went through a proxy.
        if request.header("x-forwarded-for").is_some() {
            return Response::error(403, "forbidden");
        }
        let ttl = request
            .header("x-aws-ec2-metadata-token-ttl-seconds")
            .and_then(|t| t.trim().parse::<u64>().ok());
        let Some(ttl) = ttl.filter(|t| (1..=MAX_TTL).contains(t)) else {
            return Response::error(400, "X-aws-ec2-metadata-token-ttl-seconds must be 1..21600");
        };
        let token = (self.new_token)();
        let mut state = self.state();
        state.sessions.retain(|_, (_, expiry)| *expiry > now);
        state
            .sessions
            .insert(token.clone(), (index, now + Duration::from_secs(ttl)));
        let mut response = Response::text(token);
        response
            .headers
            .push(("x-aws-ec2-metadata-token-ttl-seconds", ttl.to_string()));
        response
    }

    fn get(
        &self,
        vm: &ServedVm,
        index: usize,
        segments: &[&str],
        request: &Request,
        now: Instant,
    ) -> Response {
        match segments {
            [] => Response::text("latest\n"),
            [name @ ("meta-data" | "user-data" | "vendor-data" | "network-config")] => {
                match vm.nocloud_file(name) {
                    Some(bytes) => Response::text(bytes.to_vec()),
                    None => Response::not_found(),
                }
            }
            ["openstack"] => Response::text("latest\n"),
            ["openstack", version, file] if is_version(version) => {
                let path = format!("openstack/latest/{file}");
                match (vm.configdrive.file(&path), *file) {
                    (Some(f), name) if name.ends_with(".json") => {
                        Response::json(f.contents.clone())
                    }
                    (Some(f), _) => Response::text(f.contents.clone()),
                    (None, "vendor_data.json" | "vendor_data2.json") => Response::json("{}\n"),
                    (None, _) => Response::not_found(),
                }
            }
            [version, rest @ ..] if is_version(version) => {
                if let Some(denied) = self.check_session(index, request, now) {
                    return denied;
                }
                match rest {
                    [] => Response::text("dynamic\nmeta-data\nuser-data\n"),
                    ["user-data"] => match vm.nocloud_file("user-data") {
                        Some(bytes) => Response::text(bytes.to_vec()),
                        None => Response::not_found(),
                    },
                    ["dynamic", "instance-identity", "document"] => {
                        Response::json(vm.identity_document())
                    }
                    ["meta-data", path @ ..] => ec2_lookup(&vm.ec2_tree(), &path.join("/")),
                    _ => Response::not_found(),
                }
            }
            _ => Response::not_found(),
        }
    }

    /// IMDSv2: a token, if sent, must be live and the VM's own; none at all
    /// is refused only when sessions are required.
    fn check_session(&self, index: usize, request: &Request, now: Instant) -> Option<Response> {
        match request.header("x-aws-ec2-metadata-token") {
            Some(token) => {
                let state = self.state();
                let valid = state
                    .sessions
                    .get(token)
                    .is_some_and(|(owner, expiry)| *owner == index && *expiry > now);
                (!valid).then(|| Response::error(401, "unauthorized"))
            }
            None if self.imds == Imds::Required => Some(Response::error(401, "unauthorized")),
            None => None,
        }
    }

    fn enc(&self, node: &str, query: Option<&str>) -> Response {
        let Some(rules) = &self.enc else {
            return Response::not_found();
        };
        let node = rules.node(node, BTreeSet::new(), serde_json::Map::new());
        let Some(outcome) = rules.classify(&node) else {
            return Response::error(404, "node matches no rule");
        };
        let chef = query.is_some_and(|q| q.split('&').any(|p| p == "format=chef"));
        if chef {
            let body = serde_json::to_vec_pretty(&outcome.to_chef_json()).expect("JSON serializes");
            Response::json(body)
        } else {
            Response::new(200, "application/x-yaml", outcome.to_puppet_yaml())
        }
    }
}

/// `latest` or a dated API version such as `2009-04-04`.
fn is_version(segment: &str) -> bool {
    segment == "latest"
        || (segment.len() == 10
            && segment.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            }))
}

/// A leaf's value, or a directory's listing (sub-directories end in `/`;
/// `public-keys/` lists `N=name` as EC2 does).
fn ec2_lookup(tree: &BTreeMap<String, String>, path: &str) -> Response {
    let path = path.trim_end_matches('/');
    if let Some(value) = tree.get(path) {
        return Response::text(value.clone());
    }
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    let mut children = BTreeSet::new();
    for key in tree.keys() {
        if let Some(rest) = key.strip_prefix(&prefix) {
            let child = match rest.split_once('/') {
                Some((dir, _)) => format!("{dir}/"),
                None => rest.to_string(),
            };
            children.insert(child);
        }
    }
    if children.is_empty() {
        return Response::not_found();
    }
    let listing: Vec<String> = if path == "public-keys" {
        children
            .iter()
            .map(|c| {
                let n = c.trim_end_matches('/');
                format!("{n}={}", key_name(tree, n))
            })
            .collect()
    } else {
        children.into_iter().collect()
    };
    Response::text(listing.join("\n"))
}

/// The comment of public key N, as EC2 names keys; else `key-N`.
fn key_name(tree: &BTreeMap<String, String>, n: &str) -> String {
    tree.get(&format!("public-keys/{n}/openssh-key"))
        .and_then(|key| key.split_whitespace().nth(2).map(str::to_string))
        .unwrap_or_else(|| format!("key-{n}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::description::{parse_resource, parse_vm};
    use std::sync::atomic::{AtomicU32, Ordering};

    fn vm(name: &str, ip: &str, id: u64) -> Vm {
        let text = format!(
            "NAME = {name}\nNIC = [ NETWORK = pub, IP = {ip} ]\nCONTEXT = [ NETWORK = \"YES\", SSH_PUBLIC_KEY = \"ssh-ed25519 AAAA alice@example\", USERNAME = alice ]"
        );
        let mut source = parse_vm("vm.one", &text).unwrap();
        source.networks =
            vec![parse_resource("net.one", "NAME = pub\nNETWORK_MASK = 255.255.255.0").unwrap()];
        Vm::instantiate(source, Some(id)).unwrap()
    }

    fn service(imds: Imds) -> MetadataService {
        let counter = AtomicU32::new(0);
        let vms = vec![
            ServedVm::new(&vm("web1", "192.0.2.10", 7), "tok-web1".into()).unwrap(),
            ServedVm::new(&vm("db1", "192.0.2.11", 8), "tok-db1".into()).unwrap(),
        ];
        let new_token =
            Box::new(move || format!("session-{}", counter.fetch_add(1, Ordering::SeqCst)));
        MetadataService::new(vms, imds, None, new_token).unwrap()
    }

    fn web1() -> IpAddr {
        "192.0.2.10".parse().unwrap()
    }

    fn body(response: &Response) -> String {
        String::from_utf8(response.body.clone()).unwrap()
    }

    fn get(service: &MetadataService, path: &str, source: IpAddr) -> Response {
        service
            .handle(&Request::get(path, source), Instant::now())
            .0
    }

    #[test]
    fn nocloud_net_by_address_and_by_token() {
        let s = service(Imds::Optional);
        let by_address = get(&s, "/meta-data", web1());
        assert_eq!(by_address.status, 200);
        assert!(
            body(&by_address).contains("instance-id: one-7"),
            "{}",
            body(&by_address)
        );
        let by_token = get(&s, "/t/tok-db1/meta-data", web1());
        assert!(
            body(&by_token).contains("instance-id: one-8"),
            "the token wins over the address"
        );
        assert!(body(&get(&s, "/user-data", web1())).starts_with("#cloud-config"));
        assert!(body(&get(&s, "/network-config", web1())).contains("192.0.2.10/24"));
        let stranger = get(&s, "/meta-data", "203.0.113.5".parse().unwrap());
        assert_eq!(stranger.status, 404);
        assert_eq!(get(&s, "/t/nope/meta-data", web1()).status, 404);
    }

    #[test]
    fn ec2_tree_and_listings() {
        let s = service(Imds::Optional);
        assert_eq!(
            body(&get(&s, "/latest/meta-data/instance-id", web1())),
            "one-7"
        );
        let listing = body(&get(&s, "/latest/meta-data/", web1()));
        assert!(listing.lines().any(|l| l == "public-keys/"), "{listing}");
        assert!(listing.lines().any(|l| l == "local-hostname"), "{listing}");
        assert_eq!(
            body(&get(&s, "/2009-04-04/meta-data/public-keys/", web1())),
            "0=alice@example"
        );
        assert_eq!(
            body(&get(
                &s,
                "/latest/meta-data/public-keys/0/openssh-key",
                web1()
            )),
            "ssh-ed25519 AAAA alice@example\n"
        );
        let mac = "02:00:c0:00:02:0a";
        assert_eq!(
            body(&get(
                &s,
                &format!("/latest/meta-data/network/interfaces/macs/{mac}/local-ipv4s"),
                web1()
            )),
            "192.0.2.10"
        );
        let document: serde_json::Value = serde_json::from_slice(
            &get(&s, "/latest/dynamic/instance-identity/document", web1()).body,
        )
        .unwrap();
        assert_eq!(document["instanceId"], "one-7");
        assert_eq!(get(&s, "/latest/meta-data/nothing", web1()).status, 404);
    }

    #[test]
    fn imdsv2_sessions() {
        let s = service(Imds::Required);
        let now = Instant::now();
        assert_eq!(get(&s, "/latest/meta-data/instance-id", web1()).status, 401);
        let mut put = Request::get("/latest/api/token", web1());
        put.method = "PUT".into();
        assert_eq!(
            s.handle(&put, now).0.status,
            400,
            "the TTL header is required"
        );
        put.headers
            .push(("x-aws-ec2-metadata-token-ttl-seconds".into(), "60".into()));
        let token = body(&s.handle(&put, now).0);
        let mut forwarded = put.clone();
        forwarded
            .headers
            .push(("x-forwarded-for".into(), "1.2.3.4".into()));
        assert_eq!(s.handle(&forwarded, now).0.status, 403);

        let mut request = Request::get("/latest/meta-data/instance-id", web1());
        request
            .headers
            .push(("x-aws-ec2-metadata-token".into(), token.clone()));
        assert_eq!(body(&s.handle(&request, now).0), "one-7");
        // The session names its VM even from another address.
        request.source = "198.51.100.1".parse().unwrap();
        assert_eq!(body(&s.handle(&request, now).0), "one-7");
        let later = now + Duration::from_secs(61);
        assert_eq!(
            s.handle(&request, later).0.status,
            404,
            "expired: no VM at that address"
        );
        request.source = web1();
        assert_eq!(s.handle(&request, later).0.status, 401, "expired");
        // Another VM's session is refused.
        let mut db_request = Request::get("/t/tok-db1/latest/meta-data/instance-id", web1());
        db_request
            .headers
            .push(("x-aws-ec2-metadata-token".into(), token));
        assert_eq!(s.handle(&db_request, now).0.status, 401);
    }

    #[test]
    fn openstack_files() {
        let s = service(Imds::Optional);
        let meta: serde_json::Value =
            serde_json::from_slice(&get(&s, "/openstack/latest/meta_data.json", web1()).body)
                .unwrap();
        assert_eq!(meta["hostname"], "web1");
        let network = get(&s, "/openstack/2012-08-10/network_data.json", web1());
        assert_eq!(network.content_type, "application/json");
        assert_eq!(
            body(&get(&s, "/openstack/latest/vendor_data.json", web1())),
            "{}\n"
        );
        assert!(body(&get(&s, "/openstack/latest/user_data", web1())).starts_with("#cloud-config"));
    }

    #[test]
    fn ready_reports() {
        let s = service(Imds::Optional);
        let mut put = Request::get("/vm", web1());
        put.method = "PUT".into();
        put.body = b"NOTREADY".to_vec();
        assert_eq!(s.handle(&put, Instant::now()).0.status, 400);
        put.body = b"READY=YES".to_vec();
        put.headers
            .push(("x-onegate-token".into(), "tok-db1".into()));
        put.headers.push(("x-onegate-vmid".into(), "7".into()));
        assert_eq!(
            s.handle(&put, Instant::now()).0.status,
            403,
            "token and VM id disagree"
        );
        put.headers[1].1 = "8".into();
        let (response, event) = s.handle(&put, Instant::now());
        assert_eq!(response.status, 200);
        assert_eq!(
            event,
            Some(Event::Ready {
                id: 8,
                name: "db1".into(),
                data: "READY=YES".into()
            })
        );
        assert!(s.ready_report(8).is_some());
        assert!(s.ready_report(7).is_none());
        let mut phone_home = Request::get("/t/tok-web1/ready", web1());
        phone_home.method = "POST".into();
        phone_home.body = b"instance_id=one-7".to_vec();
        assert_eq!(s.handle(&phone_home, Instant::now()).0.status, 200);
        let status = s.status();
        assert!(status.iter().all(|v| v.ready));
    }

    #[test]
    fn duplicate_tokens_or_addresses_are_refused() {
        let a = ServedVm::new(&vm("a", "192.0.2.10", 1), "t".into()).unwrap();
        let b = ServedVm::new(&vm("b", "192.0.2.11", 2), "t".into()).unwrap();
        let err = MetadataService::new(
            vec![a.clone(), b],
            Imds::Optional,
            None,
            Box::new(String::new),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("token"), "{err}");
        let c = ServedVm::new(&vm("c", "192.0.2.10", 3), "u".into()).unwrap();
        let err = MetadataService::new(vec![a, c], Imds::Optional, None, Box::new(String::new))
            .err()
            .unwrap();
        assert!(err.to_string().contains("192.0.2.10"), "{err}");
    }
}
