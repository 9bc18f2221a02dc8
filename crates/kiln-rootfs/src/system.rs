//! System settings inside the image root: hostname, groups, users with SSH
//! keys, passwords and sudo rules, services, timezone and locale. Names and
//! values reach commands as arguments or stdin, never as shell text.

use crate::files::{TreeFile, install};
use crate::{Error, Result, Sandbox};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    pub name: String,
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSpec {
    /// A crypt(3) hash, set as it is.
    Hashed(String),
    /// Hashed in the image by chpasswd, with the image's own method.
    Plain(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SudoRule {
    None,
    Password,
    Nopasswd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    pub name: String,
    pub uid: Option<u32>,
    pub groups: Vec<String>,
    pub shell: Option<String>,
    pub ssh_keys: Vec<String>,
    pub password: Option<PasswordSpec>,
    pub sudo: SudoRule,
}

/// Checks a user or group name as useradd would accept it.
pub fn check_account_name(name: &str) -> Result<()> {
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if first_ok && rest_ok && name.len() <= 32 {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{name:?} is not a valid user or group name (lower-case letters, digits, _ and -, at most 32)"
        )))
    }
}

/// The host name the image boots with: the template name made a valid label.
pub fn hostname_for(name: &str) -> String {
    let mut host: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    host.truncate(63);
    let host = host.trim_matches('-').to_string();
    if host.is_empty() { "kiln".into() } else { host }
}

pub fn set_hostname(sandbox: &Sandbox, hostname: &str) -> Result<()> {
    install(
        sandbox,
        &[
            TreeFile::new("/etc/hostname", format!("{hostname}\n"), 0o644),
            TreeFile::new(
                "/etc/hosts",
                format!(
                    "127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
                ),
                0o644,
            ),
        ],
    )
}

pub fn add_group(sandbox: &Sandbox, group: &GroupSpec) -> Result<()> {
    check_account_name(&group.name)?;
    let mut argv = vec!["groupadd".to_string()];
    if let Some(gid) = group.gid {
        argv.extend(["--gid".into(), gid.to_string()]);
    }
    argv.extend(["--".into(), group.name.clone()]);
    sandbox.run(&argv)?;
    Ok(())
}

/// A user's entry as the image's own name service reports it.
struct Account {
    uid: u32,
    gid: u32,
    home: String,
}

fn account(sandbox: &Sandbox, name: &str) -> Result<Account> {
    let line = sandbox.run(&["getent", "passwd", "--", name])?;
    let f: Vec<&str> = line.trim_end().split(':').collect();
    let parsed = (f.len() >= 7)
        .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?, f[5].to_string())))
        .flatten();
    let (uid, gid, home) = parsed
        .ok_or_else(|| Error::Invalid(format!("user {name}: unexpected passwd entry {line:?}")))?;
    Ok(Account { uid, gid, home })
}

pub fn add_user(sandbox: &Sandbox, user: &UserSpec) -> Result<()> {
    check_account_name(&user.name)?;
    for g in &user.groups {
        check_account_name(g)?;
    }
    let mut argv = vec![
        "useradd".to_string(),
        "--create-home".into(),
        "--user-group".into(),
    ];
    if let Some(uid) = user.uid {
        argv.extend(["--uid".into(), uid.to_string()]);
    }
    if let Some(shell) = &user.shell {
        argv.extend(["--shell".into(), shell.clone()]);
    }
    if !user.groups.is_empty() {
        argv.extend(["--groups".into(), user.groups.join(",")]);
    }
    argv.extend(["--".into(), user.name.clone()]);
    sandbox.run(&argv)?;
    if let Some(password) = &user.password {
        set_password(sandbox, &user.name, password)?;
    }
    if !user.ssh_keys.is_empty() {
        authorize_keys(sandbox, &user.name, &user.ssh_keys)?;
    }
    sudo_rule(sandbox, &user.name, user.sudo)
}

pub fn set_password(sandbox: &Sandbox, name: &str, password: &PasswordSpec) -> Result<()> {
    match password {
        PasswordSpec::Hashed(hash) => {
            if hash.contains(':') || hash.contains('\n') {
                return Err(Error::Invalid(format!(
                    "the password hash of {name} contains ':' or a newline"
                )));
            }
            sandbox.run(&["usermod", "--password", hash, "--", name])?;
        }
        PasswordSpec::Plain(plain) => {
            if plain.contains('\n') {
                return Err(Error::Invalid(format!(
                    "the password of {name} contains a newline"
                )));
            }
            let line = format!("{name}:{plain}\n");
            sandbox.run_with_input(&["chpasswd"], Some(line.as_bytes()))?;
        }
    }
    Ok(())
}

fn authorize_keys(sandbox: &Sandbox, name: &str, keys: &[String]) -> Result<()> {
    if let Some(bad) = keys.iter().find(|k| k.contains('\n')) {
        return Err(Error::Invalid(format!(
            "an SSH key of {name} spans lines: {bad:?}"
        )));
    }
    let Account { uid, gid, home } = account(sandbox, name)?;
    let owner = format!("{uid}:{gid}");
    let ssh_dir = format!("{home}/.ssh");
    let keys_file = format!("{ssh_dir}/authorized_keys");
    sandbox.run(&[
        "install",
        "-d",
        "-m",
        "0700",
        "-o",
        &uid.to_string(),
        "-g",
        &gid.to_string(),
        "--",
        &ssh_dir,
    ])?;
    let mut text = keys.join("\n");
    text.push('\n');
    install(sandbox, &[TreeFile::new(keys_file.clone(), text, 0o600)])?;
    sandbox.run(&["chown", "--no-dereference", &owner, "--", &keys_file])?;
    Ok(())
}

