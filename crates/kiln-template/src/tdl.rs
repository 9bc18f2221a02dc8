//! Oz TDL import. A TDL is accepted exactly when Oz accepts it: Oz first
//! validates against its `tdl.rng`, then `TDL.py` adds its own rules (only
//! one checksum, positions 1..n, no localhost repositories, disk size units…).
//! Both sets are applied here, and every violation is reported with the
//! element and its line:column.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use roxmltree::{Document, Node};

use crate::diag::{Errors, Problem, Problems, SourceFile, suggest};
use crate::import::{Imported, download_command, skeleton};
use crate::inherit::beside;
use crate::model::*;
use crate::size::Size;

pub fn import(source: &Arc<SourceFile>) -> Result<Imported, Problems> {
    let doc = Document::parse(&source.text).map_err(|e| {
        let pos = e.pos();
        let at = source.offset_of(pos.row as usize, pos.col as usize);
        Problem::new(
            source,
            at..at,
            format!("not well-formed XML: {e}"),
            "fix the XML syntax at this place",
        )
    })?;
    let mut tdl = Tdl {
        source: Arc::clone(source),
        errs: Errors::default(),
        notes: Vec::new(),
    };
    let template = tdl.template(doc.root_element());
    let Tdl { errs, notes, .. } = tdl;
    match template {
        Some(template) => errs.finish(Imported { template, notes }),
        None => Err(Problems(errs.0)),
    }
}

/// How often a child element may appear.
#[derive(Clone, Copy, PartialEq)]
enum Occurs {
    One,
    Optional,
    Many,
}
use Occurs::*;

/// The children of an element, by name, once checked against what is allowed.
struct Kids<'a, 'i> {
    by_name: HashMap<&'static str, Vec<Node<'a, 'i>>>,
}

impl<'a, 'i> Kids<'a, 'i> {
    fn one(&self, name: &str) -> Option<Node<'a, 'i>> {
        self.by_name.get(name).and_then(|v| v.first().copied())
    }

    fn all(&self, name: &str) -> &[Node<'a, 'i>] {
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }
}

struct Tdl {
    source: Arc<SourceFile>,
    errs: Errors,
    notes: Vec<String>,
}

/// `<name>` as errors write an element.
fn tag(node: Node) -> String {
    format!("<{}>", node.tag_name().name())
}

impl Tdl {
    /// A problem at an element's start tag.
    fn at(&mut self, node: Node, message: impl Into<String>, hint: impl Into<String>) {
        let start = node.range().start;
        let end = self.source.text[start..]
            .find('>')
            .map_or(start, |i| start + i + 1);
        self.errs
            .push(Problem::new(&self.source, start..end, message, hint));
    }

