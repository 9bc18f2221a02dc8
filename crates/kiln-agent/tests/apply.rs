//! kiln-agent applies real contexts — images made by kiln-context's
//! generators, read from the image files as from a block device — to a
//! scratch root, and the resulting files are checked.

mod common;

use base64::Engine as _;
use common::*;
use kiln_context::onecontext::{Variables, context_seed, context_sh};
use kiln_context::{Filesystem, SeedFile};

const KEY1: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKilnKilnKilnKilnKilnKilnKilnKilnKilnKilnKiln alice@example";
const KEY2: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCkiln second@example";

fn cloud_config() -> String {
    let notes = base64::engine::general_purpose::STANDARD.encode("secret notes\n");
    format!(
        "#cloud-config\nwrite_files:\n  - path: /etc/kiln/greeting\n    content: \"hello 'world' $(id)\\n\"\n    permissions: '0640'\n  - path: /home/alice/notes.txt\n    encoding: b64\n    content: {notes}\n    owner: alice:alice\n    permissions: '0600'\n    defer: true\nruncmd:\n  - [touch, /tmp/runcmd marker]\n  - echo \"runcmd ran\" >> /tmp/runcmd-log\n"
    )
}

fn web1(ip: &str) -> kiln_context::vm::Vm {
    let user_data = base64::engine::general_purpose::STANDARD.encode(cloud_config());
    vm(&format!(
        r#"NAME = "web1"
NIC = [ NETWORK = "public", IP = "{ip}", MAC = "02:00:c0:00:02:0a" ]
CONTEXT = [
  NETWORK = "YES",
  VMID = "$VMID",
  SET_HOSTNAME = "web1.example.org",
  USERNAME = "alice",
  SSH_PUBLIC_KEY = "{KEY1}
{KEY2}",
  PASSWORD = "it's s3cret",
  TIMEZONE = "Europe/Madrid",
  ETH0_ROUTES = "10.9.0.0/16 via 192.0.2.254",
  START_SCRIPT = "echo \"started \$ETH0_IP\" >> /tmp/start-marker",
  USER_DATA = "{user_data}",
  USER_DATA_ENCODING = "base64" ]"#
    ))
}

fn init_sh() -> SeedFile {
    SeedFile {
        path: "init.sh".into(),
        contents: b"#!/bin/sh\npwd > /tmp/init-cwd\n".to_vec(),
        mode: 0o755,
    }
}

