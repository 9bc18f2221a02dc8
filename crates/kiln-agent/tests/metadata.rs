//! kiln-agent against kiln's metadata service on loopback: NoCloud-net
//! through `ds=nocloud;s=...` with the VM's token, and the EC2 dialect with
//! an IMDSv2 session with the VM known by its address; the ready report
//! reaches the service. The service's answers are also read by PyYAML, as
//! cloud-init reads them.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use kiln_context::metadata::{Imds, MetadataService, ServedVm};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMetaMetaMetaMetaMetaMetaMetaMetaMetaMeta bob@example";

/// Serves one VM on a free loopback port until the test ends.
fn serve(imds: Imds) -> (Arc<MetadataService>, SocketAddr) {
    let vm = vm(&format!(
        r#"NAME = "meta1"
METADATA_ADDRESS = "127.0.0.1"
METADATA_TOKEN = "tok-meta1"
NIC = [ NETWORK = "public", IP = "192.0.2.20" ]
CONTEXT = [ NETWORK = "YES", SET_HOSTNAME = "meta1", USERNAME = "bob", SSH_PUBLIC_KEY = "{KEY}",
  START_SCRIPT = "touch /tmp/meta-marker" ]"#
    ));
    let served = ServedVm::new(&vm, "unused".into()).unwrap();
    let service = Arc::new(
        MetadataService::new(vec![served], imds, None, kiln_metadata::os_tokens()).unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let for_server = Arc::clone(&service);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(kiln_metadata::serve(
                for_server,
                "127.0.0.1:0".parse().unwrap(),
                move |a| tx.send(a).unwrap(),
            ))
            .unwrap();
    });
    let address = rx.recv().unwrap();
    (service, address)
}

fn run_agent(root: &std::path::Path, extra: &[&str]) -> std::process::Output {
    agent()
        .args([
            "run",
            "--stage",
            "final",
            "--device-wait",
            "0",
            "--metadata-wait",
            "5",
            "--root",
        ])
        .arg(root)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn nocloud_net_seedfrom_with_a_token() {
    let (service, address) = serve(Imds::Optional);
    let root_dir = scratch_root();
    let root = root_dir.path();
    let cmdline = format!("console=ttyS0 ds=nocloud;s=http://{address}/t/tok-meta1/");
    let output = run_agent(root, &["--cmdline", &cmdline]);
    assert_ok(&output);
    assert_eq!(read(root, "/etc/hostname"), "meta1\n");
    assert_eq!(
        read(root, "/home/bob/.ssh/authorized_keys"),
        format!("{KEY}\n")
    );
    assert!(
        read(root, "/etc/systemd/network/10-kiln-eth0.network").contains("Address=192.0.2.20/24")
    );
    assert!(
        root.join("tmp/meta-marker").exists(),
        "the start script ran"
    );
    let status = status(root);
    assert_eq!(status["instance_id"], "one-42");
    assert_eq!(step(&status, "ready")["outcome"], "applied");
    let report = service
        .ready_report(42)
        .expect("the service got the ready report");
    assert_eq!(report.data, "READY=YES");
}

#[test]
fn ec2_imdsv2_by_address() {
    let (service, address) = serve(Imds::Required);
    let root_dir = scratch_root();
    let root = root_dir.path();
    let url = format!("http://{address}");
    let output = run_agent(root, &["--cmdline", "", "--metadata-url", &url]);
    assert_ok(&output);
    let status = status(root);
    assert!(
        status["source"].as_str().unwrap().ends_with("/latest/"),
        "the EC2 dialect: {status}"
    );
    assert_eq!(status["instance_id"], "one-42");
    assert_eq!(read(root, "/etc/hostname"), "meta1\n");
    // EC2 keys go to the first user of the user-data (bob), as cloud-init's default user.
    assert_eq!(
        read(root, "/home/bob/.ssh/authorized_keys"),
        format!("{KEY}\n")
    );
    assert!(service.ready_report(42).is_some());
}

#[test]
fn nothing_listening_is_no_context() {
    let root_dir = scratch_root();
    let root = root_dir.path();
    // A port nobody listens on: refused at once, retried until the bound.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let started = std::time::Instant::now();
    let output = agent()
        .args([
            "run",
            "--stage",
            "final",
            "--device-wait",
            "0",
            "--metadata-wait",
            "1",
            "--cmdline",
            "",
            "--metadata-url",
            &url,
            "--root",
        ])
        .arg(root)
        .output()
        .unwrap();
    assert_ok(&output);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the wait is bounded"
    );
    assert_eq!(read(root, "/etc/hostname"), "debian\n");
}

#[test]
fn cloud_init_reads_the_service_answers() {
    let (_service, address) = serve(Imds::Optional);
    let base = format!("http://{address}/t/tok-meta1/");
    let client = reqwest::blocking::Client::new();
    let get = |path: &str| {
        let response = client.get(format!("{base}{path}")).send().unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["server"], "kiln-metadata");
        response.text().unwrap()
    };
    let script = "import sys, yaml\n\
        meta = yaml.safe_load(open(sys.argv[1]))\n\
        assert meta['instance-id'] == 'one-42' and meta['local-hostname'] == 'meta1', meta\n\
        user = yaml.safe_load(open(sys.argv[2]))\n\
        assert user['users'][0]['name'] == 'bob', user\n\
        net = yaml.safe_load(open(sys.argv[3]))\n\
        assert net['version'] == 2 and net['ethernets']['eth0']['addresses'] == ['192.0.2.20/24'], net\n";
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for name in ["meta-data", "user-data", "network-config"] {
        let mut text = get(name);
        if name == "user-data" {
            // kiln sends the start script too: a MIME message; its cloud-config part is what YAML reads.
            let message = text.clone();
            let decoded = python_cloud_config_part(&message);
            text = decoded;
        }
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        files.push(path);
    }
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(&files)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "PyYAML (cloud-init's parser) reads meta-data, user-data and network-config"
    );
    let document = get("latest/dynamic/instance-identity/document");
    let parsed: serde_json::Value = serde_json::from_str(&document).unwrap();
    assert_eq!(parsed["instanceId"], "one-42");
}

/// The text/cloud-config part of a MIME user-data, taken out by Python's
/// email package as cloud-init does.
fn python_cloud_config_part(message: &str) -> String {
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, email\nm = email.message_from_string(sys.stdin.read())\n\
             parts = [p for p in m.walk() if p.get_content_type() == 'text/cloud-config']\n\
             sys.stdout.write(parts[0].get_payload(decode=True).decode())",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(message.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}
