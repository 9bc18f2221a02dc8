//! The cloud-config subset kiln translates to and from OpenNebula context
//! variables: hostname, users, SSH keys, passwords, write_files, runcmd and
//! timezone (network settings live in [`crate::netconfig`]).
//!
//! | cloud-config | context variables |
//! |---|---|
//! | `hostname` / `fqdn` | SET_HOSTNAME |
//! | `timezone` | TIMEZONE |
//! | `users[0].name` | USERNAME (one-context's default is root) |
//! | `users[0].ssh_authorized_keys`, `ssh_authorized_keys` | SSH_PUBLIC_KEY, one key a line |
//! | `users[0].hashed_passwd` / `passwd` | CRYPTED_PASSWORD (or CRYPTED_PASSWORD_BASE64) |
//! | `users[0].plain_text_passwd` | PASSWORD (or PASSWORD_BASE64) |
//! | `users[0].sudo` | USERNAME_SUDO / GRANT_SUDO (default YES) |
//! | `users[0].shell` | USERNAME_SHELL |
//! | `write_files`, `runcmd` | USER_DATA holding a cloud-config with just those, base64 (one-context runs exactly these two) |
//!
//! The other way, a USER_DATA that is itself a cloud-config is merged into
//! the translation whole: its write_files and runcmd, its users and keys
//! beside the context's, its hostname and timezone where the variables set
//! none, and every other key (packages, bootcmd, apt…) kept as it came in
//! [`CloudConfig::other`], so a NoCloud or ConfigDrive seed hands cloud-init
//! all of it.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::onecontext::Variables;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// cloud-init refuses root logins by default; one-context's user is root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_root: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_authorized_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<UserEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write_files: Vec<WriteFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runcmd: Vec<Command>,
    /// Top-level keys outside the subset, as they came.
    #[serde(flatten, default)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `users:` holds `default` (the distribution's user) or full entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UserEntry {
    Named(String),
    User(User),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo: Option<Sudo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// Supplementary groups: a list, or one comma-separated string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Groups>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_passwd: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashed_passwd: Option<String>,
    /// The older name of `hashed_passwd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain_text_passwd: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_authorized_keys: Vec<String>,
}

/// `groups:` of a user: `[adm, sudo]` or `"adm, sudo"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Groups {
    List(Vec<String>),
    Text(String),
}