#[test]
fn opennebula_context_applies_everything_and_again_idempotently() {
    let root_dir = scratch_root();
    let root = root_dir.path();
    let images = tempfile::tempdir().unwrap();
    let iso = write_image(
        images.path(),
        "context.iso",
        &opennebula_iso(&web1("192.0.2.10"), vec![init_sh()]),
    );
    let output = apply(root, &iso);
    assert_ok(&output);

    assert_eq!(read(root, "/etc/hostname"), "web1\n");
    assert!(
        read(root, "/etc/hosts").contains("127.0.1.1\tweb1.example.org web1\n"),
        "{}",
        read(root, "/etc/hosts")
    );
    let passwd = read(root, "/etc/passwd");
    assert!(
        passwd.contains("alice:x:1000:1000::/home/alice:/bin/bash\n"),
        "{passwd}"
    );
    assert!(read(root, "/etc/group").contains("alice:x:1000:\n"));
    let sudoers = read(root, "/etc/sudoers.d/90-kiln-alice");
    assert!(
        sudoers.contains("alice ALL=(ALL) NOPASSWD:ALL\n"),
        "{sudoers}"
    );
    assert_eq!(mode(root, "/etc/sudoers.d/90-kiln-alice"), 0o440);
    let shadow = read(root, "/etc/shadow");
    let hash = shadow
        .lines()
        .find(|l| l.starts_with("alice:"))
        .unwrap()
        .split(':')
        .nth(1)
        .unwrap();
    assert!(
        !shadow.contains("s3cret"),
        "the plain password never reaches the disk"
    );
    assert_password(hash, "it's s3cret");

    assert_eq!(
        read(root, "/home/alice/.ssh/authorized_keys"),
        format!("{KEY1}\n{KEY2}\n")
    );
    assert_eq!(mode(root, "/home/alice/.ssh/authorized_keys"), 0o600);
    assert_eq!(mode(root, "/home/alice/.ssh"), 0o700);
    assert_eq!(
        owner(root, "/home/alice/.ssh/authorized_keys"),
        (1000, 1000)
    );
    assert_eq!(read(root, "/home/alice/.profile"), "# skel\n");
    assert_eq!(owner(root, "/home/alice"), (1000, 1000));

    assert_eq!(
        std::fs::read_link(root.join("etc/localtime")).unwrap(),
        std::path::Path::new("/usr/share/zoneinfo/Europe/Madrid")
    );
    assert_eq!(read(root, "/etc/timezone"), "Europe/Madrid\n");

    let network = read(root, "/etc/systemd/network/10-kiln-eth0.network");
    for line in [
        "MACAddress=02:00:c0:00:02:0a",
        "MTUBytes=1400",
        "DHCP=no",
        "Address=192.0.2.10/24",
        "Gateway=192.0.2.1",
        "DNS=192.0.2.53",
        "[Route]\nDestination=10.9.0.0/16\nGateway=192.0.2.254",
    ] {
        assert!(network.contains(line), "{line:?} missing from:\n{network}");
    }
    assert!(read(root, "/etc/resolv.conf").contains("nameserver 192.0.2.53\n"));

    assert_eq!(read(root, "/etc/kiln/greeting"), "hello 'world' $(id)\n");
    assert_eq!(mode(root, "/etc/kiln/greeting"), 0o640);
    assert_eq!(read(root, "/home/alice/notes.txt"), "secret notes\n");
    assert_eq!(owner(root, "/home/alice/notes.txt"), (1000, 1000));
    assert_eq!(mode(root, "/home/alice/notes.txt"), 0o600);

    assert!(
        root.join("tmp/runcmd marker").exists(),
        "runcmd's argv item ran"
    );
    assert_eq!(read(root, "/tmp/runcmd-log"), "runcmd ran\n");
    assert_eq!(
        read(root, "/tmp/start-marker"),
        "started 192.0.2.10\n",
        "START_SCRIPT sees the context variables"
    );
    assert_eq!(
        read(root, "/tmp/init-cwd"),
        "/run/kiln-agent/context\n",
        "INIT_SCRIPTS run from the context files"
    );

    let status = status(root);
    assert_eq!(status["instance_id"], "one-42");
    for (name, record) in status["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (&s[0], &s[1]))
    {
        assert_ne!(record["outcome"], "failed", "{name}: {record}");
    }
    assert_eq!(step(&status, "grow-root")["outcome"], "skipped");
    assert_eq!(step(&status, "network")["outcome"], "applied");

    // The next boot: per-boot steps again (idempotent), per-instance ones not.
    assert_ok(&apply(root, &iso));
    assert_eq!(
        read(root, "/home/alice/.ssh/authorized_keys"),
        format!("{KEY1}\n{KEY2}\n")
    );
    assert_eq!(
        read(root, "/tmp/runcmd-log"),
        "runcmd ran\n",
        "runcmd runs once per instance"
    );
    assert_eq!(
        read(root, "/tmp/start-marker"),
        "started 192.0.2.10\nstarted 192.0.2.10\n",
        "START_SCRIPT every boot"
    );
    assert_eq!(
        read(root, "/etc/passwd")
            .lines()
            .filter(|l| l.starts_with("alice:"))
            .count(),
        1
    );
    let status = common::status(root);
    assert_eq!(step(&status, "network")["outcome"], "skipped");
    assert!(
        step(&status, "network")["detail"]
            .as_str()
            .unwrap()
            .starts_with("unchanged")
    );
    assert_eq!(step(&status, "passwords")["outcome"], "skipped");

    // The context changes (a new address): the network is written again.
    let iso2 = write_image(
        images.path(),
        "context2.iso",
        &opennebula_iso(&web1("192.0.2.11"), vec![init_sh()]),
    );
    assert_ok(&apply(root, &iso2));
    let network = read(root, "/etc/systemd/network/10-kiln-eth0.network");
    assert!(
        network.contains("Address=192.0.2.11/24") && !network.contains("192.0.2.10"),
        "{network}"
    );
    assert_eq!(
        read(root, "/tmp/runcmd-log"),
        "runcmd ran\n",
        "same instance: runcmd not again"
    );
}

#[test]
fn status_shows_steps_and_times() {
    let root_dir = scratch_root();
    let images = tempfile::tempdir().unwrap();
    let iso = write_image(
        images.path(),
        "c.iso",
        &opennebula_iso(&web1("192.0.2.10"), vec![]),
    );
    assert_ok(&apply(root_dir.path(), &iso));
    let output = agent()
        .args(["status", "--root"])
        .arg(root_dir.path())
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with("instance one-42 from "), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("hostname") && l.contains("applied") && l.contains(" ms")),
        "{text}"
    );
    assert!(text.contains("stage local: "), "{text}");
}

