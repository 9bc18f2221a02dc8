//! Hostname and /etc/hosts, timezone, growing the root filesystem.

use std::process::Command;

use super::{Done, Env};
use crate::files::{read_text, write_atomic};
use crate::grow;

/// A hostname label list: letters, digits, `-` and `.`.
fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

pub fn hostname(env: &Env<'_>) -> Result<Done, String> {
    let context = env.context;
    let Some(host) = context.hostname.clone().or_else(|| context.fqdn.clone()) else {
        return Ok(Done::Skipped("the context sets no hostname".into()));
    };
    let fqdn = context.fqdn.clone().unwrap_or_else(|| host.clone());
    let short = host.split('.').next().unwrap_or(&host).to_string();
    for name in [&short, &fqdn] {
        if !valid_hostname(name) {
            return Err(format!("{name:?} is not a valid hostname"));
        }
    }
    write_atomic(
        &env.root.at("/etc/hostname"),
        format!("{short}\n").as_bytes(),
        0o644,
        None,
    )?;
    // Debian's convention: the host's own names on 127.0.1.1.
    let hosts_path = env.root.at("/etc/hosts");
    let hosts = read_text(&hosts_path)?;
    let names = if fqdn == short {
        short.clone()
    } else {
        format!("{fqdn} {short}")
    };
    let line = format!("127.0.1.1\t{names}");
    let mut lines: Vec<String> = hosts
        .lines()
        .filter(|l| !l.trim_start().starts_with("127.0.1.1"))
        .map(str::to_string)
        .collect();
    let position = lines
        .iter()
        .position(|l| l.trim_start().starts_with("127.0.0.1"))
        .map_or(0, |p| p + 1);
    lines.insert(position.min(lines.len()), line);
    if !lines
        .iter()
        .any(|l| l.trim_start().starts_with("127.0.0.1"))
    {
        lines.insert(0, "127.0.0.1\tlocalhost".into());
    }
    let text = lines.join("\n") + "\n";
    if text != hosts {
        write_atomic(&hosts_path, text.as_bytes(), 0o644, None)?;
    }
    if env.root.is_live() {
        std::fs::write("/proc/sys/kernel/hostname", &short)
            .map_err(|e| format!("cannot set the running hostname: {e}"))?;
    }
    Ok(Done::Applied(fqdn))
}

pub fn timezone(env: &Env<'_>) -> Result<Done, String> {
    let Some(zone) = env.context.config.timezone.as_deref() else {
        return Ok(Done::Skipped("the context sets no timezone".into()));
    };
    let plain = !zone.is_empty()
        && !zone.starts_with('/')
        && zone
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && zone
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'));
    if !plain {
        return Err(format!("{zone:?} is not a timezone name"));
    }
    let target = format!("/usr/share/zoneinfo/{zone}");
    if !env.root.at(&target).is_file() {
        return Err(format!("unknown timezone {zone:?} (no {target})"));
    }
    let localtime = env.root.at("/etc/localtime");
    let temp = env.root.at("/etc/.localtime.kiln-agent");
    let _ = std::fs::remove_file(&temp);
    std::os::unix::fs::symlink(&target, &temp)
        .map_err(|e| format!("cannot link /etc/localtime: {e}"))?;
    std::fs::rename(&temp, &localtime)
        .map_err(|e| format!("cannot replace /etc/localtime: {e}"))?;
    write_atomic(
        &env.root.at("/etc/timezone"),
        format!("{zone}\n").as_bytes(),
        0o644,
        None,
    )?;
    Ok(Done::Applied(zone.to_string()))
}

pub fn grow_root(env: &Env<'_>) -> Result<Done, String> {
    if !env.context.grow_root {
        return Ok(Done::Skipped("turned off by the context".into()));
    }
    if !env.root.is_live() {
        return Ok(Done::Skipped("not the running system".into()));
    }
    let (disk, partition, number, fstype) = grow::root_partition()?;
    let Some(bytes) = grow::grow_partition(&disk, number)? else {
        return Ok(Done::Skipped(format!(
            "{} already fills {}",
            partition.display(),
            disk.display()
        )));
    };
    // Tell the kernel the partition's new size without re-reading the whole table.
    run(Command::new("partx")
        .arg("--update")
        .arg("--nr")
        .arg(number.to_string())
        .arg(&disk))?;
    match fstype.as_str() {
        "ext2" | "ext3" | "ext4" => run(Command::new("resize2fs").arg(&partition))?,
        "xfs" => run(Command::new("xfs_growfs").arg("/"))?,
        "btrfs" => run(Command::new("btrfs").args(["filesystem", "resize", "max", "/"]))?,
        other => {
            return Err(format!(
                "grew {} but cannot grow a {other} filesystem",
                partition.display()
            ));
        }
    }
    Ok(Done::Applied(format!(
        "{} is now {} MiB",
        partition.display(),
        bytes / (1024 * 1024)
    )))
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