impl Groups {
    pub fn names(&self) -> Vec<String> {
        let names: Vec<&str> = match self {
            Groups::List(list) => list.iter().map(String::as_str).collect(),
            Groups::Text(text) => text.split(',').collect(),
        };
        names
            .into_iter()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// `sudo:` is a rule, a list of rules, or `false`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Sudo {
    Rule(String),
    Rules(Vec<String>),
    Flag(bool),
}

impl Sudo {
    fn grants(&self) -> bool {
        match self {
            Sudo::Rule(rule) => !rule.is_empty(),
            Sudo::Rules(rules) => !rules.is_empty(),
            Sudo::Flag(flag) => *flag,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteFile {
    pub path: String,
    #[serde(default)]
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defer: Option<bool>,
}

/// A `runcmd` item: a shell string, or an argv list run without a shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Command {
    Shell(String),
    Argv(Vec<String>),
}

const SUDO_ALL: &str = "ALL=(ALL) NOPASSWD:ALL";

impl CloudConfig {
    /// Parses a cloud-config document (the `#cloud-config` line is a comment).
    /// Also returns the top-level keys outside the subset, sorted.
    pub fn parse(text: &str) -> Result<(CloudConfig, Vec<String>)> {
        let invalid = |e: serde_saphyr::Error| {
            Error::Invalid(format!("cloud-config: {}", first_line(&e.to_string())))
        };
        let all: serde_json::Value = serde_saphyr::from_str(text).map_err(invalid)?;
        let config: CloudConfig = match all {
            serde_json::Value::Object(_) => serde_saphyr::from_str(text).map_err(invalid)?,
            serde_json::Value::Null => CloudConfig::default(),
            _ => {
                return Err(Error::Invalid(
                    "cloud-config: expected a map at the top".into(),
                ));
            }
        };
        let others = config.other.keys().cloned().collect();
        Ok((config, others))
    }

    /// The document with its `#cloud-config` header.
    pub fn to_yaml(&self) -> String {
        let body =
            serde_saphyr::to_string(self).expect("plain strings, lists and maps always serialize");
        format!("#cloud-config\n{body}")
    }

    pub fn is_empty(&self) -> bool {
        *self == CloudConfig::default()
    }

    /// The full user entries (not `default`), in order.
    pub fn named_users(&self) -> impl Iterator<Item = &User> {
        self.users.iter().filter_map(|u| match u {
            UserEntry::User(user) => Some(user),
            UserEntry::Named(_) => None,
        })
    }

    /// Takes in a USER_DATA cloud-config: lists add up (a user the context
    /// already defines keeps the context's entry), single values fill in
    /// only where the context set none, other keys come along.
    fn merge_user_data(&mut self, embedded: CloudConfig) {
        self.hostname = self.hostname.take().or(embedded.hostname);
        self.fqdn = self.fqdn.take().or(embedded.fqdn);
        self.timezone = self.timezone.take().or(embedded.timezone);
        self.disable_root = self.disable_root.or(embedded.disable_root);
        self.ssh_authorized_keys
            .extend(embedded.ssh_authorized_keys);
        let defined: BTreeSet<String> = self.named_users().map(|u| u.name.clone()).collect();
        self.users
            .extend(embedded.users.into_iter().filter(|u| match u {
                UserEntry::User(user) => !defined.contains(&user.name),
                UserEntry::Named(_) => true,
            }));
        self.write_files.extend(embedded.write_files);
        self.runcmd.extend(embedded.runcmd);
        self.other.extend(embedded.other);
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

fn non_empty<'a>(variables: &'a Variables, name: &str) -> Option<&'a str> {
    variables
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

fn yes(variables: &Variables, name: &str) -> Option<bool> {
    non_empty(variables, name).map(|v| v.eq_ignore_ascii_case("YES"))
}

fn decode_base64(name: &str, value: &str) -> Result<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|e| Error::Invalid(format!("{name} is not base64: {e}")))?;
    String::from_utf8(bytes)
        .map_err(|_| Error::Invalid(format!("{name} does not decode to UTF-8 text")))
}

/// A variable, or its `_BASE64` twin decoded; the base64 one wins, as in one-context.
fn plain_or_base64(variables: &Variables, name: &str) -> Result<Option<String>> {
    let encoded = format!("{name}_BASE64");
    match non_empty(variables, &encoded) {
        Some(value) => decode_base64(&encoded, value).map(Some),
        None => Ok(non_empty(variables, name).map(str::to_string)),
    }
}

/// USER_DATA (or USERDATA) decoded when its encoding says base64.
pub fn user_data(variables: &Variables) -> Result<Option<String>> {
    for (data, encoding) in [
        ("USER_DATA", "USER_DATA_ENCODING"),
        ("USERDATA", "USERDATA_ENCODING"),
    ] {
        if let Some(value) = non_empty(variables, data) {
            let base64 =
                non_empty(variables, encoding).is_some_and(|e| e.eq_ignore_ascii_case("base64"));
            return if base64 {
                decode_base64(data, value).map(Some)
            } else {
                Ok(Some(value.to_string()))
            };
        }
    }
    Ok(None)
}

pub fn is_cloud_config(text: &str) -> bool {
    text.starts_with("#cloud-config")
}

/// Context variables → cloud-config. A USER_DATA that is itself a
/// cloud-config is merged in (the variables win where both set a value).
pub fn from_variables(variables: &Variables) -> Result<CloudConfig> {
    let mut config = CloudConfig {
        timezone: non_empty(variables, "TIMEZONE").map(str::to_string),
        ..CloudConfig::default()
    };
    if let Some(host) = non_empty(variables, "SET_HOSTNAME") {
        match host.split_once('.') {
            Some((short, _)) => {
                config.hostname = Some(short.to_string());
                config.fqdn = Some(host.to_string());
            }
            None => config.hostname = Some(host.to_string()),
        }
    }
    let keys: Vec<String> = ["SSH_PUBLIC_KEY", "EC2_PUBLIC_KEY"]
        .iter()
        .filter_map(|name| non_empty(variables, name))
        .flat_map(str::lines)
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .map(str::to_string)
        .collect();
    let crypted = plain_or_base64(variables, "CRYPTED_PASSWORD")?;
    let password = if crypted.is_none() {
        plain_or_base64(variables, "PASSWORD")?
    } else {
        None
    };
    let username = non_empty(variables, "USERNAME");
    if username.is_some() || !keys.is_empty() || crypted.is_some() || password.is_some() {
        let name = username.unwrap_or("root").to_string();
        let is_root = name == "root";
        let sudo = yes(variables, "USERNAME_SUDO")
            .or(yes(variables, "GRANT_SUDO"))
            .unwrap_or(true);
        let has_password = crypted.is_some() || password.is_some();
        config.users.push(UserEntry::User(User {
            sudo: (sudo && !is_root).then(|| Sudo::Rule(SUDO_ALL.into())),
            shell: non_empty(variables, "USERNAME_SHELL").map(str::to_string),
            lock_passwd: has_password.then_some(false),
            hashed_passwd: crypted,
            plain_text_passwd: password,
            ssh_authorized_keys: keys,
            name,
            ..User::default()
        }));
        if is_root {
            config.disable_root = Some(false);
        }
    }
    if let Some(data) = user_data(variables)?.filter(|d| is_cloud_config(d)) {
        let (embedded, _) = CloudConfig::parse(&data)?;
        config.merge_user_data(embedded);
    }
    Ok(config)
}

/// cloud-config → context variables (the reverse of [`from_variables`]).
pub fn to_variables(config: &CloudConfig) -> Variables {
    let mut variables = Variables::new();
    let mut set = |name: &str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            variables.insert(name.to_string(), value);
        }
    };
    set(
        "SET_HOSTNAME",
        config.fqdn.clone().or_else(|| config.hostname.clone()),
    );
    set("TIMEZONE", config.timezone.clone());
    let user = config.named_users().next();
    let mut keys: Vec<String> = user
        .map(|u| u.ssh_authorized_keys.clone())
        .unwrap_or_default();
    keys.extend(config.ssh_authorized_keys.iter().cloned());
    set("SSH_PUBLIC_KEY", Some(keys.join("\n")));
    if let Some(user) = user {
        set("USERNAME", Some(user.name.clone()));
        set("USERNAME_SHELL", user.shell.clone());
        set(
            "CRYPTED_PASSWORD",
            user.hashed_passwd.clone().or_else(|| user.passwd.clone()),
        );
        set("PASSWORD", user.plain_text_passwd.clone());
        if user.name != "root" {
            let grants = user.sudo.as_ref().is_some_and(Sudo::grants);
            set(
                "USERNAME_SUDO",
                Some(if grants { "YES" } else { "NO" }.to_string()),
            );
        }
    }
    if !config.write_files.is_empty() || !config.runcmd.is_empty() {
        let embedded = CloudConfig {
            write_files: config.write_files.clone(),
            runcmd: config.runcmd.clone(),
            ..CloudConfig::default()
        };
        set(
            "USER_DATA",
            Some(base64::engine::general_purpose::STANDARD.encode(embedded.to_yaml())),
        );
        set("USER_DATA_ENCODING", Some("base64".into()));
    }
    variables
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onecontext::variables;