#[test]
fn nocloud_seeds_on_iso_and_vfat() {
    for fs in [Filesystem::Iso9660, Filesystem::Vfat] {
        let root_dir = scratch_root();
        let root = root_dir.path();
        let images = tempfile::tempdir().unwrap();
        let seed = write_image(images.path(), "seed.img", &nocloud(&web1("192.0.2.10"), fs));
        assert_ok(&apply(root, &seed));
        assert_eq!(read(root, "/etc/hostname"), "web1\n", "{fs:?}");
        assert!(
            read(root, "/etc/passwd").contains("alice:x:1000:"),
            "{fs:?}"
        );
        assert_eq!(
            read(root, "/home/alice/.ssh/authorized_keys"),
            format!("{KEY1}\n{KEY2}\n")
        );
        assert!(
            read(root, "/etc/systemd/network/10-kiln-eth0.network")
                .contains("Address=192.0.2.10/24")
        );
        assert_eq!(read(root, "/etc/kiln/greeting"), "hello 'world' $(id)\n");
        assert_eq!(read(root, "/tmp/runcmd-log"), "runcmd ran\n");
        // START_SCRIPT became a shell part of the user-data: once per instance.
        assert_eq!(
            read(root, "/tmp/start-marker"),
            "started \n",
            "no context variables in NoCloud"
        );
        let status = status(root);
        assert_eq!(status["instance_id"], "one-42");
        assert!(
            status["source"].as_str().unwrap().ends_with("(cidata)")
                || status["source"].as_str().unwrap().ends_with("(CIDATA)")
        );
    }
}

#[test]
fn configdrive_seed() {
    let root_dir = scratch_root();
    let root = root_dir.path();
    let images = tempfile::tempdir().unwrap();
    let seed = write_image(
        images.path(),
        "config.iso",
        &configdrive(&web1("192.0.2.10")),
    );
    assert_ok(&apply(root, &seed));
    assert_eq!(read(root, "/etc/hostname"), "web1\n");
    assert_eq!(
        read(root, "/home/alice/.ssh/authorized_keys"),
        format!("{KEY1}\n{KEY2}\n")
    );
    let network = read(root, "/etc/systemd/network/10-kiln-eth0.network");
    assert!(
        network.contains("MACAddress=02:00:c0:00:02:0a")
            && network.contains("Address=192.0.2.10/24"),
        "{network}"
    );
    assert!(network.contains("Destination=10.9.0.0/16"), "{network}");
    assert_eq!(
        status(root)["instance_id"],
        "00000000-0000-4000-8000-00000000002a"
    );
}

#[test]
fn no_context_leaves_the_system_alone() {
    let root_dir = scratch_root();
    let root = root_dir.path();
    let images = tempfile::tempdir().unwrap();
    let blank = write_image(images.path(), "blank.img", &vec![0u8; 1 << 20]);
    let output = apply(root, &blank);
    assert_ok(&output);
    assert!(String::from_utf8_lossy(&output.stderr).contains("no context found"));
    assert_eq!(read(root, "/etc/hostname"), "debian\n");
    assert!(!root.join("var/lib/kiln-agent/status.json").exists());
    let output = agent()
        .args(["status", "--root"])
        .arg(root)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "no context applied yet\n"
    );
}

