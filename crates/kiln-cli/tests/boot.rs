//! Boot tests of contextualization: one VM description, turned by `kiln
//! context` into an OpenNebula CD, a NoCloud seed and a ConfigDrive, and
//! served by `kiln metadata serve`, contextualizes a kiln-built Debian image
//! in qemu (TCG) — with kiln-agent for all four, and with Debian's cloud-init
//! for the NoCloud seed (ISO9660 on a CD, VFAT on a disk) and the ConfigDrive,
//! each mounted by the guest's kernel. What the guest got is read from its serial console:
//! kiln-ready.service (examples/files/kiln-ready.sh) prints the hostname and
//! every NIC's MAC and addresses once the agent or cloud-init is done, and the
//! fixture's report (fixtures/boot/report.sh) the user, its keys, the written
//! file and the start script's marker.
//!
//! The images are built once per test run (the stage cache makes later runs
//! replay); they boot their kernel directly (`-kernel`/`-initrd` with the
//! command line of the image's own grub.cfg: the bootloader is proven by
//! build.rs), two qemu processes at a time.
//!
//! The metadata service runs on the host's loopback; the guest reaches it
//! through qemu's user networking, where the host is 10.0.2.2. User
//! networking hides the guest's address from the service, so the VM is named
//! by its token: the guest gets `ds=nocloud;s=http://10.0.2.2:PORT/t/TOKEN/`
//! on its kernel command line — the argument `kiln metadata serve --json`
//! announces, with the host as the guest sees it.

mod common;

use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use common::*;

/// Added to every guest's kernel command line. Under TCG on a loaded host
/// the kernel's check of the IO-APIC timer can fail and panic the boot
/// ("IO-APIC + timer doesn't work"): `no_timer_check` skips it, as cloud
/// images do. A panic reboots at once, and `-no-reboot` ends qemu, so a
/// failed boot fails the test at once with its console.
const GUEST_ARGS: &str = "no_timer_check panic=-1";

/// The guest's NIC: the context matches it by this MAC.
const MAC: &str = "52:54:00:6b:69:6c";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGNRQ7tj0HCTUum5rX1MCemJqy304Ylc6s9QjM3HfE6I alice@kiln-boot";

/// One VM for every datasource. The static address is in qemu's user
/// network (10.0.2.0/24, gateway 10.0.2.2) so that the guest keeps reaching
/// the host, but it is not the address qemu's DHCP hands out (10.0.2.15).
/// With `start_script` false the context asks nothing of the agent's final
/// stage (no script, no report).
fn vm_description(start_script: bool) -> String {
    let start_script = if start_script {
        "start_script: |\n    #!/bin/sh\n    echo \"start script ran on \\$(hostname)\" > /var/lib/kiln-start-marker"
    } else {
        ""
    };
    format!(
        r#"name: kiln-boot1
id: 7
nics:
  - {{ network: user, ip: 10.0.2.20, mac: "{MAC}" }}
networks:
  - name: user
    mask: 255.255.255.0
    gateway: 10.0.2.2
    dns: 10.0.2.3
context:
  network: true
  set_hostname: $NAME
  username: alice
  ssh_public_key: {KEY}
  {start_script}
  user_data: |
    #cloud-config
    write_files:
      - path: /etc/kiln-boot-file
        content: "written for VM $VMID by its context\n"
"#
    )
}

/// Lines the console must show once the guest got the whole context.
fn expected(start_script: bool) -> Vec<String> {
    let mut lines = vec![
        "kiln-ready: hostname kiln-boot1".to_string(),
        "report: keys-file alice 600".to_string(),
        format!("report: key {KEY}"),
        "report: file written for VM 7 by its context".to_string(),
    ];
    if start_script {
        lines.push("report: start start script ran on kiln-boot1".to_string());
    }
    lines
}

/// The report's lines on a console, each from its `report:` or
/// `kiln-ready:` prefix on (a login prompt may share the line).
fn report_lines(console: &str) -> Vec<&str> {
    console
        .lines()
        .filter_map(|l| {
            let start = ["report: ", "kiln-ready: "]
                .iter()
                .filter_map(|p| l.find(p))
                .min()?;
            Some(l[start..].trim_end())
        })
        .collect()
}

