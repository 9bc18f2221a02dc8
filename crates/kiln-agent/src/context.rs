//! One context from any source: OpenNebula variables, NoCloud, ConfigDrive
//! or EC2 metadata all become a [`Context`] the steps apply.

use std::collections::BTreeMap;

use base64::Engine as _;
use kiln_context::cloudconfig::{self, CloudConfig};
use kiln_context::netconfig::{self, Interface, NetworkConfig};
use kiln_context::onecontext::{Variables, parse_context_sh};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::userdata;

/// Where a context came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    OpenNebula,
    NoCloud,
    ConfigDrive,
    Ec2,
}

/// A context as found, before interpretation: its files by path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    pub kind: Kind,
    /// A device and its label, or a URL.
    pub origin: String,
    pub files: BTreeMap<String, Vec<u8>>,
    /// The base URL of a kiln metadata service that served it: the ready report goes there.
    pub service: Option<String>,
    /// NoCloud settings from the kernel command line (`i=`, `h=`).
    pub overrides: BTreeMap<String, String>,
}

impl Found {
    fn text(&self, path: &str) -> Option<String> {
        self.files
            .get(path)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// A fingerprint of everything found, to tell a changed context.
    pub fn fingerprint(&self) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for (path, bytes) in &self.files {
            for byte in path
                .bytes()
                .chain([0])
                .chain(bytes.iter().copied())
                .chain([0])
            {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{hash:016x}")
    }
}

/// A script with its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub name: String,
    pub body: Vec<u8>,
}

/// Whom to tell that the VM is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    /// OneGate (and kiln's metadata service): `PUT <endpoint>/vm` with `READY=YES`.
    OneGate {
        endpoint: String,
        token: Option<String>,
        vmid: Option<String>,
    },
    /// cloud-init's phone_home: a form POST to the URL.
    PhoneHome { url: String, fields: Vec<String> },
}

/// Puppet: settings for `[agent]` in puppet.conf, then one agent run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Puppet {
    pub settings: BTreeMap<String, String>,
    pub run: bool,
}

/// chef-solo with a node JSON (run_list and attributes).
#[derive(Debug, Clone, PartialEq)]
pub struct Chef {
    pub node: Value,
    pub run: bool,
}

/// What the steps apply.
#[derive(Debug, Clone)]
pub struct Context {
    pub kind: Kind,
    pub origin: String,
    pub instance_id: String,
    pub hostname: Option<String>,
    pub fqdn: Option<String>,
    /// The cloud-config subset: users, keys, passwords, files, commands, timezone.
    pub config: CloudConfig,
    /// Keys from the metadata (EC2, ConfigDrive, NoCloud meta-data) and the
    /// top-level `ssh_authorized_keys`: they go to the first user, else root.
    pub default_keys: Vec<String>,
    /// Groups to create, with members.
    pub groups: Vec<(String, Vec<String>)>,
    /// `chpasswd` users: (name, password, hashed).
    pub chpasswd: Vec<(String, String, bool)>,
    /// None: leave the network alone (no network settings in the context).
    pub interfaces: Option<Vec<Interface>>,
    /// Scripts run on every boot (START_SCRIPT, INIT_SCRIPTS).
    pub boot_scripts: Vec<Script>,
    /// Scripts run once per instance (shell parts of user-data).
    pub instance_scripts: Vec<Script>,
    /// Variables handed to scripts (OpenNebula's context variables).
    pub env: BTreeMap<String, String>,
    pub grow_root: bool,
    pub ready: Vec<Ready>,
    pub puppet: Option<Puppet>,
    pub chef: Option<Chef>,
    /// What could not be read; the rest still applies.
    pub warnings: Vec<String>,
}

impl Context {
    fn new(found: &Found, instance_id: String) -> Context {
        Context {
            kind: found.kind,
            origin: found.origin.clone(),
            instance_id,
            hostname: None,
            fqdn: None,
            config: CloudConfig::default(),
            default_keys: Vec::new(),
            groups: Vec::new(),
            chpasswd: Vec::new(),
            interfaces: None,
            boot_scripts: Vec::new(),
            instance_scripts: Vec::new(),
            env: BTreeMap::new(),
            grow_root: true,
            ready: Vec::new(),
            puppet: None,
            chef: None,
            warnings: Vec::new(),
        }
    }

