//! A node classifier: rules map a node (hostname, tags, facts) to classes
//! with parameters and an environment, printed as Puppet ENC YAML or as a
//! chef-solo node JSON.
//!
//! ```yaml
//! mode: first            # or merge
//! default: { classes: [base], environment: production }
//! nodes:                 # optional inventory: tags and facts per node
//!   web1.example.org: { tags: [frontend], facts: { os: debian } }
//! rules:
//!   - match: { hostname: "web*.example.org", tags: [frontend], facts: { os: debian } }
//!     classes: { nginx: { workers: 4 } }
//!     parameters: { role: web }
//!     environment: production
//! ```
//!
//! A rule matches when every condition it names holds: `hostname` (a glob or
//! a list of globs, case-insensitive), `hostname_regex`, `tags` (all present)
//! and `facts` (each equal, or one of a list; nested facts by dotted name).
//! In `first` mode the first matching rule is applied over the default; in
//! `merge` mode every matching rule is, in order: classes accumulate (a later
//! rule's parameters for the same class win key by key), parameters merge
//! (later wins) and the last environment named wins. A node that matches no
//! rule gets the default; without a default it is not found.

use std::collections::{BTreeMap, BTreeSet};

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Class name → class parameters, in the order the rules give them.
pub type Classes = IndexMap<String, Map<String, Value>>;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub default: Option<Outcome>,
    #[serde(default)]
    pub nodes: BTreeMap<String, Inventory>,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    First,
    Merge,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub facts: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "match", default)]
    pub conditions: Conditions,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    #[serde(default)]
    pub hostname: Option<OneOrMany>,
    #[serde(default)]
    pub hostname_regex: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub facts: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(&self) -> &[String] {
        match self {
            OneOrMany::One(one) => std::slice::from_ref(one),
            OneOrMany::Many(many) => many,
        }
    }
}

/// What a rule (or the default) gives a node.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Outcome {
    #[serde(default, deserialize_with = "class_list_or_map")]
    pub classes: Classes,
    #[serde(default)]
    pub parameters: Map<String, Value>,
    #[serde(default)]
    pub environment: Option<String>,
}

/// `classes` is a list of names or a map of name → parameters.
fn class_list_or_map<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Classes, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<String>),
        Map(IndexMap<String, Option<Map<String, Value>>>),
    }
    Ok(match Form::deserialize(deserializer)? {
        Form::List(names) => names.into_iter().map(|n| (n, Map::new())).collect(),
        Form::Map(map) => map
            .into_iter()
            .map(|(n, p)| (n, p.unwrap_or_default()))
            .collect(),
    })
}

/// A facts file: a YAML or JSON map, nested maps allowed.
pub fn parse_facts(origin: &str, text: &str) -> Result<Map<String, Value>> {
    serde_saphyr::from_str(text).map_err(|e| {
        Error::Invalid(format!(
            "{origin}: expected a map of facts: {}",
            e.to_string().lines().next().unwrap_or_default()
        ))
    })
}

/// The node being classified.
#[derive(Debug, Clone, Default)]
pub struct Node {
    pub name: String,
    pub tags: BTreeSet<String>,
    pub facts: Map<String, Value>,
}

impl Rules {
    pub fn parse(origin: &str, text: &str) -> Result<Rules> {
        let rules: Rules = serde_saphyr::from_str(text).map_err(|e| {
            Error::Invalid(format!(
                "{origin}: {}",
                e.to_string().lines().next().unwrap_or("invalid rules")
            ))
        })?;
        for (i, rule) in rules.rules.iter().enumerate() {
            let pattern =
                |p: &str| Error::Invalid(format!("{origin}: rules[{i}]: bad pattern {p:?}"));
            if let Some(regex) = &rule.conditions.hostname_regex {
                regex::Regex::new(regex).map_err(|_| pattern(regex))?;
            }
            for glob in rule.conditions.hostname.iter().flat_map(OneOrMany::items) {
                glob::Pattern::new(glob).map_err(|_| pattern(glob))?;
            }
        }
        Ok(rules)
    }

    /// The node with the inventory's tags and facts added to those given.
    pub fn node(&self, name: &str, tags: BTreeSet<String>, facts: Map<String, Value>) -> Node {
        let mut node = Node {
            name: name.to_string(),
            tags,
            facts,
        };
        if let Some(inventory) = self.nodes.get(name) {
            node.tags.extend(inventory.tags.iter().cloned());
            for (key, value) in &inventory.facts {
                node.facts
                    .entry(key.clone())
                    .or_insert_with(|| value.clone());
            }
        }
        node
    }

