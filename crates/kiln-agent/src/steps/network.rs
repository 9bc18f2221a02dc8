//! Network settings for the NICs, matched by MAC, in the format the image
//! uses: systemd-networkd `.network` files, netplan, or ifupdown. Written
//! again only when the context's network changes.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use kiln_context::netconfig::{self, Interface};

use super::{Done, Env};
use crate::files::write_atomic;
use crate::root::Root;

const HEADER: &str =
    "# Written by kiln-agent from the VM's context; replaced when the context changes.\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renderer {
    Networkd,
    Netplan,
    Ifupdown,
}

/// The renderer the image uses: OpenNebula's NETCFG_TYPE when given (the
/// first one present), else netplan when installed, else ifupdown when
/// /etc/network/interfaces configures an interface, else systemd-networkd.
pub fn renderer(root: &Root, wanted: Option<&str>) -> Renderer {
    let has = |path: &str| root.at(path).exists();
    let netplan = has("/usr/sbin/netplan");
    let ifupdown = (has("/sbin/ifup") || has("/usr/sbin/ifup"))
        && std::fs::read_to_string(root.at("/etc/network/interfaces")).is_ok_and(|t| {
            t.lines()
                .any(|l| l.trim_start().starts_with("iface ") && !l.contains(" lo "))
        });
    if let Some(wanted) = wanted {
        for name in wanted.split_whitespace() {
            match name.to_ascii_lowercase().as_str() {
                "netplan" if netplan => return Renderer::Netplan,
                "interfaces" | "debian" if has("/sbin/ifup") || has("/usr/sbin/ifup") => {
                    return Renderer::Ifupdown;
                }
                "networkd" | "systemd-networkd" => return Renderer::Networkd,
                _ => {}
            }
        }
    }
    if netplan {
        Renderer::Netplan
    } else if ifupdown {
        Renderer::Ifupdown
    } else {
        Renderer::Networkd
    }
}

/// The files to write, by guest path.
fn render(
    root: &Root,
    renderer: Renderer,
    interfaces: &[Interface],
) -> Result<Vec<(String, String, u32)>, String> {
    Ok(match renderer {
        Renderer::Networkd => interfaces
            .iter()
            .map(|i| {
                (
                    format!("/etc/systemd/network/10-kiln-eth{}.network", i.index),
                    networkd(i),
                    0o644,
                )
            })
            .collect(),
        Renderer::Netplan => {
            let config = netconfig::network_config(interfaces);
            let yaml = serde_saphyr::to_string(&serde_json::json!({ "network": config }))
                .map_err(|e| format!("cannot write netplan YAML: {e}"))?;
            vec![(
                "/etc/netplan/90-kiln.yaml".into(),
                format!("{HEADER}{yaml}"),
                0o600,
            )]
        }
        Renderer::Ifupdown => vec![(
            "/etc/network/interfaces.d/kiln".into(),
            ifupdown(root, interfaces)?,
            0o644,
        )],
    })
}

fn networkd(i: &Interface) -> String {
    let mut out = String::from(HEADER);
    out.push_str("[Match]\n");
    match &i.mac {
        Some(mac) => writeln!(out, "MACAddress={mac}"),
        None => writeln!(out, "Name=eth{}", i.index),
    }
    .expect("writing to a String");
    if let Some(mtu) = i.mtu {
        write!(out, "\n[Link]\nMTUBytes={mtu}\n").expect("writing to a String");
    }
    out.push_str("\n[Network]\n");
    let dhcp = match (i.dhcp4, i.dhcp6) {
        (true, true) => "yes",
        (true, false) => "ipv4",
        (false, true) => "ipv6",
        (false, false) => "no",
    };
    writeln!(out, "DHCP={dhcp}").expect("writing to a String");
    for (ip, prefix) in &i.ipv4 {
        writeln!(out, "Address={ip}/{prefix}").expect("writing to a String");
    }
    for (ip, prefix) in &i.ipv6 {
        writeln!(out, "Address={ip}/{prefix}").expect("writing to a String");
    }
    if let Some(gateway) = i.gateway {
        writeln!(out, "Gateway={gateway}").expect("writing to a String");
    }
    if let Some(gateway) = i.gateway6 {
        writeln!(out, "Gateway={gateway}").expect("writing to a String");
    }
    for server in &i.dns {
        writeln!(out, "DNS={server}").expect("writing to a String");
    }
    if !i.search.is_empty() {
        writeln!(out, "Domains={}", i.search.join(" ")).expect("writing to a String");
    }
    for route in &i.routes {
        write!(
            out,
            "\n[Route]\nDestination={}\nGateway={}\n",
            route.to, route.via
        )
        .expect("writing to a String");
    }
    out
}

/// The kernel's name of the NIC with this MAC (sysfs), or `eth<index>`.
fn nic_name(root: &Root, i: &Interface) -> String {
    let fallback = format!("eth{}", i.index);
    let Some(mac) = &i.mac else {
        return fallback;
    };
    let Ok(entries) = std::fs::read_dir(root.at("/sys/class/net")) else {
        return fallback;
    };
    entries
        .filter_map(Result::ok)
        .find(|e| {
            std::fs::read_to_string(e.path().join("address"))
                .is_ok_and(|a| a.trim().eq_ignore_ascii_case(mac))
        })
        .and_then(|e| e.file_name().into_string().ok())
        .unwrap_or(fallback)
}