    /// Whether the final stage has anything to do: deferred files, runcmd,
    /// scripts, configuration management or a ready report. When it has
    /// not, the local stage says so and systemd never starts it. Each final
    /// step skips on the same fields (a test in `steps` holds them together).
    pub fn needs_final_stage(&self) -> bool {
        self.config
            .write_files
            .iter()
            .any(|f| f.defer == Some(true))
            || !self.config.runcmd.is_empty()
            || !self.instance_scripts.is_empty()
            || !self.boot_scripts.is_empty()
            || self.puppet.is_some()
            || self.chef.is_some()
            || !self.ready.is_empty()
    }

    /// The user the default keys go to: the first named user, else root.
    pub fn default_user(&self) -> String {
        self.config
            .named_users()
            .next()
            .map_or_else(|| "root".into(), |u| u.name.clone())
    }
}

/// Interprets what was found. Fails only when the context cannot be read
/// at all (no instance id, an unreadable context.sh).
pub fn interpret(found: &Found) -> Result<Context, String> {
    let mut context = match found.kind {
        Kind::OpenNebula => opennebula(found)?,
        Kind::NoCloud => nocloud(found)?,
        Kind::ConfigDrive => configdrive(found)?,
        Kind::Ec2 => ec2(found)?,
    };
    if let Some(service) = &found.service {
        context.ready.push(Ready::OneGate {
            endpoint: service.trim_end_matches('/').to_string(),
            token: None,
            vmid: None,
        });
    }
    Ok(context)
}

fn fnv(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

fn non_empty<'a>(variables: &'a Variables, name: &str) -> Option<&'a str> {
    variables
        .get(name)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
}

fn yes(variables: &Variables, name: &str, default: bool) -> bool {
    non_empty(variables, name).map_or(default, |v| v.eq_ignore_ascii_case("YES"))
}

