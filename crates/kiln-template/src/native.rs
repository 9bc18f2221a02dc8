//! The native YAML format (see docs/templates.md): from a merged, substituted
//! node tree to a [`Template`], reporting every problem on the way.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;

use crate::diag::{Errors, Problems};
use crate::inherit::{read_merged, relative_to};
use crate::model::*;
use crate::size::Size;
use crate::vars;
use crate::yaml::{Fields, Node};

/// Reads, merges, substitutes and checks the template at `path`.
pub fn load(path: &Path) -> Result<Template, Problems> {
    let mut errs = Errors::default();
    let Some(mut root) = read_merged(path, &mut errs) else {
        return Err(Problems(errs.0));
    };
    vars::substitute(&mut root, &mut errs);
    let template = template(&root, &mut errs);
    match template {
        Some(t) => errs.finish(t),
        None => Err(Problems(errs.0)),
    }
}

const TOP: &[&str] = &[
    "name",
    "version",
    "description",
    "extends",
    "variables",
    "os",
    "mirror",
    "default_repositories",
    "repositories",
    "packages",
    "files",
    "commands",
    "groups",
    "users",
    "root_password",
    "services",
    "timezone",
    "locale",
    "hardware",
    "disk",
    "boot",
    "kernel_cmdline",
    "outputs",
    "agent",
];

fn template(root: &Node, errs: &mut Errors) -> Option<Template> {
    let f = Fields::open(root, "the template", TOP, errs)?;
    let text = |key: &str, errs: &mut Errors| f.get(key).and_then(|n| n.text(key, errs));
    let name = f
        .require("name", "the template", errs)
        .and_then(|n| n.text("name", errs));
    let os = f
        .require("os", "the template", errs)
        .and_then(|n| os(n, errs));
    let template = Template {
        version: text("version", errs),
        description: text("description", errs),
        mirror: f.get("mirror").and_then(|n| url(n, "mirror", errs)),
        default_repositories: f
            .get("default_repositories")
            .and_then(|n| n.bool("default_repositories", errs))
            .unwrap_or(true),
        repositories: f
            .get("repositories")
            .map(|n| repositories(n, errs))
            .unwrap_or_default(),
        packages: f
            .get("packages")
            .map(|n| unique(n.strings("packages", errs)))
            .unwrap_or_default(),
        files: f.get("files").map(|n| files(n, errs)).unwrap_or_default(),
        commands: f
            .get("commands")
            .map(|n| commands(n, errs))
            .unwrap_or_default(),
        groups: f.get("groups").map(|n| groups(n, errs)).unwrap_or_default(),
        users: f.get("users").map(|n| users(n, errs)).unwrap_or_default(),
        root_password: f
            .get("root_password")
            .and_then(|n| password(n, "root_password", errs)),
        services: f
            .get("services")
            .map(|n| services(n, errs))
            .unwrap_or_default(),
        timezone: f.get("timezone").and_then(|n| word(n, "timezone", errs)),
        locale: f.get("locale").and_then(|n| word(n, "locale", errs)),
        hardware: f
            .get("hardware")
            .map(|n| hardware(n, errs))
            .unwrap_or_default(),
        disk: f.get("disk").map(|n| disk(n, errs)).unwrap_or_default(),
        boot: f
            .get("boot")
            .and_then(|n| n.keyword("boot", BootMode::WORDS, errs))
            .unwrap_or_default(),
        kernel_cmdline: text("kernel_cmdline", errs),
        outputs: f
            .get("outputs")
            .map(|n| outputs(n, errs))
            .unwrap_or_else(default_outputs),
        agent: f
            .get("agent")
            .and_then(|n| n.bool("agent", errs))
            .unwrap_or(true),
        name: name?,
        os: os?,
    };
    Some(template)
}

pub fn default_outputs() -> Vec<Output> {
    vec![Output {
        format: Format::Qcow2,
        compression: Compression::None,
    }]
}

