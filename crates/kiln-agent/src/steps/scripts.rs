//! Commands and scripts: runcmd, the shell parts of user-data (once per
//! instance), START_SCRIPT and INIT_SCRIPTS (every boot, as one-context).
//! Scripts run inside the root (chroot when it is not `/`), with the
//! OpenNebula context variables in their environment, never through an
//! interpolated shell line; their output goes to /var/log/kiln-agent/.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln_context::cloudconfig::Command as RunCommand;

use super::{Done, Env};
use crate::context::Script;
use crate::files::{ensure_dir, write_atomic};

/// A script still running after this long is killed.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(600);
/// Where seed files are put for INIT_SCRIPTS (one-context runs them from the CD).
pub const CONTEXT_DIR: &str = "/run/kiln-agent/context";

/// A word quoted for sh: nothing in it is expanded.
pub fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// runcmd as one sh script: strings are shell lines (as cloud-init), lists
/// are argv, each word quoted.
pub fn runcmd_script(commands: &[RunCommand]) -> String {
    let mut script = String::from("#!/bin/sh\n");
    for command in commands {
        match command {
            RunCommand::Shell(line) => script.push_str(line),
            RunCommand::Argv(argv) => script.push_str(
                &argv
                    .iter()
                    .map(|w| sh_quote(w))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        }
        script.push('\n');
    }
    script
}

fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Runs a script file (guest path) and waits, bounded. `#!` scripts run
/// as themselves, others with /bin/sh.
pub fn run_script(
    env: &Env<'_>,
    guest_path: &str,
    cwd: &str,
    label: &str,
) -> Result<String, String> {
    let host_path = env.root.at(guest_path);
    let shebang = std::fs::read(&host_path)
        .map(|b| b.starts_with(b"#!"))
        .unwrap_or(false);
    let argv: Vec<&str> = if shebang {
        vec![guest_path]
    } else {
        vec!["/bin/sh", guest_path]
    };
    run_argv(env, &argv, cwd, label)
}

/// Runs argv inside the root with the context's variables, output logged.
pub fn run_argv(env: &Env<'_>, argv: &[&str], cwd: &str, label: &str) -> Result<String, String> {
    // What a context runs (scripts, puppet, chef) may expect the network.
    env.network.wait_online();
    let log_dir = env.root.at("/var/log/kiln-agent");
    ensure_dir(&log_dir, 0o700, None)?;
    let log_path = log_dir.join(format!("{}.log", file_name(label)));
    let log =
        std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    let mut command = if env.root.is_live() {
        let mut c = Command::new(argv[0]);
        c.args(&argv[1..]).current_dir(cwd);
        c
    } else {
        let mut c = Command::new("chroot");
        c.arg(env.root.path())
            .arg("/bin/sh")
            .arg("-c")
            .arg("cd \"$1\" && shift && exec \"$@\"")
            .arg("sh")
            .arg(cwd)
            .args(argv);
        c
    };
    command
        .envs(env.context.env.iter().filter(|(k, _)| valid_env_name(k)))
        .env("KILN_INSTANCE_ID", &env.context.instance_id)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", argv.join(" ")))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > SCRIPT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{label} ran longer than {} s and was stopped",
                SCRIPT_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if status.success() {
        Ok(format!("{label} ok"))
    } else {
        let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
        let last = tail.lines().last().unwrap_or_default();
        Err(format!("{label} failed ({status}): {last}"))
    }
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Writes scripts into `guest_dir` and runs each; all run even when one fails.
fn run_scripts(
    env: &Env<'_>,
    scripts: &[Script],
    guest_dir: &str,
    cwd: &str,
) -> Result<Done, String> {
    if scripts.is_empty() {
        return Ok(Done::Skipped("no scripts".into()));
    }
    ensure_dir(&env.root.at(guest_dir), 0o700, None)?;
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for script in scripts {
        let guest_path = format!("{guest_dir}/{}", file_name(&script.name));
        write_atomic(&env.root.at(&guest_path), &script.body, 0o700, None)?;
        match run_script(env, &guest_path, cwd, &script.name) {
            Ok(message) => ok.push(message),
            Err(error) => failed.push(error),
        }
    }
    if failed.is_empty() {
        Ok(Done::Applied(ok.join(", ")))
    } else {
        Err(failed.join("; "))
    }
}

fn instance_guest_dir(env: &Env<'_>, leaf: &str) -> String {
    let host: PathBuf = env.state.instance_dir(&env.context.instance_id).join(leaf);
    let relative = host.strip_prefix(env.root.path()).unwrap_or(Path::new(""));
    format!("/{}", relative.display())
}

pub fn runcmd(env: &Env<'_>) -> Result<Done, String> {
    if env.context.config.runcmd.is_empty() {
        return Ok(Done::Skipped("no runcmd".into()));
    }
    let script = Script {
        name: "runcmd".into(),
        body: runcmd_script(&env.context.config.runcmd).into_bytes(),
    };
    run_scripts(env, &[script], &instance_guest_dir(env, "scripts"), "/")
}

pub fn user_scripts(env: &Env<'_>) -> Result<Done, String> {
    run_scripts(
        env,
        &env.context.instance_scripts,
        &instance_guest_dir(env, "scripts"),
        "/",
    )
}

/// START_SCRIPT and INIT_SCRIPTS, from a copy of the context's files.
pub fn boot_scripts(env: &Env<'_>) -> Result<Done, String> {
    if env.context.boot_scripts.is_empty() {
        return Ok(Done::Skipped("no scripts".into()));
    }
    let dir = env.root.at(CONTEXT_DIR);
    let _ = std::fs::remove_dir_all(&dir);
    ensure_dir(&dir, 0o700, None)?;
    for (path, bytes) in &env.found.files {
        if path.contains("..") {
            continue;
        }
        write_atomic(&dir.join(path), bytes, 0o600, None)?;
    }
    // Not under /run: initramfs-tools mounts it noexec (Debian, Ubuntu).
    run_scripts(
        env,
        &env.context.boot_scripts,
        &format!("{}/boot-scripts", crate::state::STATE_DIR),
        CONTEXT_DIR,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runcmd_quotes_argv_and_keeps_shell_lines() {
        let script = runcmd_script(&[
            RunCommand::Argv(vec!["touch".into(), "/tmp/a b".into(), "it's $(x)".into()]),
            RunCommand::Shell("echo $HOME > /tmp/h".into()),
        ]);
        assert_eq!(
            script,
            "#!/bin/sh\n'touch' '/tmp/a b' 'it'\\''s $(x)'\necho $HOME > /tmp/h\n"
        );
    }
}
