//! The metadata service end to end, alone (`kiln metadata serve`) and inside
//! the marketplace (`kiln serve --vm ...`): it announces each VM's token and
//! seedfrom URL, and answers over HTTP on loopback.

use std::io::{BufRead as _, BufReader, Lines, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

fn http(method: &str, url: &str, body: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = TcpStream::connect(host).unwrap();
    write!(
        stream,
        "{method} /{path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

const RULES: &str = "rules:\n  - match: { hostname: \"web*\" }\n    classes: [nginx]\n";

/// A VM, its network and classifier rules in a fresh directory.
fn descriptions() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("vm.one"),
        "NAME = web1\nNIC = [ NETWORK = pub, IP = 192.0.2.10 ]\nCONTEXT = [ NETWORK = \"YES\", SSH_PUBLIC_KEY = \"ssh-ed25519 AAAA a@b\" ]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("net.one"),
        "NAME = pub\nNETWORK_MASK = 255.255.255.0\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();
    dir
}

const VM_ARGS: [&str; 6] = [
    "--vm",
    "vm.one",
    "--network",
    "net.one",
    "--enc-rules",
    "rules.yaml",
];

/// What every host of the service answers, `root` being the service's root
/// URL (`http://HOST:PORT` alone, `.../metadata` inside `kiln serve`).
fn answers_for_the_vm(root: &str, seedfrom: &str, listen: &str) {
    assert!(seedfrom.starts_with(&format!("{root}/t/")), "{seedfrom}");
    let (status, meta) = http("GET", &format!("{seedfrom}meta-data"), "");
    assert_eq!(status, 200);
    assert!(meta.contains("instance-id: one-0"), "{meta}");
    let (status, key) = http(
        "GET",
        &format!("{seedfrom}latest/meta-data/public-keys/0/openssh-key"),
        "",
    );
    assert_eq!((status, key.as_str()), (200, "ssh-ed25519 AAAA a@b\n"));
    let (status, openstack) = http(
        "GET",
        &format!("{seedfrom}openstack/latest/meta_data.json"),
        "",
    );
    assert_eq!(status, 200, "{openstack}");
    let openstack: serde_json::Value = serde_json::from_str(&openstack).unwrap();
    assert_eq!(openstack["hostname"], "web1");
    let (_, vms) = http("GET", &format!("{root}/kiln/vms"), "");
    let vms: serde_json::Value = serde_json::from_str(&vms).unwrap();
    assert_eq!(vms[0]["ready"], false);
    let (status, _) = http("PUT", &format!("{seedfrom}vm"), "READY=YES");
    assert_eq!(status, 200);
    let (_, vms) = http("GET", &format!("{root}/kiln/vms"), "");
    let vms: serde_json::Value = serde_json::from_str(&vms).unwrap();
    assert_eq!(vms[0]["ready"], true);
    let (status, _) = http("GET", &format!("{root}/meta-data"), "");
    assert_eq!(status, 404, "loopback is not a VM's address");
    // The classifier answers at /enc/NODE of the listener, as `kiln enc` does.
    let (status, enc) = http("GET", &format!("http://{listen}/enc/web1"), "");
    assert_eq!(status, 200, "{enc}");
    assert!(enc.contains("nginx"), "{enc}");
}

/// A `kiln` server started in `dir` with the VM arguments, killed when dropped.
struct Server {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Server {
    fn start(dir: &Path, args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .args(VM_ARGS)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Server { child, lines }
    }

    /// The next line it printed on stdout.
    fn line(&mut self) -> String {
        self.lines.next().unwrap().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn metadata_serve_announces_and_answers() {
    let dir = descriptions();
    let mut server = Server::start(dir.path(), &["metadata", "serve", "--json"]);
    let announce: serde_json::Value = serde_json::from_str(&server.line()).unwrap();
    let vm = &announce["vms"][0];
    let seedfrom = vm["seedfrom"].as_str().unwrap().to_string();
    assert_eq!(
        vm["kernel_cmdline"].as_str().unwrap(),
        format!("ds=nocloud;s={seedfrom}")
    );
    assert_eq!(
        vm["token"].as_str().unwrap().len(),
        32,
        "128 random bits, hex"
    );
    let listen = announce["listen"].as_str().unwrap();
    answers_for_the_vm(&format!("http://{listen}"), &seedfrom, listen);
}

#[test]
fn kiln_serve_carries_the_metadata_service_beside_the_marketplace() {
    let dir = descriptions();
    let mut server = Server::start(dir.path(), &["serve", "--data", "data"]);
    let first = server.line();
    let listen = first
        .strip_prefix("kiln: serving on http://")
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    assert_eq!(
        server.line(),
        format!("kiln: metadata service on http://{listen}/metadata/")
    );
    let vm = server.line();
    let seedfrom = vm
        .strip_prefix("  VM 0 (web1): seedfrom ")
        .unwrap_or_else(|| panic!("{vm}"))
        .to_string();
    answers_for_the_vm(&format!("http://{listen}/metadata"), &seedfrom, &listen);
    // The marketplace is still there, with its accounts: a VM's request
    // needs none, the list of users still does.
    let (status, _) = http("GET", &format!("http://{listen}/healthz"), "");
    assert_eq!(status, 200);
    let (status, _) = http("GET", &format!("http://{listen}/api/v1/users"), "");
    assert_eq!(status, 401);
}

#[test]
fn metadata_serve_refuses_to_start_with_nothing_to_serve() {
    let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["metadata", "serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("at least one --vm"), "{stderr}");
}
