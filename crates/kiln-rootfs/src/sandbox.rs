//! Commands inside an image root, and host tools that mount things, run in a
//! private mount and PID namespace.
//!
//! `unshare --mount --propagation private --pid --fork --kill-child` gives the
//! command namespaces of its own; kiln sets PR_SET_PDEATHSIG on `unshare`, so
//! when kiln dies for any reason `unshare` is killed, which kills the
//! namespace's first process, which ends every process in it. A mount
//! namespace with no process left is torn down by the kernel: the /proc, /sys
//! and /dev mounted into the root never reach the host's mount table and never
//! outlive the build.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Error, Result};

/// The PATH inside the root and for the host tools.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Mounts /proc, /sys, a minimal /dev, /run and the host's resolv.conf into
/// the root named by `$1`, runs the rest of the arguments in it with chroot
/// and returns its status. Values arrive as arguments, never as script text.
const ENTER_ROOT: &str = r#"set -eu
root=$1; shift
for d in proc sys dev run etc; do mkdir -p "$root/$d"; done
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
mount -t tmpfs -o mode=0755,nosuid,size=16m kiln-dev "$root/dev"
for n in null zero full random urandom tty; do
  : >"$root/dev/$n"
  mount --bind "/dev/$n" "$root/dev/$n"
done
mkdir "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts"
mount -t tmpfs -o nosuid,nodev kiln-shm "$root/dev/shm"
ln -s pts/ptmx "$root/dev/ptmx"
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
mount -t tmpfs -o nosuid,nodev,mode=0755 kiln-run "$root/run"
made_resolv=
if [ ! -e "$root/etc/resolv.conf" ] && [ ! -L "$root/etc/resolv.conf" ]; then
  : >"$root/etc/resolv.conf"
  made_resolv=1
fi
if [ -f "$root/etc/resolv.conf" ] && [ ! -L "$root/etc/resolv.conf" ] && [ -e /etc/resolv.conf ]; then
  mount --bind /etc/resolv.conf "$root/etc/resolv.conf"
fi
status=0
chroot "$root" "$@" || status=$?
if [ -n "$made_resolv" ]; then
  umount "$root/etc/resolv.conf"
  rm -f "$root/etc/resolv.conf"
fi
exit "$status"
"#;

/// An image root that commands run inside.
#[derive(Debug, Clone)]
pub struct Sandbox {
    root: PathBuf,
}

impl Sandbox {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Sandbox { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Runs `argv` inside the root; returns what it printed on stdout.
    pub fn run<S: AsRef<OsStr>>(&self, argv: &[S]) -> Result<String> {
        self.run_with_input(argv, None)
    }

    /// Runs `argv` inside the root with `input` on its stdin.
    pub fn run_with_input<S: AsRef<OsStr>>(
        &self,
        argv: &[S],
        input: Option<&[u8]>,
    ) -> Result<String> {
        let Some(first) = argv.first() else {
            return Err(Error::Invalid("an empty command line".into()));
        };
        let mut cmd = isolated("/bin/sh");
        cmd.arg("-c")
            .arg(ENTER_ROOT)
            .arg("kiln-sandbox")
            .arg(&self.root)
            .args(argv);
        let shown = first.as_ref().to_string_lossy().into_owned();
        let label = if shown == "/bin/sh" {
            "a command in the image root".to_string()
        } else {
            format!("{shown} in the image root")
        };
        finish(cmd, input, &label)
    }

    /// Runs a shell command line (a template's own command) with `/bin/sh -c`.
    pub fn shell(&self, script: &str) -> Result<String> {
        self.run(&["/bin/sh", "-c", script])
    }
}

/// A host `program` to run in namespaces of its own (a bootstrap tool that
/// mounts /proc and /dev into its target itself).
pub fn isolated(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "--pid",
        "--fork",
        "--kill-child",
        "--",
    ])
    .arg(program)
    .env_clear()
    .env("PATH", PATH)
    .env("HOME", "/root")
    .env("LC_ALL", "C")
    .env("DEBIAN_FRONTEND", "noninteractive")
    .env("DEBCONF_NONINTERACTIVE_SEEN", "true");
    if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
        cmd.env("SOURCE_DATE_EPOCH", epoch);
    }
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// How much of a failed command's output an error carries.
const TAIL_LINES: usize = 30;

/// Runs `cmd` to completion, feeding `input`; a failure carries the tail of
/// its output. `label` names the command in errors.
pub fn finish(mut cmd: Command, input: Option<&[u8]>, label: &str) -> Result<String> {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    tracing::debug!(?cmd, "running {label}");
    let mut child = cmd.spawn().map_err(|e| Error::Command {
        command: label.to_string(),
        status: format!("cannot start: {e}"),
        output: String::new(),
    })?;
    let writer = match (input, child.stdin.take()) {
        (Some(data), Some(mut stdin)) => {
            let data = data.to_vec();
            Some(std::thread::spawn(move || stdin.write_all(&data)))
        }
        _ => None,
    };
    let output = child.wait_with_output().map_err(crate::io_error(label))?;
    if let Some(writer) = writer {
        // A command may exit without reading all of its input; its status says
        // whether that was a failure.
        let _ = writer.join();
    }
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    tracing::debug!(status = %output.status, "{label}: stdout:\n{stdout}\nstderr:\n{stderr}");
    if !output.status.success() {
        let all = format!("{stdout}{stderr}");
        let lines: Vec<&str> = all.lines().collect();
        let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
        return Err(Error::Command {
            command: label.to_string(),
            status: output.status.to_string(),
            output: if tail.is_empty() {
                String::new()
            } else {
                format!(":\n{tail}")
            },
        });
    }
    Ok(stdout)
}
