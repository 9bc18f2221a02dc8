//! Reads VM descriptions, networks, images and users, in kiln's YAML/JSON or
//! in OpenNebula's template syntax (see docs/context.md for both).
//!
//! The YAML form maps onto the same [`Template`] model: scalars become single
//! attributes, maps become vectors, lists of maps repeated vectors, lists of
//! scalars one space-separated value; `true`/`false` become `YES`/`NO`. Outside
//! `context`, friendly keys are translated (`nics` → NIC, `mask` → NETWORK_MASK…).

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Position, Result, SyntaxError};
use crate::template::{self, Attribute, Template, Vector};
use crate::vm::{Resource, VmSource};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    OpenNebula,
    Yaml,
}

/// By extension (`.yaml`, `.yml`, `.json` / `.one`, `.tmpl`, `.tpl`), else by
/// the first line that is neither blank nor a comment: `NAME =` is OpenNebula.
pub fn detect_syntax(origin: &str, text: &str) -> Syntax {
    let extension = Path::new(origin)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("yaml" | "yml" | "json") => return Syntax::Yaml,
        Some("one" | "tmpl" | "tpl") => return Syntax::OpenNebula,
        _ => {}
    }
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    let name_len = first
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .count();
    if name_len > 0 && first[name_len..].trim_start().starts_with('=') {
        Syntax::OpenNebula
    } else {
        Syntax::Yaml
    }
}

/// A VM description. In YAML it may carry `networks`, `images` and `owner`
/// beside the VM; OpenNebula's syntax holds only the VM.
pub fn parse_vm(origin: &str, text: &str) -> Result<VmSource> {
    match detect_syntax(origin, text) {
        Syntax::OpenNebula => Ok(VmSource {
            template: parse_one(origin, text)?,
            ..VmSource::default()
        }),
        Syntax::Yaml => {
            let Value::Object(mut map) = parse_yaml(origin, text)? else {
                return Err(invalid(origin, "", "expected a map of VM attributes"));
            };
            let mut resources = |key: &str| -> Result<Vec<Resource>> {
                match map.remove(key) {
                    None | Some(Value::Null) => Ok(Vec::new()),
                    Some(Value::Array(items)) => items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| resource_from_value(origin, &format!("{key}[{i}]"), item))
                        .collect(),
                    Some(_) => Err(invalid(origin, key, "expected a list")),
                }
            };
            let networks = resources("networks")?;
            let images = resources("images")?;
            let owner = map
                .remove("owner")
                .map(|v| resource_from_value(origin, "owner", &v))
                .transpose()?;
            let template = template_from_map(origin, "", &map)?;
            Ok(VmSource {
                template,
                networks,
                images,
                owner,
            })
        }
    }
}

/// A network, image or user file (`--network`, `--image`, `--user`).
pub fn parse_resource(origin: &str, text: &str) -> Result<Resource> {
    match detect_syntax(origin, text) {
        Syntax::OpenNebula => Resource::from_template(origin, parse_one(origin, text)?),
        Syntax::Yaml => resource_from_value(origin, "", &parse_yaml(origin, text)?),
    }
}

fn parse_one(origin: &str, text: &str) -> Result<Template> {
    template::parse(text).map_err(|e| Error::syntax(origin, e))
}

fn parse_yaml(origin: &str, text: &str) -> Result<Value> {
    serde_saphyr::from_str::<Value>(text).map_err(|e| {
        let position = e
            .location()
            .map_or(Position { line: 1, column: 1 }, |l| Position {
                line: l.line() as usize,
                column: l.column() as usize,
            });
        let message = e
            .to_string()
            .lines()
            .next()
            .unwrap_or("invalid YAML")
            .to_string();
        Error::syntax(origin, SyntaxError { position, message })
    })
}

fn invalid(origin: &str, path: &str, message: &str) -> Error {
    let at = if path.is_empty() {
        String::new()
    } else {
        format!(" {path}:")
    };
    Error::Invalid(format!("{origin}:{at} {message}"))
}

fn resource_from_value(origin: &str, path: &str, value: &Value) -> Result<Resource> {
    let Value::Object(map) = value else {
        return Err(invalid(origin, path, "expected a map of attributes"));
    };
    Resource::from_template(origin, template_from_map(origin, path, map)?)
}

/// kiln's friendly YAML keys and the OpenNebula attributes they stand for.
const KEY_ALIASES: &[(&str, &str)] = &[
    ("nics", "NIC"),
    ("nic_aliases", "NIC_ALIAS"),
    ("disks", "DISK"),
    ("address_ranges", "AR"),
    ("mask", "NETWORK_MASK"),
    ("mtu", "GUEST_MTU"),
    ("ip6_gateway", "GATEWAY6"),
    ("ip6_prefix_length", "PREFIX_LENGTH"),
];

/// The OpenNebula name of a YAML key; inside CONTEXT names are only upper-cased.
fn attribute_name(key: &str, in_context: bool) -> String {
    let lower = key.to_ascii_lowercase().replace('-', "_");
    let alias = KEY_ALIASES.iter().find(|(k, _)| !in_context && *k == lower);
    alias.map_or_else(|| lower.to_ascii_uppercase(), |(_, name)| name.to_string())
}

fn template_from_map(
    origin: &str,
    path: &str,
    map: &serde_json::Map<String, Value>,
) -> Result<Template> {
    let mut template = Template::default();
    for (key, value) in map {
        let name = attribute_name(key, false);
        let here = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match value {
            Value::Object(inner) => template.push_vector(
                &name,
                vector_from_map(origin, &here, inner, name == "CONTEXT")?,
            ),
            Value::Array(items) if items.iter().any(Value::is_object) => {
                for (i, item) in items.iter().enumerate() {
                    let Value::Object(inner) = item else {
                        return Err(invalid(
                            origin,
                            &format!("{here}[{i}]"),
                            "expected a map like the other items",
                        ));
                    };
                    template.push_vector(
                        &name,
                        vector_from_map(origin, &format!("{here}[{i}]"), inner, false)?,
                    );
                }
            }
            scalar => template.attributes.push(Attribute::Single {
                name,
                value: scalar_text(origin, &here, scalar)?,
            }),
        }
    }
    Ok(template)
}

