//! cloud-init seeds from the same VM: NoCloud (`cidata`: meta-data,
//! user-data, network-config, vendor-data) and OpenStack ConfigDrive
//! (`config-2`: openstack/latest/{meta_data.json, network_data.json, user_data}).

use base64::Engine as _;
use serde::Serialize;
use serde_json::json;

use crate::cloudconfig::{self, CloudConfig};
use crate::error::Result;
use crate::netconfig;
use crate::onecontext::{Variables, context_variables};
use crate::seed::Seed;
use crate::vm::Vm;

/// One part of user-data with its MIME type (`text/cloud-config`, `text/x-shellscript`…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub content_type: String,
    pub filename: String,
    pub body: String,
}

/// cloud-init's content type for a user-data text, by its first line.
pub fn content_type(text: &str) -> &'static str {
    const HEADERS: &[(&str, &str)] = &[
        ("#cloud-config-archive", "text/cloud-config-archive"),
        ("#cloud-config", "text/cloud-config"),
        ("#cloud-boothook", "text/cloud-boothook"),
        ("#include", "text/x-include-url"),
        ("#part-handler", "text/part-handler"),
        ("## template: jinja", "text/jinja2"),
        ("#!", "text/x-shellscript"),
    ];
    HEADERS
        .iter()
        .find(|(header, _)| text.starts_with(header))
        .map_or("text/plain", |(_, t)| t)
}

/// The user-data parts: the translated cloud-config, a USER_DATA that is not
/// cloud-config, and START_SCRIPT(_BASE64) as a shell script.
pub fn user_data_parts(variables: &Variables) -> Result<Vec<Part>> {
    let config = cloudconfig::from_variables(variables)?;
    let mut parts = vec![Part {
        content_type: "text/cloud-config".into(),
        filename: "cloud-config.txt".into(),
        body: config.to_yaml(),
    }];
    if let Some(data) =
        cloudconfig::user_data(variables)?.filter(|d| !cloudconfig::is_cloud_config(d))
    {
        parts.push(Part {
            content_type: content_type(&data).into(),
            filename: "user-data.txt".into(),
            body: data,
        });
    }
    let start_script = match variables
        .get("START_SCRIPT_BASE64")
        .filter(|v| !v.is_empty())
    {
        Some(encoded) => Some(decode(encoded)?),
        None => variables
            .get("START_SCRIPT")
            .filter(|v| !v.is_empty())
            .cloned(),
    };
    if let Some(script) = start_script {
        // one-context runs a script without a shebang with the shell.
        let body = if script.starts_with("#!") {
            script
        } else {
            format!("#!/bin/sh\n{script}")
        };
        parts.push(Part {
            content_type: "text/x-shellscript".into(),
            filename: "start-script.sh".into(),
            body,
        });
    }
    Ok(parts)
}

