//! `kiln metadata serve` end to end: it announces each VM's token and
//! seedfrom URL, and answers over HTTP on loopback.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};

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

#[test]
fn serve_announces_and_answers() {
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "metadata",
            "serve",
            "--vm",
            "vm.one",
            "--network",
            "net.one",
            "--listen",
            "127.0.0.1:0",
            "--json",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let announce: serde_json::Value = serde_json::from_str(&line).unwrap();
    let vm = &announce["vms"][0];
    let seedfrom = vm["seedfrom"].as_str().unwrap().to_string();
    assert!(
        vm["kernel_cmdline"]
            .as_str()
            .unwrap()
            .starts_with("ds=nocloud;s=http://127.0.0.1:")
    );
    assert_eq!(
        vm["token"].as_str().unwrap().len(),
        32,
        "128 random bits, hex"
    );

    let (status, meta) = http("GET", &format!("{seedfrom}meta-data"), "");
    assert_eq!(status, 200);
    assert!(meta.contains("instance-id: one-0"), "{meta}");
    let (status, key) = http(
        "GET",
        &format!("{seedfrom}latest/meta-data/public-keys/0/openssh-key"),
        "",
    );
    assert_eq!((status, key.as_str()), (200, "ssh-ed25519 AAAA a@b\n"));
    let (status, _) = http("PUT", &format!("{seedfrom}vm"), "READY=YES");
    assert_eq!(status, 200);
    let listen = announce["listen"].as_str().unwrap();
    let (_, vms) = http("GET", &format!("http://{listen}/kiln/vms"), "");
    let vms: serde_json::Value = serde_json::from_str(&vms).unwrap();
    assert_eq!(vms[0]["ready"], true);
    let (status, _) = http("GET", &format!("http://{listen}/meta-data"), "");
    assert_eq!(status, 404, "loopback is not a VM's address");
    child.kill().unwrap();
    child.wait().unwrap();
}