/// Packages and services named twice (often by a parent and a child) are kept once.
fn unique(mut names: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

fn os(node: &Node, errs: &mut Errors) -> Option<Os> {
    let f = Fields::open(node, "os", &["distribution", "release", "arch"], errs)?;
    let distribution = f
        .require("distribution", "os", errs)
        .and_then(|n| n.text("os.distribution", errs));
    let release = f
        .require("release", "os", errs)
        .and_then(|n| n.text("os.release", errs));
    let arch = f
        .get("arch")
        .and_then(|n| n.keyword("os.arch", Arch::WORDS, errs))
        .unwrap_or(Arch::X86_64);
    Some(Os {
        distribution: distribution?,
        release: release?,
        arch,
    })
}

/// A value without spaces, such as a time zone or a locale.
fn word(node: &Node, what: &str, errs: &mut Errors) -> Option<String> {
    let text = node.text(what, errs)?;
    if text.contains(char::is_whitespace) {
        errs.push(node.problem(
            format!("{what} `{text}` contains spaces"),
            "write e.g. `Europe/Paris` or `en_US.UTF-8`",
        ));
        return None;
    }
    Some(text)
}

/// Whether text looks like `scheme://…`.
pub fn is_url(text: &str) -> bool {
    text.split_once("://").is_some_and(|(scheme, rest)| {
        !scheme.is_empty()
            && !rest.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    })
}

fn url(node: &Node, what: &str, errs: &mut Errors) -> Option<String> {
    let text = node.text(what, errs)?;
    if !is_url(&text) {
        errs.push(node.problem(
            format!("{what} `{text}` is not a URL"),
            "write a full URL such as `http://deb.debian.org/debian`",
        ));
        return None;
    }
    Some(text)
}

/// Reads each item of a list; problems are collected, bad items dropped.
fn each<'n, T>(
    node: &'n Node,
    what: &str,
    errs: &mut Errors,
    mut read: impl FnMut(&'n Node, &mut Errors) -> Option<T>,
) -> Vec<T> {
    node.seq(what, errs)
        .unwrap_or_default()
        .iter()
        .filter_map(|item| read(item, errs))
        .collect()
}

/// Reports items whose `key` repeats an earlier one.
fn no_duplicates<T>(
    items: &[(T, &Node)],
    what: &str,
    key: impl Fn(&T) -> String,
    errs: &mut Errors,
) {
    for (i, (item, node)) in items.iter().enumerate() {
        let k = key(item);
        if items[..i].iter().any(|(earlier, _)| key(earlier) == k) {
            errs.push(node.problem(
                format!("{what} `{k}` is given twice"),
                "keep one of them (a parent template may define it already)",
            ));
        }
    }
}

fn repositories(node: &Node, errs: &mut Errors) -> Vec<Repository> {
    let repos = each(node, "repositories", errs, |item, errs| {
        Some((repository(item, errs)?, item))
    });
    no_duplicates(&repos, "repository", |r| r.name.clone(), errs);
    repos.into_iter().map(|(r, _)| r).collect()
}

fn repository(node: &Node, errs: &mut Errors) -> Option<Repository> {
    const KEYS: &[&str] = &[
        "name",
        "url",
        "mirrorlist",
        "suite",
        "components",
        "key",
        "build_only",
    ];
    let f = Fields::open(node, "a repository", KEYS, errs)?;
    let name = f
        .require("name", "a repository", errs)
        .and_then(|n| n.text("repository name", errs));
    let url_of = |key: &str, errs: &mut Errors| f.get(key).and_then(|n| url(n, key, errs));
    let repo = Repository {
        url: url_of("url", errs),
        mirrorlist: url_of("mirrorlist", errs),
        suite: f.get("suite").and_then(|n| n.text("suite", errs)),
        components: f
            .get("components")
            .map(|n| n.strings("components", errs))
            .unwrap_or_default(),
        key: f.get("key").and_then(|n| signing_key(n, errs)),
        build_only: f
            .get("build_only")
            .and_then(|n| n.bool("build_only", errs))
            .unwrap_or(false),
        name: name?,
    };
    if f.get("url").is_none() && f.get("mirrorlist").is_none() {
        errs.push(node.problem(
            format!("repository `{}` has no `url`", repo.name),
            "add `url:` (or a yum `mirrorlist:`)",
        ));
    }
    Some(repo)
}

fn signing_key(node: &Node, errs: &mut Errors) -> Option<SigningKey> {
    let f = Fields::open(node, "a signing key", &["path", "inline"], errs)?;
    match (f.get("path"), f.get("inline")) {
        (Some(p), None) => Some(SigningKey::Path(relative_to(p, &p.text("key path", errs)?))),
        (None, Some(i)) => Some(SigningKey::Inline(i.text("inline key", errs)?)),
        _ => {
            errs.push(node.problem(
                "a signing key needs exactly one of `path` and `inline`",
                "write `key: {path: keys/repo.asc}`",
            ));
            None
        }
    }
}

fn files(node: &Node, errs: &mut Errors) -> Vec<FileEntry> {
    let entries = each(node, "files", errs, |item, errs| {
        Some((file(item, errs)?, item))
    });
    no_duplicates(&entries, "file", |f| f.path.clone(), errs);
    entries.into_iter().map(|(f, _)| f).collect()
}

const FILE_SOURCES: &[&str] = &["content", "base64", "source", "url"];

fn file(node: &Node, errs: &mut Errors) -> Option<FileEntry> {
    const KEYS: &[&str] = &[
        "path", "content", "base64", "source", "url", "sha256", "owner", "group", "mode",
    ];
    let f = Fields::open(node, "a file", KEYS, errs)?;
    let path = f
        .require("path", "a file", errs)
        .and_then(|n| absolute_path(n, "file path", errs));
    let given: Vec<&str> = FILE_SOURCES
        .iter()
        .copied()
        .filter(|k| f.get(k).is_some())
        .collect();
    let source = match given.as_slice() {
        [one] => file_source(&f, one, errs),
        _ => {
            let found = if given.is_empty() {
                "none".to_string()
            } else {
                given.join(", ")
            };
            errs.push(node.problem(
                format!("a file needs exactly one of content, base64, source, url (found {found})"),
                "keep one",
            ));
            None
        }
    };
    if let (Some(sha), false) = (f.get("sha256"), given == ["url"]) {
        errs.push(sha.problem("`sha256` belongs to a file given by `url`", "remove it"));
    }
    let name = |key: &str, errs: &mut Errors| {
        f.get(key)
            .and_then(|n| n.text(key, errs))
            .unwrap_or_else(|| "root".into())
    };
    Some(FileEntry {
        owner: name("owner", errs),
        group: name("group", errs),
        mode: f.get("mode").and_then(|n| mode(n, errs)).unwrap_or(0o644),
        path: path?,
        source: source?,
    })
}

fn file_source(f: &Fields, key: &str, errs: &mut Errors) -> Option<FileSource> {
    let node = f.get(key)?;
    match key {
        "content" => Some(FileSource::Content(
            node.string("content", errs).unwrap_or_default(),
        )),
        "base64" => {
            let text = node.string("base64", errs)?;
            let compact: String = text.split_whitespace().collect();
            if let Err(e) = base64::engine::general_purpose::STANDARD.decode(&compact) {
                errs.push(node.problem(
                    format!("base64 content does not decode: {e}"),
                    "encode the file with `base64 -w0 FILE`",
                ));
                return None;
            }
            Some(FileSource::Base64(compact))
        }
        "source" => Some(FileSource::Local(relative_to(
            node,
            &node.text("source", errs)?,
        ))),
        _ => {
            let url = url(node, "url", errs)?;
            let Some(sha) = f.get("sha256") else {
                errs.push(node.problem(
                    "a file from a URL needs its `sha256`",
                    "add `sha256:` with the output of `sha256sum FILE`",
                ));
                return None;
            };
            let sha256 = sha.text("sha256", errs)?.to_ascii_lowercase();
            if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                errs.push(sha.problem(
                    "`sha256` must be 64 hexadecimal digits",
                    "paste the first field of `sha256sum FILE`",
                ));
                return None;
            }
            Some(FileSource::Url { url, sha256 })
        }
    }
}

