//! Trust end to end through the `kiln` binary: key gen, sign, verify (Ed25519
//! and CMS, with openssl in both directions), push --sign, endorse, policy
//! check and verified pull against a running `kiln serve`, with a refusal
//! test for each reason (a refusal leaves no file behind); pull's fallback
//! over an entry's locations; `kiln subscribe` following the signed catalog
//! a `kiln serve` publishes, through a static mirror that later replays an
//! old list and a stale one.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

mod common;

use kiln_trust::testkit::{KeyType, TestPki, openssl};
use serde_json::Value;

use common::{Env, Served};

impl Env {
    fn run(&self, args: &[&str]) -> Output {
        self.kiln().args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kiln {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must exit `code`; returns stdout + stderr.
    fn code(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(code), "kiln {args:?}: {text}");
        text
    }

    /// `kiln serve` on a free port; `state` is `--data DIR` or `--config FILE`.
    fn serve(&self, state: &[&str]) -> Served {
        Served::start(self.kiln(), state, Stdio::null())
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn key_gen_sign_and_verify_with_ed25519_and_cms() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(dir.path());
    let d = |n: &str| dir.path().join(n);
    let alice = env.ok(&["key", "gen", s(&d("alice"))]);
    assert!(
        alice.trim().starts_with("ed25519:") && alice.trim().len() == 72,
        "{alice}"
    );
    let mode = std::fs::metadata(d("alice.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    env.code(2, &["key", "gen", s(&d("alice"))]); // never overwrites
    let bob: Value =
        serde_json::from_str(&env.ok(&["key", "gen", s(&d("bob")), "--json"])).unwrap();
    assert_eq!(bob["identity"]["kind"], "ed25519");

    std::fs::write(d("doc"), b"a manifest\n").unwrap();
    env.ok(&[
        "sign",
        s(&d("doc")),
        "--key",
        s(&d("alice.key")),
        "-o",
        s(&d("doc.sig")),
    ]);
    let v: Value = serde_json::from_str(&env.ok(&[
        "verify",
        s(&d("doc")),
        s(&d("doc.sig")),
        "--trust",
        s(&d("alice.pub")),
        "--json",
    ]))
    .unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["signer"]["fingerprint"], alice.trim());
    // Unknown signer, tampered bytes: exit 1 with the reason.
    let refused = |trust: &str, reason: &str| {
        let (doc, sig, trust) = (d("doc"), d("doc.sig"), d(trust));
        let out = env.code(1, &["verify", s(&doc), s(&sig), "--trust", s(&trust)]);
        assert!(out.contains(reason), "{out}");
    };
    refused("bob.pub", "unknown signer");
    std::fs::write(d("doc"), b"a manifest!\n").unwrap();
    refused("alice.pub", "bad signature");

    // CMS: kiln signs, openssl verifies; openssl signs, kiln verifies against a CA dir.
    let pki = TestPki::new("Kiln Test CA");
    let (cert, key) = pki.signer("carol", KeyType::Ecdsa);
    let (dcert, dkey) = pki.signer("dave", KeyType::Rsa);
    pki.revoke("dave");
    let ca_dir = pki.ca_dir(true);
    env.ok(&[
        "sign",
        s(&d("doc")),
        "--cert",
        s(&cert),
        "--key",
        s(&key),
        "-o",
        s(&d("doc.cms")),
    ]);
    openssl(
        dir.path(),
        &[
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "PEM",
            "-in",
            "doc.cms",
            "-content",
            "doc",
            "-CAfile",
            s(&pki.ca_cert()),
            "-out",
            "/dev/null",
        ],
    );
    let out = env.ok(&[
        "verify",
        s(&d("doc")),
        s(&d("doc.cms")),
        "--ca-dir",
        s(&ca_dir),
    ]);
    assert!(out.contains("/CN=carol"), "{out}");
    openssl(
        dir.path(),
        &[
            "cms",
            "-sign",
            "-binary",
            "-in",
            "doc",
            "-signer",
            s(&dcert),
            "-inkey",
            s(&dkey),
            "-outform",
            "DER",
            "-out",
            "dave.der",
        ],
    );
    let out = env.code(
        1,
        &[
            "verify",
            s(&d("doc")),
            s(&d("dave.der")),
            "--ca-dir",
            s(&ca_dir),
        ],
    );
    assert!(out.contains("revoked"), "{out}");
    // Without a CRL dave's signature is fine: what refused it was the CRL.
    let out = env.ok(&[
        "verify",
        s(&d("doc")),
        s(&d("dave.der")),
        "--trust",
        s(&pki.ca_cert()),
    ]);
    assert!(out.contains("/CN=dave"), "{out}");
}

/// A raw image of `n` bytes.
fn image(path: &Path, n: usize, seed: u32) {
    let mut x = seed | 1;
    let data: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(path, data).unwrap();
}

/// An HTTP request with curl (scripts/setup installs it); the body it answered.
fn curl(method: &str, url: &str, token: Option<&str>, json: Option<&str>) -> Vec<u8> {
    let mut c = Command::new("curl");
    c.args(["-sSf", "-X", method]);
    if let Some(t) = token {
        c.arg("-H").arg(format!("authorization: Bearer {t}"));
    }
    if let Some(body) = json {
        c.args(["-H", "content-type: application/json", "--data", body]);
    }
    let out = c.arg(url).output().expect("curl");
    assert!(
        out.status.success(),
        "{method} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A developer on a fresh `kiln serve`: every command gets `--server` and
/// `--token`.
struct Market<'a> {
    env: &'a Env,
    served: Served,
    token: String,
}

impl<'a> Market<'a> {
    /// A developer account on `state` (`--data DIR` or `--config FILE`), then the server.
    fn start(env: &'a Env, state: &[&str]) -> Market<'a> {
        let mut add = vec!["user", "add", "dev", "--role", "developer"];
        add.extend(state);
        let token = env.ok(&add).trim().to_string();
        let served = env.serve(state);
        Market { env, served, token }
    }

    fn url(&self) -> &str {
        &self.served.url
    }

    /// `kiln ARGS --server … --token …`, which must exit `code`; stdout + stderr.
    fn code(&self, code: i32, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.extend(["--server", self.url(), "--token", &self.token]);
        self.env.code(code, &all)
    }

    fn ok(&self, args: &[&str]) -> String {
        self.code(0, args)
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let mut cmd = self.env.kiln();
        cmd.args(&all)
            .args(["--server", self.url(), "--token", &self.token]);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "kiln {all:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Pushes `file` with `extra` options; the new entry.
    fn push(&self, file: &Path, title: &str, extra: &[&str]) -> Value {
        let mut args = vec!["push", s(file), "--title", title];
        args.extend(extra);
        self.json(&args)
    }

    /// `kiln endorse ID --key KEY EXTRA…`; the endorsement.
    fn endorse(&self, id: &str, key: &Path, extra: &[&str]) -> Value {
        let mut args = vec!["endorse", id, "--key", s(key)];
        args.extend(extra);
        self.json(&args)
    }

    /// `kiln pull ID -o OUT EXTRA…` must exit `code` naming `reason`, and
    /// leave neither OUT nor OUT.part behind.
    fn refused(&self, code: i32, id: &str, out: &Path, extra: &[&str], reason: &str) -> String {
        let mut args = vec!["pull", id, "-o", s(out)];
        args.extend(extra);
        let text = self.code(code, &args);
        assert!(text.contains(reason), "expected {reason:?} in: {text}");
        let part = out.with_extension("raw.part");
        assert!(
            !out.exists() && !part.exists(),
            "{} left behind",
            out.display()
        );
        text
    }
}

#[test]
fn push_sign_endorse_policy_and_verified_pull_with_every_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(dir.path());
    let d = |n: &str| dir.path().join(n);
    let data = d("data");
    let market = Market::start(&env, &["--data", s(&data)]);
    let alice_fp = env.ok(&["key", "gen", s(&d("alice"))]).trim().to_string();
    let bob_fp = env.ok(&["key", "gen", s(&d("bob"))]).trim().to_string();
    let (alice, alice_pub, bob) = (d("alice.key"), d("alice.pub"), d("bob.key"));
    let trust_alice = ["--trust", s(&alice_pub)];
    image(&d("img.raw"), 1 << 20, 7);

    // push --sign endorses the new entry.
    let pushed = market.push(&d("img.raw"), "signed", &["--sign", s(&alice)]);
    let id = pushed["id"].as_str().unwrap().to_string();

    // Accepted: policy check explains, pull writes the verified file.
    let out = market.ok(&["policy", "check", &id, "--trust", s(&alice_pub)]);
    assert!(
        out.contains("min-endorsements") && out.contains("accepted"),
        "{out}"
    );
    let report = market.json(&["policy", "check", &id, "--trust", s(&alice_pub)]);
    assert_eq!(report["accepted"], true);
    market.ok(&["pull", &id, "-o", s(&d("ok.raw")), "--trust", s(&alice_pub)]);
    assert_eq!(
        std::fs::read(d("ok.raw")).unwrap(),
        std::fs::read(d("img.raw")).unwrap()
    );

    // A policy refusal exits 1 in `kiln pull` as in `kiln policy check`.
    let refused = |out: &str, extra: &[&str], reason: &str| {
        market.refused(1, &id, &d(out), extra, reason);
    };
    // Unknown signer.
    refused(
        "unknown.raw",
        &["--trust", s(&d("bob.pub"))],
        "unknown signer",
    );
    // Denied signer, revoked key, checksum on the deny list: policy files.
    market.endorse(&id, &bob, &[]);
    let sha256 = pushed["checksums"]["sha256"].as_str().unwrap().to_string();
    let policy = |name: &str, body: &str| {
        let p = d(name);
        std::fs::write(&p, format!("{body}[[trusted]]\nkey_file = \"alice.pub\"\n")).unwrap();
        p
    };
    let p = policy("denied.toml", &format!("[[denied]]\nkey = \"{bob_fp}\"\n"));
    let out = market.code(1, &["policy", "check", &id, "--policy", s(&p)]);
    assert!(out.contains("FAIL  denied-endorsers"), "{out}");
    refused("denied.raw", &["--policy", s(&p)], "denied-endorsers");
    let p = policy(
        "revoked.toml",
        &format!("revoked_keys = [\"{alice_fp}\"]\n"),
    );
    refused("revoked.raw", &["--policy", s(&p)], "revoked key");
    let p = policy(
        "checksum.toml",
        &format!("denied_checksums = [\"sha256:{sha256}\"]\n"),
    );
    refused("checksum.raw", &["--policy", s(&p)], "denied-checksums");

    // Tampered metadata: the owner extends valid_until after alice endorsed.
    let entry_url = format!("{}/api/v1/entries/{id}", market.url());
    let patch = |body: &str| curl("PATCH", &entry_url, Some(&market.token), Some(body));
    patch(r#"{"valid_until": "2099-01-01T00:00:00Z"}"#);
    refused(
        "meta.raw",
        &trust_alice,
        "does not match the entry's metadata",
    );
    // Expired: alice endorses the (past) expiry; the policy refuses it as expired.
    patch(r#"{"valid_until": "2020-01-01T00:00:00Z"}"#);
    market.endorse(&id, &alice, &[]);
    refused("expired.raw", &trust_alice, "refuse-expired");
    // Deprecated (after an expiry in the future and a fresh endorsement).
    patch(r#"{"valid_until": "2099-01-01T00:00:00Z"}"#);
    let e = market.endorse(&id, &alice, &[]);
    market.ok(&[
        "pull",
        &id,
        "-o",
        s(&d("again.raw")),
        "--trust",
        s(&alice_pub),
    ]);
    // The endorser revokes its endorsement: it no longer counts.
    let eid = e["id"].as_str().unwrap();
    market.endorse(&id, &alice, &["--revoke", eid, "--reason", "oops"]);
    refused("rev.raw", &trust_alice, "revoked by its endorser");
    let e = market.endorse(&id, &alice, &[]);
    assert_eq!(e["status"], "active");
    market.ok(&["deprecate", &id, "--reason", "use the next one"]);
    refused("dep.raw", &trust_alice, "use the next one");

    // Tampered bytes: the stored blob changes under an accepted entry. The
    // bytes do not verify: a refusal too, exit 1.
    image(&d("img2.raw"), 1 << 20, 9);
    let id2 = market.push(&d("img2.raw"), "two", &["--sign", s(&alice)])["id"]
        .as_str()
        .unwrap()
        .to_string();
    tamper_blob(&data, &d("img2.raw"));
    let text = market.refused(
        1,
        &id2,
        &d("bytes.raw"),
        &["--trust", s(&alice_pub), "--json"],
        "sha256",
    );
    assert!(text.contains("verification failed"), "{text}");
}

/// Flips a byte of the stored blob that holds `original`'s bytes.
fn tamper_blob(data: &Path, original: &Path) {
    let original = std::fs::read(original).unwrap();
    let blob = walk(&data.join("blobs"))
        .into_iter()
        .find(|p| std::fs::read(p).unwrap() == original)
        .expect("the stored blob");
    let mut bytes = original;
    bytes[1000] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A static HTTP server on loopback, as `wget --mirror` makes one: a GET of a
/// path it holds answers 200 and the bytes, anything else 404. What it holds
/// can change while it runs (a mirror that goes stale, or turns hostile).
struct Mirror {
    url: String,
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

impl Mirror {
    fn start() -> Mirror {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let files: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let shared = Arc::clone(&files);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let files = Arc::clone(&shared);
                std::thread::spawn(move || answer(stream, &files));
            }
        });
        Mirror { url, files }
    }

    fn put(&self, path: &str, bytes: Vec<u8>) {
        self.files.lock().unwrap().insert(path.to_string(), bytes);
    }

    fn get(&self, path: &str) -> Vec<u8> {
        self.files.lock().unwrap()[path].clone()
    }
}

fn answer(stream: TcpStream, files: &Mutex<HashMap<String, Vec<u8>>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        header.clear();
    }
    let path = request.split(' ').nth(1).unwrap_or_default();
    let body = files.lock().unwrap().get(path).cloned();
    let mut stream = stream;
    let _ = match body {
        Some(b) => write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            b.len()
        )
        .and_then(|_| stream.write_all(&b)),
        None => stream
            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"),
    };
}

/// A loopback URL nothing listens on: connection refused.
fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/img.raw")
}

#[test]
fn pull_tries_the_locations_in_order_and_names_each_failure() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(dir.path());
    let d = |n: &str| dir.path().join(n);
    let data = d("data");
    let market = Market::start(&env, &["--data", s(&data)]);
    image(&d("img.raw"), 1 << 20, 11);
    image(&d("wrong.raw"), 1 << 20, 13);
    let good = std::fs::read(d("img.raw")).unwrap();
    let mirror = Mirror::start();
    mirror.put("/img.raw", good.clone());
    mirror.put("/wrong.raw", std::fs::read(d("wrong.raw")).unwrap());
    let (good_url, wrong_url) = (
        format!("{}/img.raw", mirror.url),
        format!("{}/wrong.raw", mirror.url),
    );

    // An upload with a mirror: the marketplace's copy first, then the mirror.
    let pushed = market.push(&d("img.raw"), "mirrored", &["--mirror", &good_url]);
    let id = pushed["id"].as_str().unwrap().to_string();
    assert_eq!(pushed["locations"][0]["type"], "blob", "{pushed}");
    assert_eq!(pushed["locations"][1]["url"], good_url.as_str(), "{pushed}");
    let text = market.code(
        2,
        &[
            "push",
            s(&d("img.raw")),
            "--title",
            "x",
            "--mirror",
            "ftp://127.0.0.1/img.raw",
        ],
    );
    assert!(text.contains("mirrors must be http or https"), "{text}");
    // The marketplace's copy goes bad: the pull falls back to the mirror and says so.
    tamper_blob(&data, &d("img.raw"));
    let text = market.ok(&["pull", &id, "-o", s(&d("a.raw"))]);
    assert!(text.contains(&format!("from {good_url}")), "{text}");
    assert!(text.contains("location failed"), "{text}");
    assert_eq!(std::fs::read(d("a.raw")).unwrap(), good);

    // An external image: its URL is dead (connection refused), its first
    // mirror serves other bytes, the second is good.
    let sha256 = pushed["checksums"]["sha256"].as_str().unwrap();
    let external = |urls: &[&str]| -> String {
        let body = serde_json::json!({
            "title": "external",
            "external_url": urls[0],
            "mirrors": &urls[1..],
            "bytes": good.len(),
            "checksums": {"sha256": sha256},
        });
        let created = curl(
            "POST",
            &format!("{}/api/v1/entries", market.url()),
            Some(&market.token),
            Some(&body.to_string()),
        );
        let v: Value = serde_json::from_slice(&created).unwrap();
        v["id"].as_str().unwrap().to_string()
    };
    let dead = dead_url();
    let id2 = external(&[&dead, &wrong_url, &good_url]);
    // The entry's page lists its locations in that order.
    let page = curl(
        "GET",
        &format!("{}/entries/{id2}", market.url()),
        None,
        None,
    );
    let page = String::from_utf8(page).unwrap();
    let at = |u: &str| {
        page.find(&format!("external: <a href=\"{u}\""))
            .unwrap_or_else(|| panic!("{u}: {page}"))
    };
    assert!(at(&dead) < at(&wrong_url) && at(&wrong_url) < at(&good_url));
    let pulled = market.json(&["pull", &id2, "-o", s(&d("b.raw"))]);
    assert_eq!(pulled["location"], good_url.as_str(), "{pulled}");
    assert_eq!(pulled["id"], id2.as_str());
    assert_eq!(std::fs::read(d("b.raw")).unwrap(), good);

    // Every location fails: the refusal names each one's failure, in
    // order, and leaves nothing. One was unreachable: an error, exit 2.
    let id3 = external(&[&dead, &wrong_url]);
    let text = market.refused(2, &id3, &d("c.raw"), &[], "every location failed");
    assert!(
        text.contains(&format!("(1) {dead}: "))
            && text.to_lowercase().contains("connection refused"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "(2) {wrong_url}: verification failed: received sha256"
        )),
        "{text}"
    );
    // Every location answers with bytes that do not verify: a verdict, exit 1.
    mirror.put("/img.raw", std::fs::read(d("wrong.raw")).unwrap());
    let text = market.refused(1, &id, &d("d.raw"), &[], "every location failed");
    let verdict = text
        .lines()
        .find(|l| l.starts_with("kiln: every location failed"))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(verdict.matches("received sha256").count(), 2, "{text}");
}

/// Where the marketplace serves the public catalogue's signed catalog and its signature.
const SIGNED: &str = "/api/v1/catalogues/public/signed";
const SIGNED_SIG: &str = "/api/v1/catalogues/public/signed.sig";

/// Copies a catalogue's signed catalog, its signature and its images from
/// the marketplace to the mirror, under the same paths; returns the catalog.
fn mirror_catalog(market: &Market, mirror: &Mirror) -> Value {
    let get = |p: &str| curl("GET", &format!("{}{p}", market.url()), None, None);
    let catalog = get(SIGNED);
    let signature = get(SIGNED_SIG);
    let parsed: Value = serde_json::from_slice(&catalog).unwrap();
    // Locations are references relative to the catalog's URL.
    let base = url::Url::parse(&format!("{}{SIGNED}", market.url())).unwrap();
    for e in parsed["entries"].as_array().unwrap() {
        for l in e["locations"].as_array().unwrap() {
            let at = base.join(l.as_str().unwrap()).unwrap();
            mirror.put(at.path(), get(at.path()));
        }
    }
    mirror.put(SIGNED, catalog);
    mirror.put(SIGNED_SIG, signature);
    parsed
}

/// Every file under `dir` and its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = walk(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn subscribe_follows_a_signed_catalog_and_refuses_rollback_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(dir.path());
    let d = |n: &str| dir.path().join(n);
    env.ok(&["key", "gen", s(&d("market"))]);
    env.ok(&["key", "gen", s(&d("other"))]);
    // The shortest catalog lifetime the server allows (60 s), so that a
    // list goes stale during the test.
    let lifetime = 60;
    let config = d("market.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = \"sqlite://{}?mode=rwc\"\nspool_dir = \"{}\"\n\
             [blobs]\nkind = \"dir\"\npath = \"{}\"\n\
             [signing]\nkey = \"{}\"\nlifetime_secs = {lifetime}\n",
            s(&d("kiln.db")),
            s(&d("spool")),
            s(&d("blobs")),
            s(&d("market.key"))
        ),
    )
    .unwrap();
    let market = Market::start(&env, &["--config", s(&config)]);
    image(&d("a.raw"), 1 << 20, 21);
    image(&d("b.raw"), 1 << 20, 23);
    let a = market.push(&d("a.raw"), "a", &[])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = market.push(&d("b.raw"), "b", &[])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mirror = Mirror::start();
    let list = format!("{}{SIGNED}", mirror.url);
    let cache = d("cache");
    let subscribe = |code: i32, trust: &str| -> String {
        env.code(
            code,
            &[
                "subscribe",
                &list,
                "--trust",
                s(&d(trust)),
                "--cache",
                s(&cache),
            ],
        )
    };

