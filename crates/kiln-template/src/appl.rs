//! BoxGrinder appliance import (schema 0.9.6). Each file is checked against
//! the kwalify schema, parents named in `appliances:` are read from
//! `NAME.appl` beside it, everything is merged as BoxGrinder's
//! ApplianceConfigHelper does, and `#VAR#` variables are substituted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::diag::{Errors, Problem, Problems, SourceFile};
use crate::import::{Imported, download_command, skeleton};
use crate::inherit::relative_to;
use crate::model::*;
use crate::size::Size;
use crate::yaml::{self, Fields, Node};

pub fn import(source: &Arc<SourceFile>) -> Result<Imported, Problems> {
    let mut errs = Errors::default();
    let mut appliances = Vec::new();
    read(source, &mut Vec::new(), &mut appliances, &mut errs);
    // BoxGrinder merges the eldest first and the appliance itself last.
    appliances.reverse();
    if appliances.is_empty() {
        return Err(Problems(errs.0));
    }
    let vars = variables(&appliances, &mut errs);
    let imported = convert(&appliances, &vars);
    errs.finish(imported)
}

/// One appliance file as its schema describes it.
struct Appliance {
    name: String,
    summary: Option<String>,
    version: Option<u64>,
    release: Option<u64>,
    os_name: Option<String>,
    os_version: Option<String>,
    password: Option<String>,
    cpus: Option<u64>,
    memory: Option<u64>,
    /// Mount point (or `swap`), size in GB, type, options.
    partitions: Vec<(String, f64, Option<Filesystem>, Option<String>)>,
    packages: Vec<Located>,
    default_repos: Option<bool>,
    repos: Vec<Repo>,
    /// Destination directory and its sources.
    files: Vec<(String, Vec<Located>)>,
    /// Platform and its commands.
    post: Vec<(String, Vec<Located>)>,
    variables: Vec<(String, Located)>,
}

/// Text and the node it came from, for errors found after merging.
#[derive(Clone)]
struct Located {
    text: String,
    node: Node,
}

struct Repo {
    name: Located,
    baseurl: Option<Located>,
    mirrorlist: Option<Located>,
    ephemeral: bool,
}

/// Reads the appliance in `source`, then its parents (depth first, each once).
fn read(
    source: &Arc<SourceFile>,
    seen: &mut Vec<String>,
    out: &mut Vec<Appliance>,
    errs: &mut Errors,
) {
    let root = match yaml::parse(source) {
        Ok(Some(root)) => root,
        Ok(None) => {
            return errs.push(Problem::new(
                source,
                0..0,
                "the appliance definition is empty",
                "it needs `name:` and `os:`",
            ));
        }
        Err(p) => return errs.push(p),
    };
    let Some((appliance, parents)) = appliance(&root, errs) else {
        return;
    };
    seen.push(appliance.name.clone());
    out.push(appliance);
    for parent in parents.iter().rev() {
        if seen.contains(&parent.text) {
            continue;
        }
        let path = relative_to(&parent.node, &format!("{}.appl", parent.text));
        match std::fs::read_to_string(&path) {
            Ok(text) => read(&SourceFile::new(&path, text), seen, out, errs),
            Err(e) => errs.push(parent.node.problem(
                format!("cannot read parent appliance {}: {e}", path.display()),
                "parents are looked up as NAME.appl beside the appliance that names them",
            )),
        }
    }
}

const TOP: &[&str] = &[
    "name",
    "summary",
    "version",
    "release",
    "os",
    "hardware",
    "appliances",
    "packages",
    "default_repos",
    "repos",
    "files",
    "post",
    "variables",
];