    fn user(config: &CloudConfig) -> &User {
        match &config.users[0] {
            UserEntry::User(user) => user,
            UserEntry::Named(name) => panic!("expected a full user entry, found {name}"),
        }
    }

    #[test]
    fn context_to_cloud_config() {
        let v = variables(&[
            ("SET_HOSTNAME", "web1.example.org"),
            ("TIMEZONE", "Europe/Madrid"),
            ("USERNAME", "alice"),
            ("USERNAME_SHELL", "/bin/zsh"),
            (
                "SSH_PUBLIC_KEY",
                "ssh-ed25519 AAAA one\n\nssh-rsa BBBB two\n",
            ),
            ("PASSWORD_BASE64", "czNjcjN0ICdxdW90ZWQn"),
        ]);
        let config = from_variables(&v).unwrap();
        assert_eq!(config.hostname.as_deref(), Some("web1"));
        assert_eq!(config.fqdn.as_deref(), Some("web1.example.org"));
        assert_eq!(config.timezone.as_deref(), Some("Europe/Madrid"));
        let alice = user(&config);
        assert_eq!(alice.name, "alice");
        assert_eq!(
            alice.ssh_authorized_keys,
            ["ssh-ed25519 AAAA one", "ssh-rsa BBBB two"]
        );
        assert_eq!(alice.plain_text_passwd.as_deref(), Some("s3cr3t 'quoted'"));
        assert_eq!(alice.lock_passwd, Some(false));
        assert_eq!(alice.sudo, Some(Sudo::Rule(SUDO_ALL.into())));
        assert_eq!(config.disable_root, None);
    }

