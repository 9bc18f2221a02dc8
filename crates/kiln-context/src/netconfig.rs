//! Network settings between OpenNebula's ETHn_* variables, cloud-init's
//! network-config version 2 and OpenStack's network_data.json.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{Error, Result};
use crate::onecontext::Variables;

/// One guest interface as one-context reads it from ETH<index>_*.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    pub index: u32,
    pub mac: Option<String>,
    /// Addresses with prefix lengths; the first is ETHn_IP, the rest aliases.
    pub ipv4: Vec<(Ipv4Addr, u8)>,
    pub ipv6: Vec<(Ipv6Addr, u8)>,
    pub gateway: Option<Ipv4Addr>,
    pub gateway6: Option<Ipv6Addr>,
    pub dns: Vec<String>,
    pub search: Vec<String>,
    pub mtu: Option<u32>,
    /// ETHn_METHOD=dhcp
    pub dhcp4: bool,
    /// ETHn_IP6_METHOD=dhcp
    pub dhcp6: bool,
    /// Routes other than the default ones (ETHn_ROUTES: `"10.0.0.0/8 via 192.0.2.1, ..."`).
    pub routes: Vec<StaticRoute>,
}

/// A route to a network through a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRoute {
    /// The destination as `address/prefix`.
    pub to: String,
    pub via: IpAddr,
}

/// one-context's ETHn_ROUTES: comma-separated `NETWORK/PREFIX via GATEWAY`.
fn parse_routes(name: &str, value: &str) -> Result<Vec<StaticRoute>> {
    value
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|route| {
            let words: Vec<&str> = route.split_whitespace().collect();
            match words.as_slice() {
                [to, "via", via] => Ok(StaticRoute {
                    to: parse_destination(name, to)?,
                    via: parse(name, via, "a gateway address")?,
                }),
                _ => Err(Error::Invalid(format!(
                    "{name}: route {route:?} is not \"NETWORK/PREFIX via GATEWAY\""
                ))),
            }
        })
        .collect()
}

/// `address/prefix`, checked; a bare address is a host route.
fn parse_destination(name: &str, to: &str) -> Result<String> {
    let (address, prefix) = to.split_once('/').unwrap_or((to, ""));
    let address: IpAddr = parse(name, address, "a route destination")?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = if prefix.is_empty() {
        max
    } else {
        parse(name, prefix, "a prefix length")?
    };
    if prefix > max {
        return Err(Error::Invalid(format!(
            "{name}: prefix /{prefix} is too long"
        )));
    }
    Ok(format!("{address}/{prefix}"))
}

fn is_default(to: &str) -> bool {
    matches!(to, "default" | "0.0.0.0/0" | "::/0")
}

/// one-context's defaults when MASK or IP6_PREFIX_LENGTH are empty.
const DEFAULT_MASK: Ipv4Addr = Ipv4Addr::new(255, 255, 255, 0);
const DEFAULT_PREFIX6: u8 = 64;

fn parse<T: std::str::FromStr>(name: &str, value: &str, what: &str) -> Result<T> {
    value
        .trim()
        .parse()
        .map_err(|_| Error::Invalid(format!("{name}={value:?} is not {what}")))
}

fn mask_prefix(name: &str, mask: &str) -> Result<u8> {
    let bits = u32::from(parse::<Ipv4Addr>(name, mask, "a network mask")?);
    if bits.leading_ones() + bits.trailing_zeros() != 32 {
        return Err(Error::Invalid(format!(
            "{name}={mask:?} is not a contiguous network mask"
        )));
    }
    Ok(bits.leading_ones() as u8)
}

fn prefix_mask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0))
}

fn prefix_mask6(prefix: u8) -> Ipv6Addr {
    Ipv6Addr::from(u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0))
}

/// The interfaces that ETHn_* (and ETHn_ALIASm_*) variables describe, by n.
pub fn interfaces_from_variables(variables: &Variables) -> Result<Vec<Interface>> {
    let mut by_index: BTreeMap<u32, Interface> = BTreeMap::new();
    for name in variables.keys() {
        let Some(index) = name
            .strip_prefix("ETH")
            .and_then(|r| r.split('_').next())
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        by_index.entry(index).or_insert_with(|| Interface {
            index,
            ..Interface::default()
        });
    }
    for interface in by_index.values_mut() {
        fill_interface(interface, variables)?;
    }
    Ok(by_index
        .into_values()
        .filter(|i| i.mac.is_some() || !i.ipv4.is_empty() || !i.ipv6.is_empty() || i.dhcp4)
        .collect())
}