    fn children<'a, 'i>(
        &mut self,
        node: Node<'a, 'i>,
        allowed: &[(&'static str, Occurs)],
    ) -> Kids<'a, 'i> {
        let mut by_name: HashMap<&'static str, Vec<Node>> = HashMap::new();
        let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
        for child in node.children() {
            // An element that allows no children is a text element.
            if !allowed.is_empty()
                && child.is_text()
                && !child.text().unwrap_or_default().trim().is_empty()
            {
                self.at(
                    node,
                    format!("{} holds text, which Oz does not allow there", tag(node)),
                    "remove the text or put it in an element",
                );
            }
            if !child.is_element() {
                continue;
            }
            let name = child.tag_name().name();
            match allowed
                .iter()
                .find(|(n, _)| *n == name && child.tag_name().namespace().is_none())
            {
                Some((n, _)) => by_name.entry(n).or_default().push(child),
                None => {
                    let hint = if names.is_empty() {
                        "remove it".to_string()
                    } else {
                        suggest(name, &names)
                    };
                    self.at(
                        child,
                        format!("unexpected {} in {}", tag(child), tag(node)),
                        hint,
                    );
                }
            }
        }
        for (name, occurs) in allowed {
            let found = by_name.get(name).map_or(0, Vec::len);
            if *occurs == One && found == 0 {
                self.at(
                    node,
                    format!("{} has no <{name}>", tag(node)),
                    format!("add <{name}>…</{name}> inside it"),
                );
            }
            if *occurs != Many && found > 1 {
                self.at(
                    by_name[name][1],
                    format!("more than one <{name}> in {}", tag(node)),
                    "keep one of them",
                );
            }
        }
        Kids { by_name }
    }

    /// Reports attributes other than `allowed`, then the ones in `required` that are missing.
    fn attributes(&mut self, node: Node, allowed: &[&str], required: &[&str]) {
        for attr in node.attributes() {
            if attr.namespace().is_some() || !allowed.contains(&attr.name()) {
                let hint = if allowed.is_empty() {
                    "remove it".to_string()
                } else {
                    suggest(attr.name(), allowed)
                };
                self.at(
                    node,
                    format!("unexpected attribute `{}` on {}", attr.name(), tag(node)),
                    hint,
                );
            }
        }
        for name in required {
            if node.attribute(*name).is_none() {
                self.at(
                    node,
                    format!("{} has no `{name}` attribute", tag(node)),
                    format!("add {name}='…'"),
                );
            }
        }
    }

    /// The text of an element that may hold text only.
    fn text<'a>(&mut self, node: Node<'a, '_>) -> &'a str {
        self.children(node, &[]);
        node.text().unwrap_or_default()
    }

    /// Text that a template cannot do without.
    fn required_text(&mut self, node: Node) -> Option<String> {
        self.attributes(node, &[], &[]);
        let text = self.text(node).trim();
        if text.is_empty() {
            self.at(
                node,
                format!("{} is empty", tag(node)),
                "write its value between the tags",
            );
            return None;
        }
        Some(text.to_string())
    }

    fn optional_text(&mut self, node: Option<Node>) -> Option<String> {
        let node = node?;
        self.attributes(node, &[], &[]);
        Some(self.text(node).trim().to_string()).filter(|t| !t.is_empty())
    }

    fn template(&mut self, root: Node) -> Option<Template> {
        if root.tag_name().name() != "template" || root.tag_name().namespace().is_some() {
            self.at(
                root,
                format!("the root element is {}, not <template>", tag(root)),
                "a TDL starts with <template>",
            );
            return None;
        }
        self.attributes(root, &["version"], &[]);
        if let Some(version) = root.attribute("version").filter(|v| v.trim() != "1.0") {
            self.at(
                root,
                format!("<template> version {version} is not supported"),
                "Oz knows TDL version 1.0 only",
            );
        }
        let kids = self.children(
            root,
            &[
                ("name", One),
                ("os", One),
                ("description", Optional),
                ("packages", Optional),
                ("files", Optional),
                ("commands", Optional),
                ("precommands", Optional),
                ("repositories", Optional),
                ("disk", Optional),
            ],
        );
        let name = kids.one("name").and_then(|n| self.required_text(n));
        let description = self.optional_text(kids.one("description"));
        let os = kids.one("os").and_then(|n| self.os(n));
        let packages = kids
            .one("packages")
            .map(|n| self.packages(n))
            .unwrap_or_default();
        let files = kids.one("files").map(|n| self.files(n)).unwrap_or_default();
        let after = kids
            .one("commands")
            .map(|n| self.commands(n))
            .unwrap_or_default();
        let before = kids
            .one("precommands")
            .map(|n| self.commands(n))
            .unwrap_or_default();
        let repositories = kids
            .one("repositories")
            .map(|n| self.repositories(n))
            .unwrap_or_default();
        let disk_size = kids.one("disk").and_then(|n| self.disk(n));

        let (os, install) = os?;
        let mut template = skeleton(name?, os);
        template.description = description;
        template.packages = packages;
        template.repositories = repositories;
        template.disk.size = disk_size;
        template.mirror = install.mirror;
        template.root_password = install.rootpw.map(|plain| Password::Plain { plain });
        template.kernel_cmdline = install.kernelparam;
        // Oz uploads the files, then runs the commands: downloads come first.
        let (files, downloads): (Vec<_>, Vec<_>) = files
            .into_iter()
            .partition(|f| matches!(f, TdlFile::Ready(_)));
        template.files = files.into_iter().filter_map(TdlFile::ready).collect();
        template.commands.after_packages = downloads
            .into_iter()
            .filter_map(TdlFile::download)
            .chain(after)
            .collect();
        template.commands.before_packages = before;
        Some(template)
    }

    fn os(&mut self, node: Node) -> Option<(Os, Install)> {
        self.attributes(node, &[], &[]);
        let kids = self.children(
            node,
            &[
                ("name", One),
                ("version", One),
                ("arch", One),
                ("install", One),
                ("kernelparam", Optional),
                ("rootpw", Optional),
                ("key", Optional),
                ("icicle", Optional),
            ],
        );
        let distribution = kids.one("name").and_then(|n| self.required_text(n));
        let release = kids.one("version").and_then(|n| self.required_text(n));
        let arch = kids.one("arch").and_then(|n| {
            self.attributes(n, &[], &[]);
            // Oz compares the text as it is: no trimming.
            let text = self.text(n);
            // Oz knows the kernel's names, not kiln's Debian aliases.
            let oz_names = || Arch::WORDS.iter().filter(|(w, a)| a.name() == *w);
            let arch = oz_names().find(|(w, _)| *w == text).map(|(_, a)| *a);
            if arch.is_none() {
                let names: Vec<&str> = oz_names().map(|(w, _)| *w).collect();
                self.at(
                    n,
                    format!("<arch> `{text}` is not one Oz knows"),
                    format!("use one of: {}", names.join(", ")),
                );
            }
            arch
        });
        let mirror = kids.one("install").and_then(|n| self.install(n));
        let rootpw = self.optional_text(kids.one("rootpw"));
        let kernelparam = self.optional_text(kids.one("kernelparam"));
        if self.optional_text(kids.one("key")).is_some() {
            self.notes
                .push("the <key> (Windows product key) is not used by kiln".into());
        }
        if let Some(icicle) = kids.one("icicle") {
            self.attributes(icicle, &[], &[]);
            let extra = self.children(icicle, &[("extra_command", One)]);
            self.optional_text(extra.one("extra_command"));
            self.notes
                .push("<icicle> (Oz's package manifest command) is not used by kiln".into());
        }
        let os = Os {
            distribution: distribution?,
            release: release?,
            arch: arch?,
        };
        Some((
            os,
            Install {
                mirror: mirror?,
                rootpw,
                kernelparam,
            },
        ))
    }

    /// The install tree URL, which becomes the mirror (`Some(None)` for an ISO).
    fn install(&mut self, node: Node) -> Option<Option<String>> {
        self.attributes(node, &["type"], &["type"]);
        let kind = node.attribute("type")?;
        let extras = ("extras", Optional);
        match kind {
            "url" => {
                let kids = self.children(node, &[("url", One), extras]);
                if let Some(extras) = kids.one("extras") {
                    self.at(
                        extras,
                        "<extras> can only be used with an iso install",
                        "remove <extras> or use type='iso'",
                    );
                }
                kids.one("url")
                    .and_then(|n| self.required_text(n))
                    .map(Some)
            }
            "iso" => {
                let sums = [
                    ("md5sum", Optional),
                    ("sha1sum", Optional),
                    ("sha256sum", Optional),
                ];
                let kids =
                    self.children(node, &[[("iso", One), extras].as_slice(), &sums].concat());
                let given: Vec<Node> = sums.iter().filter_map(|(s, _)| kids.one(s)).collect();
                if let [_, second, ..] = given.as_slice() {
                    self.at(
                        *second,
                        "only one of <md5sum>, <sha1sum> and <sha256sum> can be given",
                        "keep one checksum",
                    );
                }
                for sum in &given {
                    self.required_text(*sum);
                }
                if let Some(extras) = kids.one("extras") {
                    self.extras(extras);
                }
                kids.one("iso").and_then(|n| self.required_text(n))?;
                self.notes.push("the install ISO is not used: kiln installs packages from the distribution's mirror".into());
                Some(None)
            }
            other => {
                self.at(
                    node,
                    format!("unknown <install> type `{other}`"),
                    suggest(other, &["url", "iso"]),
                );
                None
            }
        }
    }

    fn extras(&mut self, node: Node) {
        self.attributes(node, &[], &[]);
        let kids = self.children(node, &[("directory", Many), ("file", Many)]);
        let all: Vec<Node> = kids
            .all("directory")
            .iter()
            .chain(kids.all("file"))
            .copied()
            .collect();
        if all.is_empty() {
            self.at(
                node,
                "<extras> is empty",
                "add <file source='…' destination='…'/> or remove <extras>",
            );
        }
        for extra in all {
            self.attributes(
                extra,
                &["source", "destination"],
                &["source", "destination"],
            );
            self.children(extra, &[]);
            if !extra.text().unwrap_or_default().trim().is_empty() {
                self.at(
                    extra,
                    format!("{} holds text", tag(extra)),
                    "it takes attributes only",
                );
            }
        }
        self.notes
            .push("<extras> (files added to the install ISO) are not used by kiln".into());
    }

    fn packages(&mut self, node: Node) -> Vec<String> {
        self.attributes(node, &[], &[]);
        let kids = self.children(node, &[("package", Many)]);
        let mut names = Vec::new();
        for package in kids.all("package") {
            self.attributes(*package, &["name"], &["name"]);
            let details = self.children(
                *package,
                &[
                    ("repository", Optional),
                    ("file", Optional),
                    ("arguments", Optional),
                ],
            );
            for detail in ["repository", "file", "arguments"] {
                if self.optional_text(details.one(detail)).is_some() {
                    self.notes.push(format!(
                        "the <{detail}> of package {} is not used",
                        package.attribute("name").unwrap_or("?")
                    ));
                }
            }
            names.extend(package.attribute("name").map(str::to_string));
        }
        names
    }

    fn files(&mut self, node: Node) -> Vec<TdlFile> {
        self.attributes(node, &[], &[]);
        let kids = self.children(node, &[("file", Many)]);
        let mut files: Vec<(String, TdlFile)> = Vec::new();
        for file in kids.all("file") {
            self.attributes(*file, &["name", "type"], &["name"]);
            let text = self.text(*file);
            let content = match file.attribute("type").unwrap_or("raw") {
                "raw" => Some(Content::Raw(text.trim().to_string())),
                "base64" if text.trim().is_empty() => Some(Content::Raw(String::new())),
                "base64" => self
                    .base64(*file, text)
                    .map(|_| Content::Base64(text.to_string())),
                "url" => self.url_content(*file, text),
                other => {
                    self.at(
                        *file,
                        format!("unknown <file> type `{other}`"),
                        suggest(other, &["raw", "base64", "url"]),
                    );
                    None
                }
            };
            let (Some(name), Some(content)) = (file.attribute("name"), content) else {
                continue;
            };
            let entry = match content {
                Content::Raw(text) => {
                    TdlFile::Ready(self.file_entry(name, FileSource::Content(text)))
                }
                Content::Base64(text) => {
                    TdlFile::Ready(self.file_entry(name, FileSource::Base64(text)))
                }
                Content::Local(path) => TdlFile::Ready(
                    self.file_entry(name, FileSource::Local(beside(&self.source.path, &path))),
                ),
                Content::Remote(url) => TdlFile::Download {
                    url,
                    dest: name.to_string(),
                },
            };
            // Oz keeps files in a dict: a later file of the same name replaces the earlier one.
            match files.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = entry,
                None => files.push((name.to_string(), entry)),
            }
        }
        files.into_iter().map(|(_, f)| f).collect()
    }

    fn file_entry(&self, path: &str, source: FileSource) -> FileEntry {
        FileEntry {
            path: path.to_string(),
            source,
            owner: "root".into(),
            group: "root".into(),
            mode: 0o644,
        }
    }

    /// Oz's schema pattern `[a-zA-Z0-9+/]+={0,2}` on the text as written, then
    /// Python's lenient decoder, which only insists on whole groups of four.
    fn base64(&mut self, node: Node, text: &str) -> Option<Vec<u8>> {
        let data = text.trim_end_matches('=');
        let pads = text.len() - data.len();
        let alphabet = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
        if data.is_empty() || pads > 2 || !data.chars().all(alphabet) {
            self.at(
                node,
                format!("{} is not valid base64", tag(node)),
                "only A–Z, a–z, 0–9, + and / with up to two = at the end",
            );
            return None;
        }
        let complete = match data.len() % 4 {
            0 => true,
            2 => pads == 2,
            3 => pads >= 1,
            _ => false,
        };
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_allow_trailing_bits(true)
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone),
        );
        match engine.decode(data) {
            Ok(bytes) if complete => Some(bytes),
            _ => {
                self.at(
                    node,
                    format!("{} is not valid base64: incorrect padding", tag(node)),
                    "base64 comes in groups of four characters",
                );
                None
            }
        }
    }

    fn url_content(&mut self, node: Node, text: &str) -> Option<Content> {
        let url = text.trim();
        // Oz reads file:// URLs as netloc + path, relative to where it runs.
        match url.strip_prefix("file://") {
            Some(path) if !path.is_empty() => Some(Content::Local(path.to_string())),
            _ if url.contains("://") => Some(Content::Remote(url.to_string())),
            _ => {
                self.at(
                    node,
                    format!("{} of type url holds no URL", tag(node)),
                    "write a http(s):// or file:// URL",
                );
                None
            }
        }
    }

    /// `<commands>` or `<precommands>`, in the order Oz runs them.
    fn commands(&mut self, node: Node) -> Vec<Command> {
        self.attributes(node, &[], &[]);
        let kids = self.children(node, &[("command", Many)]);
        let mut commands: Vec<(Option<u64>, Node, Command)> = Vec::new();
        for command in kids.all("command") {
            self.attributes(*command, &["name", "type", "position"], &["name"]);
            let position = command.attribute("position").and_then(|p| {
                let n = p
                    .parse::<u64>()
                    .ok()
                    .filter(|_| p.chars().all(|c| c.is_ascii_digit()));
                if n.is_none() {
                    self.at(
                        *command,
                        format!("<command> position `{p}` is not a number"),
                        "write position='1', '2', …",
                    );
                }
                n
            });
            let text = self.text(*command);
            if text.trim().is_empty() {
                self.at(
                    *command,
                    "empty <command>",
                    "Oz does not allow empty commands; write the command or remove it",
                );
                continue;
            }
            let converted = match command.attribute("type").unwrap_or("raw") {
                "raw" => Some(Command::Shell(text.trim().to_string())),
                "base64" => {
                    self.base64(*command, text)
                        .and_then(|bytes| match String::from_utf8(bytes) {
                            Ok(script) => Some(Command::Shell(script)),
                            Err(_) => {
                                self.at(
                                    *command,
                                    "the base64 <command> does not decode to text",
                                    "kiln runs commands as shell text",
                                );
                                None
                            }
                        })
                }
                "url" => self.url_content(*command, text).map(|c| match c {
                    Content::Local(path) => Command::Script {
                        script: beside(&self.source.path, &path),
                    },
                    _ => Command::Shell(format!(
                        "curl -fsSL {} | sh",
                        crate::import::quote(text.trim())
                    )),
                }),
                other => {
                    self.at(
                        *command,
                        format!("unknown <command> type `{other}`"),
                        suggest(other, &["raw", "base64", "url"]),
                    );
                    None
                }
            };
            if let Some(converted) = converted {
                commands.push((position, *command, converted));
            }
        }
        self.order(&mut commands);
        commands.into_iter().map(|(_, _, c)| c).collect()
    }

    /// Positions are on every command or on none; when given they must run 1..n.
    fn order(&mut self, commands: &mut [(Option<u64>, Node, Command)]) {
        let with = commands.iter().filter(|(p, _, _)| p.is_some()).count();
        if with == 0 {
            return;
        }
        if with < commands.len() {
            let (_, node, _) = commands
                .iter()
                .find(|(p, _, _)| p.is_none())
                .expect("some have no position");
            let node = *node;
            self.at(
                node,
                "this <command> has no position while others have one",
                "give every command a position, or none",
            );
            return;
        }
        commands.sort_by_key(|(p, _, _)| *p);
        for (expected, (position, node, _)) in (1..).zip(commands.iter()) {
            if *position != Some(expected) {
                let position = position.unwrap_or_default();
                let node = *node;
                self.at(
                    node,
                    format!("<command> position {position} where {expected} was expected"),
                    "number the positions 1, 2, 3… without gaps or repeats",
                );
                return;
            }
        }
    }

    fn repositories(&mut self, node: Node) -> Vec<Repository> {
        self.attributes(node, &[], &[]);
        let kids = self.children(node, &[("repository", Many)]);
        let mut repos: Vec<Repository> = Vec::new();
        for repo in kids.all("repository") {
            self.attributes(*repo, &["name"], &["name"]);
            let fields = self.children(
                *repo,
                &[
                    ("url", One),
                    ("signed", Optional),
                    ("persisted", Optional),
                    ("sslverify", Optional),
                ],
            );
            let url = fields.one("url").and_then(|n| self.required_text(n));
            if let (Some(url), Some(n)) = (&url, fields.one("url"))
                && ["localhost", "127.0.0.1", "localhost.localdomain"].contains(&netloc(url))
            {
                let hint = "it must be reachable from the guest; use the host's name or address";
                self.at(n, "a repository <url> cannot be on localhost", hint);
            }
            let signed = self.flag(fields.one("signed"), false);
            let persisted = self.flag(fields.one("persisted"), true);
            self.flag(fields.one("sslverify"), false);
            let (Some(name), Some(url)) = (repo.attribute("name"), url) else {
                continue;
            };
            if signed {
                self.notes.push(format!(
                    "repository {name} is signed: add its key under `key:`"
                ));
            }
            let converted = Repository {
                name: name.to_string(),
                url: Some(url),
                mirrorlist: None,
                suite: None,
                components: Vec::new(),
                key: None,
                build_only: !persisted,
            };
            // As with files, Oz keeps the last repository of a name.
            match repos.iter_mut().find(|r| r.name == name) {
                Some(slot) => *slot = converted,
                None => repos.push(converted),
            }
        }
        repos
    }

    /// Oz's booleans: true, false, yes or no in any case, nothing else.
    fn flag(&mut self, node: Option<Node>, default: bool) -> bool {
        let Some(node) = node else { return default };
        self.attributes(node, &[], &[]);
        match self.text(node).to_ascii_lowercase().as_str() {
            "true" | "yes" => true,
            "false" | "no" => false,
            other => {
                self.at(
                    node,
                    format!(
                        "{} must be true, false, yes or no, not `{other}`",
                        tag(node)
                    ),
                    "write yes or no",
                );
                default
            }
        }
    }

    fn disk(&mut self, node: Node) -> Option<Size> {
        self.attributes(node, &[], &[]);
        let kids = self.children(node, &[("size", One)]);
        let size = kids.one("size")?;
        self.attributes(size, &[], &[]);
        let text = self.text(size);
        let parsed = oz_disk_size(text);
        if parsed.is_none() {
            self.at(
                size,
                format!("<size> `{text}` is not a disk size"),
                "an integer with an optional SI or IEC unit, e.g. 10, 10G, 10TB or 16GiB",
            );
        }
        parsed
    }
}

