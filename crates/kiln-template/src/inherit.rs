//! `extends:` — reading a template and its ancestors, and merging them the way
//! BoxGrinder merged `appliances:`: mappings key by key, lists concatenated,
//! scalars overridden by the child, and cpus, memory and sizes taking the maximum.

use std::path::{Path, PathBuf};

use crate::diag::{Errors, Problem, SourceFile};
use crate::size::Size;
use crate::yaml::{self, Node, Value};

/// The template at `path` with its ancestors merged in; each node still points
/// into the file it was written in.
pub fn read_merged(path: &Path, errs: &mut Errors) -> Option<Node> {
    let mut layers = Vec::new();
    read_chain(path, None, &mut Vec::new(), &mut layers, errs);
    let mut layers = layers.into_iter();
    let first = layers.next()?;
    Some(layers.fold(first, |base, child| merge(base, child, "")))
}

/// Reads a file (and first its ancestors) into `layers`, eldest first.
/// `via` is the `extends` value that named this file, where its errors belong.
fn read_chain(
    path: &Path,
    via: Option<&Node>,
    chain: &mut Vec<PathBuf>,
    layers: &mut Vec<Node>,
    errs: &mut Errors,
) {
    let Some(mut root) = read_root(path, via, errs) else {
        return;
    };
    let Value::Map(entries) = &mut root.value else {
        errs.push(root.problem(
            "a template must be a mapping of keys",
            "start with `name: …` and `os: …`",
        ));
        return;
    };
    let parent = entries
        .iter()
        .position(|(k, _)| k.scalar() == Some("extends"))
        .map(|i| entries.remove(i).1);
    chain.push(path.to_path_buf());
    if let Some(parent) = parent
        && let Some(name) = parent.text("extends", errs)
    {
        let parent_path = relative_to(&parent, &name);
        if chain.iter().any(|seen| same_file(seen, &parent_path)) {
            let cycle: Vec<String> = chain
                .iter()
                .chain([&parent_path])
                .map(|p| p.display().to_string())
                .collect();
            errs.push(parent.problem(
                format!("inheritance cycle: {}", cycle.join(" → ")),
                "remove one `extends`",
            ));
        } else {
            read_chain(&parent_path, Some(&parent), chain, layers, errs);
        }
    }
    chain.pop();
    layers.push(root);
}

fn read_root(path: &Path, via: Option<&Node>, errs: &mut Errors) -> Option<Node> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            let message = format!("cannot read {}: {e}", path.display());
            errs.push(match via {
                Some(node) => node.problem(
                    message,
                    "`extends` is resolved relative to the file that contains it",
                ),
                None => Problem::new(&SourceFile::new(path, ""), 0..0, message, "check the path"),
            });
            return None;
        }
    };
    let source = SourceFile::new(path, text);
    match yaml::parse(&source) {
        Ok(Some(root)) => Some(root),
        Ok(None) => {
            errs.push(Problem::new(
                &source,
                0..0,
                "the template is empty",
                "a template needs at least `name:` and `os:`",
            ));
            None
        }
        Err(p) => {
            errs.push(p);
            None
        }
    }
}

/// A path written in a template, relative to that template's directory.
pub fn relative_to(node: &Node, written: &str) -> PathBuf {
    beside(&node.source.path, written)
}

/// A path written in `file`, relative to the directory of `file`, made
/// absolute so that the resolved template means the same from anywhere.
pub fn beside(file: &Path, written: &str) -> PathBuf {
    let path = file.parent().unwrap_or(Path::new("")).join(written);
    std::path::absolute(&path).unwrap_or(path)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Lists whose items are merged by a key instead of concatenated, so that a
/// child can resize its parent's root partition or recompress its qcow2.
const KEYED_LISTS: &[(&str, &str)] = &[("disk.partitions", "mount"), ("outputs", "format")];

/// Values where the larger of parent and child wins.
const MAX_VALUES: &[&str] = &[
    "hardware.cpus",
    "hardware.memory",
    "disk.size",
    "disk.partitions.size",
];

fn merge(base: Node, child: Node, path: &str) -> Node {
    let value = match (base.value, child.value) {
        (Value::Map(mut entries), Value::Map(child_entries)) => {
            for (key, value) in child_entries {
                let name = key.scalar().unwrap_or_default().to_string();
                match entries.iter().position(|(k, _)| k.scalar() == Some(&name)) {
                    Some(i) => {
                        let (k, old) = entries.remove(i);
                        entries.insert(i, (k, merge(old, value, &join(path, &name))));
                    }
                    None => entries.push((key, value)),
                }
            }
            Value::Map(entries)
        }
        (Value::Seq(mut items), Value::Seq(child_items)) => {
            match KEYED_LISTS.iter().find(|(list, _)| *list == path) {
                Some((_, key)) => {
                    for item in child_items {
                        match items
                            .iter()
                            .position(|old| list_key(old, key) == list_key(&item, key))
                        {
                            Some(i) => {
                                let old = items.remove(i);
                                items.insert(i, merge(old, item, path));
                            }
                            None => items.push(item),
                        }
                    }
                }
                None => items.extend(child_items),
            }
            Value::Seq(items)
        }
        (base_value, child_value)
            if MAX_VALUES.contains(&path) && larger(&base_value, &child_value) =>
        {
            return Node {
                value: base_value,
                ..base
            };
        }
        (_, child_value) => child_value,
    };
    Node { value, ..child }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// An item's key in a keyed list; partitions without a mount point (swap) share one.
fn list_key<'a>(item: &'a Node, key: &str) -> Option<&'a str> {
    let Value::Map(entries) = &item.value else {
        return None;
    };
    let value = entries
        .iter()
        .find(|(k, _)| k.scalar() == Some(key))
        .and_then(|(_, v)| v.scalar());
    Some(value.unwrap_or(""))
}

/// Whether `base` is a larger number or size than `child`; false when either is neither.
fn larger(base: &Value, child: &Value) -> bool {
    let amount = |v: &Value| match v {
        Value::Scalar { text, .. } => text
            .parse::<u128>()
            .ok()
            .or_else(|| text.parse::<Size>().ok().map(Size::bytes)),
        _ => None,
    };
    matches!((amount(base), amount(child)), (Some(b), Some(c)) if b > c)
}
