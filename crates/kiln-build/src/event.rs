//! What a build reports as it goes: the CLI draws progress from these, and
//! `kiln build --json` prints each as one line of JSON.

use serde::Serialize;

use crate::Stage;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    BuildStarted {
        template: String,
        stages: Vec<&'static str>,
    },
    StageStarted {
        stage: Stage,
        number: usize,
        total: usize,
        title: &'static str,
    },
    StageFinished {
        stage: Stage,
        seconds: f64,
        /// The result came from the cache.
        cached: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    StageFailed {
        stage: Stage,
        seconds: f64,
        error: String,
    },
    Warning {
        stage: Stage,
        message: String,
    },
    Output {
        path: String,
        format: String,
        bytes: u64,
    },
    BuildFinished {
        manifest: String,
        seconds: f64,
    },
}
