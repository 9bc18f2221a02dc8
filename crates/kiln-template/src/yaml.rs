//! A YAML document as a tree of nodes that remember where they came from, and
//! small readers that turn nodes into typed values while collecting problems.
//!
//! Both the native format and BoxGrinder's `.appl` are read through this tree,
//! so that one pass can report every error (serde stops at the first) and a
//! plain scalar keeps its text (`12.10` is a release name, not a float).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use granit_parser::{Event, Parser, ScalarStyle};

use crate::diag::{Errors, Problem, SourceFile, suggest};
use crate::size::Size;

#[derive(Debug, Clone)]
pub struct Node {
    pub value: Value,
    pub span: Range<usize>,
    pub source: Arc<SourceFile>,
}

#[derive(Debug, Clone)]
pub enum Value {
    /// The text as written; `plain` is false for quoted and block scalars.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// Parses one YAML document; `None` for an empty file.
pub fn parse(source: &Arc<SourceFile>) -> Result<Option<Node>, Problem> {
    let mut stack: Vec<Open> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root = None;
    let mut documents = 0;
    for event in Parser::new_from_str(&source.text) {
        let (event, span) = event.map_err(|e| {
            let m = e.marker();
            let at = m
                .byte_offset()
                .unwrap_or_else(|| source.offset_of(m.line(), m.col() + 1));
            Problem::new(
                source,
                at..at,
                format!("YAML syntax: {}", e.info()),
                "fix the YAML syntax at this place",
            )
        })?;
        let start = span.start.byte_offset().unwrap_or(0);
        let end = span.end.byte_offset().unwrap_or(start);
        let done = match event {
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    let hint = "keep one template per file; remove the `---` separator";
                    return Err(Problem::new(
                        source,
                        start..end,
                        "more than one YAML document",
                        hint,
                    ));
                }
                None
            }
            Event::Scalar(text, style, anchor, _) => {
                let plain = style == ScalarStyle::Plain;
                Some((
                    Node {
                        value: Value::Scalar {
                            text: text.into_owned(),
                            plain,
                        },
                        span: start..end,
                        source: Arc::clone(source),
                    },
                    anchor,
                ))
            }
            Event::Alias(id) => Some((
                anchors
                    .get(&id)
                    .cloned()
                    .map(|n| Node {
                        span: start..end,
                        ..n
                    })
                    .ok_or_else(|| {
                        Problem::new(
                            source,
                            start..end,
                            "alias to an unknown anchor",
                            "define the anchor (`&name`) before using it",
                        )
                    })?,
                0,
            )),
            Event::SequenceStart(_, anchor, _) => {
                stack.push(Open {
                    start,
                    anchor,
                    items: Vec::new(),
                    is_map: false,
                });
                None
            }
            Event::MappingStart(_, anchor, _) => {
                stack.push(Open {
                    start,
                    anchor,
                    items: Vec::new(),
                    is_map: true,
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let open = stack.pop().expect("the parser balances collections");
                let value = if open.is_map {
                    let mut items = open.items.into_iter();
                    let mut pairs = Vec::new();
                    while let (Some(k), Some(v)) = (items.next(), items.next()) {
                        pairs.push((k, v));
                    }
                    Value::Map(pairs)
                } else {
                    Value::Seq(open.items)
                };
                Some((
                    Node {
                        value,
                        span: open.start..end,
                        source: Arc::clone(source),
                    },
                    open.anchor,
                ))
            }
            _ => None,
        };
        if let Some((node, anchor)) = done {
            if anchor != 0 {
                anchors.insert(anchor, node.clone());
            }
            match stack.last_mut() {
                Some(open) => open.items.push(node),
                None => root = Some(node),
            }
        }
    }
    Ok(root.filter(|n| !n.is_null()))
}

/// A collection whose end event has not come yet.
struct Open {
    start: usize,
    anchor: usize,
    items: Vec<Node>,
    is_map: bool,
}

impl Node {
    pub fn problem(&self, message: impl Into<String>, hint: impl Into<String>) -> Problem {
        Problem::new(&self.source, self.span.clone(), message, hint)
    }

    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    pub fn scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self.value {
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// Any scalar as text: numbers keep their spelling.
    pub fn string(&self, what: &str, errs: &mut Errors) -> Option<String> {
        match &self.value {
            Value::Scalar { text, .. } if !self.is_null() => Some(text.clone()),
            _ => {
                errs.push(self.problem(
                    format!("{what} must be a string, not {}", self.describe()),
                    "write a single value here",
                ));
                None
            }
        }
    }

    /// A string that must not be empty.
    pub fn text(&self, what: &str, errs: &mut Errors) -> Option<String> {
        let s = self.string(what, errs)?;
        if s.trim().is_empty() {
            errs.push(self.problem(
                format!("{what} is empty"),
                "write a value or remove the key",
            ));
            return None;
        }
        Some(s)
    }

    pub fn bool(&self, what: &str, errs: &mut Errors) -> Option<bool> {
        match self.scalar() {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => {
                errs.push(self.problem(
                    format!("{what} must be true or false"),
                    "write `true` or `false`",
                ));
                None
            }
        }
    }

    pub fn uint(&self, what: &str, errs: &mut Errors) -> Option<u64> {
        match self.scalar().and_then(|s| s.parse().ok()) {
            Some(n) => Some(n),
            None => {
                errs.push(self.problem(
                    format!("{what} must be a whole number, not {}", self.describe()),
                    "write digits only, e.g. `2`",
                ));
                None
            }
        }
    }

    pub fn size(&self, what: &str, errs: &mut Errors) -> Option<Size> {
        let text = self.string(what, errs)?;
        match text.parse::<Size>() {
            Ok(size) => Some(size),
            Err(hint) => {
                errs.push(self.problem(format!("{what} `{text}` is not a size"), hint));
                None
            }
        }
    }

    /// One of a fixed set of words, with a "did you mean" for typos.
    pub fn keyword<T: Copy>(
        &self,
        what: &str,
        words: &[(&str, T)],
        errs: &mut Errors,
    ) -> Option<T> {
        let text = self.string(what, errs)?;
        let found = words.iter().find(|(w, _)| *w == text).map(|(_, v)| *v);
        if found.is_none() {
            let names: Vec<&str> = words.iter().map(|(w, _)| *w).collect();
            errs.push(self.problem(
                format!("{what} `{text}` is not known"),
                suggest(&text, &names),
            ));
        }
        found
    }

    pub fn seq(&self, what: &str, errs: &mut Errors) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ if self.is_null() => Some(&[]),
            _ => {
                errs.push(self.problem(
                    format!("{what} must be a list, not {}", self.describe()),
                    "write one `- item` per line",
                ));
                None
            }
        }
    }