    // First sync: both images downloaded and verified into valid/.
    let v1 = mirror_catalog(&market, &mirror);
    let v1_files = (mirror.get(SIGNED), mirror.get(SIGNED_SIG));
    // A list signed by a key the site does not trust is refused first.
    let text = subscribe(1, "other.pub");
    assert!(text.contains("unknown signer"), "{text}");
    let text = subscribe(0, "market.pub");
    assert!(
        text.contains(&format!("list version {}", v1["version"])),
        "{text}"
    );
    for (id, file) in [(&a, "a.raw"), (&b, "b.raw")] {
        assert!(
            text.contains(&format!("downloaded  {id}")) && text.contains("verified"),
            "{text}"
        );
        assert_eq!(
            std::fs::read(cache.join("valid").join(id)).unwrap(),
            std::fs::read(d(file)).unwrap()
        );
    }

    // b leaves the catalogue; the server re-signs a higher version.
    curl(
        "DELETE",
        &format!("{}/api/v1/entries/{b}", market.url()),
        Some(&market.token),
        None,
    );
    let v2 = mirror_catalog(&market, &mirror);
    assert!(
        v2["version"].as_u64() > v1["version"].as_u64(),
        "{v1} then {v2}"
    );
    let text = subscribe(0, "market.pub");
    assert!(
        text.contains(&format!("kept        {a}")) && text.contains(&format!("expired     {b}")),
        "{text}"
    );
    assert!(!cache.join("valid").join(&b).exists());
    assert_eq!(
        std::fs::read(cache.join("expired").join(&b)).unwrap(),
        std::fs::read(d("b.raw")).unwrap()
    );