fn sudo_rule(sandbox: &Sandbox, name: &str, rule: SudoRule) -> Result<()> {
    let spec = match rule {
        SudoRule::None => return Ok(()),
        SudoRule::Password => "ALL",
        SudoRule::Nopasswd => "NOPASSWD: ALL",
    };
    if !sandbox.root().join("usr/bin/sudo").exists() {
        return Err(Error::Invalid(format!(
            "user {name} has a sudo rule, but sudo is not installed: add the sudo package"
        )));
    }
    let path = format!("/etc/sudoers.d/kiln-{name}");
    install(
        sandbox,
        &[TreeFile::new(
            path.clone(),
            format!("{name} ALL=(ALL:ALL) {spec}\n"),
            0o440,
        )],
    )?;
    sandbox.run(&["visudo", "--check", "--quiet", "--file", &path])?;
    Ok(())
}

/// Sets the owner and group (names as the image knows them) of `path`.
pub fn chown(sandbox: &Sandbox, path: &str, owner: &str, group: &str) -> Result<()> {
    check_account_name(owner)?;
    check_account_name(group)?;
    crate::files::check_path(path)?;
    sandbox.run(&[
        "chown",
        "--no-dereference",
        &format!("{owner}:{group}"),
        "--",
        path,
    ])?;
    Ok(())
}

fn check_unit(unit: &str) -> Result<()> {
    let ok = !unit.is_empty()
        && !unit.starts_with('-')
        && unit
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@_.-:\\".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{unit:?} is not a systemd unit name"
        )))
    }
}

/// `systemctl enable` or `disable` for each unit, offline in the image root.
pub fn set_services(sandbox: &Sandbox, enable: &[String], disable: &[String]) -> Result<()> {
    if enable.is_empty() && disable.is_empty() {
        return Ok(());
    }
    if !sandbox.root().join("usr/bin/systemctl").exists() {
        return Err(Error::Invalid(
            "services are listed, but systemd is not installed in the image: add systemd-sysv"
                .into(),
        ));
    }
    for (verb, units) in [("enable", enable), ("disable", disable)] {
        for unit in units {
            check_unit(unit)?;
            sandbox.run(&["systemctl", verb, "--", unit])?;
        }
    }
    Ok(())
}

pub fn set_timezone(sandbox: &Sandbox, zone: &str) -> Result<()> {
    let ok = !zone.is_empty()
        && zone
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && zone
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c));
    if !ok {
        return Err(Error::Invalid(format!("{zone:?} is not a time zone name")));
    }
    let target = format!("/usr/share/zoneinfo/{zone}");
    sandbox.run(&["test", "-f", &target]).map_err(|_| {
        Error::Invalid(format!(
            "time zone {zone}: {target} is not in the image (is tzdata installed?)"
        ))
    })?;
    sandbox.run(&["ln", "-sfn", &target, "/etc/localtime"])?;
    install(
        sandbox,
        &[TreeFile::new("/etc/timezone", format!("{zone}\n"), 0o644)],
    )
}

pub fn set_locale(sandbox: &Sandbox, locale: &str) -> Result<()> {
    let builtin = matches!(locale, "C" | "POSIX" | "C.UTF-8" | "C.utf8");
    if !builtin {
        let Some((_, charset)) = locale.split_once('.') else {
            return Err(Error::Invalid(format!(
                "locale {locale:?}: give the character set too, as in en_US.UTF-8"
            )));
        };
        let ok = locale
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-@".contains(c));
        if !ok {
            return Err(Error::Invalid(format!("{locale:?} is not a locale name")));
        }
        if !sandbox.root().join("usr/sbin/locale-gen").exists() {
            return Err(Error::Invalid(format!(
                "locale {locale} needs the locales package in the image"
            )));
        }
        install(
            sandbox,
            &[TreeFile::new(
                "/etc/locale.gen",
                format!("{locale} {charset}\n"),
                0o644,
            )],
        )?;
        sandbox.run(&["locale-gen"])?;
    }
    install(
        sandbox,
        &[TreeFile::new(
            "/etc/default/locale",
            format!("LANG={locale}\n"),
            0o644,
        )],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_are_valid_labels() {
        assert_eq!(hostname_for("debian-rich"), "debian-rich");
        assert_eq!(hostname_for("Web Frontend_1"), "web-frontend-1");
        assert_eq!(hostname_for("--"), "kiln");
        assert_eq!(hostname_for(&"a".repeat(80)).len(), 63);
    }

    #[test]
    fn account_and_unit_names() {
        check_account_name("admin").unwrap();
        check_account_name("_apt").unwrap();
        for bad in ["Admin", "-x", "a b", "", "a:b"] {
            assert!(check_account_name(bad).is_err(), "{bad}");
        }
        check_unit("kiln-marker.service").unwrap();
        check_unit("getty@ttyS0.service").unwrap();
        assert!(check_unit("--now").is_err());
        assert!(check_unit("a;b").is_err());
    }
}