#[test]
fn a_failing_step_does_not_stop_the_others_and_values_stay_data() {
    let root_dir = scratch_root();
    let root = root_dir.path();
    let mut variables = Variables::new();
    for (k, v) in [
        ("VMID", "7"),
        ("SET_HOSTNAME", "db1"),
        ("TIMEZONE", "Nowhere/City"),
        ("USERNAME", "$(touch /tmp/pwned-name)"),
        (
            "SSH_PUBLIC_KEY",
            "ssh-ed25519 AAAA `touch /tmp/pwned-key`'\"\nline two",
        ),
        ("EXTRA", "'; touch /tmp/pwned-quote; echo '"),
    ] {
        variables.insert(k.into(), v.into());
    }
    let mut seed = context_seed(&variables, vec![]).unwrap();
    assert!(String::from_utf8_lossy(&seed.files[0].contents).starts_with(&context_sh(&variables)));
    seed.label = "CONTEXT".into();
    let images = tempfile::tempdir().unwrap();
    let iso = write_image(images.path(), "c.iso", &seed_image(&seed));
    let output = apply(root, &iso);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status = status(root);
    assert_eq!(step(&status, "timezone")["outcome"], "failed");
    assert!(
        step(&status, "timezone")["detail"]
            .as_str()
            .unwrap()
            .contains("unknown timezone")
    );
    assert_eq!(
        step(&status, "users")["outcome"],
        "failed",
        "a user name with $(...) is refused"
    );
    assert_eq!(step(&status, "hostname")["outcome"], "applied");
    assert_eq!(read(root, "/etc/hostname"), "db1\n");
    for marker in ["pwned-name", "pwned-key", "pwned-quote"] {
        assert!(
            !root.join("tmp").join(marker).exists(),
            "{marker}: a value ran as code"
        );
        assert!(
            !std::path::Path::new("/tmp").join(marker).exists(),
            "{marker}: a value ran as code"
        );
    }
}

#[test]
fn netplan_and_ifupdown_images_get_their_own_format() {
    let images = tempfile::tempdir().unwrap();
    let iso = write_image(
        images.path(),
        "c.iso",
        &opennebula_iso(&web1("192.0.2.10"), vec![]),
    );

    let netplan_root = scratch_root();
    let r = netplan_root.path();
    std::fs::create_dir_all(r.join("usr/sbin")).unwrap();
    std::fs::write(r.join("usr/sbin/netplan"), "").unwrap();
    assert_ok(&apply(r, &iso));
    let yaml = read(r, "/etc/netplan/90-kiln.yaml");
    assert_eq!(mode(r, "/etc/netplan/90-kiln.yaml"), 0o600);
    let check = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, yaml; n = yaml.safe_load(sys.stdin)['network']; e = n['ethernets']['eth0']; \
             assert n['version'] == 2; assert e['match']['macaddress'] == '02:00:c0:00:02:0a', e; \
             assert e['addresses'] == ['192.0.2.10/24'], e; assert e['mtu'] == 1400, e; \
             assert {'to': '10.9.0.0/16', 'via': '192.0.2.254'} in e['routes'], e",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(yaml.as_bytes())?;
            child.wait()
        })
        .unwrap();
    assert!(check.success(), "PyYAML reads the netplan file:\n{yaml}");

    let ifupdown_root = scratch_root();
    let r = ifupdown_root.path();
    std::fs::create_dir_all(r.join("sbin")).unwrap();
    std::fs::create_dir_all(r.join("etc/network")).unwrap();
    std::fs::create_dir_all(r.join("sys/class/net/ens3")).unwrap();
    std::fs::write(r.join("sbin/ifup"), "").unwrap();
    std::fs::write(r.join("etc/network/interfaces"), "auto lo\niface lo inet loopback\nauto ens3\niface ens3 inet dhcp\nsource /etc/network/interfaces.d/*\n").unwrap();
    std::fs::write(r.join("sys/class/net/ens3/address"), "02:00:c0:00:02:0a\n").unwrap();
    assert_ok(&apply(r, &iso));
    let text = read(r, "/etc/network/interfaces.d/kiln");
    assert!(text.contains("auto ens3\niface ens3 inet static\n    address 192.0.2.10/24\n    gateway 192.0.2.1\n    mtu 1400\n"), "{text}");
    assert!(
        text.contains("up ip route replace 10.9.0.0/16 via 192.0.2.254 dev ens3"),
        "{text}"
    );
}