fn vector_from_map(
    origin: &str,
    path: &str,
    map: &serde_json::Map<String, Value>,
    in_context: bool,
) -> Result<Vector> {
    map.iter()
        .map(|(key, value)| {
            Ok((
                attribute_name(key, in_context),
                scalar_text(origin, &format!("{path}.{key}"), value)?,
            ))
        })
        .collect()
}

/// A scalar as OpenNebula text; a list of scalars is joined with spaces (DNS).
fn scalar_text(origin: &str, path: &str, value: &Value) -> Result<String> {
    match value {
        Value::Null => Ok(String::new()),
        Value::Bool(true) => Ok("YES".into()),
        Value::Bool(false) => Ok("NO".into()),
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(items) => {
            let parts: Result<Vec<String>> = items
                .iter()
                .map(|item| scalar_text(origin, path, item))
                .collect();
            Ok(parts?.join(" "))
        }
        Value::Object(_) => Err(invalid(origin, path, "expected a value, found a map")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_syntax_by_extension_then_content() {
        assert_eq!(detect_syntax("vm.yaml", "NAME = x"), Syntax::Yaml);
        assert_eq!(detect_syntax("vm.one", "name: x"), Syntax::OpenNebula);
        assert_eq!(
            detect_syntax("vm", "# comment\n\nNAME = \"x\""),
            Syntax::OpenNebula
        );
        assert_eq!(detect_syntax("vm", "name: x\n"), Syntax::Yaml);
        assert_eq!(detect_syntax("vm", "{\"name\": \"x\"}"), Syntax::Yaml);
    }

    const YAML_VM: &str = r#"
name: web1
id: 7
memory: 512
nics:
  - network: public
    ip: 192.0.2.10
disks:
  - image: debian
context:
  network: true
  ssh_public_key: $USER[SSH_PUBLIC_KEY]
  mtu: "kept as MTU inside context"
networks:
  - name: public
    mask: 255.255.255.0
    dns: [192.0.2.53, 192.0.2.54]
    mtu: 1500
    address_ranges:
      - {type: IP4, ip: 192.0.2.2, size: 100}
images:
  - {name: debian, id: 3}
owner:
  name: alice
  id: 5
  ssh_public_key: ssh-ed25519 AAAA alice
"#;

    #[test]
    fn yaml_vm_maps_onto_templates() {
        let source = parse_vm("vm.yaml", YAML_VM).unwrap();
        let t = &source.template;
        assert_eq!(
            (t.get("NAME"), t.get("ID"), t.get("MEMORY")),
            (Some("web1"), Some("7"), Some("512"))
        );
        let nic = t.vectors("NIC").next().unwrap();
        assert_eq!(
            (nic["NETWORK"].as_str(), nic["IP"].as_str()),
            ("public", "192.0.2.10")
        );
        let context = t.vectors("CONTEXT").next().unwrap();
        assert_eq!(context["NETWORK"], "YES");
        assert_eq!(context["SSH_PUBLIC_KEY"], "$USER[SSH_PUBLIC_KEY]");
        assert_eq!(context["MTU"], "kept as MTU inside context");
        let net = &source.networks[0];
        assert_eq!((net.name.as_str(), net.id), ("public", None));
        assert_eq!(net.template.get("NETWORK_MASK"), Some("255.255.255.0"));
        assert_eq!(net.template.get("DNS"), Some("192.0.2.53 192.0.2.54"));
        assert_eq!(net.template.get("GUEST_MTU"), Some("1500"));
        assert_eq!(net.template.vectors("AR").next().unwrap()["SIZE"], "100");
        assert_eq!(source.images[0].id, Some(3));
        let owner = source.owner.unwrap();
        assert_eq!((owner.name.as_str(), owner.id), ("alice", Some(5)));
        assert_eq!(
            owner.template.get("SSH_PUBLIC_KEY"),
            Some("ssh-ed25519 AAAA alice")
        );
    }

    #[test]
    fn json_is_accepted_too() {
        let source = parse_vm("vm.json", r#"{"name": "j", "context": {"A": "1"}}"#).unwrap();
        assert_eq!(source.template.get("NAME"), Some("j"));
        assert_eq!(source.template.vectors("CONTEXT").next().unwrap()["A"], "1");
    }

    #[test]
    fn opennebula_resources_and_errors() {
        let net = parse_resource("net.one", "NAME = public\nID = 4\nGATEWAY = 10.0.0.1").unwrap();
        assert_eq!((net.name.as_str(), net.id), ("public", Some(4)));
        let err = parse_vm("vm.one", "NAME = x\nNIC = [ IP = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("vm.one:3:1: "), "{err}");
        let err = parse_resource("net.one", "ID = four")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ID \"four\" is not a number"), "{err}");
    }

    #[test]
    fn yaml_errors_name_position_or_path() {
        let err = parse_vm("vm.yaml", "name: x\nnics: [\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("vm.yaml:"), "{err}");
        assert!(matches!(
            parse_vm("vm.yaml", "name: x\nnics: [\n"),
            Err(Error::Syntax { .. })
        ));
        let err = parse_vm("vm.yaml", "context: {a: {b: c}}")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("context.a: expected a value, found a map"),
            "{err}"
        );
    }
}