fn absolute_path(node: &Node, what: &str, errs: &mut Errors) -> Option<String> {
    let text = node.text(what, errs)?;
    if !text.starts_with('/') {
        errs.push(node.problem(
            format!("{what} `{text}` is not absolute"),
            format!("write the path inside the image, e.g. `/{text}`"),
        ));
        return None;
    }
    Some(text)
}

fn mode(node: &Node, errs: &mut Errors) -> Option<u32> {
    let text = node.string("mode", errs)?;
    match u32::from_str_radix(&text, 8) {
        Ok(mode) if mode <= 0o7777 => Some(mode),
        _ => {
            errs.push(node.problem(
                format!("mode `{text}` is not an octal file mode"),
                "write e.g. `\"0644\"` or `\"0755\"`",
            ));
            None
        }
    }
}

fn commands(node: &Node, errs: &mut Errors) -> Commands {
    let Some(f) = Fields::open(
        node,
        "commands",
        &["before_packages", "after_packages", "platforms"],
        errs,
    ) else {
        return Commands::default();
    };
    let list = |n: Option<&Node>, what: &str, errs: &mut Errors| {
        n.map(|n| each(n, what, errs, command)).unwrap_or_default()
    };
    let platforms: BTreeMap<String, Vec<Command>> = f
        .get("platforms")
        .map(|n| {
            n.entries("commands.platforms", errs)
                .into_iter()
                .map(|(name, cmds)| (name, list(Some(cmds), "commands", errs)))
                .collect()
        })
        .unwrap_or_default();
    Commands {
        before_packages: list(f.get("before_packages"), "commands.before_packages", errs),
        after_packages: list(f.get("after_packages"), "commands.after_packages", errs),
        platforms,
    }
}