/// Checks the console of a finished boot; returns what is wrong.
fn check(console: &str, boot: &Boot) -> Vec<String> {
    let report = report_lines(console);
    let mut wrong: Vec<String> = expected(boot.start_script)
        .into_iter()
        .filter(|l| !report.contains(&l.as_str()))
        .map(|l| format!("missing {l:?}"))
        .collect();
    let passwd = report
        .iter()
        .find_map(|l| l.strip_prefix("report: passwd "))
        .unwrap_or_default();
    if !(passwd.starts_with("alice:x:") && passwd.contains(":/home/alice:")) {
        wrong.push(format!("no user alice with home /home/alice: {passwd:?}"));
    }
    // The NIC with the context's MAC carries the static address.
    let nic = report
        .iter()
        .filter_map(|l| l.strip_prefix("kiln-ready: nic "))
        .find(|l| l.split_whitespace().nth(1) == Some(MAC));
    match nic {
        Some(nic) if nic.split_whitespace().any(|a| a == "10.0.2.20/24") => {}
        other => wrong.push(format!("the NIC {MAC} lacks 10.0.2.20/24: {other:?}")),
    }
    if !console.contains(&boot.origin) {
        wrong.push(format!("the console never said {:?}", boot.origin));
    }
    wrong
}

/// A built image, ready to boot its kernel directly.
struct Image {
    _dir: tempfile::TempDir,
    raw: PathBuf,
    kernel: PathBuf,
    initrd: PathBuf,
    /// The kernel command line of the image's grub.cfg.
    cmdline: String,
}

