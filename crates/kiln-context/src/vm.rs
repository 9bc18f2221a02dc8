//! A VM as oned sees it once created: its template with NIC, DISK and CONTEXT
//! vectors filled in, its owner, and the networks and images it uses.
//! [`Vm`] answers the substitution language's lookups.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use base64::Engine as _;

use crate::error::{Error, Result};
use crate::subst::{Filter, Lookup};
use crate::template::{Attribute, Template, Vector};

/// A network, an image or a user: an id, a name and its template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub id: Option<u64>,
    pub name: String,
    pub template: Template,
}

impl Resource {
    /// Takes `ID` and `NAME` from the template; they stay in it too.
    pub fn from_template(origin: &str, template: Template) -> Result<Resource> {
        let id = match template.get("ID") {
            None | Some("") => None,
            Some(id) => Some(
                id.trim()
                    .parse()
                    .map_err(|_| Error::Invalid(format!("{origin}: ID {id:?} is not a number")))?,
            ),
        };
        let name = template.get("NAME").unwrap_or_default().to_string();
        Ok(Resource { id, name, template })
    }

    fn id_or_zero(&self) -> u64 {
        self.id.unwrap_or(0)
    }
}

/// What a VM description file holds before oned-style instantiation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmSource {
    pub template: Template,
    pub networks: Vec<Resource>,
    pub images: Vec<Resource>,
    pub owner: Option<Resource>,
}

/// An instantiated VM. Every NIC has NIC_ID, NETWORK/NETWORK_ID (when it uses
/// a network), AR_ID (when the network has address ranges) and a MAC; every
/// DISK has DISK_ID; CONTEXT has DISK_ID and TARGET for the context CD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vm {
    pub id: u64,
    pub name: String,
    pub owner: Resource,
    pub template: Template,
    pub networks: Vec<Resource>,
    pub images: Vec<Resource>,
}

/// The owner when none is given: OpenNebula's administrator.
fn default_owner() -> Resource {
    let mut template = Template::default();
    template.set("ID", "0");
    template.set("NAME", "oneadmin");
    Resource {
        id: Some(0),
        name: "oneadmin".into(),
        template,
    }
}

impl Vm {
    /// Does what oned does when it creates the VM; `vmid` overrides the
    /// description's `ID`.
    pub fn instantiate(source: VmSource, vmid: Option<u64>) -> Result<Vm> {
        let VmSource {
            mut template,
            mut networks,
            mut images,
            owner,
        } = source;
        let id = match vmid {
            Some(id) => id,
            None => Resource::from_template("VM", template.clone())?
                .id
                .unwrap_or(0),
        };
        let name = template
            .get("NAME")
            .map_or_else(|| format!("one-{id}"), str::to_string);
        assign_missing_ids(&mut networks);
        assign_missing_ids(&mut images);
        number_address_ranges(&mut networks);
        fill_nics(&mut template, &networks)?;
        fill_disks(&mut template, &images)?;
        fill_context_disk(&mut template);
        let owner = owner.unwrap_or_else(default_owner);
        Ok(Vm {
            id,
            name,
            owner,
            template,
            networks,
            images,
        })
    }

    pub fn context(&self) -> Option<&Vector> {
        self.template.vectors("CONTEXT").next()
    }

    fn network(&self, id: &str) -> Option<&Resource> {
        self.networks
            .iter()
            .find(|n| n.id_or_zero().to_string() == id)
    }

    fn image(&self, id: &str) -> Option<&Resource> {
        self.images
            .iter()
            .find(|i| i.id_or_zero().to_string() == id)
    }

    fn owner_field(&self, name: &str) -> String {
        self.owner
            .template
            .get(name)
            .unwrap_or_default()
            .to_string()
    }