fn appliance(root: &Node, errs: &mut Errors) -> Option<(Appliance, Vec<Located>)> {
    let f = Fields::open(root, "the appliance", TOP, errs)?;
    let located = |n: &Node, what: &str, errs: &mut Errors| {
        n.text(what, errs).map(|text| Located {
            text,
            node: n.clone(),
        })
    };
    let list = |key: &str, errs: &mut Errors| -> Vec<Located> {
        f.get(key)
            .and_then(|n| n.seq(key, errs))
            .unwrap_or_default()
            .iter()
            .filter_map(|n| located(n, key, errs))
            .collect()
    };
    let name = f
        .require("name", "the appliance", errs)
        .and_then(|n| n.text("name", errs));
    let os = f
        .require("os", "the appliance", errs)
        .and_then(|n| Fields::open(n, "os", &["name", "version", "password"], errs));
    let os_field = |key: &str, errs: &mut Errors| {
        os.as_ref()
            .and_then(|os| os.require(key, "os", errs))
            .and_then(|n| n.text(key, errs))
    };
    let (os_name, os_version) = (os_field("name", errs), os_field("version", errs));
    let password = os
        .as_ref()
        .and_then(|os| os.get("password"))
        .and_then(|n| n.text("password", errs));
    let hardware = f
        .get("hardware")
        .and_then(|n| Fields::open(n, "hardware", &["cpus", "memory", "partitions"], errs));
    let hw_uint = |key: &str, min: u64, max: u64, errs: &mut Errors| {
        let node = hardware.as_ref()?.get(key)?;
        let n = node.uint(key, errs)?;
        if n < min || n > max {
            errs.push(node.problem(
                format!("{key} {n} is out of range"),
                format!("BoxGrinder allows {min} to {max}"),
            ));
        }
        Some(n)
    };
    let parents = list("appliances", errs);
    for parent in parents.iter().filter(|p| p.text.contains('/')) {
        errs.push(parent.node.problem(
            "a parent appliance is named, not given as a path",
            "write its name; it is read from NAME.appl beside this file",
        ));
    }
    let packages = list("packages", errs);
    let package_char = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_-+.@#".contains(c);
    for package in packages
        .iter()
        .filter(|p| !p.text.chars().all(package_char))
    {
        errs.push(package.node.problem(
            format!("`{}` is not a package name", package.text),
            "letters, digits, spaces and _ - + . @ # only",
        ));
    }
    let appliance = Appliance {
        summary: f.get("summary").and_then(|n| n.text("summary", errs)),
        version: f.get("version").and_then(|n| n.uint("version", errs)),
        release: f.get("release").and_then(|n| n.uint("release", errs)),
        cpus: hw_uint("cpus", 1, 16, errs),
        memory: hw_uint("memory", 1, u64::MAX, errs),
        partitions: hardware
            .as_ref()
            .and_then(|h| h.get("partitions"))
            .map(|n| partitions(n, errs))
            .unwrap_or_default(),
        packages,
        default_repos: f
            .get("default_repos")
            .and_then(|n| n.bool("default_repos", errs)),
        repos: f.get("repos").map(|n| repos(n, errs)).unwrap_or_default(),
        files: groups(f.get("files"), "files", errs),
        post: groups(f.get("post"), "post", errs),
        variables: f
            .get("variables")
            .map(|n| n.entries("variables", errs))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, n)| Some((k, located(n, "a variable", errs)?)))
            .collect(),
        name: name?,
        os_name,
        os_version,
        password,
    };
    Some((appliance, parents))
}

fn partitions(
    node: &Node,
    errs: &mut Errors,
) -> Vec<(String, f64, Option<Filesystem>, Option<String>)> {
    let types = &[("ext3", Filesystem::Ext3), ("ext4", Filesystem::Ext4)];
    let mut out = Vec::new();
    for (mount, part) in node.entries("partitions", errs) {
        // `passphrase` and `options` are read by BoxGrinder's code, not its schema.
        let Some(f) = Fields::open(
            part,
            "a partition",
            &["size", "type", "options", "passphrase"],
            errs,
        ) else {
            continue;
        };
        let size = f.get("size").and_then(|n| {
            let size = n
                .scalar()
                .and_then(|s| s.parse::<f64>().ok())
                .filter(|s| s.is_finite());
            match size {
                Some(s) if s >= 0.01 => Some(s),
                _ => {
                    errs.push(n.problem(
                        "a partition size is a number of GB, at least 0.01",
                        "write e.g. `size: 2`",
                    ));
                    None
                }
            }
        });
        let kind = f
            .get("type")
            .and_then(|n| n.keyword("partition type", types, errs));
        let options = f.get("options").and_then(|n| n.text("options", errs));
        if let Some(p) = f.get("passphrase") {
            errs.push(p.problem(
                "encrypted partitions are not supported by kiln",
                "remove `passphrase`",
            ));
        }
        out.push((mount, size.unwrap_or(1.0), kind, options));
    }
    out
}

