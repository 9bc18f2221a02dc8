//! The marketplace end to end through the `kiln` binary: serve, user add,
//! push, search, show, pull, deprecate, login; a server killed with SIGKILL
//! in the middle of many uploads; a client killed mid-push that resumes.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

mod common;

use kiln_catalog::testkit::{Backend, Fresh, fresh};
use kiln_catalog::{BlobConfig, Blobs};
use serde::Serialize;
use serde_json::Value;

use common::{Env, Served};

fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// A raw image of `mib` MiB with content from `seed`.
fn image(dir: &Path, name: &str, mib: usize, seed: u32) -> PathBuf {
    let mut x = seed | 1;
    let data: Vec<u8> = (0..mib << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

#[derive(Serialize)]
struct ServerConfig<'a> {
    listen: &'a str,
    database_url: &'a str,
    spool_dir: &'a Path,
    session_ttl_secs: u64,
    sweep_interval_secs: u64,
    blobs: &'a BlobConfig,
}

/// A config file for `fresh`'s backend.
fn config_file(f: &Fresh, ttl: u64) -> PathBuf {
    config_file_named(f, ttl, "market", "spool")
}

/// A config file `NAME.toml` with its own spool directory: one per server
/// when several share a backend.
fn config_file_named(f: &Fresh, ttl: u64, name: &str, spool: &str) -> PathBuf {
    let spool = f.dir.path().join(spool);
    let cfg = ServerConfig {
        listen: "127.0.0.1:0",
        database_url: &f.database_url,
        spool_dir: &spool,
        session_ttl_secs: ttl,
        sweep_interval_secs: 1,
        blobs: &f.blobs,
    };
    let path = f.dir.path().join(format!("{name}.toml"));
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    path
}

impl Env {
    fn ok(&self, args: &[&str]) -> String {
        let out = self.kiln().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "kiln {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    fn serve(&self, state: &[&str]) -> Served {
        self.serve_logging(state, Stdio::null())
    }

    /// `kiln serve ARGS` with its log (stderr) sent to `log`.
    fn serve_logging(&self, args: &[&str], log: impl Into<Stdio>) -> Served {
        Served::start(self.kiln(), args, log)
    }
}

#[test]
fn cli_publish_find_fetch_deprecate_and_login() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(dir.path());
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let dev = env
        .ok(&["user", "add", "dev", "--role", "developer", "--data", data])
        .trim()
        .to_string();
    assert!(dev.starts_with("kiln_") && dev.len() == 69, "{dev}");
    let dup = env
        .kiln()
        .args(["user", "add", "dev", "--role", "reader", "--data", data])
        .output()
        .unwrap();
    assert_eq!(dup.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let server = env.serve(&["--data", data]);
    let remote = ["--server", server.url.as_str(), "--token", dev.as_str()];

    let img = image(dir.path(), "deb.raw", 3, 1);
    let mut args = vec![
        "push",
        img.to_str().unwrap(),
        "--title",
        "Debian 12",
        "--series",
        "debian",
        "--os",
        "debian",
        "--tag",
        "cloud",
        "--json",
        "--chunk-mib",
        "1",
    ];
    args.extend(remote);
    let pushed = env.json(&args);
    let id = pushed["id"].as_str().unwrap().to_string();
    assert_eq!(pushed["status"], "active");
    assert_eq!(pushed["checksums"]["sha256"], sha256_file(&img).as_str());

    let mut args = vec!["search", "debian", "--tag", "cloud", "--json"];
    args.extend(remote);
    let page = env.json(&args);
    assert_eq!(page["total"], 1);
    assert_eq!(page["entries"][0]["id"], id.as_str());
    // Anonymous reads of the public catalogue need no token.
    let page = env.json(&["search", "--json", "--server", &server.url]);
    assert_eq!(page["total"], 1);
    let table = env.ok(&["search", "--server", &server.url]);
    assert!(
        table.contains(&id) && table.contains("Debian 12"),
        "{table}"
    );

    let shown = env.json(&["show", &id, "--json", "--server", &server.url]);
    assert_eq!(shown["title"], "Debian 12");
    let text = env.ok(&["show", &id, "--server", &server.url]);
    assert!(
        text.contains("sha256:") && text.contains("format:       raw"),
        "{text}"
    );

    let out = dir.path().join("pulled.raw");
    env.ok(&[
        "pull",
        &id,
        "-o",
        out.to_str().unwrap(),
        "--server",
        &server.url,
    ]);
    assert_eq!(sha256_file(&out), sha256_file(&img));

    let mut args = vec![
        "deprecate",
        id.as_str(),
        "--reason",
        "CVE-2024-0001",
        "--json",
    ];
    args.extend(remote);
    assert_eq!(env.json(&args)["deprecated"], "CVE-2024-0001");
    assert_eq!(
        env.json(&["search", "--json", "--server", &server.url])["total"],
        0
    );
    assert_eq!(
        env.json(&[
            "search",
            "--status",
            "deprecated",
            "--json",
            "--server",
            &server.url
        ])["total"],
        1
    );

    // login remembers server and token; later commands need neither flag.
    let me = env.json(&["login", "--server", &server.url, "--token", &dev, "--json"]);
    assert_eq!(me["name"], "dev");
    let saved = env.home.join(".config/kiln/client.toml");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let img2 = image(dir.path(), "deb2.raw", 1, 2);
    let pushed2 = env.json(&[
        "push",
        img2.to_str().unwrap(),
        "--title",
        "Debian 12.1",
        "--series",
        "debian",
        "--json",
    ]);
    assert_eq!(pushed2["publisher"], "dev");
    // A wrong token fails with exit code 2 and the server's reason.
    let bad = env
        .kiln()
        .args(["show", &id, "--server", &server.url, "--token", "kiln_nope"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid token"));
    // A password login issues a new token.
    env.kiln()
        .args([
            "user",
            "add",
            "pat",
            "--role",
            "reader",
            "--password-stdin",
            "--data",
            data,
        ])
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"s3cret\n")?;
            c.wait()
        })
        .unwrap();
    let mut login = env
        .kiln()
        .args(["login", "--server", &server.url, "--user", "pat", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        login.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    }
    let out = login.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["role"],
        "reader"
    );
}

