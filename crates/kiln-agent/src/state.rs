//! What the agent remembers under /var/lib/kiln-agent: the instance id,
//! which once-per-instance steps ran, the network it wrote, and the status
//! of every step's last run (`kiln-agent status`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::files::{read_text, write_atomic};
use crate::root::Root;

pub const STATE_DIR: &str = "/var/lib/kiln-agent";

pub struct State {
    dir: PathBuf,
}

/// One step's last run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub stage: String,
    /// applied, skipped, failed
    pub outcome: String,
    pub detail: String,
    pub millis: u64,
    /// Seconds since 1970.
    pub at: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub instance_id: Option<String>,
    pub source: Option<String>,
    pub warnings: Vec<String>,
    /// By step name, in the order they run.
    pub steps: Vec<(String, StepRecord)>,
    /// Per stage: how long the whole stage took, in milliseconds.
    pub stages: BTreeMap<String, u64>,
}

/// A file name from an instance id (which comes from the context).
fn safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

impl State {
    pub fn new(root: &Root) -> State {
        State {
            dir: root.at(STATE_DIR),
        }
    }

    pub fn get(&self, key: &str) -> Option<String> {
        read_text(&self.dir.join(key))
            .ok()
            .filter(|t| !t.is_empty())
    }

    pub fn set(&self, key: &str, value: &str) -> Result<(), String> {
        write_atomic(&self.dir.join(key), value.as_bytes(), 0o600, None)
    }

    fn semaphore(&self, instance: &str, step: &str) -> PathBuf {
        self.dir
            .join("instances")
            .join(safe(instance))
            .join("sem")
            .join(step)
    }

    pub fn done(&self, instance: &str, step: &str) -> bool {
        self.semaphore(instance, step).exists()
    }

    pub fn mark(&self, instance: &str, step: &str) -> Result<(), String> {
        write_atomic(&self.semaphore(instance, step), b"", 0o600, None)
    }

    /// Where a step keeps the files of this instance (scripts…).
    pub fn instance_dir(&self, instance: &str) -> PathBuf {
        self.dir.join("instances").join(safe(instance))
    }

    pub fn status(&self) -> Status {
        self.get("status.json")
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    pub fn save_status(&self, status: &Status) -> Result<(), String> {
        let text = serde_json::to_string_pretty(status).expect("plain data serializes");
        self.set("status.json", &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semaphores_per_instance() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::new(&Root::new(dir.path()));
        assert!(!state.done("i-1", "users"));
        state.mark("i-1", "users").unwrap();
        assert!(state.done("i-1", "users"));
        assert!(!state.done("i-2", "users"));
        state.mark("../../etc", "x").unwrap();
        assert!(
            dir.path()
                .join("var/lib/kiln-agent/instances/_.._etc/sem/x")
                .exists()
        );
    }
}