    /// `$NETWORK[ATTR, NETWORK_ID=n | NETWORK="name" | NIC_ID=n]`: the address
    /// range of the matching NIC first, then the network's own template.
    fn network_attribute(&self, attribute: &str, filter: Option<&Filter>) -> String {
        let Some(filter) =
            filter.filter(|f| matches!(f.key.as_str(), "NETWORK" | "NETWORK_ID" | "NIC_ID"))
        else {
            return String::new();
        };
        let nic = self
            .template
            .attributes
            .iter()
            .filter_map(|a| match a {
                Attribute::Vector { name, values } if name == "NIC" || name == "NIC_ALIAS" => {
                    Some(values)
                }
                _ => None,
            })
            .find(|nic| nic.get(&filter.key) == Some(&filter.value));
        let Some(nic) = nic else { return String::new() };
        let Some(network) = nic.get("NETWORK_ID").and_then(|id| self.network(id)) else {
            return String::new();
        };
        if attribute == "TEMPLATE" {
            return base64_xml("VNET", &resource_fields(network), &network.template);
        }
        let range = nic.get("AR_ID").and_then(|ar_id| {
            network
                .template
                .vectors("AR")
                .find(|ar| ar.get("AR_ID") == Some(ar_id))
        });
        range
            .and_then(|ar| ar.get(attribute).cloned())
            .or_else(|| network.template.get(attribute).map(str::to_string))
            .unwrap_or_default()
    }

    /// `$IMAGE[ATTR, IMAGE_ID=n | IMAGE="name"]`, for images the VM's disks use.
    fn image_attribute(&self, attribute: &str, filter: Option<&Filter>) -> String {
        let Some(filter) = filter.filter(|f| matches!(f.key.as_str(), "IMAGE" | "IMAGE_ID")) else {
            return String::new();
        };
        let disk = self
            .template
            .vectors("DISK")
            .find(|d| d.get(&filter.key) == Some(&filter.value));
        let Some(image) = disk
            .and_then(|d| d.get("IMAGE_ID"))
            .and_then(|id| self.image(id))
        else {
            return String::new();
        };
        if attribute == "TEMPLATE" {
            return base64_xml("IMAGE", &resource_fields(image), &image.template);
        }
        image
            .template
            .get(attribute)
            .unwrap_or_default()
            .to_string()
    }

    fn user_attribute(&self, attribute: &str) -> String {
        if attribute == "TEMPLATE" {
            return base64_xml("USER", &resource_fields(&self.owner), &self.owner.template);
        }
        self.owner_field(attribute)
    }

    fn uname(&self) -> String {
        self.owner.name.clone()
    }
}

impl Lookup for Vm {
    fn single(&self, name: &str) -> String {
        match name {
            "VMID" => self.id.to_string(),
            "NAME" => self.name.clone(),
            "UID" => self.owner.id_or_zero().to_string(),
            "UNAME" => self.uname(),
            "GID" => self.owner.template.get("GID").unwrap_or("0").to_string(),
            "GNAME" => self
                .owner
                .template
                .get("GNAME")
                .unwrap_or("oneadmin")
                .to_string(),
            "TEMPLATE" => base64_xml("VM", &self.vm_fields(), &self.template),
            _ => self.template.get(name).unwrap_or_default().to_string(),
        }
    }

    fn vector(&self, name: &str, attribute: &str, filter: Option<&Filter>) -> String {
        match name {
            "NETWORK" => self.network_attribute(attribute, filter),
            "IMAGE" => self.image_attribute(attribute, filter),
            "USER" => self.user_attribute(attribute),
            _ => {
                let mut vectors = self.template.vectors(name);
                let found = match filter {
                    None => vectors.next(),
                    Some(f) => vectors.find(|v| v.get(&f.key) == Some(&f.value)),
                };
                found
                    .and_then(|v| v.get(attribute))
                    .cloned()
                    .unwrap_or_default()
            }
        }
    }
}

impl Vm {
    fn vm_fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ID", self.id.to_string()),
            ("UID", self.single("UID")),
            ("GID", self.single("GID")),
            ("UNAME", self.uname()),
            ("GNAME", self.single("GNAME")),
            ("NAME", self.name.clone()),
        ]
    }
}

fn resource_fields(resource: &Resource) -> Vec<(&'static str, String)> {
    vec![
        ("ID", resource.id_or_zero().to_string()),
        ("NAME", resource.name.clone()),
    ]
}

/// Networks and images without an ID get the next ids after the largest given.
fn assign_missing_ids(resources: &mut [Resource]) {
    let first_free = resources
        .iter()
        .filter_map(|r| r.id)
        .max()
        .map_or(0, |m| m + 1);
    let unnumbered = resources.iter_mut().filter(|r| r.id.is_none());
    for (id, resource) in (first_free..).zip(unnumbered) {
        resource.id = Some(id);
        resource.template.set("ID", id.to_string());
    }
}