fn repos(node: &Node, errs: &mut Errors) -> Vec<Repo> {
    let mut out = Vec::new();
    for item in node.seq("repos", errs).unwrap_or_default() {
        let Some(f) = Fields::open(
            item,
            "a repository",
            &["name", "baseurl", "mirrorlist", "ephemeral"],
            errs,
        ) else {
            continue;
        };
        let located = |key: &str, errs: &mut Errors| {
            let n = f.get(key)?;
            Some(Located {
                text: n.text(key, errs)?,
                node: n.clone(),
            })
        };
        let name = f
            .require("name", "a repository", errs)
            .and(located("name", errs));
        let name_char = |c: char| c.is_alphanumeric() || "_-+.#".contains(c);
        if let Some(name) = name.as_ref().filter(|n| !n.text.chars().all(name_char)) {
            errs.push(name.node.problem(
                format!("`{}` is not a repository name", name.text),
                "letters, digits and _ - + . # only",
            ));
        }
        let (baseurl, mirrorlist) = (located("baseurl", errs), located("mirrorlist", errs));
        for url in baseurl.iter().chain(&mirrorlist) {
            let ok = ["http:", "https:", "ftp:"]
                .iter()
                .any(|s| url.text.starts_with(s))
                || url.text.len() > 7 && url.text.starts_with("file://");
            if !ok {
                errs.push(url.node.problem(
                    format!("`{}` is not a repository URL", url.text),
                    "use an http, https, ftp or file:// URL",
                ));
            }
        }
        let ephemeral = f
            .get("ephemeral")
            .and_then(|n| n.bool("ephemeral", errs))
            .unwrap_or(false);
        if let Some(name) = name {
            out.push(Repo {
                name,
                baseurl,
                mirrorlist,
                ephemeral,
            });
        }
    }
    out
}

/// `files:` and `post:`: a mapping of names to lists of strings.
fn groups(node: Option<&Node>, what: &str, errs: &mut Errors) -> Vec<(String, Vec<Located>)> {
    let Some(node) = node else { return Vec::new() };
    node.entries(what, errs)
        .into_iter()
        .map(|(key, list)| {
            let items = list.seq(what, errs).unwrap_or_default();
            (
                key,
                items
                    .iter()
                    .filter_map(|n| {
                        Some(Located {
                            text: n.text(what, errs)?,
                            node: n.clone(),
                        })
                    })
                    .collect(),
            )
        })
        .collect()
}

/// `#NAME#` values: the appliances' own (the child's win), then the built-ins,
/// each with other variables substituted in.
fn variables(appliances: &[Appliance], errs: &mut Errors) -> HashMap<String, String> {
    let mut raw: BTreeMap<String, Located> = BTreeMap::new();
    for appliance in appliances {
        raw.extend(appliance.variables.iter().cloned());
    }
    let mut vars: HashMap<String, String> = HashMap::new();
    let arch = Arch::X86_64.name();
    let os_name = last(appliances, |a| a.os_name.clone()).unwrap_or_default();
    let os_version = last(appliances, |a| a.os_version.clone()).unwrap_or_default();
    for (name, value) in [
        ("OS_NAME", os_name),
        ("OS_VERSION", os_version),
        ("ARCH", arch.into()),
        ("BASE_ARCH", arch.into()),
    ] {
        raw.remove(name);
        vars.insert(name.to_string(), value);
    }
    let names: Vec<String> = raw.keys().cloned().collect();
    for name in names {
        let mut stack = Vec::new();
        if let Some(value) = resolve(&name, &raw, &mut vars, &mut stack, errs) {
            vars.insert(name, value);
        }
    }
    vars
}

fn resolve(
    name: &str,
    raw: &BTreeMap<String, Located>,
    done: &mut HashMap<String, String>,
    stack: &mut Vec<String>,
    errs: &mut Errors,
) -> Option<String> {
    if let Some(value) = done.get(name) {
        return Some(value.clone());
    }
    let def = raw.get(name)?;
    if stack.iter().any(|s| s == name) {
        errs.push(def.node.problem(
            format!(
                "variable #{name}# refers to itself through {}",
                stack.join(", ")
            ),
            "break the cycle",
        ));
        return None;
    }
    stack.push(name.to_string());
    let value = substitute_with(&def.text, |inner| resolve(inner, raw, done, stack, errs));
    stack.pop();
    done.insert(name.to_string(), value.clone());
    Some(value)
}

/// Replaces `#NAME#` by its value; a name that is no variable falls back to
/// the environment, and else stays as written (BoxGrinder leaves it alone).
fn substitute_with(text: &str, mut value: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('#') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..name_len];
        let closed = after[name_len..].starts_with('#');
        match (closed && !name.is_empty())
            .then(|| value(name).or_else(|| std::env::var(name).ok()))
            .flatten()
        {
            Some(v) => {
                out.push_str(&v);
                rest = &after[name_len + 1..];
            }
            None => {
                out.push('#');
                rest = after;
            }
        }
    }
    out + rest
}

/// The child's value when it has one, else the nearest parent's.
fn last<T>(appliances: &[Appliance], get: impl Fn(&Appliance) -> Option<T>) -> Option<T> {
    appliances.iter().rev().find_map(get)
}