fn command(node: &Node, errs: &mut Errors) -> Option<Command> {
    if node.scalar().is_some() {
        return node.text("a command", errs).map(Command::Shell);
    }
    let f = Fields::open(node, "a command", &["script"], errs)?;
    let script = f.require("script", "a command", errs)?;
    Some(Command::Script {
        script: relative_to(script, &script.text("script", errs)?),
    })
}

fn groups(node: &Node, errs: &mut Errors) -> Vec<Group> {
    let groups = each(node, "groups", errs, |item, errs| {
        let f = Fields::open(item, "a group", &["name", "gid"], errs)?;
        let name = f
            .require("name", "a group", errs)
            .and_then(|n| account_name(n, errs));
        let gid = id(f.get("gid"), "gid", errs).flatten();
        Some((Group { name: name?, gid }, item))
    });
    no_duplicates(&groups, "group", |g| g.name.clone(), errs);
    groups.into_iter().map(|(g, _)| g).collect()
}

fn id(node: Option<&Node>, what: &str, errs: &mut Errors) -> Option<Option<u32>> {
    let Some(node) = node else { return Some(None) };
    let n = node.uint(what, errs)?;
    match u32::try_from(n) {
        Ok(n) => Some(Some(n)),
        Err(_) => {
            errs.push(node.problem(
                format!("{what} {n} is too large"),
                "use a number below 4294967296",
            ));
            None
        }
    }
}

/// User and group names as useradd accepts them.
fn account_name(node: &Node, errs: &mut Errors) -> Option<String> {
    let name = node.text("name", errs)?;
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c))
        && name.len() <= 32;
    if !ok {
        errs.push(node.problem(
            format!("`{name}` is not a valid account name"),
            "use lower-case letters, digits, `_` and `-`, starting with a letter",
        ));
        return None;
    }
    Some(name)
}

fn users(node: &Node, errs: &mut Errors) -> Vec<User> {
    let users = each(node, "users", errs, |item, errs| {
        Some((user(item, errs)?, item))
    });
    no_duplicates(&users, "user", |u| u.name.clone(), errs);
    users.into_iter().map(|(u, _)| u).collect()
}