/// Address ranges without AR_ID are numbered in order, as oned does.
fn number_address_ranges(networks: &mut [Resource]) {
    for network in networks {
        for (index, range) in network.template.vectors_mut("AR").enumerate() {
            range
                .entry("AR_ID".into())
                .or_insert_with(|| index.to_string());
        }
    }
}

/// Finds the resource a vector names by `<KIND>_ID` or by `<KIND>` (its name).
fn resolve<'a>(
    resources: &'a [Resource],
    vector: &Vector,
    kind: &str,
    what: &str,
) -> Result<Option<&'a Resource>> {
    let id_key = format!("{kind}_ID");
    let found = if let Some(id) = vector.get(&id_key) {
        resources.iter().find(|r| r.id_or_zero().to_string() == *id)
    } else if let Some(name) = vector.get(kind) {
        resources.iter().find(|r| r.name == *name)
    } else {
        return Ok(None);
    };
    match found {
        Some(resource) => Ok(Some(resource)),
        None => {
            let wanted = vector
                .get(&id_key)
                .or(vector.get(kind))
                .cloned()
                .unwrap_or_default();
            Err(Error::Invalid(format!(
                "{what} uses {kind} {wanted:?}, which is not given (use --{} FILE)",
                kind.to_lowercase()
            )))
        }
    }
}

fn fill_nics(template: &mut Template, networks: &[Resource]) -> Result<()> {
    let nic_count = template.vectors("NIC").count();
    // Aliases name their parent NIC as `PARENT = "NIC<id>"` and are numbered after the NICs.
    let mut alias_counts = vec![0u64; nic_count];
    let mut next_id = 0u64;
    for kind in ["NIC", "NIC_ALIAS"] {
        for nic in template.vectors_mut(kind) {
            let nic_id = nic
                .entry("NIC_ID".into())
                .or_insert_with(|| next_id.to_string())
                .clone();
            next_id = next_id.max(nic_id.parse::<u64>().unwrap_or(next_id) + 1);
            nic.entry("NAME".into())
                .or_insert_with(|| format!("{kind}{nic_id}"));
            let what = format!("{kind} {nic_id}");
            if let Some(network) = resolve(networks, nic, "NETWORK", &what)? {
                nic.insert("NETWORK".into(), network.name.clone());
                nic.insert("NETWORK_ID".into(), network.id_or_zero().to_string());
                if let Some(ar_id) = address_range_for(network, nic.get("IP")) {
                    nic.entry("AR_ID".into()).or_insert(ar_id);
                }
            }
            if !nic.contains_key("MAC")
                && let Some(ip) = nic.get("IP").and_then(|ip| ip.parse::<Ipv4Addr>().ok())
            {
                nic.insert("MAC".into(), mac_from_ip(ip));
            }
            if kind == "NIC_ALIAS" {
                let parent = nic.get("PARENT").cloned().unwrap_or_default();
                let parent_id = parent
                    .strip_prefix("NIC")
                    .and_then(|n| n.parse::<usize>().ok());
                let Some(count) = parent_id.and_then(|p| alias_counts.get_mut(p)) else {
                    return Err(Error::Invalid(format!(
                        "{what}: PARENT {parent:?} is not a NIC (write PARENT = \"NIC0\")"
                    )));
                };
                nic.entry("PARENT_ID".into())
                    .or_insert_with(|| parent_id.unwrap_or(0).to_string());
                nic.entry("ALIAS_ID".into())
                    .or_insert_with(|| count.to_string());
                *count += 1;
            }
        }
    }
    Ok(())
}

/// The AR holding `ip`, else the first AR.
fn address_range_for(network: &Resource, ip: Option<&String>) -> Option<String> {
    let ip = ip.and_then(|ip| ip.parse::<Ipv4Addr>().ok());
    let holding = ip.and_then(|ip| {
        network
            .template
            .vectors("AR")
            .find(|ar| range_holds(ar, ip))
    });
    holding
        .or(network.template.vectors("AR").next())
        .and_then(|ar| ar.get("AR_ID").cloned())
}

fn range_holds(ar: &Vector, ip: Ipv4Addr) -> bool {
    let start = ar.get("IP").and_then(|s| s.parse::<Ipv4Addr>().ok());
    let size = ar
        .get("SIZE")
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(1);
    start.is_some_and(|start| {
        let offset = u32::from(ip).wrapping_sub(u32::from(start));
        u32::from(ip) >= u32::from(start) && offset < size
    })
}

