//! Importing other tools' templates: Oz TDL (XML) and BoxGrinder appliance
//! definitions (YAML), told apart by their content.

use std::path::Path;
use std::sync::Arc;

use crate::diag::{Problem, Problems, SourceFile};
use crate::model::*;
use crate::{appl, tdl};

/// A converted template and what did not carry over.
#[derive(Debug, Clone)]
pub struct Imported {
    pub template: Template,
    /// Things the original said that kiln does not do, or does differently.
    pub notes: Vec<String>,
}

impl Imported {
    /// The template as native YAML, the notes as comments at its top.
    pub fn to_yaml(&self, from: &Path) -> Result<String, serde_saphyr::SerializeError> {
        let mut out = format!("# Imported by kiln from {}\n", from.display());
        for note in &self.notes {
            out += &format!("# note: {}\n", note.replace('\n', " "));
        }
        Ok(out + &self.template.to_yaml()?)
    }
}

/// Converts the Oz TDL or BoxGrinder appliance at `path` into a template.
pub fn import(path: &Path) -> Result<Imported, Problems> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Problem::new(
            &SourceFile::new(path, ""),
            0..0,
            format!("cannot read {}: {e}", path.display()),
            "check the path",
        )
    })?;
    let source = SourceFile::new(path, text);
    let mut imported = if looks_like_xml(&source) {
        tdl::import(&source)?
    } else {
        appl::import(&source)?
    };
    if let Err(e) = imported.template.bootstrap_backend() {
        imported
            .notes
            .push(format!("{e}; the template converts but cannot be built"));
    }
    Ok(imported)
}

fn looks_like_xml(source: &Arc<SourceFile>) -> bool {
    source
        .text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with('<')
}

/// A template with kiln's defaults, for an importer to fill in.
pub fn skeleton(name: String, os: Os) -> Template {
    Template {
        name,
        version: None,
        description: None,
        os,
        mirror: None,
        default_repositories: true,
        repositories: Vec::new(),
        packages: Vec::new(),
        files: Vec::new(),
        commands: Commands::default(),
        groups: Vec::new(),
        users: Vec::new(),
        root_password: None,
        services: Services::default(),
        timezone: None,
        locale: None,
        hardware: Hardware::default(),
        disk: Disk::default(),
        boot: BootMode::default(),
        kernel_cmdline: None,
        outputs: crate::native::default_outputs(),
        agent: true,
    }
}

/// A file that the original tool downloaded without a checksum: kiln's `url`
/// needs one, so the download becomes a command run in the image, as the
/// original did it.
pub fn download_command(url: &str, dest: &str) -> Command {
    let dir = dest
        .rsplit_once('/')
        .map_or("/", |(d, _)| if d.is_empty() { "/" } else { d });
    Command::Shell(format!(
        "mkdir -p {} && curl -fsSL -o {} {}",
        quote(dir),
        quote(dest),
        quote(url)
    ))
}

/// Single-quotes a word for the shell.
pub fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_quote_their_words() {
        let Command::Shell(cmd) = download_command("http://h/a b", "/etc/it's") else {
            panic!()
        };
        assert_eq!(
            cmd,
            r"mkdir -p '/etc' && curl -fsSL -o '/etc/it'\''s' 'http://h/a b'"
        );
    }
}