    /// The classification, or None when the node is not found.
    pub fn classify(&self, node: &Node) -> Option<Outcome> {
        let mut matching = self.rules.iter().filter(|rule| rule.conditions.hold(node));
        let applied: Vec<&Rule> = match self.mode {
            Mode::First => matching.next().into_iter().collect(),
            Mode::Merge => matching.collect(),
        };
        if applied.is_empty() && self.default.is_none() {
            return None;
        }
        let mut outcome = self.default.clone().unwrap_or_default();
        for rule in applied {
            outcome.merge(&rule.outcome);
        }
        Some(outcome)
    }
}

impl Conditions {
    fn hold(&self, node: &Node) -> bool {
        let options = glob::MatchOptions {
            case_sensitive: false,
            ..glob::MatchOptions::new()
        };
        let hostname = self.hostname.as_ref().is_none_or(|globs| {
            globs
                .items()
                .iter()
                .any(|g| glob::Pattern::new(g).is_ok_and(|p| p.matches_with(&node.name, options)))
        });
        let regex = self
            .hostname_regex
            .as_ref()
            .is_none_or(|r| regex::Regex::new(r).is_ok_and(|r| r.is_match(&node.name)));
        let tags = self.tags.iter().all(|t| node.tags.contains(t));
        let facts = self.facts.iter().all(|(name, wanted)| {
            let actual = fact(&node.facts, name).map(value_text);
            match wanted {
                Value::Array(options) => options
                    .iter()
                    .any(|o| actual.as_deref() == Some(&value_text(o))),
                wanted => actual.as_deref() == Some(&value_text(wanted)),
            }
        });
        hostname && regex && tags && facts
    }
}

