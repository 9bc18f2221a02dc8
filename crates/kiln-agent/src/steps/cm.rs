//! The hand-off to configuration management: one Puppet agent run (against
//! a server that classifies with `kiln enc`), or chef-solo with the node's
//! run_list and attributes.

use std::collections::BTreeMap;

use super::scripts::run_argv;
use super::{Done, Env};
use crate::files::{read_text, write_atomic};

/// puppet.conf with the `[agent]` settings replaced or added; other lines kept.
pub fn puppet_conf(existing: &str, settings: &BTreeMap<String, String>) -> String {
    let mut out = Vec::new();
    let mut in_agent = false;
    let mut seen_agent = false;
    let mut pending: Vec<(&String, &String)> = settings.iter().collect();
    let flush = |out: &mut Vec<String>, pending: &mut Vec<(&String, &String)>| {
        for (key, value) in pending.drain(..) {
            out.push(format!("{key} = {value}"));
        }
    };
    for line in existing.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            if in_agent {
                flush(&mut out, &mut pending);
            }
            in_agent = trimmed == "[agent]";
            seen_agent |= in_agent;
        } else if in_agent {
            let key = trimmed.split('=').next().unwrap_or_default().trim();
            if settings.contains_key(key) {
                continue;
            }
        }
        out.push(line.to_string());
    }
    if in_agent {
        flush(&mut out, &mut pending);
    }
    if !seen_agent && !pending.is_empty() {
        out.push("[agent]".into());
        flush(&mut out, &mut pending);
    }
    out.join("\n") + "\n"
}

pub fn hand_off(env: &Env<'_>) -> Result<Done, String> {
    let mut done = Vec::new();
    if let Some(puppet) = &env.context.puppet {
        let path = if env.root.at("/etc/puppetlabs/puppet").is_dir() {
            "/etc/puppetlabs/puppet/puppet.conf"
        } else {
            "/etc/puppet/puppet.conf"
        };
        if puppet.settings.values().any(|v| v.contains('\n')) {
            return Err("a puppet setting spans lines".into());
        }
        let host = env.root.at(path);
        write_atomic(
            &host,
            puppet_conf(&read_text(&host)?, &puppet.settings).as_bytes(),
            0o644,
            None,
        )?;
        if puppet.run {
            run_argv(
                env,
                &[
                    "puppet",
                    "agent",
                    "--onetime",
                    "--no-daemonize",
                    "--verbose",
                ],
                "/",
                "puppet",
            )?;
        }
        done.push(format!("puppet ({path})"));
    }
    if let Some(chef) = &env.context.chef {
        let node = serde_json::to_string_pretty(&chef.node).expect("JSON serializes");
        write_atomic(
            &env.root.at("/etc/chef/node.json"),
            node.as_bytes(),
            0o600,
            None,
        )?;
        let solo = env.root.at("/etc/chef/solo.rb");
        if !solo.exists() {
            let text = "file_cache_path \"/var/cache/chef\"\ncookbook_path [\"/var/chef/cookbooks\"]\nrole_path \"/var/chef/roles\"\n";
            write_atomic(&solo, text.as_bytes(), 0o644, None)?;
        }
        if chef.run {
            run_argv(
                env,
                &[
                    "chef-solo",
                    "-c",
                    "/etc/chef/solo.rb",
                    "-j",
                    "/etc/chef/node.json",
                ],
                "/",
                "chef-solo",
            )?;
        }
        done.push("chef-solo".into());
    }
    if done.is_empty() {
        Ok(Done::Skipped("not asked for".into()))
    } else {
        Ok(Done::Applied(done.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puppet_conf_keeps_other_lines() {
        let settings = BTreeMap::from([("server".to_string(), "puppet.example".to_string())]);
        let before = "[main]\nlogdir = /var/log/puppet\n[agent]\nserver = old\nreport = true\n";
        assert_eq!(
            puppet_conf(before, &settings),
            "[main]\nlogdir = /var/log/puppet\n[agent]\nreport = true\nserver = puppet.example\n"
        );
        assert_eq!(
            puppet_conf("", &settings),
            "[agent]\nserver = puppet.example\n"
        );
    }
}