/// one-context's hostname rule: characters outside `[-a-zA-Z0-9.]` become `-`.
fn sanitize_hostname(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn opennebula(found: &Found) -> Result<Context, String> {
    let text = found
        .text("context.sh")
        .ok_or("the CONTEXT device holds no context.sh")?;
    let variables = parse_context_sh(&text).map_err(|e| e.to_string())?;
    let instance_id = match non_empty(&variables, "VMID") {
        Some(id) => format!("one-{id}"),
        None => format!("one-{}", fnv(text.as_bytes())),
    };
    let mut context = Context::new(found, instance_id);
    context.env = variables.clone();
    // USER_DATA is read below as a whole cloud-config, not only its files and commands.
    let mut without_user_data = variables.clone();
    for name in ["USER_DATA", "USERDATA"] {
        without_user_data.remove(name);
    }
    if let Some(host) = non_empty(&variables, "SET_HOSTNAME") {
        without_user_data.insert("SET_HOSTNAME".into(), sanitize_hostname(host));
    }
    let mut merged =
        to_value(&cloudconfig::from_variables(&without_user_data).map_err(|e| e.to_string())?);
    match cloudconfig::user_data(&variables) {
        Ok(Some(data)) => add_user_data(&mut context, &mut merged, data.as_bytes()),
        Ok(None) => {}
        Err(e) => context.warnings.push(e.to_string()),
    }
    finish_config(&mut context, merged);
    context.interfaces = match netconfig::interfaces_from_variables(&variables) {
        Ok(interfaces) if !interfaces.is_empty() => Some(interfaces),
        Ok(_) => None,
        Err(e) => {
            context.warnings.push(format!("network: {e}"));
            None
        }
    };
    let start = match non_empty(&variables, "START_SCRIPT_BASE64") {
        Some(encoded) => match base64::engine::general_purpose::STANDARD.decode(encoded) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                context
                    .warnings
                    .push(format!("START_SCRIPT_BASE64 is not base64: {e}"));
                None
            }
        },
        None => variables
            .get("START_SCRIPT")
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.clone().into_bytes()),
    };
    if let Some(body) = start {
        context.boot_scripts.push(Script {
            name: "start-script".into(),
            body,
        });
    }
    let init_scripts: Vec<String> = match non_empty(&variables, "INIT_SCRIPTS") {
        Some(names) => names.split_whitespace().map(str::to_string).collect(),
        None if found.files.contains_key("init.sh") => vec!["init.sh".into()],
        None => Vec::new(),
    };
    for name in init_scripts {
        match found.files.get(&name) {
            Some(body) => context.boot_scripts.push(Script {
                name,
                body: body.clone(),
            }),
            None => context.warnings.push(format!(
                "INIT_SCRIPTS names {name}, which is not on the CONTEXT device"
            )),
        }
    }
    context.grow_root = yes(&variables, "GROW_ROOTFS", true);
    if yes(&variables, "REPORT_READY", false) {
        match non_empty(&variables, "ONEGATE_ENDPOINT") {
            Some(endpoint) => context.ready.push(Ready::OneGate {
                endpoint: endpoint.trim_end_matches('/').to_string(),
                token: non_empty(&variables, "ONEGATE_TOKEN")
                    .map(str::to_string)
                    .or_else(|| found.text("token.txt").map(|t| t.trim().to_string())),
                vmid: non_empty(&variables, "VMID").map(str::to_string),
            }),
            None => context
                .warnings
                .push("REPORT_READY=YES without ONEGATE_ENDPOINT".into()),
        }
    }
    if let Some(server) = non_empty(&variables, "PUPPET_SERVER") {
        let mut settings = BTreeMap::from([("server".to_string(), server.to_string())]);
        for (name, key) in [
            ("PUPPET_CERTNAME", "certname"),
            ("PUPPET_ENVIRONMENT", "environment"),
        ] {
            if let Some(value) = non_empty(&variables, name) {
                settings.insert(key.into(), value.into());
            }
        }
        context.puppet = Some(Puppet {
            settings,
            run: true,
        });
    }
    if let Some(run_list) = non_empty(&variables, "CHEF_RUN_LIST") {
        let list: Vec<&str> = run_list
            .split([',', ' ', '\n'])
            .filter(|r| !r.is_empty())
            .collect();
        let mut node = match non_empty(&variables, "CHEF_ATTRIBUTES") {
            Some(json) => serde_json::from_str(json).unwrap_or_else(|e| {
                context
                    .warnings
                    .push(format!("CHEF_ATTRIBUTES is not JSON: {e}"));
                serde_json::json!({})
            }),
            None => serde_json::json!({}),
        };
        if node.is_object() {
            node["run_list"] = serde_json::json!(list);
            context.chef = Some(Chef { node, run: true });
        } else {
            context
                .warnings
                .push("CHEF_ATTRIBUTES is not a JSON object".into());
        }
    }
    Ok(context)
}

fn to_value(config: &CloudConfig) -> Value {
    serde_json::to_value(config).expect("plain data serializes")
}

/// Keys whose lists add up across parts, as cloud-init's list merging does.
const APPENDED: &[&str] = &[
    "users",
    "groups",
    "write_files",
    "runcmd",
    "ssh_authorized_keys",
    "bootcmd",
];