    #[test]
    fn root_by_default_and_crypted_password_wins() {
        let v = variables(&[
            ("SSH_PUBLIC_KEY", "ssh-ed25519 AAAA k"),
            ("CRYPTED_PASSWORD", "$6$salt$hash"),
            ("PASSWORD", "ignored"),
        ]);
        let config = from_variables(&v).unwrap();
        let root = user(&config);
        assert_eq!(root.name, "root");
        assert_eq!(root.sudo, None, "root needs no sudo rule");
        assert_eq!(root.hashed_passwd.as_deref(), Some("$6$salt$hash"));
        assert_eq!(root.plain_text_passwd, None);
        assert_eq!(config.disable_root, Some(false));
        assert!(from_variables(&Variables::new()).unwrap().is_empty());
    }

    #[test]
    fn user_data_cloud_config_contributes_files_and_commands() {
        let data = "#cloud-config\nwrite_files:\n  - path: /etc/motd\n    content: hi\nruncmd:\n  - [touch, /tmp/x]\n  - echo $HOME\n";
        let v = variables(&[("USER_DATA", data)]);
        let config = from_variables(&v).unwrap();
        assert_eq!(config.write_files[0].path, "/etc/motd");
        assert_eq!(
            config.runcmd,
            [
                Command::Argv(vec!["touch".into(), "/tmp/x".into()]),
                Command::Shell("echo $HOME".into())
            ]
        );
    }

    #[test]
    fn user_data_cloud_config_is_merged_whole() {
        let data = "#cloud-config\nhostname: ignored\ntimezone: Europe/Paris\nssh_deletekeys: false\npackages: [nginx, {name: git}]\nbootcmd:\n  - [sh, -c, 'echo early']\napt:\n  preserve_sources_list: true\nusers:\n  - default\n  - name: alice\n    shell: /bin/zsh\n  - name: bob\nssh_authorized_keys: [ssh-rsa K2]\n";
        let v = variables(&[
            ("SET_HOSTNAME", "web1"),
            ("USERNAME", "alice"),
            ("SSH_PUBLIC_KEY", "ssh-ed25519 K1"),
            ("USER_DATA", data),
        ]);
        let config = from_variables(&v).unwrap();
        assert_eq!(config.hostname.as_deref(), Some("web1"), "the context wins");
        assert_eq!(config.timezone.as_deref(), Some("Europe/Paris"));
        let names: Vec<String> = config
            .users
            .iter()
            .map(|u| match u {
                UserEntry::User(user) => user.name.clone(),
                UserEntry::Named(name) => name.clone(),
            })
            .collect();
        assert_eq!(names, ["alice", "default", "bob"]);
        assert_eq!(user(&config).shell, None, "the context's alice is kept");
        assert_eq!(config.ssh_authorized_keys, ["ssh-rsa K2"]);
        // What kiln does not translate reaches cloud-init as it came.
        let (again, others) = CloudConfig::parse(&config.to_yaml()).unwrap();
        assert_eq!(others, ["apt", "bootcmd", "packages", "ssh_deletekeys"]);
        assert_eq!(again.other["ssh_deletekeys"], serde_json::json!(false));
        assert_eq!(
            again.other["packages"],
            serde_json::json!(["nginx", {"name": "git"}])
        );
        assert_eq!(
            again.other["bootcmd"],
            serde_json::json!([["sh", "-c", "echo early"]])
        );
        assert_eq!(
            again.other["apt"],
            serde_json::json!({"preserve_sources_list": true})
        );
        assert_eq!(again, config);
    }