    pub fn strings(&self, what: &str, errs: &mut Errors) -> Vec<String> {
        self.seq(what, errs)
            .unwrap_or_default()
            .iter()
            .filter_map(|n| n.text(what, errs))
            .collect()
    }

    /// The entries of a mapping whose keys are free (paths, names).
    pub fn entries(&self, what: &str, errs: &mut Errors) -> Vec<(String, &Node)> {
        match &self.value {
            Value::Map(pairs) => pairs
                .iter()
                .filter_map(|(k, v)| Some((k.text("a key", errs)?, v)))
                .collect(),
            _ if self.is_null() => Vec::new(),
            _ => {
                errs.push(self.problem(
                    format!("{what} must be a mapping, not {}", self.describe()),
                    "write `key: value` lines",
                ));
                Vec::new()
            }
        }
    }

    fn describe(&self) -> String {
        match self.scalar() {
            Some(text) if !self.is_null() => format!("`{text}`"),
            Some(_) => "empty".to_string(),
            None => self.kind().to_string(),
        }
    }
}

/// A mapping with a fixed set of keys: unknown and duplicate keys are reported
/// when it is opened, then fields are taken by name.
pub struct Fields<'a> {
    pub node: &'a Node,
    entries: Vec<(&'a str, &'a Node)>,
}