fn merge(into: &mut Value, part: Value) {
    let (Value::Object(into), Value::Object(part)) = (into, part) else {
        return;
    };
    for (key, value) in part {
        match (into.get_mut(&key), value) {
            (Some(Value::Array(existing)), Value::Array(more))
                if APPENDED.contains(&key.as_str()) =>
            {
                existing.extend(more)
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// Adds a user-data (or vendor-data) text: cloud-configs merge into `merged`,
/// scripts run once per instance.
fn add_user_data(context: &mut Context, merged: &mut Value, bytes: &[u8]) {
    let data = match userdata::parse(bytes) {
        Ok(data) => data,
        Err(e) => {
            context.warnings.push(e);
            return;
        }
    };
    for config in data.configs {
        match serde_saphyr::from_str::<Value>(&config) {
            Ok(value @ Value::Object(_)) => merge(merged, value),
            Ok(Value::Null) => {}
            Ok(_) => context
                .warnings
                .push("cloud-config: expected a map at the top".into()),
            Err(e) => context.warnings.push(format!(
                "cloud-config: {}",
                e.to_string().lines().next().unwrap_or_default()
            )),
        }
    }
    for (name, body) in data.scripts {
        context.instance_scripts.push(Script { name, body });
    }
    for kind in data.ignored {
        context
            .warnings
            .push(format!("user-data part of type {kind} is not handled"));
    }
}

/// Reads the merged cloud-config into the context.
fn finish_config(context: &mut Context, merged: Value) {
    let config: CloudConfig = match serde_json::from_value(merged.clone()) {
        Ok(config) => config,
        Err(e) => {
            context.warnings.push(format!("cloud-config: {e}"));
            CloudConfig::default()
        }
    };
    if let Some(fqdn) = &config.fqdn {
        context.fqdn = Some(fqdn.clone());
    }
    if let Some(host) = &config.hostname {
        context.hostname = Some(host.clone());
    }
    context
        .default_keys
        .extend(config.ssh_authorized_keys.iter().cloned());
    context.config = config;
    let text = |v: &Value| v.as_str().map(str::to_string);
    // groups: [name, {name: [members]}]
    if let Some(groups) = merged.get("groups") {
        let items: Vec<Value> = match groups {
            Value::Array(items) => items.clone(),
            Value::Object(_) => vec![groups.clone()],
            Value::String(s) => s
                .split(',')
                .map(|g| Value::String(g.trim().into()))
                .collect(),
            _ => Vec::new(),
        };
        for item in items {
            match item {
                Value::String(name) if !name.is_empty() => context.groups.push((name, Vec::new())),
                Value::Object(map) => {
                    for (name, members) in map {
                        let members = match members {
                            Value::Array(list) => list.iter().filter_map(text).collect(),
                            Value::String(s) => {
                                s.split(',').map(|m| m.trim().to_string()).collect()
                            }
                            _ => Vec::new(),
                        };
                        context.groups.push((name, members));
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(users) = merged.pointer("/chpasswd/users").and_then(Value::as_array) {
        for user in users {
            if let (Some(name), Some(password)) = (
                user.get("name").and_then(text),
                user.get("password").and_then(text),
            ) {
                let hashed = user.get("type").and_then(Value::as_str) == Some("hash");
                context.chpasswd.push((name, password, hashed));
            }
        }
    }
    if merged.pointer("/growpart/mode").and_then(Value::as_str) == Some("off")
        || merged.pointer("/growpart/mode") == Some(&Value::Bool(false))
        || merged.get("resize_rootfs") == Some(&Value::Bool(false))
    {
        context.grow_root = false;
    }
    if let Some(url) = merged.pointer("/phone_home/url").and_then(text) {
        let fields = match merged.pointer("/phone_home/post") {
            Some(Value::Array(list)) => list.iter().filter_map(text).collect(),
            _ => vec!["instance_id".into(), "hostname".into(), "fqdn".into()],
        };
        context.ready.push(Ready::PhoneHome { url, fields });
    }
    if let Some(puppet) = merged.get("puppet").filter(|p| p.is_object()) {
        let settings = puppet
            .pointer("/conf/agent")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), text(v).unwrap_or_else(|| v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let run = puppet.get("exec").and_then(Value::as_bool).unwrap_or(true);
        context.puppet = Some(Puppet { settings, run });
    }
    if let Some(chef) = merged.get("chef").filter(|c| c.is_object()) {
        let mut node = chef
            .get("initial_attributes")
            .cloned()
            .filter(Value::is_object)
            .unwrap_or(serde_json::json!({}));
        node["run_list"] = chef
            .get("run_list")
            .cloned()
            .unwrap_or(serde_json::json!([]));
        let run = chef.get("exec").and_then(Value::as_bool).unwrap_or(true);
        context.chef = Some(Chef { node, run });
    }
}

/// NoCloud meta-data (YAML; also JSON) as a map.
fn meta_data(text: &str) -> Result<Value, String> {
    match serde_saphyr::from_str::<Value>(text) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(Value::Null) => Ok(serde_json::json!({})),
        Ok(_) => Err("meta-data: expected a map".into()),
        Err(e) => Err(format!(
            "meta-data: {}",
            e.to_string().lines().next().unwrap_or_default()
        )),
    }
}

/// `public-keys` of meta-data: a key, a list, or a map of names to keys.
fn public_keys(value: Option<&Value>) -> Vec<String> {
    let mut keys = Vec::new();
    let mut add = |v: &Value| match v {
        Value::String(s) => keys.extend(
            s.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        ),
        Value::Array(list) => {
            keys.extend(list.iter().filter_map(Value::as_str).map(str::to_string))
        }
        _ => {}
    };
    match value {
        Some(Value::Object(map)) => map.values().for_each(&mut add),
        Some(other) => add(other),
        None => {}
    }
    keys
}

fn nocloud(found: &Found) -> Result<Context, String> {
    let meta = meta_data(&found.text("meta-data").unwrap_or_default())?;
    let instance_id = found
        .overrides
        .get("instance-id")
        .cloned()
        .or_else(|| {
            meta.get("instance-id").and_then(|v| {
                v.as_str()
                    .map(str::to_string)
                    .or_else(|| v.as_u64().map(|n| n.to_string()))
            })
        })
        .ok_or("NoCloud meta-data has no instance-id")?;
    let mut context = Context::new(found, instance_id);
    context.hostname = found.overrides.get("local-hostname").cloned().or_else(|| {
        meta.get("local-hostname")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    context.default_keys = public_keys(meta.get("public-keys"));
    let mut merged = serde_json::json!({});
    for name in ["vendor-data", "user-data"] {
        if let Some(bytes) = found.files.get(name) {
            add_user_data(&mut context, &mut merged, bytes);
        }
    }
    finish_config(&mut context, merged);
    if let Some(text) = found
        .text("network-config")
        .filter(|t| !t.trim().is_empty())
    {
        context.interfaces = match NetworkConfig::parse(&text)
            .and_then(|c| netconfig::interfaces_from_network_config(&c))
        {
            Ok(interfaces) => Some(interfaces),
            Err(e) => {
                context.warnings.push(e.to_string());
                None
            }
        };
    }
    Ok(context)
}

fn configdrive(found: &Found) -> Result<Context, String> {
    let meta: Value = serde_json::from_str(
        &found
            .text("openstack/latest/meta_data.json")
            .unwrap_or_default(),
    )
    .map_err(|e| format!("meta_data.json: {e}"))?;
    let instance_id = meta
        .get("uuid")
        .and_then(Value::as_str)
        .ok_or("meta_data.json has no uuid")?
        .to_string();
    let mut context = Context::new(found, instance_id);
    context.hostname = meta
        .get("hostname")
        .or_else(|| meta.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string);
    context.default_keys = public_keys(meta.get("public_keys"));
    let mut merged = serde_json::json!({});
    if let Some(bytes) = found.files.get("openstack/latest/user_data") {
        add_user_data(&mut context, &mut merged, bytes);
    }
    finish_config(&mut context, merged);
    if let Some(text) = found.text("openstack/latest/network_data.json") {
        let interfaces = serde_json::from_str::<Value>(&text)
            .map_err(|e| format!("network_data.json: {e}"))
            .and_then(|v| netconfig::interfaces_from_network_data(&v).map_err(|e| e.to_string()));
        match interfaces {
            Ok(interfaces) if !interfaces.is_empty() => context.interfaces = Some(interfaces),
            Ok(_) => {}
            Err(e) => context.warnings.push(e),
        }
    }
    Ok(context)
}

fn ec2(found: &Found) -> Result<Context, String> {
    let instance_id = found
        .text("meta-data/instance-id")
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .ok_or("EC2 metadata has no instance-id")?;
    let mut context = Context::new(found, instance_id);
    context.hostname = found
        .text("meta-data/local-hostname")
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty());
    context.default_keys = found
        .text("meta-data/public-keys")
        .map(|t| {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let mut merged = serde_json::json!({});
    if let Some(bytes) = found.files.get("user-data") {
        add_user_data(&mut context, &mut merged, bytes);
    }
    finish_config(&mut context, merged);
    Ok(context)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_context::cloudconfig::UserEntry;

    fn found(kind: Kind, files: &[(&str, &str)]) -> Found {
        Found {
            kind,
            origin: "test".into(),
            files: files
                .iter()
                .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
                .collect(),
            service: None,
            overrides: BTreeMap::new(),
        }
    }

    #[test]
    fn opennebula_variables() {
        let sh = "# Context variables generated by OpenNebula\nVMID='4'\nSET_HOSTNAME='web_1.example.org'\nUSERNAME='alice'\nSSH_PUBLIC_KEY='ssh-ed25519 K alice'\nPASSWORD='it'\\''s'\nSTART_SCRIPT='echo \"$(id)\" > /tmp/x\n'\nETH0_MAC='02:00:0a:00:00:05'\nETH0_IP='10.0.0.5'\nREPORT_READY='YES'\nONEGATE_ENDPOINT='http://169.254.16.9:5030/'\nTIMEZONE='Europe/Madrid'\nGROW_ROOTFS='NO'\n";
        let context = interpret(&found(
            Kind::OpenNebula,
            &[("context.sh", sh), ("init.sh", "#!/bin/sh\n")],
        ))
        .unwrap();
        assert_eq!(context.instance_id, "one-4");
        assert_eq!(context.hostname.as_deref(), Some("web-1"));
        assert_eq!(context.fqdn.as_deref(), Some("web-1.example.org"));
        assert_eq!(context.default_user(), "alice");
        assert_eq!(context.config.timezone.as_deref(), Some("Europe/Madrid"));
        assert_eq!(
            context.boot_scripts.len(),
            2,
            "START_SCRIPT and the default init.sh"
        );
        assert_eq!(context.boot_scripts[0].body, b"echo \"$(id)\" > /tmp/x\n");
        assert_eq!(
            context.interfaces.as_ref().unwrap()[0].ipv4[0]
                .0
                .to_string(),
            "10.0.0.5"
        );
        assert!(!context.grow_root);
        assert_eq!(
            context.ready,
            [Ready::OneGate {
                endpoint: "http://169.254.16.9:5030".into(),
                token: None,
                vmid: Some("4".into())
            }]
        );
        let UserEntry::User(alice) = &context.config.users[0] else {
            panic!()
        };
        assert_eq!(alice.plain_text_passwd.as_deref(), Some("it's"));
    }

    #[test]
    fn nocloud_merges_vendor_and_user_data() {
        let context = interpret(&found(
            Kind::NoCloud,
            &[
                ("meta-data", "instance-id: i-1\nlocal-hostname: meta\npublic-keys: [ssh-rsa M]\n"),
                ("vendor-data", "#cloud-config\nruncmd: [vendor]\ntimezone: UTC\n"),
                ("user-data", "#cloud-config\nhostname: user\nruncmd: [user]\ngroups: [ops, {dev: [alice]}]\nchpasswd: {users: [{name: bob, password: x}]}\nphone_home: {url: 'http://h/ready', post: [instance_id]}\n"),
                ("network-config", "version: 2\nethernets:\n  e:\n    match: {macaddress: 'AA:BB:CC:00:00:01'}\n    dhcp4: true\n"),
            ],
        ))
        .unwrap();
        assert_eq!(context.instance_id, "i-1");
        assert_eq!(
            context.hostname.as_deref(),
            Some("user"),
            "cloud-config wins over meta-data"
        );
        assert_eq!(context.config.runcmd.len(), 2);
        assert_eq!(context.config.timezone.as_deref(), Some("UTC"));
        assert_eq!(context.default_keys, ["ssh-rsa M"]);
        assert_eq!(
            context.groups,
            [
                ("ops".to_string(), vec![]),
                ("dev".to_string(), vec!["alice".to_string()])
            ]
        );
        assert_eq!(
            context.chpasswd,
            [("bob".to_string(), "x".to_string(), false)]
        );
        assert!(context.interfaces.as_ref().unwrap()[0].dhcp4);
        assert_eq!(
            context.ready,
            [Ready::PhoneHome {
                url: "http://h/ready".into(),
                fields: vec!["instance_id".into()]
            }]
        );
        assert!(context.warnings.is_empty(), "{:?}", context.warnings);
    }

    #[test]
    fn bad_parts_are_warnings_and_the_rest_applies() {
        let context = interpret(&found(
            Kind::NoCloud,
            &[
                ("meta-data", "instance-id: i-2\n"),
                ("user-data", "#cloud-config\n: [\n"),
                ("network-config", "version: 1\nconfig: []\n"),
            ],
        ))
        .unwrap();
        assert_eq!(context.warnings.len(), 2, "{:?}", context.warnings);
        assert!(
            interpret(&found(
                Kind::NoCloud,
                &[("meta-data", "local-hostname: x\n")]
            ))
            .is_err()
        );
    }
}