    #[test]
    fn cloud_config_to_context() {
        let text = "#cloud-config\nhostname: db\nusers:\n  - default\n  - name: bob\n    sudo: false\n    passwd: $6$x$y\n    ssh_authorized_keys: [ssh-ed25519 K1]\nssh_authorized_keys: [ssh-rsa K2]\npackages: [nginx]\nruncmd: [reboot]\n";
        let (config, others) = CloudConfig::parse(text).unwrap();
        assert_eq!(others, ["packages"]);
        let v = to_variables(&config);
        assert_eq!(v["SET_HOSTNAME"], "db");
        assert_eq!(v["USERNAME"], "bob");
        assert_eq!(v["USERNAME_SUDO"], "NO");
        assert_eq!(v["CRYPTED_PASSWORD"], "$6$x$y");
        assert_eq!(v["SSH_PUBLIC_KEY"], "ssh-ed25519 K1\nssh-rsa K2");
        assert_eq!(v["USER_DATA_ENCODING"], "base64");
        let embedded = user_data(&v).unwrap().unwrap();
        let (embedded, _) = CloudConfig::parse(&embedded).unwrap();
        assert_eq!(embedded.runcmd, [Command::Shell("reboot".into())]);
        assert!(
            embedded.users.is_empty(),
            "USER_DATA carries only write_files and runcmd"
        );
    }

    #[test]
    fn both_directions_round_trip() {
        let v = variables(&[
            ("SET_HOSTNAME", "web1.example.org"),
            ("TIMEZONE", "UTC"),
            ("USERNAME", "alice"),
            ("USERNAME_SUDO", "YES"),
            ("SSH_PUBLIC_KEY", "ssh-ed25519 AAAA one\nssh-rsa BBBB two"),
            ("CRYPTED_PASSWORD", "$6$salt$hash"),
        ]);
        assert_eq!(to_variables(&from_variables(&v).unwrap()), v);

        let text = "#cloud-config\nhostname: h\nfqdn: h.example\nusers:\n  - name: carol\n    sudo: ALL=(ALL) NOPASSWD:ALL\n    ssh_authorized_keys: [k1]\nwrite_files:\n  - path: /x\n    content: \"a: 'b'\\n\"\n    permissions: '0600'\nruncmd:\n  - [ls, -l]\n";
        let (config, _) = CloudConfig::parse(text).unwrap();
        let back = from_variables(&to_variables(&config)).unwrap();
        assert_eq!(
            (back.fqdn, back.hostname),
            (config.fqdn.clone(), config.hostname.clone())
        );
        assert_eq!(
            (back.write_files, back.runcmd),
            (config.write_files.clone(), config.runcmd.clone())
        );
        assert_eq!(user(&config).ssh_authorized_keys, ["k1"]);
    }

    #[test]
    fn generated_yaml_parses_back_equal() {
        let config = CloudConfig {
            hostname: Some("yes".into()),
            runcmd: vec![Command::Shell("echo 'a: b' # not a comment".into())],
            write_files: vec![WriteFile {
                path: "/p".into(),
                content: "line1\nline2\n\"q\" $(id)\n".into(),
                ..WriteFile::default()
            }],
            ..CloudConfig::default()
        };
        let text = config.to_yaml();
        assert!(text.starts_with("#cloud-config\n"));
        assert_eq!(CloudConfig::parse(&text).unwrap().0, config);
    }
}