/// Oz's disk size rule: an integer and an optional unit, spaces ignored; a
/// bare number and the old `G`/`T` are GiB/TiB; `B`, `kB`…`YB` and `KiB`…`YiB`.
/// A lone `E` or `K` is not a unit here, unlike in kiln's own sizes.
fn oz_disk_size(text: &str) -> Option<Size> {
    let compact: String = text.chars().filter(|c| *c != ' ').collect();
    let digits_end = compact
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(compact.len());
    let (number, suffix) = compact.split_at(digits_end);
    let suffix = suffix.to_ascii_lowercase();
    let unit = match suffix.as_str() {
        "" | "g" => 1 << 30,
        "t" => 1 << 40,
        s if s.len() == 1 && s != "b" => return None,
        s => Size::unit(s)?,
    };
    let number: u128 = number.parse().ok()?;
    number.checked_mul(unit).map(Size::from_bytes)
}

/// The host part of a URL as Python's `urlparse(url)[1]` gives it.
fn netloc(url: &str) -> &str {
    let scheme_end = url.find(':').filter(|&i| {
        url[..i]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && url[..i]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    let rest = scheme_end.map_or(url, |i| &url[i + 1..]);
    match rest.strip_prefix("//") {
        Some(after) => &after[..after.find(['/', '?', '#']).unwrap_or(after.len())],
        None => "",
    }
}

struct Install {
    mirror: Option<String>,
    rootpw: Option<String>,
    kernelparam: Option<String>,
}

enum Content {
    Raw(String),
    Base64(String),
    Local(String),
    Remote(String),
}

/// A converted `<file>`: ready, or to be downloaded in the image.
enum TdlFile {
    Ready(FileEntry),
    Download { url: String, dest: String },
}

impl TdlFile {
    fn ready(self) -> Option<FileEntry> {
        match self {
            TdlFile::Ready(f) => Some(f),
            TdlFile::Download { .. } => None,
        }
    }

    fn download(self) -> Option<Command> {
        match self {
            TdlFile::Download { url, dest } => Some(download_command(&url, &dest)),
            TdlFile::Ready(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_sizes_follow_oz() {
        let gib = 1u128 << 30;
        assert_eq!(oz_disk_size("10").map(Size::bytes), Some(10 * gib));
        assert_eq!(oz_disk_size("10T").map(Size::bytes), Some(10 << 40));
        assert_eq!(oz_disk_size("2EiB").map(Size::bytes), Some(2 << 60));
        assert_eq!(
            oz_disk_size("10ZB").map(Size::bytes),
            Some(10 * 10u128.pow(21))
        );
        assert_eq!(
            oz_disk_size("10000000 B").map(Size::bytes),
            Some(10_000_000)
        );
        assert_eq!(oz_disk_size("10E"), None);
        assert_eq!(oz_disk_size("T10"), None);
        assert_eq!(oz_disk_size("10Gi"), None);
    }

    #[test]
    fn netloc_is_python_s() {
        assert_eq!(netloc("http://localhost/to/repo"), "localhost");
        assert_eq!(netloc("http://localhost:8080/x"), "localhost:8080");
        assert_eq!(netloc("file:///srv/repo"), "");
        assert_eq!(netloc("http://127.0.0.1?x"), "127.0.0.1");
    }
}