fn backend_state(backend: Backend, rt: &tokio::runtime::Runtime, ttl: u64) -> (Fresh, PathBuf) {
    let f = rt.block_on(fresh(backend));
    let cfg = config_file(&f, ttl);
    (f, cfg)
}

fn sigkill_in_the_middle_of_many_uploads(backend: Backend) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (f, cfg) = backend_state(backend, &rt, 3);
    let cfg_s = cfg.to_str().unwrap();
    let env = Env::new(f.dir.path());
    let admin = env
        .ok(&["user", "add", "admin", "--role", "admin", "--config", cfg_s])
        .trim()
        .to_string();
    let server = env.serve(&["--config", cfg_s]);

    // Three small images finish quickly; nine big ones are still in flight.
    let mut images = Vec::new();
    for i in 0..12u32 {
        let mib = if i < 3 { 1 } else { 24 };
        images.push(image(f.dir.path(), &format!("img{i}.raw"), mib, i + 10));
    }
    let mut pushes: Vec<(PathBuf, Child)> = images
        .iter()
        .map(|img| {
            let child = env
                .kiln()
                .args([
                    "push",
                    img.to_str().unwrap(),
                    "--title",
                    "concurrent",
                    "--json",
                    "--chunk-mib",
                    "1",
                ])
                .args(["--server", &server.url, "--token", &admin])
                .env(
                    "XDG_STATE_HOME",
                    f.dir.path().join(format!(
                        "state-{}",
                        img.file_name().unwrap().to_str().unwrap()
                    )),
                )
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            (img.clone(), child)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = pushes
            .iter_mut()
            .filter_map(|(_, c)| c.try_wait().unwrap())
            .count();
        if done >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "the small pushes did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut server = server;
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    drop(server);

    let mut completed = Vec::new();
    let mut cut = 0;
    for (img, child) in pushes {
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            completed.push((v["id"].as_str().unwrap().to_string(), img));
        } else {
            cut += 1;
        }
    }
    assert!(
        completed.len() >= 3 && cut >= 1,
        "{} completed, {cut} cut: the kill must land mid-upload",
        completed.len()
    );

    let server = env.serve(&["--config", cfg_s]);
    let remote = [
        "--server",
        server.url.as_str(),
        "--token",
        admin.as_str(),
        "--json",
    ];
    let mut args = vec!["search", "--status", "all", "--limit", "100"];
    args.extend(remote);
    let page = env.json(&args);
    let mut listed: Vec<String> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let mut expected: Vec<String> = completed.iter().map(|(id, _)| id.clone()).collect();
    listed.sort();
    expected.sort();
    assert_eq!(
        listed, expected,
        "exactly the completed uploads are visible"
    );
    for (id, img) in &completed {
        let out = f.dir.path().join(format!("{id}.pulled"));
        let mut args = vec!["pull", id.as_str(), "-o", out.to_str().unwrap()];
        args.extend(remote);
        env.ok(&args);
        assert_eq!(sha256_file(&out), sha256_file(img), "entry {id} is intact");
    }
    // After the TTL the sweeper has collected every partial upload.
    let blobs = Blobs::open(&f.blobs).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let chunks = rt.block_on(blobs.list("uploads")).unwrap().len();
        let stored = rt.block_on(blobs.list("blobs")).unwrap().len();
        let spooled = std::fs::read_dir(f.dir.path().join("spool"))
            .unwrap()
            .count();
        if chunks == 0 && stored == completed.len() && spooled == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not collected: {chunks} chunks, {stored} blobs, {spooled} spool files"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn killed_push_resumes(backend: Backend) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (f, cfg) = backend_state(backend, &rt, 3600);
    let cfg_s = cfg.to_str().unwrap();
    let env = Env::new(f.dir.path());
    let dev = env
        .ok(&[
            "user",
            "add",
            "dev",
            "--role",
            "developer",
            "--config",
            cfg_s,
        ])
        .trim()
        .to_string();
    let server = env.serve(&["--config", cfg_s]);
    let img = image(f.dir.path(), "big.raw", 48, 99);
    let state_home = f.dir.path().join("state");
    let push = || {
        let mut c = env.kiln();
        c.args([
            "push",
            img.to_str().unwrap(),
            "--title",
            "resumed",
            "--json",
            "--chunk-mib",
            "1",
        ])
        .args(["--server", &server.url, "--token", &dev])
        .env("XDG_STATE_HOME", &state_home)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        c
    };
    let mut first = push().spawn().unwrap();
    let client = kiln_market::Client::new(&server.url, Some(dev.clone())).unwrap();
    let state_dir = state_home.join("kiln/push");
    let deadline = Instant::now() + Duration::from_secs(120);
    let (entry_id, offset) = loop {
        assert!(Instant::now() < deadline, "the push never got going");
        assert!(
            first.try_wait().unwrap().is_none(),
            "the push finished before it could be killed"
        );
        let state = std::fs::read_dir(&state_dir)
            .ok()
            .and_then(|mut d| d.next())
            .map(|e| e.unwrap().path());
        if let Some(path) = state
            && let Ok(v) =
                serde_json::from_slice::<Value>(&std::fs::read(&path).unwrap_or_default())
        {
            let sid = v["session_id"].as_str().unwrap().parse().unwrap();
            let at = rt.block_on(client.session(sid)).unwrap().offset;
            if at >= 4 << 20 {
                break (v["entry_id"].as_str().unwrap().to_string(), at);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(offset < 48 << 20);
    let out = push().output().unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["id"],
        entry_id.as_str(),
        "the resumed push completed the same entry"
    );
    assert_eq!(v["checksums"]["sha256"], sha256_file(&img).as_str());
    let pulled = f.dir.path().join("pulled.raw");
    env.ok(&[
        "pull",
        &entry_id,
        "-o",
        pulled.to_str().unwrap(),
        "--server",
        &server.url,
        "--token",
        &dev,
    ]);
    assert_eq!(sha256_file(&pulled), sha256_file(&img));
}

/// Two `kiln serve` processes on one PostgreSQL + S3 state: accounts made
/// through one server's config are seen by the other; an image pushed
/// through one is found, shown and pulled (verified) through the other. One
/// server logs JSON lines, as a log collector reads them.
fn two_servers_share_one_state(backend: Backend) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let f = rt.block_on(fresh(backend));
    let (cfg_a, cfg_b) = (
        config_file_named(&f, 60, "a", "a-spool"),
        config_file_named(&f, 60, "b", "b-spool"),
    );
    let (a, b) = (cfg_a.to_str().unwrap(), cfg_b.to_str().unwrap());
    let env = Env::new(f.dir.path());
    let dev = env
        .ok(&["user", "add", "dev", "--role", "developer", "--config", a])
        .trim()
        .to_string();
    env.ok(&["user", "add", "rita", "--role", "reader", "--config", a]);

    // kiln user list / role / passwd, across the two configurations.
    env.ok(&["user", "role", "rita", "developer", "--config", b]);
    let users = env.json(&["user", "list", "--json", "--config", a]);
    let rita = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "rita")
        .unwrap();
    assert_eq!(rita["role"], "developer");
    assert_eq!(rita["password"], false);
    let mut passwd = env
        .kiln()
        .args(["user", "passwd", "rita", "--config", b])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    passwd
        .stdin
        .take()
        .unwrap()
        .write_all(b"rita-secret\n")
        .unwrap();
    assert!(passwd.wait().unwrap().success());
    let listed = env.ok(&["user", "list", "--config", a]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("rita ") && l.contains("developer") && l.contains(" password ")),
        "{listed}"
    );
    let unknown = env
        .kiln()
        .args(["user", "role", "nobody", "admin", "--config", a])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no user \"nobody\""));

    let log_path = f.dir.path().join("a.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server_a = env.serve_logging(&["--config", a, "--log-format", "json"], log);
    let server_b = env.serve(&["--config", b]);

    // The password set through B's config logs in through A's server.
    let mut login = env
        .kiln()
        .args([
            "login",
            "--user",
            "rita",
            "--server",
            &server_a.url,
            "--json",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    login
        .stdin
        .take()
        .unwrap()
        .write_all(b"rita-secret\n")
        .unwrap();
    assert!(login.wait_with_output().unwrap().status.success());

    let img = image(f.dir.path(), "shared.raw", 3, 77);
    let pushed = env.json(&[
        "push",
        img.to_str().unwrap(),
        "--title",
        "Shared state",
        "--os",
        "debian",
        "--chunk-mib",
        "1",
        "--server",
        &server_a.url,
        "--token",
        &dev,
        "--json",
    ]);
    let id = pushed["id"].as_str().unwrap();
    let found = env.json(&["search", "shared", "--json", "--server", &server_b.url]);
    let ids: Vec<&str> = found["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id]);
    let shown = env.json(&["show", id, "--json", "--server", &server_b.url]);
    assert_eq!(shown["checksums"]["sha256"], pushed["checksums"]["sha256"]);
    let pulled = f.dir.path().join("pulled.raw");
    env.ok(&[
        "pull",
        id,
        "-o",
        pulled.to_str().unwrap(),
        "--server",
        &server_b.url,
        "--json",
    ]);
    assert_eq!(sha256_file(&pulled), sha256_file(&img));
    drop(server_a);
    drop(server_b);

    // Every line of A's log is a JSON object with a level and a message.
    let text = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["fields"].is_object())
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "kiln marketplace listening"),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "upload session started"),
        "{text}"
    );
}

mod sqlite {
    use super::*;
    #[test]
    fn sigkill_in_the_middle_of_many_uploads() {
        super::sigkill_in_the_middle_of_many_uploads(Backend::Sqlite)
    }
    #[test]
    fn killed_push_resumes() {
        super::killed_push_resumes(Backend::Sqlite)
    }
}

mod postgres_s3 {
    use super::*;
    #[test]
    fn two_servers_share_one_state() {
        super::two_servers_share_one_state(Backend::Postgres)
    }
    #[test]
    fn sigkill_in_the_middle_of_many_uploads() {
        super::sigkill_in_the_middle_of_many_uploads(Backend::Postgres)
    }
    #[test]
    fn killed_push_resumes() {
        super::killed_push_resumes(Backend::Postgres)
    }
}