    // The mirror serves the first list again: rolled back, refused, exit 1,
    // and the cache is as it was.
    let before = snapshot(&cache);
    let v2_files = (mirror.get(SIGNED), mirror.get(SIGNED_SIG));
    mirror.put(SIGNED, v1_files.0);
    mirror.put(SIGNED_SIG, v1_files.1);
    let text = subscribe(1, "market.pub");
    assert!(
        text.contains("rolled back")
            && text.contains(&format!("version {}", v1["version"]))
            && text.contains(&format!("version {} seen before", v2["version"])),
        "{text}"
    );
    assert_eq!(snapshot(&cache), before, "a refused list changed the cache");

    // The mirror keeps serving the second list past its expiry (a freeze):
    // refused as expired, exit 1, the cache untouched.
    mirror.put(SIGNED, v2_files.0);
    mirror.put(SIGNED_SIG, v2_files.1);
    let expires: chrono::DateTime<chrono::Utc> = v2["expires"].as_str().unwrap().parse().unwrap();
    let wait = expires - chrono::Utc::now() + chrono::Duration::seconds(1);
    if let Ok(wait) = wait.to_std() {
        std::thread::sleep(wait);
    }
    let text = subscribe(1, "market.pub");
    assert!(
        text.contains("expired") && text.contains("refusing a stale list"),
        "{text}"
    );
    assert_eq!(snapshot(&cache), before, "a refused list changed the cache");
}