fn ifupdown(root: &Root, interfaces: &[Interface]) -> Result<String, String> {
    let mut out = String::from(HEADER);
    for i in interfaces {
        let name = nic_name(root, i);
        let w = |out: &mut String, text: String| out.push_str(&text);
        w(&mut out, format!("\nauto {name}\n"));
        if i.dhcp4 || i.ipv4.is_empty() && i.ipv6.is_empty() && !i.dhcp6 {
            w(&mut out, format!("iface {name} inet dhcp\n"));
        }
        for (n, (ip, prefix)) in i.ipv4.iter().enumerate() {
            if n == 0 && !i.dhcp4 {
                w(
                    &mut out,
                    format!("iface {name} inet static\n    address {ip}/{prefix}\n"),
                );
                if let Some(g) = i.gateway {
                    w(&mut out, format!("    gateway {g}\n"));
                }
                if let Some(mtu) = i.mtu {
                    w(&mut out, format!("    mtu {mtu}\n"));
                }
                if !i.dns.is_empty() {
                    w(
                        &mut out,
                        format!("    dns-nameservers {}\n", i.dns.join(" ")),
                    );
                }
                if !i.search.is_empty() {
                    w(&mut out, format!("    dns-search {}\n", i.search.join(" ")));
                }
                for route in i.routes.iter().filter(|r| r.via.is_ipv4()) {
                    w(
                        &mut out,
                        format!(
                            "    up ip route replace {} via {} dev {name}\n",
                            route.to, route.via
                        ),
                    );
                }
            } else {
                w(
                    &mut out,
                    format!("    up ip addr add {ip}/{prefix} dev {name}\n"),
                );
            }
        }
        if i.dhcp6 {
            w(&mut out, format!("iface {name} inet6 dhcp\n"));
        } else if let Some((ip, prefix)) = i.ipv6.first() {
            w(
                &mut out,
                format!("iface {name} inet6 static\n    address {ip}/{prefix}\n"),
            );
            if let Some(g) = i.gateway6 {
                w(&mut out, format!("    gateway {g}\n"));
            }
            for route in i.routes.iter().filter(|r| r.via.is_ipv6()) {
                w(
                    &mut out,
                    format!(
                        "    up ip -6 route replace {} via {} dev {name}\n",
                        route.to, route.via
                    ),
                );
            }
        }
    }
    Ok(out)
}

/// resolv.conf from the context's DNS, unless systemd-resolved owns it (a symlink).
fn resolv_conf(root: &Root, interfaces: &[Interface]) -> Option<(String, String, u32)> {
    let path = root.at("/etc/resolv.conf");
    if path.is_symlink() {
        return None;
    }
    let mut servers: Vec<&String> = Vec::new();
    let mut search: Vec<&String> = Vec::new();
    for i in interfaces {
        servers.extend(
            i.dns
                .iter()
                .filter(|s| !servers.contains(s))
                .collect::<Vec<_>>(),
        );
        search.extend(
            i.search
                .iter()
                .filter(|s| !search.contains(s))
                .collect::<Vec<_>>(),
        );
    }
    if servers.is_empty() {
        return None;
    }
    let mut text = String::from(HEADER);
    if !search.is_empty() {
        text.push_str(&format!(
            "search {}\n",
            search
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    for server in servers.iter().take(3) {
        text.push_str(&format!("nameserver {server}\n"));
    }
    Some(("/etc/resolv.conf".into(), text, 0o644))
}

pub fn apply(env: &Env<'_>) -> Result<Done, String> {
    let Some(interfaces) = &env.context.interfaces else {
        return Ok(Done::Skipped("the context has no network settings".into()));
    };
    let renderer = renderer(
        env.root,
        env.context.env.get("NETCFG_TYPE").map(String::as_str),
    );
    let mut files = render(env.root, renderer, interfaces)?;
    files.extend(resolv_conf(env.root, interfaces));
    let fingerprint: String = files
        .iter()
        .map(|(p, t, _)| format!("{p}\n{t}\n"))
        .collect();
    let fingerprint = format!("{:08x}", crc32fast::hash(fingerprint.as_bytes()));
    let unchanged = env.state.get("network") == Some(fingerprint.clone())
        && files
            .iter()
            .all(|(p, t, _)| std::fs::read_to_string(env.root.at(p)).is_ok_and(|c| &c == t));
    if unchanged {
        return Ok(Done::Skipped(format!("unchanged ({renderer:?})")));
    }
    // Files of an earlier context that this one no longer has.
    if renderer == Renderer::Networkd {
        remove_stale(env.root.at("/etc/systemd/network"), &files);
    }
    for (path, text, mode) in &files {
        write_atomic(&env.root.at(path), text.as_bytes(), *mode, None)?;
    }
    env.state.set("network", &fingerprint)?;
    if env.root.is_live() {
        reload(renderer);
    }
    let names: Vec<String> = interfaces
        .iter()
        .map(|i| i.mac.clone().unwrap_or_else(|| format!("eth{}", i.index)))
        .collect();
    Ok(Done::Applied(format!("{renderer:?}: {}", names.join(", "))))
}

fn remove_stale(dir: PathBuf, keep: &[(String, String, u32)]) {
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let kept = keep
            .iter()
            .any(|(p, _, _)| p.ends_with(&format!("/{name}")));
        if name.starts_with("10-kiln-") && !kept {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Makes a running system pick the files up; at early boot the services
/// read them when they start.
fn reload(renderer: Renderer) {
    let command: &[&str] = match renderer {
        Renderer::Netplan => &["netplan", "generate"],
        Renderer::Networkd if std::path::Path::new("/run/systemd/netif/state").exists() => {
            &["networkctl", "reload"]
        }
        _ => return,
    };
    match Command::new(command[0]).args(&command[1..]).status() {
        Ok(status) if status.success() => {}
        Ok(status) => crate::log::warn(&format!("{} exited with {status}", command.join(" "))),
        Err(e) => crate::log::warn(&format!("cannot run {}: {e}", command.join(" "))),
    }
}