fn fill_interface(interface: &mut Interface, variables: &Variables) -> Result<()> {
    let prefix = format!("ETH{}_", interface.index);
    let get = |suffix: &str| -> Option<(String, &str)> {
        let name = format!("{prefix}{suffix}");
        let value = variables
            .get(&name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())?;
        Some((name, value))
    };
    let words = |suffix: &str| {
        get(suffix)
            .map(|(_, v)| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    };
    interface.mac = get("MAC").map(|(_, v)| v.to_ascii_lowercase());
    let mask = match get("MASK") {
        Some((name, mask)) => mask_prefix(&name, mask)?,
        None => mask_prefix("default", &DEFAULT_MASK.to_string())?,
    };
    if let Some((name, ip)) = get("IP") {
        interface
            .ipv4
            .push((parse(&name, ip, "an IPv4 address")?, mask));
    }
    let prefix6 = match get("IP6_PREFIX_LENGTH") {
        Some((name, length)) => parse(&name, length, "a prefix length")?,
        None => DEFAULT_PREFIX6,
    };
    for suffix in ["IP6", "IP6_ULA"] {
        if let Some((name, ip)) = get(suffix) {
            interface
                .ipv6
                .push((parse(&name, ip, "an IPv6 address")?, prefix6));
        }
    }
    add_aliases(interface, variables, mask, prefix6)?;
    interface.gateway = get("GATEWAY")
        .map(|(name, v)| parse(&name, v, "an IPv4 address"))
        .transpose()?;
    interface.gateway6 = get("IP6_GATEWAY")
        .map(|(name, v)| parse(&name, v, "an IPv6 address"))
        .transpose()?;
    interface.dns = words("DNS");
    interface.search = words("SEARCH_DOMAIN");
    interface.mtu = get("MTU")
        .map(|(name, v)| parse(&name, v, "an MTU"))
        .transpose()?;
    if let Some((name, routes)) = get("ROUTES") {
        interface.routes = parse_routes(&name, routes)?;
    }
    interface.dhcp4 = get("METHOD").is_some_and(|(_, v)| v.eq_ignore_ascii_case("dhcp"));
    interface.dhcp6 = get("IP6_METHOD").is_some_and(|(_, v)| v.eq_ignore_ascii_case("dhcp"));
    Ok(())
}

/// ETHn_ALIASm_IP/IP6 become extra addresses of ETHn, in alias order.
fn add_aliases(
    interface: &mut Interface,
    variables: &Variables,
    mask: u8,
    prefix6: u8,
) -> Result<()> {
    let alias_prefix = format!("ETH{}_ALIAS", interface.index);
    let mut aliases: Vec<u32> = variables
        .keys()
        .filter_map(|k| {
            k.strip_prefix(&alias_prefix)?
                .split('_')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    aliases.sort_unstable();
    aliases.dedup();
    for alias in aliases {
        let get = |suffix: &str| {
            let name = format!("{alias_prefix}{alias}_{suffix}");
            variables
                .get(&name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .map(|v| (name, v))
        };
        let alias_mask = get("MASK")
            .map(|(name, m)| mask_prefix(&name, &m))
            .transpose()?
            .unwrap_or(mask);
        if let Some((name, ip)) = get("IP") {
            interface
                .ipv4
                .push((parse(&name, &ip, "an IPv4 address")?, alias_mask));
        }
        if let Some((name, ip)) = get("IP6") {
            interface
                .ipv6
                .push((parse(&name, &ip, "an IPv6 address")?, prefix6));
        }
    }
    Ok(())
}

/// ETHn_* variables for the interfaces, the reverse of [`interfaces_from_variables`].
pub fn variables_from_interfaces(interfaces: &[Interface]) -> Variables {
    let mut variables = Variables::new();
    for interface in interfaces {
        let mut set = |suffix: &str, value: String| {
            if !value.is_empty() {
                variables.insert(format!("ETH{}_{suffix}", interface.index), value);
            }
        };
        set("MAC", interface.mac.clone().unwrap_or_default());
        if let Some((ip, prefix)) = interface.ipv4.first() {
            set("IP", ip.to_string());
            set("MASK", prefix_mask(*prefix).to_string());
        }
        if let Some((ip, prefix)) = interface.ipv6.first() {
            set("IP6", ip.to_string());
            set("IP6_PREFIX_LENGTH", prefix.to_string());
        }
        set(
            "GATEWAY",
            interface.gateway.map(|g| g.to_string()).unwrap_or_default(),
        );
        set(
            "IP6_GATEWAY",
            interface
                .gateway6
                .map(|g| g.to_string())
                .unwrap_or_default(),
        );
        set("DNS", interface.dns.join(" "));
        set("SEARCH_DOMAIN", interface.search.join(" "));
        set(
            "MTU",
            interface.mtu.map(|m| m.to_string()).unwrap_or_default(),
        );
        let routes: Vec<String> = interface
            .routes
            .iter()
            .map(|r| format!("{} via {}", r.to, r.via))
            .collect();
        set("ROUTES", routes.join(", "));
        set(
            "METHOD",
            if interface.dhcp4 {
                "dhcp".into()
            } else {
                String::new()
            },
        );
        set(
            "IP6_METHOD",
            if interface.dhcp6 {
                "dhcp".into()
            } else {
                String::new()
            },
        );
        let aliases = interface.ipv4.iter().skip(1).map(|a| (Some(*a), None));
        let aliases6 = interface.ipv6.iter().skip(1).map(|a| (None, Some(*a)));
        for (alias, (ip4, ip6)) in aliases.chain(aliases6).enumerate() {
            let mut set_alias = |suffix: &str, value: String| {
                variables.insert(
                    format!("ETH{}_ALIAS{alias}_{suffix}", interface.index),
                    value,
                );
            };
            if let Some((ip, prefix)) = ip4 {
                set_alias("IP", ip.to_string());
                set_alias("MASK", prefix_mask(prefix).to_string());
            }
            if let Some((ip, _)) = ip6 {
                set_alias("IP6", ip.to_string());
            }
        }
    }
    variables
}

/// cloud-init network-config version 2 (the Netplan subset).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    pub version: u8,
    #[serde(default)]
    pub ethernets: BTreeMap<String, Ethernet>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ethernet {
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    pub match_: Option<Match>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dhcp4: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dhcp6: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Deprecated in Netplan but still read.
    #[serde(default, skip_serializing)]
    pub gateway4: Option<String>,
    #[serde(default, skip_serializing)]
    pub gateway6: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nameservers: Option<Nameservers>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Match {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macaddress: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub to: String,
    pub via: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nameservers {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
}

impl NetworkConfig {
    /// Parses network-config version 2, bare or under a top-level `network:`.
    pub fn parse(text: &str) -> Result<NetworkConfig> {
        let invalid = |message: String| Error::Invalid(format!("network-config: {message}"));
        let mut value: serde_json::Value = serde_saphyr::from_str(text)
            .map_err(|e| invalid(e.to_string().lines().next().unwrap_or_default().to_string()))?;
        if let Some(inner) = value.get_mut("network") {
            value = inner.take();
        }
        let config: NetworkConfig =
            serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
        if config.version != 2 {
            return Err(invalid(format!(
                "version {} is not supported; kiln reads version 2",
                config.version
            )));
        }
        Ok(config)
    }
}

/// network-config v2 for the interfaces; each is matched by MAC when it has one.
pub fn network_config(interfaces: &[Interface]) -> NetworkConfig {
    let ethernets = interfaces
        .iter()
        .map(|i| {
            let addresses = i.ipv4.iter().map(|(ip, p)| format!("{ip}/{p}"));
            let addresses6 = i.ipv6.iter().map(|(ip, p)| format!("{ip}/{p}"));
            let routes = i.gateway.map(|g| Route {
                to: "0.0.0.0/0".into(),
                via: g.to_string(),
            });
            let routes6 = i.gateway6.map(|g| Route {
                to: "::/0".into(),
                via: g.to_string(),
            });
            let nameservers = (!i.dns.is_empty() || !i.search.is_empty()).then(|| Nameservers {
                addresses: i.dns.clone(),
                search: i.search.clone(),
            });
            let ethernet = Ethernet {
                match_: i.mac.as_ref().map(|mac| Match {
                    macaddress: Some(mac.clone()),
                }),
                dhcp4: i.dhcp4,
                dhcp6: i.dhcp6,
                addresses: addresses.chain(addresses6).collect(),
                routes: routes
                    .into_iter()
                    .chain(routes6)
                    .chain(i.routes.iter().map(|r| Route {
                        to: r.to.clone(),
                        via: r.via.to_string(),
                    }))
                    .collect(),
                nameservers,
                mtu: i.mtu,
                ..Ethernet::default()
            };
            (format!("eth{}", i.index), ethernet)
        })
        .collect();
    NetworkConfig {
        version: 2,
        ethernets,
    }
}

/// Interfaces from network-config v2, numbered by the digits that end each
/// id (`eth1`, `ens3`) or else in id order.
pub fn interfaces_from_network_config(config: &NetworkConfig) -> Result<Vec<Interface>> {
    let mut ids: Vec<(&String, &Ethernet)> = config.ethernets.iter().collect();
    let number = |id: &str| {
        id.trim_start_matches(|c: char| !c.is_ascii_digit())
            .parse::<u32>()
            .ok()
    };
    ids.sort_by_key(|(id, _)| (number(id).unwrap_or(u32::MAX), id.to_string()));
    ids.iter()
        .enumerate()
        .map(|(position, (id, e))| {
            interface_from_ethernet(number(id).unwrap_or(position as u32), id, e)
        })
        .collect()
}

fn interface_from_ethernet(index: u32, id: &str, e: &Ethernet) -> Result<Interface> {
    let mut interface = Interface {
        index,
        mac: e
            .match_
            .as_ref()
            .and_then(|m| m.macaddress.clone())
            .map(|m| m.to_ascii_lowercase()),
        dhcp4: e.dhcp4,
        dhcp6: e.dhcp6,
        mtu: e.mtu,
        ..Interface::default()
    };
    for address in &e.addresses {
        let what = format!("ethernets.{id}.addresses");
        let (ip, prefix) = address.split_once('/').unwrap_or((address, ""));
        match parse::<IpAddr>(&what, ip, "an IP address")? {
            IpAddr::V4(ip) => interface.ipv4.push((
                ip,
                if prefix.is_empty() {
                    32
                } else {
                    parse(&what, prefix, "a prefix")?
                },
            )),
            IpAddr::V6(ip) => interface.ipv6.push((
                ip,
                if prefix.is_empty() {
                    128
                } else {
                    parse(&what, prefix, "a prefix")?
                },
            )),
        }
    }
    let what = format!("ethernets.{id}.routes");
    for route in e.routes.iter().filter(|r| !is_default(&r.to)) {
        interface.routes.push(StaticRoute {
            to: parse_destination(&what, &route.to)?,
            via: parse(&what, &route.via, "a gateway address")?,
        });
    }
    let defaults = e.routes.iter().filter(|r| is_default(&r.to));
    let gateways = defaults
        .map(|r| r.via.as_str())
        .chain(e.gateway4.as_deref())
        .chain(e.gateway6.as_deref());
    for gateway in gateways {
        match parse::<IpAddr>(&format!("ethernets.{id}.routes"), gateway, "an IP address")? {
            IpAddr::V4(g) => interface.gateway = interface.gateway.or(Some(g)),
            IpAddr::V6(g) => interface.gateway6 = interface.gateway6.or(Some(g)),
        }
    }
    if let Some(nameservers) = &e.nameservers {
        interface.dns = nameservers.addresses.clone();
        interface.search = nameservers.search.clone();
    }
    Ok(interface)
}

/// OpenStack's network_data.json: links, networks and DNS services.
pub fn network_data(interfaces: &[Interface]) -> serde_json::Value {
    let mut links = Vec::new();
    let mut networks = Vec::new();
    let mut dns = Vec::new();
    for i in interfaces {
        let link = format!("eth{}", i.index);
        let mut entry = json!({"id": link, "type": "phy"});
        if let Some(mac) = &i.mac {
            entry["ethernet_mac_address"] = json!(mac);
        }
        if let Some(mtu) = i.mtu {
            entry["mtu"] = json!(mtu);
        }
        links.push(entry);
        let mut add = |mut network: serde_json::Value| {
            network["id"] = json!(format!("network{}", networks.len()));
            network["link"] = json!(link);
            networks.push(network);
        };
        if i.dhcp4 {
            add(json!({"type": "ipv4_dhcp"}));
        }
        for (n, (ip, prefix)) in i.ipv4.iter().enumerate() {
            let gateway = i.gateway.filter(|_| n == 0);
            let mut routes: Vec<_> =
                gateway.iter().map(|g| json!({"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": g.to_string()})).collect();
            if n == 0 {
                routes.extend(extra_routes(&i.routes, true));
            }
            add(
                json!({"type": "ipv4", "ip_address": ip.to_string(), "netmask": prefix_mask(*prefix).to_string(), "routes": routes}),
            );
        }
        if i.dhcp6 {
            add(json!({"type": "ipv6_dhcp"}));
        }
        for (n, (ip, prefix)) in i.ipv6.iter().enumerate() {
            let gateway = i.gateway6.filter(|_| n == 0);
            let mut routes: Vec<_> = gateway
                .iter()
                .map(|g| json!({"network": "::", "netmask": "::", "gateway": g.to_string()}))
                .collect();
            if n == 0 {
                routes.extend(extra_routes(&i.routes, false));
            }
            add(
                json!({"type": "ipv6", "ip_address": ip.to_string(), "netmask": prefix_mask6(*prefix).to_string(), "routes": routes}),
            );
        }
        for server in &i.dns {
            if !dns.contains(server) {
                dns.push(server.clone());
            }
        }
    }
    let services: Vec<_> = dns
        .iter()
        .map(|d| json!({"type": "dns", "address": d}))
        .collect();
    json!({"links": links, "networks": networks, "services": services})
}

/// network_data.json route entries of one address family.
fn extra_routes(routes: &[StaticRoute], ipv4: bool) -> Vec<serde_json::Value> {
    routes
        .iter()
        .filter(|r| r.via.is_ipv4() == ipv4)
        .map(|r| {
            let (network, prefix) = r.to.split_once('/').unwrap_or((&r.to, "32"));
            let prefix: u8 = prefix.parse().unwrap_or(if ipv4 { 32 } else { 128 });
            let netmask = if ipv4 {
                prefix_mask(prefix).to_string()
            } else {
                prefix_mask6(prefix).to_string()
            };
            json!({"network": network, "netmask": netmask, "gateway": r.via.to_string()})
        })
        .collect()
}

/// Interfaces from OpenStack's network_data.json (the reverse of
/// [`network_data`]): one per `phy` link, numbered in link order.
pub fn interfaces_from_network_data(data: &serde_json::Value) -> Result<Vec<Interface>> {
    let text =
        |v: &serde_json::Value, key: &str| v.get(key).and_then(|x| x.as_str()).map(str::to_string);
    let empty = Vec::new();
    let links = data
        .get("links")
        .and_then(|l| l.as_array())
        .unwrap_or(&empty);
    let networks = data
        .get("networks")
        .and_then(|l| l.as_array())
        .unwrap_or(&empty);
    let mut interfaces = Vec::new();
    for (index, link) in links.iter().enumerate() {
        let id = text(link, "id").unwrap_or_default();
        let mut interface = Interface {
            index: index as u32,
            mac: text(link, "ethernet_mac_address").map(|m| m.to_ascii_lowercase()),
            mtu: link.get("mtu").and_then(|m| m.as_u64()).map(|m| m as u32),
            ..Interface::default()
        };
        for network in networks
            .iter()
            .filter(|n| text(n, "link").as_deref() == Some(id.as_str()))
        {
            let what = format!(
                "network_data.json: network {}",
                text(network, "id").unwrap_or_default()
            );
            match text(network, "type").as_deref() {
                Some("ipv4_dhcp" | "dhcp4") => interface.dhcp4 = true,
                Some(
                    "ipv6_dhcp" | "ipv6_dhcpv6-stateful" | "ipv6_dhcpv6-stateless" | "ipv6_slaac",
                ) => interface.dhcp6 = true,
                Some("ipv4") => {
                    let ip = text(network, "ip_address").unwrap_or_default();
                    let prefix = match text(network, "netmask") {
                        Some(mask) => mask_prefix(&what, &mask)?,
                        None => 32,
                    };
                    interface
                        .ipv4
                        .push((parse(&what, &ip, "an IPv4 address")?, prefix));
                }
                Some("ipv6") => {
                    let address = text(network, "ip_address").unwrap_or_default();
                    let (ip, inline) = address.split_once('/').unwrap_or((&address, ""));
                    let prefix = match text(network, "netmask") {
                        Some(mask) => u128::from(parse::<Ipv6Addr>(&what, &mask, "a netmask")?)
                            .leading_ones() as u8,
                        None if !inline.is_empty() => parse(&what, inline, "a prefix length")?,
                        None => 128,
                    };
                    interface
                        .ipv6
                        .push((parse(&what, ip, "an IPv6 address")?, prefix));
                }
                _ => continue,
            }
            for route in network
                .get("routes")
                .and_then(|r| r.as_array())
                .unwrap_or(&empty)
            {
                let Some(gateway) = text(route, "gateway") else {
                    continue;
                };
                let gateway: IpAddr = parse(&what, &gateway, "an IP address")?;
                let destination = text(route, "network").unwrap_or_default();
                match (destination.as_str(), gateway) {
                    ("0.0.0.0", IpAddr::V4(g)) => interface.gateway = interface.gateway.or(Some(g)),
                    ("::", IpAddr::V6(g)) => interface.gateway6 = interface.gateway6.or(Some(g)),
                    _ => {
                        let prefix = match (text(route, "netmask"), gateway) {
                            (Some(mask), IpAddr::V4(_)) => mask_prefix(&what, &mask)?,
                            (Some(mask), IpAddr::V6(_)) => {
                                u128::from(parse::<Ipv6Addr>(&what, &mask, "a netmask")?)
                                    .leading_ones() as u8
                            }
                            (None, g) => {
                                if g.is_ipv4() {
                                    32
                                } else {
                                    128
                                }
                            }
                        };
                        interface.routes.push(StaticRoute {
                            to: parse_destination(&what, &format!("{destination}/{prefix}"))?,
                            via: gateway,
                        });
                    }
                }
            }
        }
        interfaces.push(interface);
    }
    let services = data
        .get("services")
        .and_then(|l| l.as_array())
        .unwrap_or(&empty);
    let dns: Vec<String> = services
        .iter()
        .filter(|s| text(s, "type").as_deref() == Some("dns"))
        .filter_map(|s| text(s, "address"))
        .collect();
    if let Some(first) = interfaces.first_mut() {
        first.dns = dns;
    }
    Ok(interfaces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onecontext::variables;

    fn sample() -> Variables {
        variables(&[
            ("ETH0_MAC", "02:00:C0:00:02:0A"),
            ("ETH0_IP", "192.0.2.10"),
            ("ETH0_MASK", "255.255.255.0"),
            ("ETH0_GATEWAY", "192.0.2.1"),
            ("ETH0_DNS", "192.0.2.53 192.0.2.54"),
            ("ETH0_SEARCH_DOMAIN", "example.org"),
            ("ETH0_MTU", "1400"),
            ("ETH0_IP6", "2001:db8::5"),
            ("ETH0_IP6_PREFIX_LENGTH", "48"),
            ("ETH0_IP6_GATEWAY", "2001:db8::1"),
            (
                "ETH0_ROUTES",
                "10.0.0.0/8 via 192.0.2.254, 198.51.100.7 via 192.0.2.253",
            ),
            ("ETH0_ALIAS0_IP", "192.0.2.11"),
            ("ETH0_ALIAS0_MASK", "255.255.0.0"),
            ("ETH0_VROUTER_IP", ""),
            ("ETH1_MAC", "02:00:0a:00:00:02"),
            ("ETH1_METHOD", "dhcp"),
        ])
    }

    #[test]
    fn eth_variables_become_interfaces() {
        let interfaces = interfaces_from_variables(&sample()).unwrap();
        assert_eq!(interfaces.len(), 2);
        let eth0 = &interfaces[0];
        assert_eq!(eth0.mac.as_deref(), Some("02:00:c0:00:02:0a"));
        assert_eq!(
            eth0.ipv4,
            vec![
                ("192.0.2.10".parse().unwrap(), 24),
                ("192.0.2.11".parse().unwrap(), 16)
            ]
        );
        assert_eq!(eth0.ipv6, vec![("2001:db8::5".parse().unwrap(), 48)]);
        assert_eq!(eth0.dns, ["192.0.2.53", "192.0.2.54"]);
        assert_eq!(eth0.mtu, Some(1400));
        assert_eq!(
            eth0.routes,
            [
                StaticRoute {
                    to: "10.0.0.0/8".into(),
                    via: "192.0.2.254".parse().unwrap()
                },
                StaticRoute {
                    to: "198.51.100.7/32".into(),
                    via: "192.0.2.253".parse().unwrap()
                },
            ]
        );
        assert!(interfaces[1].dhcp4);
        let err = interfaces_from_variables(&variables(&[
            ("ETH0_IP", "10.0.0.3"),
            ("ETH0_ROUTES", "10.0.0.0/8 by 1.2.3.4"),
        ]))
        .unwrap_err();
        assert!(
            err.to_string().contains("NETWORK/PREFIX via GATEWAY"),
            "{err}"
        );
    }

    #[test]
    fn network_config_v2_shape() {
        let config = network_config(&interfaces_from_variables(&sample()).unwrap());
        let eth0 = &config.ethernets["eth0"];
        assert_eq!(
            eth0.addresses,
            ["192.0.2.10/24", "192.0.2.11/16", "2001:db8::5/48"]
        );
        assert_eq!(
            eth0.routes[0],
            Route {
                to: "0.0.0.0/0".into(),
                via: "192.0.2.1".into()
            }
        );
        assert_eq!(
            eth0.routes[1],
            Route {
                to: "::/0".into(),
                via: "2001:db8::1".into()
            }
        );
        assert_eq!(
            eth0.match_.as_ref().unwrap().macaddress.as_deref(),
            Some("02:00:c0:00:02:0a")
        );
        assert!(config.ethernets["eth1"].dhcp4);
    }

    #[test]
    fn network_config_translates_back_to_the_same_interfaces() {
        let interfaces = interfaces_from_variables(&sample()).unwrap();
        let back = interfaces_from_network_config(&network_config(&interfaces)).unwrap();
        assert_eq!(back, interfaces);
        let again = interfaces_from_variables(&variables_from_interfaces(&back)).unwrap();
        assert_eq!(again, interfaces);
    }

    #[test]
    fn netplan_written_by_hand_is_read() {
        let yaml = "version: 2\nethernets:\n  ens3:\n    match: {macaddress: 'AA:BB:CC:DD:EE:FF'}\n    addresses: [10.1.2.3/8]\n    gateway4: 10.0.0.1\n    nameservers: {addresses: [1.1.1.1]}\n";
        let config = NetworkConfig::parse(&format!(
            "network:\n  {}",
            yaml.trim_end().replace('\n', "\n  ")
        ))
        .unwrap();
        let v = variables_from_interfaces(&interfaces_from_network_config(&config).unwrap());
        assert_eq!(v["ETH3_MAC"], "aa:bb:cc:dd:ee:ff");
        assert_eq!(v["ETH3_IP"], "10.1.2.3");
        assert_eq!(v["ETH3_MASK"], "255.0.0.0");
        assert_eq!(v["ETH3_GATEWAY"], "10.0.0.1");
        assert_eq!(v["ETH3_DNS"], "1.1.1.1");
    }

    #[test]
    fn only_version_2_is_read() {
        let err = NetworkConfig::parse("version: 1\nconfig: []\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("version 1 is not supported"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = interfaces_from_variables(&variables(&[("ETH0_IP", "10.0.0.300")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ETH0_IP=\"10.0.0.300\" is not an IPv4 address"
        );
        let err = interfaces_from_variables(&variables(&[
            ("ETH0_IP", "10.0.0.3"),
            ("ETH0_MASK", "255.0.255.0"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("contiguous"), "{err}");
    }

    #[test]
    fn network_data_reads_back() {
        let interfaces = interfaces_from_variables(&sample()).unwrap();
        let back = interfaces_from_network_data(&network_data(&interfaces)).unwrap();
        // network_data.json keeps DNS servers globally: they come back on the first link.
        let mut expected = interfaces.clone();
        expected[0].search.clear();
        assert_eq!(back, expected);
    }

    #[test]
    fn network_data_json_shape() {
        let data = network_data(&interfaces_from_variables(&sample()).unwrap());
        assert_eq!(
            data["links"][0],
            json!({"id": "eth0", "type": "phy", "ethernet_mac_address": "02:00:c0:00:02:0a", "mtu": 1400})
        );
        assert_eq!(data["networks"][0]["netmask"], "255.255.255.0");
        assert_eq!(data["networks"][0]["routes"][0]["gateway"], "192.0.2.1");
        assert_eq!(data["networks"][1]["ip_address"], "192.0.2.11");
        assert_eq!(data["networks"][2]["netmask"], "ffff:ffff:ffff::");
        assert_eq!(
            data["networks"][3],
            json!({"type": "ipv4_dhcp", "id": "network3", "link": "eth1"})
        );
        assert_eq!(
            data["services"],
            json!([{"type": "dns", "address": "192.0.2.53"}, {"type": "dns", "address": "192.0.2.54"}])
        );
    }
}
