//! Helpers shared by the end-to-end tests: building images with `kiln build`
//! and booting them in qemu (build.rs, boot.rs), running `kiln` and `kiln
//! serve` for the marketplace tests (market.rs, trust.rs, web.rs). Each test
//! binary uses a part of them.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long one boot under TCG may take before the test gives up: generous,
/// because CI machines are loaded.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// The stage cache every e2e build shares: the first build on a clean
/// machine bootstraps, later ones replay.
pub fn cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo("target"));
    target.join("kiln-e2e-cache")
}

pub fn kiln() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.env("KILN_CACHE_DIR", cache_dir())
        .env_remove("KILN_AGENT_BINARY");
    cmd
}

/// `kiln` for the marketplace tests: a private HOME (login file, push
/// state) and no ambient server, token or client configuration.
pub fn kiln_at_home(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_STATE_HOME")
        .env_remove("KILN_SERVER")
        .env_remove("KILN_TOKEN")
        .env_remove("KILN_CLIENT_CONFIG");
    c
}

/// A marketplace test's client side: a private HOME under the test's
/// directory. Test files add their own helpers in `impl Env` blocks.
pub struct Env {
    pub home: PathBuf,
}

impl Env {
    pub fn new(dir: &Path) -> Env {
        let home = dir.join("home");
        fs::create_dir_all(&home).unwrap();
        Env { home }
    }

    /// `kiln` with that HOME (see [`kiln_at_home`]).
    pub fn kiln(&self) -> Command {
        kiln_at_home(&self.home)
    }
}

/// A `kiln serve` on a free loopback port, killed when dropped.
pub struct Served {
    pub child: Child,
    /// `http://127.0.0.1:PORT`, from its first line.
    pub url: String,
}

impl Served {
    /// Runs `kiln serve ARGS --listen 127.0.0.1:0` from `kiln` (a `kiln`
    /// command), its log (stderr) to `log`; waits for its first line.
    pub fn start(mut kiln: Command, args: &[&str], log: impl Into<Stdio>) -> Served {
        let mut child = kiln
            .arg("serve")
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let url = line
            .trim()
            .strip_prefix("kiln: serving on ")
            .unwrap_or_else(|| panic!("kiln serve printed {line:?}"))
            .to_string();
        Served { child, url }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds `template` into `out` with `--json`; returns the events.
pub fn build(template: &Path, out: &Path, extra: &[&str]) -> Vec<Value> {
    build_with(&mut kiln(), template, out, extra)
}

/// As [`build`], with a `kiln` command prepared by the caller (environment).
pub fn build_with(kiln: &mut Command, template: &Path, out: &Path, extra: &[&str]) -> Vec<Value> {
    let output = kiln
        .arg("build")
        .arg(template)
        .arg("-o")
        .arg(out)
        .arg("--json")
        .args(extra)
        .output()
        .unwrap();
    let events = events(&output.stdout);
    assert!(
        output.status.success(),
        "kiln build {}: {}\n{}",
        template.display(),
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    events
}

pub fn events(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

pub fn finished(events: &[Value], stage: &str) -> Value {
    events
        .iter()
        .find(|e| e["event"] == "stage-finished" && e["stage"] == stage)
        .cloned()
        .unwrap_or_else(|| panic!("no stage-finished for {stage}: {events:?}"))
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn manifest(out: &Path, stem: &str) -> Value {
    serde_json::from_str(&fs::read_to_string(out.join(format!("{stem}.manifest.json"))).unwrap())
        .unwrap()
}

pub fn root_offset(manifest: &Value) -> u64 {
    manifest["disk"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["role"] == "root")
        .unwrap()["offset"]
        .as_u64()
        .unwrap()
}

pub fn debugfs_cat(raw: &Path, offset: u64, path: &str) -> String {
    run(Command::new("debugfs")
        .args(["-R", &format!("cat {path}")])
        .arg(format!("{}?offset={offset}", raw.display())))
}

/// Copies `path` out of the ext4 root filesystem of `raw` into `to`.
pub fn debugfs_dump(raw: &Path, offset: u64, path: &str, to: &Path) {
    run(Command::new("debugfs")
        .args(["-R", &format!("dump {path} {}", to.display())])
        .arg(format!("{}?offset={offset}", raw.display())));
    assert!(
        fs::metadata(to).is_ok_and(|m| m.len() > 0),
        "debugfs could not dump {path} from {}",
        raw.display()
    );
}

/// A qemu command for one disk: q35, TCG, one CPU, 1 GiB, no display, no
/// default devices, writes to the disk discarded (`-snapshot`), the serial
/// console in `console`. Callers add firmware, kernel, NICs and seeds.
pub fn qemu(image: &Path, format: &str, console: &Path) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-machine", "q35", "-accel", "tcg", "-m", "1024", "-smp", "1",
    ])
    .args(["-display", "none", "-nodefaults", "-no-reboot", "-snapshot"])
    .arg("-serial")
    .arg(format!("file:{}", console.display()))
    .arg("-drive")
    .arg(format!(
        "file={},format={format},if=virtio",
        image.display()
    ))
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    cmd
}

/// Runs `cmd` (from [`qemu`]) until every one of `wanted` has appeared on the
/// console file (bounded by [`BOOT_TIMEOUT`]), then stops qemu. Returns the
/// console text, or an error holding it: what is missing, or how qemu ended.
pub fn boot_until(cmd: &mut Command, console: &Path, wanted: &[&str]) -> Result<String, String> {
    let mut qemu = cmd
        .spawn()
        .map_err(|e| format!("qemu-system-x86_64 (scripts/setup installs it): {e}"))?;
    let result = wait_for(&mut qemu, console, wanted);
    let _ = qemu.kill();
    let _ = qemu.wait();
    result
}

fn wait_for(qemu: &mut Child, console: &Path, wanted: &[&str]) -> Result<String, String> {
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let mut text = String::new();
    while Instant::now() < deadline {
        // Firmware writes bytes that are not UTF-8 (OVMF does): read lossily.
        text = String::from_utf8_lossy(&fs::read(console).unwrap_or_default()).into_owned();
        if wanted.iter().all(|w| text.contains(w)) {
            return Ok(text);
        }
        if let Ok(Some(status)) = qemu.try_wait() {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(qemu.stderr.as_mut().unwrap(), &mut err);
            return Err(format!("qemu exited ({status}): {err}\nconsole:\n{text}"));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let missing: Vec<_> = wanted.iter().filter(|w| !text.contains(*w)).collect();
    Err(format!(
        "{missing:?} never appeared on the console within {} s:\n{text}",
        BOOT_TIMEOUT.as_secs()
    ))
}

/// Boots `image` through its firmware (SeaBIOS, or OVMF when `uefi`) and
/// bootloader and waits until every one of `wanted` has appeared on the
/// console; panics with the console log otherwise.
pub fn boot(image: &Path, format: &str, uefi: bool, wanted: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console.log");
    let mut cmd = qemu(image, format, &console);
    if uefi {
        cmd.args(["-bios", "/usr/share/OVMF/OVMF_CODE.fd"]);
    }
    boot_until(&mut cmd, &console, wanted).unwrap_or_else(|e| {
        panic!(
            "{} boot of {}: {e}",
            if uefi { "UEFI" } else { "BIOS" },
            image.display()
        )
    })
}