fn user(node: &Node, errs: &mut Errors) -> Option<User> {
    const KEYS: &[&str] = &[
        "name", "uid", "groups", "shell", "ssh_keys", "password", "sudo",
    ];
    let f = Fields::open(node, "a user", KEYS, errs)?;
    let name = f
        .require("name", "a user", errs)
        .and_then(|n| account_name(n, errs));
    let ssh_keys = f
        .get("ssh_keys")
        .map(|n| each(n, "ssh_keys", errs, ssh_key))
        .unwrap_or_default();
    Some(User {
        uid: id(f.get("uid"), "uid", errs).flatten(),
        groups: f
            .get("groups")
            .map(|n| n.strings("groups", errs))
            .unwrap_or_default(),
        shell: f.get("shell").and_then(|n| absolute_path(n, "shell", errs)),
        ssh_keys,
        password: f
            .get("password")
            .and_then(|n| password(n, "password", errs)),
        sudo: f
            .get("sudo")
            .and_then(|n| n.keyword("sudo", Sudo::WORDS, errs))
            .unwrap_or(Sudo::None),
        name: name?,
    })
}

fn ssh_key(node: &Node, errs: &mut Errors) -> Option<String> {
    let key = node.text("an SSH key", errs)?;
    let mut fields = key.split_whitespace();
    let kind = fields.next().unwrap_or_default();
    let known = kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-");
    if !known || fields.next().is_none() {
        errs.push(node.problem(
            "this is not an OpenSSH public key",
            "paste one line of `~/.ssh/id_ed25519.pub` (`ssh-ed25519 AAAA… comment`)",
        ));
        return None;
    }
    Some(key.trim().to_string())
}

/// A crypt(3) hash, or `{plain: …}` to be hashed at build.
fn password(node: &Node, what: &str, errs: &mut Errors) -> Option<Password> {
    if node.scalar().is_none() {
        let f = Fields::open(node, what, &["plain"], errs)?;
        let plain = f.require("plain", what, errs)?;
        return Some(Password::Plain {
            plain: plain.text(what, errs)?,
        });
    }
    let hash = node.text(what, errs)?;
    let fields: Vec<&str> = hash.split('$').collect();
    if fields.len() < 4 || !fields[0].is_empty() || fields[1].is_empty() {
        let hint = "write a crypt hash (`mkpasswd -m sha-512`), or `{plain: …}` to have it hashed at build";
        errs.push(node.problem(format!("{what} is not a password hash"), hint));
        return None;
    }
    Some(Password::Hashed(hash))
}

fn services(node: &Node, errs: &mut Errors) -> Services {
    let Some(f) = Fields::open(node, "services", &["enable", "disable"], errs) else {
        return Services::default();
    };
    let list = |key: &str, errs: &mut Errors| {
        f.get(key)
            .map(|n| unique(n.strings(key, errs)))
            .unwrap_or_default()
    };
    let services = Services {
        enable: list("enable", errs),
        disable: list("disable", errs),
    };
    if let Some(both) = services
        .enable
        .iter()
        .find(|s| services.disable.contains(s))
    {
        errs.push(node.problem(
            format!("service `{both}` is both enabled and disabled"),
            "keep it in one list",
        ));
    }
    services
}

fn hardware(node: &Node, errs: &mut Errors) -> Hardware {
    let default = Hardware::default();
    let Some(f) = Fields::open(node, "hardware", &["cpus", "memory"], errs) else {
        return default;
    };
    let cpus = f.get("cpus").and_then(|n| {
        let cpus = n.uint("cpus", errs)?;
        if cpus == 0 || cpus > 1024 {
            errs.push(n.problem(
                format!("{cpus} cpus is out of range"),
                "write a number from 1 to 1024",
            ));
            return None;
        }
        Some(cpus as u32)
    });
    Hardware {
        cpus: cpus.unwrap_or(default.cpus),
        memory: f
            .get("memory")
            .and_then(|n| n.size("memory", errs))
            .unwrap_or(default.memory),
    }
}

