//! Helpers shared by the integration tests.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use kiln_template::{Imported, Problems, Template};

/// A corpus directory in the shared material beside the repository.
pub fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus")
        .join(name)
}

/// Writes an import as native YAML, reads it back with the native loader and
/// returns what was read: an import must itself pass `kiln template check`.
pub fn reload(imported: &Imported, from: &Path) -> Template {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("imported.yaml");
    std::fs::write(&out, imported.to_yaml(from).unwrap()).unwrap();
    kiln_template::load(&out).unwrap_or_else(|p| {
        panic!(
            "import of {} does not check:\n{}",
            from.display(),
            p.plain()
        )
    })
}

/// Each problem as (file name, line, message, hint).
pub fn places(problems: &Problems) -> Vec<(String, usize, String, String)> {
    let file = |p: &kiln_template::Problem| {
        p.source
            .path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    problems
        .0
        .iter()
        .map(|p| (file(p), p.line_col().0, p.message.clone(), p.hint.clone()))
        .collect()
}
