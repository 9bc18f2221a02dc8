//! `${name}` variables: the template's own `variables:` and built-ins taken
//! from its keys (`${os.release}`, `${arch}` …). Variables may use others;
//! `$${` writes a literal `${`.

use std::collections::HashMap;

use crate::diag::{Errors, suggest};
use crate::model::Arch;
use crate::yaml::{Node, Value};

/// Built-ins whose value is the text of a key of the template.
const FROM_KEYS: &[(&str, &[&str])] = &[
    ("name", &["name"]),
    ("version", &["version"]),
    ("os.distribution", &["os", "distribution"]),
    ("os.release", &["os", "release"]),
];

type ArchName = fn(Arch) -> &'static str;

/// Built-ins computed from `os.arch` (x86_64 when it is not given); `os.arch`
/// itself is spelled the kernel's way even when written `amd64`.
const FROM_ARCH: &[(&str, ArchName)] = &[
    ("os.arch", Arch::name),
    ("arch", Arch::name),
    ("debian_arch", Arch::debian_name),
];

/// Replaces every `${…}` in the values of `root`, except in `variables:` itself.
pub fn substitute(root: &mut Node, errs: &mut Errors) {
    let snapshot = root.clone();
    let arch = lookup(&snapshot, &["os", "arch"]);
    let mut table = Table {
        defs: HashMap::new(),
        arch,
        done: HashMap::new(),
    };
    for (name, path) in FROM_KEYS {
        if let Some(node) = lookup(&snapshot, path) {
            table.defs.insert(name.to_string(), node);
        }
    }
    if let Some(vars) = lookup(&snapshot, &["variables"]) {
        for (name, node) in vars.entries("variables", errs) {
            let builtin = FROM_KEYS
                .iter()
                .map(|(n, _)| *n)
                .chain(FROM_ARCH.iter().map(|(n, _)| *n))
                .any(|n| n == name);
            if builtin {
                errs.push(node.problem(
                    format!("`{name}` is a built-in variable"),
                    "choose another name",
                ));
            } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                errs.push(node.problem(
                    format!(
                        "variable name `{name}` has other characters than letters, digits and _"
                    ),
                    "rename it",
                ));
            } else if node.scalar().is_none() {
                errs.push(node.problem(
                    format!("variable `{name}` must be a single value"),
                    "write `name: value`",
                ));
            } else {
                table.defs.insert(name, node);
            }
        }
    }
    walk(root, &mut table, errs);
}

fn lookup<'a>(node: &'a Node, path: &[&str]) -> Option<&'a Node> {
    let Some((first, rest)) = path.split_first() else {
        return Some(node);
    };
    let Value::Map(entries) = &node.value else {
        return None;
    };
    let (_, value) = entries.iter().find(|(k, _)| k.scalar() == Some(first))?;
    lookup(value, rest)
}

fn walk(node: &mut Node, table: &mut Table, errs: &mut Errors) {
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|item| walk(item, table, errs)),
        Value::Map(entries) => {
            for (_, value) in entries
                .iter_mut()
                .filter(|(k, _)| k.scalar() != Some("variables"))
            {
                walk(value, table, errs);
            }
        }
        Value::Scalar { text, .. } if !text.contains('$') => {}
        Value::Scalar { .. } => {
            let text = node.scalar().unwrap_or_default().to_string();
            let Some(expanded) = table.expand(node, &text, &mut Vec::new(), errs) else {
                return;
            };
            if let Value::Scalar { text: old, plain } = &mut node.value {
                // What a variable gives is text, even when empty: never null.
                *plain = *plain && expanded == *old;
                *old = expanded;
            }
        }
    }
}

struct Table<'a> {
    defs: HashMap<String, &'a Node>,
    arch: Option<&'a Node>,
    /// Resolved values; `None` once a variable has failed, so it is reported once.
    done: HashMap<String, Option<String>>,
}