fn disk(node: &Node, errs: &mut Errors) -> Disk {
    let Some(f) = Fields::open(node, "disk", &["size", "partitions"], errs) else {
        return Disk::default();
    };
    let size = f.get("size").and_then(|n| n.size("disk size", errs));
    let parts = f.get("partitions").map(|n| {
        each(n, "partitions", errs, |item, errs| {
            Some((partition(item, errs)?, item))
        })
    });
    let parts = parts.unwrap_or_default();
    no_duplicates(&parts, "partition", |p| p.identity().to_string(), errs);
    let unsized_parts: Vec<&Node> = parts
        .iter()
        .filter(|(p, _)| p.size.is_none())
        .map(|(_, n)| *n)
        .collect();
    if let [_, second, ..] = unsized_parts.as_slice() {
        errs.push(second.problem(
            "only one partition may leave out its size",
            "give every partition but one a `size`",
        ));
    }
    let fixed: u128 = parts
        .iter()
        .filter_map(|(p, _)| p.size.map(Size::bytes))
        .sum();
    if let (Some(disk), Some(at)) = (size, f.get("size"))
        && fixed > disk.bytes()
    {
        let needed = Size::from_bytes(fixed);
        let hint = format!("make the disk at least {needed} or the partitions smaller");
        errs.push(at.problem(
            format!("the partitions ({needed}) do not fit on a {disk} disk"),
            hint,
        ));
    }
    Disk {
        size,
        partitions: parts.into_iter().map(|(p, _)| p).collect(),
    }
}

fn partition(node: &Node, errs: &mut Errors) -> Option<Partition> {
    let f = Fields::open(
        node,
        "a partition",
        &["mount", "size", "fs", "options"],
        errs,
    )?;
    let fs = f
        .get("fs")
        .and_then(|n| n.keyword("fs", Filesystem::WORDS, errs))
        .unwrap_or(Filesystem::Ext4);
    let mount = f
        .get("mount")
        .and_then(|n| absolute_path(n, "mount point", errs));
    match (fs, &mount) {
        (Filesystem::Swap, Some(_)) => {
            errs.push(node.problem("a swap partition has no mount point", "remove `mount`"))
        }
        (Filesystem::Swap, None) => {}
        (_, None) if f.get("mount").is_none() => errs.push(node.problem(
            "this partition has no mount point",
            "add `mount: /…` (or `fs: swap`)",
        )),
        _ => {}
    }
    Some(Partition {
        size: f.get("size").and_then(|n| n.size("partition size", errs)),
        options: f.get("options").and_then(|n| n.text("options", errs)),
        mount,
        fs,
    })
}

fn outputs(node: &Node, errs: &mut Errors) -> Vec<Output> {
    let outs = each(node, "outputs", errs, |item, errs| {
        let f = Fields::open(item, "an output", &["format", "compression"], errs)?;
        let format =
            f.require("format", "an output", errs)?
                .keyword("format", Format::WORDS, errs)?;
        let compression = match f.get("compression") {
            None => Compression::None,
            Some(n) => {
                let c = n.keyword("compression", Compression::WORDS, errs)?;
                if !format.compressions().contains(&c) {
                    let allowed: Vec<&str> =
                        format.compressions().iter().map(|c| c.name()).collect();
                    errs.push(n.problem(
                        format!("{format:?} output cannot use {} compression", c.name()),
                        format!("use one of: {}", allowed.join(", ")),
                    ));
                }
                c
            }
        };
        Some((
            Output {
                format,
                compression,
            },
            item,
        ))
    });
    no_duplicates(
        &outs,
        "output format",
        |o| format!("{:?}", o.format).to_lowercase(),
        errs,
    );
    if outs.is_empty()
        && node
            .seq("outputs", &mut Errors::default())
            .is_some_and(|s| s.is_empty())
    {
        errs.push(node.problem(
            "no outputs",
            "add e.g. `- format: qcow2`, or remove `outputs` for that default",
        ));
    }
    outs.into_iter().map(|(o, _)| o).collect()
}