fn convert(appliances: &[Appliance], vars: &HashMap<String, String>) -> Imported {
    let sub = |l: &Located| substitute_with(&l.text, |name| vars.get(name).cloned());
    let child = appliances.last().expect("at least the appliance itself");
    let mut notes = Vec::new();
    let os = Os {
        distribution: last(appliances, |a| a.os_name.clone()).unwrap_or_default(),
        release: last(appliances, |a| a.os_version.clone()).unwrap_or_default(),
        arch: Arch::X86_64,
    };
    let mut t = skeleton(child.name.clone(), os);
    t.description = child.summary.clone();
    t.version = Some(format!(
        "{}.{}",
        child.version.unwrap_or(1),
        child.release.unwrap_or(0)
    ));
    let password = last(appliances, |a| a.password.clone()).unwrap_or_else(|| {
        notes.push(
            "no os.password: BoxGrinder's default root password `boxgrinder` is kept; change it"
                .into(),
        );
        "boxgrinder".into()
    });
    t.root_password = Some(Password::Plain { plain: password });
    let max = |get: fn(&Appliance) -> Option<u64>| appliances.iter().filter_map(get).max();
    t.hardware.cpus = max(|a| a.cpus).map_or(1, |c| c as u32);
    t.hardware.memory = Size::from_mib(u128::from(max(|a| a.memory).unwrap_or(256)));
    t.disk.partitions = partitions_merged(appliances);
    t.default_repositories = appliances.iter().all(|a| a.default_repos != Some(false));
    t.packages = appliances
        .iter()
        .flat_map(|a| &a.packages)
        .map(sub)
        .collect();
    t.repositories = appliances
        .iter()
        .flat_map(|a| &a.repos)
        .map(|r| Repository {
            name: sub(&r.name),
            url: r.baseurl.as_ref().map(sub),
            mirrorlist: r.mirrorlist.as_ref().map(sub),
            suite: None,
            components: Vec::new(),
            key: None,
            build_only: r.ephemeral,
        })
        .collect();
    let mut downloads = Vec::new();
    for (dir, sources) in appliances.iter().flat_map(|a| &a.files) {
        for source in sources {
            let text = sub(source);
            if ["http://", "https://", "ftp://"]
                .iter()
                .any(|s| text.starts_with(s))
            {
                // BoxGrinder ran `cd DIR && curl -O -L URL` in the image.
                let name = text.rsplit('/').next().unwrap_or_default();
                downloads.push(download_command(
                    &text,
                    &format!("{}/{name}", dir.trim_end_matches('/')),
                ));
                continue;
            }
            // BoxGrinder tarred the path as written and unpacked it in DIR.
            let dest = format!(
                "{}/{}",
                dir.trim_end_matches('/'),
                text.trim_start_matches('/')
            );
            let local = relative_to(&source.node, &text);
            t.files.push(FileEntry {
                path: dest,
                source: FileSource::Local(local),
                owner: "root".into(),
                group: "root".into(),
                mode: 0o644,
            });
        }
    }
    if !downloads.is_empty() {
        notes.push("files given by URL are downloaded with curl in the image, without a checksum, as BoxGrinder did".into());
    }
    t.commands.after_packages = downloads;
    for (platform, cmds) in appliances.iter().flat_map(|a| &a.post) {
        let cmds = cmds.iter().map(|c| Command::Shell(sub(c)));
        match platform.as_str() {
            "base" => t.commands.after_packages.extend(cmds),
            _ => t
                .commands
                .platforms
                .entry(platform.clone())
                .or_default()
                .extend(cmds),
        }
    }
    Imported { template: t, notes }
}

/// Partitions by mount point: the largest size wins, the latest type and options.
fn partitions_merged(appliances: &[Appliance]) -> Vec<Partition> {
    let mut merged: Vec<Partition> = Vec::new();
    for (mount, gb, kind, options) in appliances.iter().flat_map(|a| &a.partitions) {
        let swap = mount == "swap";
        // GB in BoxGrinder are GiB; sizes are rounded up to whole MiB.
        let size = Size::from_mib((gb * 1024.0).ceil() as u128);
        let fs = if swap {
            Filesystem::Swap
        } else {
            kind.unwrap_or(Filesystem::Ext4)
        };
        let mount = (!swap).then(|| mount.clone());
        match merged
            .iter_mut()
            .find(|p| p.mount == mount && (p.fs == Filesystem::Swap) == swap)
        {
            Some(p) => {
                p.size = p.size.max(Some(size));
                p.fs = fs;
                if options.is_some() {
                    p.options = options.clone();
                }
            }
            None => merged.push(Partition {
                mount,
                size: Some(size),
                fs,
                options: options.clone(),
            }),
        }
    }
    if merged.is_empty() {
        // BoxGrinder's default: a 1 GB root.
        merged.push(Partition {
            mount: Some("/".into()),
            size: Some(Size::from_mib(1024)),
            fs: Filesystem::Ext4,
            options: None,
        });
    }
    merged
}