impl<'a> Fields<'a> {
    pub fn open(
        node: &'a Node,
        what: &str,
        known: &[&str],
        errs: &mut Errors,
    ) -> Option<Fields<'a>> {
        let pairs: &[(Node, Node)] = match &node.value {
            Value::Map(pairs) => pairs,
            _ if node.is_null() => &[],
            _ => {
                let hint = format!("write `key: value` lines; keys here: {}", known.join(", "));
                errs.push(node.problem(
                    format!("{what} must be a mapping, not {}", node.describe()),
                    hint,
                ));
                return None;
            }
        };
        let mut entries: Vec<(&str, &Node)> = Vec::new();
        for (k, v) in pairs {
            let Some(key) = k.scalar() else {
                errs.push(k.problem("a key must be a plain word", "write `name: value`"));
                continue;
            };
            if !known.contains(&key) {
                errs.push(k.problem(
                    format!("unknown key `{key}` in {what}"),
                    suggest(key, known),
                ));
            } else if entries.iter().any(|(seen, _)| *seen == key) {
                errs.push(k.problem(
                    format!("duplicate key `{key}` in {what}"),
                    "keep one of them",
                ));
            } else if !v.is_null() {
                entries.push((key, v));
            }
        }
        Some(Fields { node, entries })
    }

    pub fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }

    /// A key that must be there; reported at the mapping when missing.
    pub fn require(&self, key: &str, what: &str, errs: &mut Errors) -> Option<&'a Node> {
        let found = self.get(key);
        if found.is_none() {
            errs.push(self.node.problem(
                format!("{what} has no `{key}`"),
                format!("add `{key}:` here"),
            ));
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Node {
        parse(&SourceFile::new("t.yaml", text)).unwrap().unwrap()
    }

    #[test]
    fn scalars_keep_their_text_and_spans_point_at_them() {
        let root = tree("os:\n  release: 12.10\n");
        let mut errs = Errors::default();
        let os = Fields::open(&root, "template", &["os"], &mut errs)
            .unwrap()
            .get("os")
            .unwrap();
        let release = Fields::open(os, "os", &["release"], &mut errs)
            .unwrap()
            .get("release")
            .unwrap();
        assert_eq!(release.scalar(), Some("12.10"));
        assert_eq!(release.source.line_col(release.span.start), (2, 12));
        assert!(errs.0.is_empty());
    }

    #[test]
    fn aliases_copy_the_anchored_node() {
        let root = tree("a: &x [1, 2]\nb: *x\n");
        let mut errs = Errors::default();
        let f = Fields::open(&root, "t", &["a", "b"], &mut errs).unwrap();
        assert_eq!(f.get("b").unwrap().strings("b", &mut errs), ["1", "2"]);
    }

    #[test]
    fn every_unknown_and_duplicate_key_is_reported() {
        let root = tree("nmae: x\npakages: []\nname: a\nname: b\n");
        let mut errs = Errors::default();
        Fields::open(&root, "template", &["name", "packages"], &mut errs);
        let messages: Vec<_> = errs
            .0
            .iter()
            .map(|p| (p.message.as_str(), p.hint.as_str(), p.line_col().0))
            .collect();
        assert_eq!(
            messages,
            [
                ("unknown key `nmae` in template", "did you mean `name`?", 1),
                (
                    "unknown key `pakages` in template",
                    "did you mean `packages`?",
                    2
                ),
                ("duplicate key `name` in template", "keep one of them", 4),
            ]
        );
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse(&SourceFile::new("t.yaml", "a: [1, 2\nb: c\n")).unwrap_err();
        assert!(err.message.starts_with("YAML syntax"), "{}", err.message);
        assert!(err.line_col().0 >= 1);
    }
}