impl Table<'_> {
    /// `text` (written at `at`) with its variables replaced; `stack` holds the
    /// variables being resolved, to catch cycles.
    fn expand(
        &mut self,
        at: &Node,
        text: &str,
        stack: &mut Vec<String>,
        errs: &mut Errors,
    ) -> Option<String> {
        let mut out = String::new();
        let mut rest = text;
        let mut ok = true;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            rest = &rest[i..];
            if let Some(after) = rest.strip_prefix("$${") {
                out.push_str("${");
                rest = after;
            } else if let Some(after) = rest.strip_prefix("${") {
                let Some(end) = after.find('}') else {
                    errs.push(at.problem(
                        "`${` without a closing `}`",
                        "close the variable with `}`, or write `$${` for a literal `${`",
                    ));
                    return None;
                };
                match self.resolve(at, &after[..end], stack, errs) {
                    Some(value) => out.push_str(&value),
                    None => ok = false,
                }
                rest = &after[end + 1..];
            } else {
                out.push('$');
                rest = &rest[1..];
            }
        }
        out.push_str(rest);
        ok.then_some(out)
    }

    fn resolve(
        &mut self,
        at: &Node,
        name: &str,
        stack: &mut Vec<String>,
        errs: &mut Errors,
    ) -> Option<String> {
        if let Some(done) = self.done.get(name) {
            return done.clone();
        }
        if stack.iter().any(|s| s == name) {
            let cycle = stack
                .iter()
                .map(String::as_str)
                .chain([name])
                .collect::<Vec<_>>()
                .join(" → ");
            errs.push(at.problem(
                format!("variables refer to each other in a cycle: {cycle}"),
                "break the cycle",
            ));
            return None;
        }
        stack.push(name.to_string());
        let value = if let Some(def) = self.defs.get(name).copied() {
            let text = def.scalar().unwrap_or_default().to_string();
            self.expand(def, &text, stack, errs)
        } else if let Some((_, of)) = FROM_ARCH.iter().find(|(n, _)| *n == name) {
            let arch = match self.arch {
                Some(def) => self.expand(def, def.scalar().unwrap_or_default(), stack, errs)?,
                None => Arch::X86_64.name().to_string(),
            };
            // An unknown arch is reported where the template is checked.
            Arch::WORDS
                .iter()
                .find(|(w, _)| *w == arch)
                .map(|(_, a)| of(*a).to_string())
        } else {
            let mut known: Vec<&str> = self.defs.keys().map(String::as_str).collect();
            known.extend(FROM_ARCH.iter().map(|(n, _)| *n));
            known.sort_unstable();
            let hint = format!(
                "{}; write `$${{{name}}}` for a literal `${{{name}}}`",
                suggest(name, &known)
            );
            errs.push(at.problem(format!("unknown variable `${{{name}}}`"), hint));
            None
        };
        stack.pop();
        self.done.insert(name.to_string(), value.clone());
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::SourceFile;

    fn expanded(yaml: &str, key: &str) -> Result<String, Vec<String>> {
        let mut root = crate::yaml::parse(&SourceFile::new("t.yaml", yaml))
            .unwrap()
            .unwrap();
        let mut errs = Errors::default();
        substitute(&mut root, &mut errs);
        if !errs.0.is_empty() {
            return Err(errs
                .0
                .iter()
                .map(|p| format!("{} | {}", p.message, p.hint))
                .collect());
        }
        Ok(lookup(&root, &[key]).unwrap().scalar().unwrap().to_string())
    }

    #[test]
    fn built_ins_nesting_and_escapes() {
        let yaml = "os: {release: bookworm, arch: amd64}\nvariables: {suite: '${os.release}-backports', x: '${suite}'}\n\
                    v: '${x} ${arch} ${debian_arch} $${HOME} $$HOME'\n";
        assert_eq!(
            expanded(yaml, "v").unwrap(),
            "bookworm-backports x86_64 amd64 ${HOME} $$HOME"
        );
    }

    #[test]
    fn unknown_variables_suggest_and_cycles_are_caught() {
        let errs = expanded("os: {release: bookworm}\nv: '${os.relaese}'\n", "v").unwrap_err();
        assert_eq!(
            errs,
            [
                "unknown variable `${os.relaese}` | did you mean `os.release`?; write `$${os.relaese}` for a literal `${os.relaese}`"
            ]
        );
        let errs = expanded("variables: {a: '${b}', b: '${a}'}\nv: '${a}'\n", "v").unwrap_err();
        assert!(
            errs[0].starts_with("variables refer to each other in a cycle: a → b → a"),
            "{errs:?}"
        );
    }
}