/// A fact by name, or by dotted path into nested facts (`os.release.major`).
fn fact<'a>(facts: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(value) = facts.get(name) {
        return Some(value);
    }
    let (first, rest) = name.split_once('.')?;
    match facts.get(first)? {
        Value::Object(inner) => fact(inner, rest),
        _ => None,
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Outcome {
    fn merge(&mut self, later: &Outcome) {
        for (class, parameters) in &later.classes {
            let entry = self.classes.entry(class.clone()).or_default();
            entry.extend(parameters.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        self.parameters
            .extend(later.parameters.iter().map(|(k, v)| (k.clone(), v.clone())));
        if later.environment.is_some() {
            self.environment = later.environment.clone();
        }
    }

    /// Puppet's ENC answer: `classes` (as a map, so parameterised classes
    /// work), `parameters` and, when known, `environment`.
    pub fn to_puppet_yaml(&self) -> String {
        #[derive(serde::Serialize)]
        struct Answer<'a> {
            classes: &'a Classes,
            parameters: &'a Map<String, Value>,
            #[serde(skip_serializing_if = "Option::is_none")]
            environment: &'a Option<String>,
        }
        let answer = Answer {
            classes: &self.classes,
            parameters: &self.parameters,
            environment: &self.environment,
        };
        let body = serde_saphyr::to_string(&answer).expect("plain data always serializes");
        format!("---\n{body}")
    }

    /// chef-solo's node JSON: each class becomes `recipe[class]` in the run
    /// list and its parameters the attributes of its cookbook (the part before
    /// `::`); parameters are top-level attributes.
    pub fn to_chef_json(&self) -> Value {
        let mut node = Map::new();
        for (key, value) in &self.parameters {
            node.insert(key.clone(), value.clone());
        }
        for (class, parameters) in &self.classes {
            let cookbook = class.split("::").next().unwrap_or(class);
            if let Value::Object(attributes) = node
                .entry(cookbook.to_string())
                .or_insert_with(|| Value::Object(Map::new()))
            {
                attributes.extend(parameters.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        let run_list: Vec<Value> = self
            .classes
            .keys()
            .map(|c| Value::String(format!("recipe[{c}]")))
            .collect();
        node.insert("run_list".into(), Value::Array(run_list));
        if let Some(environment) = &self.environment {
            node.insert(
                "chef_environment".into(),
                Value::String(environment.clone()),
            );
        }
        Value::Object(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RULES: &str = r#"
mode: first
default:
  classes: [base]
  environment: production
nodes:
  db1.example.org: { tags: [backend], facts: { os: { family: debian, release: "12" } } }
rules:
  - name: web
    match: { hostname: ["web*.example.org", "www.example.org"] }
    classes: { nginx: { workers: 4 }, "nginx::tls": {} }
    parameters: { role: web }
  - match: { hostname_regex: '^db\d+\.', tags: [backend], facts: { os.family: [debian, ubuntu], os.release: 12 } }
    classes: { postgresql: { version: "15" } }
    parameters: { role: db }
    environment: staging
  - match: { tags: [backend] }
    classes: { monitoring: null, nginx: { workers: 8 } }
    parameters: { role: backend, tier: 2 }
"#;

    fn classify(text: &str, name: &str, tags: &[&str]) -> Option<Outcome> {
        let rules = Rules::parse("rules.yaml", text).unwrap();
        let node = rules.node(
            name,
            tags.iter().map(|t| t.to_string()).collect(),
            Map::new(),
        );
        rules.classify(&node)
    }

    fn class_names(outcome: &Outcome) -> Vec<&str> {
        outcome.classes.keys().map(String::as_str).collect()
    }

    #[test]
    fn first_match_wins_over_the_default() {
        let web = classify(RULES, "WEB7.example.org", &[]).unwrap();
        assert_eq!(class_names(&web), ["base", "nginx", "nginx::tls"]);
        assert_eq!(web.classes["nginx"]["workers"], json!(4));
        assert_eq!(web.parameters["role"], json!("web"));
        assert_eq!(web.environment.as_deref(), Some("production"));

        let db = classify(RULES, "db1.example.org", &[]).unwrap();
        assert_eq!(
            class_names(&db),
            ["base", "postgresql"],
            "tags and nested facts from the inventory"
        );
        assert_eq!(db.environment.as_deref(), Some("staging"));

        let other = classify(RULES, "mail.example.org", &[]).unwrap();
        assert_eq!(class_names(&other), ["base"]);
    }

    #[test]
    fn merge_mode_accumulates() {
        let merged = classify(
            &RULES.replace("mode: first", "mode: merge"),
            "db1.example.org",
            &[],
        )
        .unwrap();
        assert_eq!(
            class_names(&merged),
            ["base", "postgresql", "monitoring", "nginx"]
        );
        assert_eq!(
            merged.parameters["role"],
            json!("backend"),
            "the later rule wins"
        );
        assert_eq!(merged.parameters["tier"], json!(2));
        assert_eq!(
            merged.environment.as_deref(),
            Some("staging"),
            "the last rule names none"
        );
    }

    #[test]
    fn tags_given_on_the_command_line_count() {
        let tagged = classify(RULES, "app1", &["backend"]).unwrap();
        assert_eq!(class_names(&tagged), ["base", "monitoring", "nginx"]);
    }

    #[test]
    fn no_match_and_no_default_is_not_found() {
        let text = "rules:\n  - match: { hostname: 'web*' }\n    classes: [nginx]\n";
        assert!(classify(text, "db1", &[]).is_none());
        assert!(classify(text, "web1", &[]).is_some());
    }

    #[test]
    fn puppet_yaml_and_chef_json() {
        let web = classify(RULES, "www.example.org", &[]).unwrap();
        let yaml = web.to_puppet_yaml();
        let parsed: Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(
            parsed,
            json!({"classes": {"base": {}, "nginx": {"workers": 4}, "nginx::tls": {}}, "parameters": {"role": "web"}, "environment": "production"})
        );
        assert!(yaml.starts_with("---\nclasses:"), "{yaml}");
        let chef = web.to_chef_json();
        assert_eq!(
            chef["run_list"],
            json!(["recipe[base]", "recipe[nginx]", "recipe[nginx::tls]"])
        );
        assert_eq!(chef["nginx"], json!({"workers": 4}));
        assert_eq!(chef["role"], json!("web"));
        assert_eq!(chef["chef_environment"], json!("production"));
    }

    #[test]
    fn bad_rules_are_reported() {
        let err = Rules::parse("r.yaml", "rules:\n  - match: { hostname_regex: '(' }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rules[0]: bad pattern"), "{err}");
        let err = Rules::parse("r.yaml", "rules:\n  - clases: [typo]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("clases"), "{err}");
        let err = Rules::parse("r.yaml", "mode: sometimes\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("r.yaml: "), "{err}");
    }
}