fn decode(encoded: &str) -> Result<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| crate::Error::Invalid(format!("START_SCRIPT_BASE64 is not base64: {e}")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

const BOUNDARY: &str = "==========kiln-context-boundary==";

/// One part as is, several as MIME multipart/mixed. Bodies are base64 so no
/// value can ever be mistaken for a boundary.
pub fn user_data(parts: &[Part]) -> String {
    if let [only] = parts {
        return only.body.clone();
    }
    let mut out =
        format!("Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\nMIME-Version: 1.0\n\n");
    for part in parts {
        let (media, subtype) = part
            .content_type
            .split_once('/')
            .unwrap_or(("text", "plain"));
        out.push_str(&format!(
            "--{BOUNDARY}\nContent-Type: {media}/{subtype}; charset=\"utf-8\"\nMIME-Version: 1.0\n\
             Content-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"{}\"\n\n",
            part.filename
        ));
        let encoded = base64::engine::general_purpose::STANDARD.encode(&part.body);
        for line in encoded.as_bytes().chunks(76) {
            out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            out.push('\n');
        }
    }
    out.push_str(&format!("--{BOUNDARY}--\n"));
    out
}

/// SET_HOSTNAME, else the VM's name.
fn hostname(vm: &Vm, variables: &Variables) -> String {
    variables
        .get("SET_HOSTNAME")
        .filter(|h| !h.is_empty())
        .cloned()
        .unwrap_or_else(|| vm.name.clone())
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct MetaData {
    instance_id: String,
    local_hostname: String,
}

/// NoCloud's instance-id: stable per VM id, so cloud-init's once-per-instance
/// modules do not run again when the seed is rebuilt.
pub fn instance_id(vm: &Vm) -> String {
    format!("one-{}", vm.id)
}

/// The `cidata` seed.
pub fn nocloud_seed(vm: &Vm) -> Result<Seed> {
    let variables = context_variables(vm)?;
    let meta = MetaData {
        instance_id: instance_id(vm),
        local_hostname: hostname(vm, &variables),
    };
    let network = netconfig::network_config(&netconfig::interfaces_from_variables(&variables)?);
    let vendor_data = variables
        .get("VENDOR_DATA")
        .cloned()
        .unwrap_or_else(|| CloudConfig::default().to_yaml());
    let mut seed = Seed::new("cidata");
    seed.add("meta-data", to_yaml(&meta).into_bytes())?;
    seed.add(
        "user-data",
        user_data(&user_data_parts(&variables)?).into_bytes(),
    )?;
    seed.add("network-config", to_yaml(&network).into_bytes())?;
    seed.add("vendor-data", vendor_data.into_bytes())?;
    Ok(seed)
}

fn to_yaml(value: &impl Serialize) -> String {
    serde_saphyr::to_string(value).expect("plain data always serializes")
}

/// The VM's UUID attribute, else one made from its id.
pub fn uuid(vm: &Vm) -> String {
    vm.template.get("UUID").map_or_else(
        || format!("00000000-0000-4000-8000-{:012x}", vm.id),
        str::to_string,
    )
}

/// The `config-2` seed.
pub fn configdrive_seed(vm: &Vm) -> Result<Seed> {
    let variables = context_variables(vm)?;
    let config = cloudconfig::from_variables(&variables)?;
    let keys = config.users.iter().flat_map(|u| match u {
        cloudconfig::UserEntry::User(user) => user.ssh_authorized_keys.clone(),
        cloudconfig::UserEntry::Named(_) => Vec::new(),
    });
    let public_keys: serde_json::Map<String, serde_json::Value> = keys
        .enumerate()
        .map(|(i, key)| (format!("key-{i}"), json!(key)))
        .collect();
    let meta = json!({
        "uuid": uuid(vm),
        "name": vm.name,
        "hostname": hostname(vm, &variables),
        "launch_index": 0,
        "public_keys": public_keys,
        "meta": {},
    });
    let network = netconfig::network_data(&netconfig::interfaces_from_variables(&variables)?);
    let mut seed = Seed::new("config-2");
    seed.add("openstack/latest/meta_data.json", pretty_json(&meta))?;
    seed.add("openstack/latest/network_data.json", pretty_json(&network))?;
    seed.add(
        "openstack/latest/user_data",
        user_data(&user_data_parts(&variables)?).into_bytes(),
    )?;
    Ok(seed)
}

fn pretty_json(value: &serde_json::Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value).expect("JSON values always serialize");
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::description::{parse_resource, parse_vm};
    use crate::vm::Vm;

    fn vm(context: &str) -> Vm {
        let text = format!(
            "NAME = web1\nNIC = [ NETWORK = pub, IP = 192.0.2.10 ]\nCONTEXT = [ NETWORK = \"YES\", {context} ]"
        );
        let mut source = parse_vm("vm.one", &text).unwrap();
        source.networks = vec![
            parse_resource(
                "net.one",
                "NAME = pub\nNETWORK_MASK = 255.255.255.0\nGATEWAY = 192.0.2.1",
            )
            .unwrap(),
        ];
        Vm::instantiate(source, Some(9)).unwrap()
    }

    fn text(seed: &Seed, path: &str) -> String {
        String::from_utf8(seed.file(path).unwrap().contents.clone()).unwrap()
    }

    #[test]
    fn content_types_follow_the_first_line() {
        assert_eq!(content_type("#cloud-config\n"), "text/cloud-config");
        assert_eq!(
            content_type("#cloud-config-archive\n"),
            "text/cloud-config-archive"
        );
        assert_eq!(content_type("#!/bin/bash\n"), "text/x-shellscript");
        assert_eq!(content_type("#include\nhttp://x\n"), "text/x-include-url");
        assert_eq!(content_type("hello"), "text/plain");
    }

    #[test]
    fn nocloud_files() {
        let seed = nocloud_seed(&vm(
            "SET_HOSTNAME = \"h1\", SSH_PUBLIC_KEY = \"ssh-ed25519 K\"",
        ))
        .unwrap();
        assert_eq!(seed.label, "cidata");
        let meta = text(&seed, "meta-data");
        assert!(
            meta.contains("instance-id: one-9") && meta.contains("local-hostname: h1"),
            "{meta}"
        );
        let user_data = text(&seed, "user-data");
        assert!(
            user_data.starts_with("#cloud-config\n"),
            "one part, no MIME: {user_data}"
        );
        assert!(user_data.contains("ssh-ed25519 K"), "{user_data}");
        let network: netconfig::NetworkConfig =
            serde_saphyr::from_str(&text(&seed, "network-config")).unwrap();
        assert_eq!(network.ethernets["eth0"].addresses, ["192.0.2.10/24"]);
        assert!(text(&seed, "vendor-data").starts_with("#cloud-config"));
    }

    #[test]
    fn start_script_makes_a_multipart_user_data() {
        let script = base64::engine::general_purpose::STANDARD
            .encode("echo '--==========kiln-context-boundary==--'\n");
        let variables =
            context_variables(&vm(&format!("START_SCRIPT_BASE64 = \"{script}\""))).unwrap();
        let parts = user_data_parts(&variables).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[1].body,
            "#!/bin/sh\necho '--==========kiln-context-boundary==--'\n"
        );
        let mime = user_data(&parts);
        assert!(mime.starts_with("Content-Type: multipart/mixed; boundary="));
        assert_eq!(
            mime.matches(&format!("--{BOUNDARY}\n")).count(),
            2,
            "the script's text cannot forge a boundary"
        );
        assert!(mime.ends_with(&format!("--{BOUNDARY}--\n")));
    }

    #[test]
    fn configdrive_files() {
        let seed = configdrive_seed(&vm("SSH_PUBLIC_KEY = \"ssh-ed25519 K\nssh-rsa R\"")).unwrap();
        assert_eq!(seed.label, "config-2");
        let meta: serde_json::Value =
            serde_json::from_str(&text(&seed, "openstack/latest/meta_data.json")).unwrap();
        assert_eq!(meta["uuid"], "00000000-0000-4000-8000-000000000009");
        assert_eq!(meta["hostname"], "web1");
        assert_eq!(
            meta["public_keys"],
            json!({"key-0": "ssh-ed25519 K", "key-1": "ssh-rsa R"})
        );
        let network: serde_json::Value =
            serde_json::from_str(&text(&seed, "openstack/latest/network_data.json")).unwrap();
        assert_eq!(network["networks"][0]["ip_address"], "192.0.2.10");
        assert!(text(&seed, "openstack/latest/user_data").starts_with("#cloud-config"));
    }
}