/// oned's default MAC for an IPv4 lease: the prefix 02:00 followed by the address.
pub fn mac_from_ip(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("02:00:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

fn fill_disks(template: &mut Template, images: &[Resource]) -> Result<()> {
    for (index, disk) in template.vectors_mut("DISK").enumerate() {
        let disk_id = disk
            .entry("DISK_ID".into())
            .or_insert_with(|| index.to_string())
            .clone();
        if let Some(image) = resolve(images, disk, "IMAGE", &format!("DISK {disk_id}"))? {
            disk.insert("IMAGE".into(), image.name.clone());
            disk.insert("IMAGE_ID".into(), image.id_or_zero().to_string());
        }
    }
    Ok(())
}

/// The context CD is the disk after the VM's disks; its target is the first
/// free one with the CONTEXT's DEV_PREFIX (default `hd`).
fn fill_context_disk(template: &mut Template) {
    let disk_count = template.vectors("DISK").count();
    let used: BTreeSet<String> = template
        .vectors("DISK")
        .filter_map(|d| d.get("TARGET").cloned())
        .collect();
    let Some(context) = template.vectors_mut("CONTEXT").next() else {
        return;
    };
    context
        .entry("DISK_ID".into())
        .or_insert_with(|| disk_count.to_string());
    let prefix = context
        .get("DEV_PREFIX")
        .cloned()
        .unwrap_or_else(|| "hd".into());
    if !context.contains_key("TARGET") {
        let free = ('a'..='z')
            .map(|letter| format!("{prefix}{letter}"))
            .find(|t| !used.contains(t));
        if let Some(target) = free {
            context.insert("TARGET".into(), target);
        }
    }
}

/// oned's `to_xml64`: the object as XML, base64-encoded.
fn base64_xml(root: &str, fields: &[(&str, String)], template: &Template) -> String {
    let mut xml = format!("<{root}>");
    for (name, value) in fields {
        xml.push_str(&format!("<{name}>{}</{name}>", cdata(value)));
    }
    xml.push_str("<TEMPLATE>");
    for attribute in &template.attributes {
        match attribute {
            Attribute::Single { name, value } => {
                xml.push_str(&format!("<{name}>{}</{name}>", cdata(value)))
            }
            Attribute::Vector { name, values } => {
                xml.push_str(&format!("<{name}>"));
                for (key, value) in values {
                    xml.push_str(&format!("<{key}>{}</{key}>", cdata(value)));
                }
                xml.push_str(&format!("</{name}>"));
            }
        }
    }
    xml.push_str(&format!("</TEMPLATE></{root}>"));
    base64::engine::general_purpose::STANDARD.encode(xml)
}

/// A CDATA section; `]]>` inside the value is split across two sections.
fn cdata(value: &str) -> String {
    format!("<![CDATA[{}]]>", value.replace("]]>", "]]]]><![CDATA[>"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subst::expand;
    use crate::template::parse;

    fn resource(text: &str) -> Resource {
        Resource::from_template("test", parse(text).unwrap()).unwrap()
    }

    fn vm() -> Vm {
        let template = parse(
            "NAME = web1\n\
             NIC = [ NETWORK = \"public net\", IP = \"192.0.2.10\" ]\n\
             NIC = [ NETWORK_ID = 7 ]\n\
             NIC_ALIAS = [ NETWORK = \"public net\", IP = \"192.0.2.11\", PARENT = \"NIC0\" ]\n\
             DISK = [ IMAGE = \"debian\", TARGET = \"hda\" ]\n\
             CONTEXT = [ NETWORK = \"YES\" ]\n\
             ROLE = web\n",
        )
        .unwrap();
        let source = VmSource {
            template,
            networks: vec![
                resource(
                    "NAME = \"public net\"\nGATEWAY = 192.0.2.1\nDNS = \"192.0.2.53\"\nAR = [ IP = 10.0.0.1, SIZE = 5, GATEWAY = 10.0.0.254 ]\nAR = [ IP = 192.0.2.2, SIZE = 100 ]",
                ),
                resource("ID = 7\nNAME = private\nGUEST_MTU = 9000"),
            ],
            images: vec![resource("NAME = debian\nSIZE = 2048")],
            owner: Some(resource(
                "ID = 5\nNAME = alice\nGID = 100\nSSH_PUBLIC_KEY = \"ssh-ed25519 AAAA alice\"",
            )),
        };
        Vm::instantiate(source, Some(42)).unwrap()
    }

    fn expanded(text: &str) -> String {
        expand(text, &vm()).unwrap()
    }

    #[test]
    fn instantiation_fills_ids_macs_and_ranges() {
        let vm = vm();
        let nics: Vec<_> = vm.template.vectors("NIC").collect();
        assert_eq!(nics[0]["NIC_ID"], "0");
        assert_eq!(
            nics[0]["NETWORK_ID"], "8",
            "the unnumbered network comes after ID 7"
        );
        assert_eq!(nics[0]["AR_ID"], "1", "192.0.2.10 lies in the second range");
        assert_eq!(nics[0]["MAC"], "02:00:c0:00:02:0a");
        assert_eq!(nics[1]["NETWORK"], "private");
        assert!(!nics[1].contains_key("MAC"), "no IP, no generated MAC");
        let alias = vm.template.vectors("NIC_ALIAS").next().unwrap();
        assert_eq!(
            (
                alias["NIC_ID"].as_str(),
                alias["PARENT_ID"].as_str(),
                alias["ALIAS_ID"].as_str()
            ),
            ("2", "0", "0")
        );
        let context = vm.context().unwrap();
        assert_eq!(
            (context["DISK_ID"].as_str(), context["TARGET"].as_str()),
            ("1", "hdb")
        );
    }

    #[test]
    fn builtins_and_template_attributes() {
        assert_eq!(
            expanded("$NAME $VMID $UID $UNAME $GID $ROLE $NOTHING."),
            "web1 42 5 alice 100 web ."
        );
    }

    #[test]
    fn vectors_first_or_filtered() {
        assert_eq!(expanded("$NIC[IP]"), "192.0.2.10");
        assert_eq!(expanded("$NIC[NETWORK, NIC_ID=1]"), "private");
        assert_eq!(
            expanded("$NIC[MAC, NETWORK=\"public net\"]"),
            "02:00:c0:00:02:0a"
        );
        assert_eq!(expanded("$DISK[TARGET, IMAGE=debian]"), "hda");
        assert_eq!(expanded("$NIC[IP, NETWORK=nowhere]"), "");
    }

    #[test]
    fn network_lookups_prefer_the_address_range() {
        assert_eq!(expanded("$NETWORK[GATEWAY, NIC_ID=0]"), "192.0.2.1");
        assert_eq!(expanded("$NETWORK[SIZE, NETWORK=\"public net\"]"), "100");
        assert_eq!(expanded("$NETWORK[GUEST_MTU, NETWORK_ID=7]"), "9000");
        assert_eq!(expanded("$NETWORK[GATEWAY]"), "", "no filter, no network");
        assert_eq!(
            expanded("$NETWORK[GATEWAY, IP=192]"),
            "",
            "only NETWORK, NETWORK_ID and NIC_ID select"
        );
    }

    #[test]
    fn image_user_and_template_lookups() {
        assert_eq!(expanded("$IMAGE[SIZE, IMAGE=debian]"), "2048");
        assert_eq!(expanded("$IMAGE[SIZE, IMAGE_ID=0]"), "2048");
        assert_eq!(expanded("$USER[SSH_PUBLIC_KEY]"), "ssh-ed25519 AAAA alice");
        let xml = base64::engine::general_purpose::STANDARD
            .decode(expanded("$TEMPLATE"))
            .unwrap();
        let xml = String::from_utf8(xml).unwrap();
        assert!(xml.starts_with("<VM><ID><![CDATA[42]]></ID>"), "{xml}");
        assert!(xml.contains("<ROLE><![CDATA[web]]></ROLE>"), "{xml}");
    }

    #[test]
    fn unknown_network_is_an_error() {
        let source = VmSource {
            template: parse("NIC = [ NETWORK = nowhere ]").unwrap(),
            ..VmSource::default()
        };
        let err = Vm::instantiate(source, None).unwrap_err().to_string();
        assert!(err.contains("NETWORK \"nowhere\""), "{err}");
    }
}