/// scripts/build-agent's static musl kiln-agent (the same target directory
/// as kiln-agent's static_build test, so the two share one build).
fn agent_binary() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("musl-agent");
    let output = Command::new(repo("scripts/build-agent"))
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("scripts/build-agent runs");
    assert!(
        output.status.success(),
        "scripts/build-agent failed (scripts/setup installs musl-tools and the musl target):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// Builds `template` as a raw disk and takes its kernel, initramfs and
/// kernel command line out of it.
fn build_image(template: &str, agent: Option<&Path>) -> Image {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = kiln();
    if let Some(agent) = agent {
        cmd.env("KILN_AGENT_BINARY", agent)
            .env("KILN_AGENT_UNITS", repo("crates/kiln-agent/systemd"));
    }
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join(template);
    let events = build_with(&mut cmd, &template, dir.path(), &["--format", "raw"]);
    let stem = template.file_stem().unwrap().to_str().unwrap();
    let name = format!("boot-{stem}");
    let raw = dir.path().join(format!("{name}.raw"));
    let offset = root_offset(&manifest(dir.path(), &name));
    if agent.is_some() {
        let detail = finished(&events, "agent")["detail"].to_string();
        assert!(detail.contains("as /usr/bin/kiln-agent"), "{detail}");
    }
    let grub = debugfs_cat(&raw, offset, "/boot/grub/grub.cfg");
    let entry = |word: &str| -> Vec<String> {
        grub.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(word).filter(|r| r.starts_with(' ')))
            .unwrap_or_else(|| panic!("no {word} line in grub.cfg:\n{grub}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let linux = entry("linux");
    let initrd_path = entry("initrd");
    let kernel = dir.path().join("vmlinuz");
    let initrd = dir.path().join("initrd.img");
    debugfs_dump(&raw, offset, &linux[0], &kernel);
    debugfs_dump(&raw, offset, &initrd_path[0], &initrd);
    Image {
        raw,
        kernel,
        initrd,
        cmdline: linux[1..].join(" "),
        _dir: dir,
    }
}

/// One boot: a seed image (or none), words added to the kernel command
/// line, and the datasource the guest must name.
struct Boot {
    name: &'static str,
    seed: Option<Seed>,
    append: String,
    /// What the console must say about where the context came from.
    origin: String,
    /// Whether the context runs a start script (vm.yaml), or not
    /// (vm-local.yaml: nothing for the agent's final stage).
    start_script: bool,
}

/// Boots `image` once per entry of `boots`, `parallel` qemu processes at a
/// time, each until KILN-READY is on its console. Returns each boot with
/// its console text or error, in the order given.
fn boot_all(
    image: &Image,
    boots: Vec<Boot>,
    parallel: usize,
) -> Vec<(Boot, Result<String, String>)> {
    let queue = Mutex::new(boots.into_iter().enumerate().collect::<VecDeque<_>>());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..parallel {
            scope.spawn(|| {
                loop {
                    let Some((index, boot)) = queue.lock().unwrap().pop_front() else {
                        break;
                    };
                    let result = boot_one(image, &boot);
                    results.lock().unwrap().push((index, boot, result));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(index, _, _)| *index);
    results.into_iter().map(|(_, boot, r)| (boot, r)).collect()
}

fn boot_one(image: &Image, boot: &Boot) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console.log");
    let mut cmd = qemu(&image.raw, "raw", &console);
    cmd.arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&image.initrd)
        .arg("-append")
        .arg(format!("{} {GUEST_ARGS} {}", image.cmdline, boot.append).trim_end())
        .arg("-nic")
        .arg(format!("user,model=virtio-net-pci,mac={MAC}"));
    match &boot.seed {
        Some(Seed::Cdrom(seed)) => cmd.arg("-drive").arg(format!(
            "file={},format=raw,media=cdrom,readonly=on",
            seed.display()
        )),
        // The second virtio disk: /dev/vdb.
        Some(Seed::Disk(seed)) => cmd.arg("-drive").arg(format!(
            "file={},format=raw,if=virtio,readonly=on",
            seed.display()
        )),
        None => &mut cmd,
    };
    boot_until(&mut cmd, &console, &["KILN-READY"])
}

/// A seed image and how the guest gets it.
enum Seed {
    /// On a CD (/dev/sr0): ISO9660.
    Cdrom(PathBuf),
    /// On a second disk (/dev/vdb): a VFAT NoCloud seed.
    Disk(PathBuf),
}

/// `kiln context KIND vm.yaml -o FILE [ARGS]`.
fn seed(dir: &Path, kind: &str, file: &str, args: &[&str]) -> PathBuf {
    seed_of(dir, "vm.yaml", kind, file, args)
}

/// `kiln context KIND VM -o FILE [ARGS]`.
fn seed_of(dir: &Path, vm: &str, kind: &str, file: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(file);
    run(kiln()
        .args(["context", kind, vm, "-o"])
        .arg(&out)
        .args(args)
        .current_dir(dir));
    out
}

/// A seed on a CD.
fn cd(dir: &Path, kind: &str) -> Option<Seed> {
    Some(Seed::Cdrom(seed(dir, kind, &format!("{kind}.iso"), &[])))
}

/// `kiln metadata serve` on loopback, stopped when dropped.
struct MetadataService {
    child: Child,
    listen: String,
    seedfrom: String,
}

impl MetadataService {
    fn start(dir: &Path) -> Self {
        let mut child = kiln()
            .args([
                "metadata",
                "serve",
                "--vm",
                "vm.yaml",
                "--listen",
                "127.0.0.1:0",
                "--json",
            ])
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let announce: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("kiln metadata serve announced {line:?}: {e}"));
        MetadataService {
            listen: announce["listen"].as_str().unwrap().to_string(),
            seedfrom: announce["vms"][0]["seedfrom"].as_str().unwrap().to_string(),
            child,
        }
    }

    /// The NoCloud-net URL as the guest sees it: the host is 10.0.2.2.
    fn guest_seedfrom(&self) -> String {
        let port = self.listen.rsplit(':').next().unwrap();
        self.seedfrom
            .replace(&self.listen, &format!("10.0.2.2:{port}"))
    }

    /// `GET /kiln/vms`: the VMs and whether each reported ready.
    fn vms(&self) -> serde_json::Value {
        let body = run(Command::new("curl")
            .args(["-sf", "--max-time", "10"])
            .arg(format!("http://{}/kiln/vms", self.listen)));
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for MetadataService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_vm(dir: &Path) {
    fs::write(dir.join("vm.yaml"), vm_description(true)).unwrap();
    fs::write(dir.join("vm-local.yaml"), vm_description(false)).unwrap();
}

#[test]
fn kiln_agent_applies_each_datasource_at_boot() {
    let agent = agent_binary();
    let image = build_image("tests/fixtures/boot/agent.yaml", Some(&agent));
    let dir = tempfile::tempdir().unwrap();
    write_vm(dir.path());
    let service = MetadataService::start(dir.path());
    let boots = vec![
        Boot {
            name: "OpenNebula CD",
            seed: cd(dir.path(), "iso"),
            append: String::new(),
            origin: "kiln-agent: context from /dev/sr0 (CONTEXT)".into(),
            start_script: true,
        },
        Boot {
            name: "NoCloud seed",
            seed: cd(dir.path(), "nocloud"),
            append: String::new(),
            origin: "kiln-agent: context from /dev/sr0 (cidata)".into(),
            start_script: true,
        },
        Boot {
            name: "ConfigDrive",
            seed: cd(dir.path(), "configdrive"),
            append: String::new(),
            origin: "kiln-agent: context from /dev/sr0 (config-2)".into(),
            start_script: true,
        },
        Boot {
            name: "metadata service",
            seed: None,
            append: format!("ds=nocloud;s={}", service.guest_seedfrom()),
            origin: format!("kiln-agent: context from {}", service.guest_seedfrom()),
            start_script: true,
        },
        Boot {
            name: "NoCloud seed, nothing for the final stage",
            seed: Some(Seed::Cdrom(seed_of(
                dir.path(),
                "vm-local.yaml",
                "nocloud",
                "local.iso",
                &[],
            ))),
            append: String::new(),
            origin: "kiln-agent: context from /dev/sr0 (cidata)".into(),
            start_script: false,
        },
    ];
    let mut failures = Vec::new();
    for (boot, result) in boot_all(&image, boots, 2) {
        let name = boot.name;
        match result {
            Ok(console) => {
                let mut wrong = check(&console, &boot);
                // A context with a script has the agent wait for the network
                // before it (its final stage is not ordered after
                // network-online.target); one without has no final stage.
                let waited = console.contains("kiln-agent: network online (");
                // systemd leaves the final stage out: only the local stage
                // says where the context came from.
                let final_skipped = console
                    .contains("kiln-agent: final stage: nothing to do, not started")
                    && console.matches("kiln-agent: context from").count() == 1;
                if boot.start_script && (!waited || final_skipped) {
                    wrong.push(
                        "the final stage did not run, or never waited for the network".into(),
                    );
                }
                if !boot.start_script && (waited || !final_skipped) {
                    wrong.push("the final stage was not left out".into());
                }
                if !wrong.is_empty() {
                    failures.push(format!("{name}: {wrong:#?}\nconsole:\n{console}"));
                }
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    // The agent reported ready to the service that gave it the context.
    let vms = service.vms();
    if vms[0]["ready"] != true {
        failures.push(format!(
            "metadata service: the VM never reported ready: {vms}"
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn cloud_init_applies_kilns_nocloud_seed_at_boot() {
    let image = build_image("tests/fixtures/boot/cloud-init.yaml", None);
    let dir = tempfile::tempdir().unwrap();
    write_vm(dir.path());
    // cloud-init mounts each seed with the guest's kernel: ISO9660 from the
    // CD, VFAT from a disk.
    let boots = vec![
        Boot {
            name: "cloud-init, NoCloud seed (ISO9660)",
            seed: cd(dir.path(), "nocloud"),
            append: String::new(),
            origin: "Datasource DataSourceNoCloud [seed=/dev/sr0]".into(),
            start_script: true,
        },
        Boot {
            name: "cloud-init, NoCloud seed (VFAT)",
            seed: Some(Seed::Disk(seed(
                dir.path(),
                "nocloud",
                "nocloud.img",
                &["--fs", "vfat"],
            ))),
            append: String::new(),
            origin: "Datasource DataSourceNoCloud [seed=/dev/vdb]".into(),
            start_script: true,
        },
        Boot {
            name: "cloud-init, ConfigDrive",
            seed: cd(dir.path(), "configdrive"),
            append: String::new(),
            origin: "Datasource DataSourceConfigDrive".into(),
            start_script: true,
        },
    ];
    for (boot, result) in boot_all(&image, boots, 1) {
        let name = boot.name;
        let console = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        let wrong = check(&console, &boot);
        assert!(wrong.is_empty(), "{name}: {wrong:#?}\nconsole:\n{console}");
    }
}
