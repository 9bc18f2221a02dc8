//! Signed catalogs, HEPiX image lists and simplestreams, checked by their
//! real consumers: `kiln_trust::subscribe::sync` over HTTP against a running
//! marketplace (and a static mirror serving old or altered copies), openssl
//! for S/MIME, and `sstream-query` for simplestreams.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use chrono::Utc;
use kiln_catalog::model::{NewEntry, Role};
use kiln_catalog::testkit::Backend;
use kiln_market::Client;
use kiln_market::client::{NoProgress, SubscribeFetch};
use kiln_market::config::SigningConfig;
use kiln_trust::catalog::Stale;
use kiln_trust::subscribe::{Report, SyncError, sync};
use kiln_trust::{Identity, TrustRoots};
use uuid::Uuid;

use common::{Server, raw_image, sha256, start};

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e} (scripts/setup installs it)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// An Ed25519 key pair NAME.key / NAME.pub under `dir`.
fn ed25519_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = kiln_trust::identity::generate_key().unwrap();
    kiln_trust::identity::write_key_pair(&dir.join(name), &key).unwrap()
}

/// A test CA and a signer certificate it issued (RSA), made by openssl.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_pki(dir: &Path, signer_cn: &str) -> Pki {
    let p = |n: &str| dir.join(n);
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .arg("-subj")
        .arg(format!("/C=CH/O=kiln test/CN={signer_cn} CA"))
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        .arg("-keyout")
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca.pem")));
    run(Command::new("openssl")
        .args(["req", "-newkey", "rsa:2048", "-nodes"])
        .arg("-subj")
        .arg(format!("/C=CH/O=kiln test/CN={signer_cn}"))
        .arg("-keyout")
        .arg(p("signer.key"))
        .arg("-out")
        .arg(p("signer.csr")));
    std::fs::write(
        p("ext.cnf"),
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=emailProtection\n",
    )
    .unwrap();
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-set_serial", "2"])
        .arg("-in")
        .arg(p("signer.csr"))
        .arg("-CA")
        .arg(p("ca.pem"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-extfile")
        .arg(p("ext.cnf"))
        .arg("-out")
        .arg(p("signer.pem")));
    Pki {
        ca: p("ca.pem"),
        cert: p("signer.pem"),
        key: p("signer.key"),
    }
}

async fn signing_server(key: &Path, cert: Option<&Path>, lifetime_secs: u64) -> Server {
    let signing = SigningConfig {
        key: key.to_path_buf(),
        cert: cert.map(Path::to_path_buf),
        lifetime_secs,
        public_url: None,
    };
    start(Backend::Sqlite, move |c| c.signing = Some(signing)).await
}

/// Publishes `n` bytes as a new entry of the public catalogue.
async fn publish(
    server: &Server,
    client: &Client,
    title: &str,
    n: usize,
    seed: u8,
) -> (Uuid, Vec<u8>) {
    let data = raw_image(n, seed);
    let file = server.fresh.dir.path().join(format!("{title}.raw"));
    std::fs::write(&file, &data).unwrap();
    let new = NewEntry {
        title: title.into(),
        ..Default::default()
    };
    let state = server.fresh.dir.path().join("push-state");
    let entry = client
        .push(&file, new, &state, 1 << 20, &NoProgress)
        .await
        .unwrap();
    (entry.id, data)
}

fn roots(files: &[&Path]) -> TrustRoots {
    let mut r = TrustRoots::new();
    for f in files {
        r.add_file(f).unwrap();
    }
    r
}

async fn subscribe(url: &str, roots: &TrustRoots, cache: &Path) -> Result<Report, SyncError> {
    subscribe_at(url, roots, cache, Utc::now()).await
}

async fn subscribe_at(
    url: &str,
    roots: &TrustRoots,
    cache: &Path,
    now: chrono::DateTime<Utc>,
) -> Result<Report, SyncError> {
    let url = url::Url::parse(url).unwrap();
    let client = Client::new(&url.origin().ascii_serialization(), None).unwrap();
    let fetch = SubscribeFetch {
        client: &client,
        progress: &NoProgress,
    };
    sync(&fetch, &url, roots, cache, now).await
}

/// A static mirror: serves the files of a directory, as any web server would.
struct Mirror {
    url: String,
    dir: PathBuf,
}

async fn mirror(dir: PathBuf) -> Mirror {
    std::fs::create_dir_all(&dir).unwrap();
    async fn file(
        State(dir): State<PathBuf>,
        UrlPath(name): UrlPath<String>,
    ) -> (StatusCode, Vec<u8>) {
        match std::fs::read(dir.join(name.replace('/', "_"))) {
            Ok(b) => (StatusCode::OK, b),
            Err(_) => (StatusCode::NOT_FOUND, Vec::new()),
        }
    }
    let app = Router::new()
        .route("/{name}", get(file))
        .with_state(dir.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Mirror { url, dir }
}

async fn get_bytes(url: &str) -> Vec<u8> {
    let r = reqwest::get(url).await.unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.bytes().await.unwrap().to_vec()
}

fn file_sha256(p: &Path) -> String {
    sha256(&std::fs::read(p).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn subscriber_follows_the_signed_catalog() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = ed25519_key(tmp.path(), "market");
    let server = signing_server(&key, None, 3600).await;
    let token = server.user("dev", Role::Developer).await;
    let client = Client::new(&server.url, Some(token)).unwrap();
    let (a, a_data) = publish(&server, &client, "alpha", 1 << 20, 1).await;
    let (b, _) = publish(&server, &client, "beta", 3 << 19, 2).await;
    let url = format!("{}/api/v1/catalogues/public/signed", server.url);
    let trust = roots(&[&public]);
    let cache = tmp.path().join("cache");

    let first = subscribe(&url, &trust, &cache).await.unwrap();
    let mut got: Vec<String> = first.downloaded.iter().map(|i| i.id.clone()).collect();
    got.sort();
    let mut want = vec![a.to_string(), b.to_string()];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        first.signer,
        Identity::Ed25519 {
            fingerprint: kiln_trust::identity::fingerprint(
                &kiln_trust::identity::read_public_key(&std::fs::read_to_string(&public).unwrap())
                    .unwrap()
            )
        }
    );
    assert_eq!(
        file_sha256(&cache.join("valid").join(a.to_string())),
        sha256(&a_data)
    );

    // Nothing changed: nothing is downloaded again.
    let again = subscribe(&url, &trust, &cache).await.unwrap();
    assert!(again.downloaded.is_empty());
    assert_eq!(again.kept.len(), 2);

    // b leaves the list, c joins it.
    client.delete(b).await.unwrap();
    let (c, c_data) = publish(&server, &client, "gamma", 1 << 20, 3).await;
    let third = subscribe(&url, &trust, &cache).await.unwrap();
    assert_eq!(third.expired, vec![b.to_string()]);
    assert_eq!(
        third
            .downloaded
            .iter()
            .map(|i| i.id.clone())
            .collect::<Vec<_>>(),
        vec![c.to_string()]
    );
    assert!(!cache.join("valid").join(b.to_string()).exists());
    assert!(cache.join("expired").join(b.to_string()).exists());
    assert_eq!(
        file_sha256(&cache.join("valid").join(c.to_string())),
        sha256(&c_data)
    );
    assert!(
        third.version.parse::<u64>().unwrap() > first.version.parse::<u64>().unwrap(),
        "the version grows with the content"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rolled_back_tampered_unknown_and_expired_catalogs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = ed25519_key(tmp.path(), "market");
    let (_, stranger) = ed25519_key(tmp.path(), "stranger");
    let server = signing_server(&key, None, 3600).await;
    let token = server.user("dev", Role::Developer).await;
    let client = Client::new(&server.url, Some(token)).unwrap();
    let (a, _) = publish(&server, &client, "alpha", 1 << 20, 1).await;
    let url = format!("{}/api/v1/catalogues/public/signed", server.url);
    let old = (
        get_bytes(&url).await,
        get_bytes(&format!("{url}.sig")).await,
    );
    // A later catalog: the entry is gone.
    client.delete(a).await.unwrap();
    let new = (
        get_bytes(&url).await,
        get_bytes(&format!("{url}.sig")).await,
    );
    assert_ne!(old.0, new.0);

    let m = mirror(tmp.path().join("mirror")).await;
    let list = format!("{}/catalog.json", m.url);
    let put = |pair: &(Vec<u8>, Vec<u8>)| {
        std::fs::write(m.dir.join("catalog.json"), &pair.0).unwrap();
        std::fs::write(m.dir.join("catalog.json.sig"), &pair.1).unwrap();
    };
    let trust = roots(&[&public]);
    let cache = tmp.path().join("cache");

    put(&new);
    subscribe(&list, &trust, &cache).await.unwrap();
    // The mirror now serves the older, correctly signed catalog.
    put(&old);
    let err = subscribe(&list, &trust, &cache).await.unwrap_err();
    assert!(
        matches!(
            err,
            SyncError::Stale {
                source: Stale::Rollback { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("rolled back"), "{err}");

    // Tampered: one byte of the document changed, signature kept.
    let mut tampered = new.0.clone();
    let at = tampered.iter().position(|&c| c == b'"').unwrap() + 1;
    tampered[at] ^= 0x20;
    put(&(tampered, new.1.clone()));
    let err = subscribe(&list, &trust, &tmp.path().join("cache2"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SyncError::Signature { ref source, .. }
                if matches!(**source, kiln_trust::Error::BadSignature(_))
        ),
        "{err}"
    );

    // A signer the site does not trust.
    put(&new);
    let err = subscribe(&list, &roots(&[&stranger]), &tmp.path().join("cache3"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SyncError::Signature { ref source, .. }
                if matches!(**source, kiln_trust::Error::UnknownSigner(_))
        ),
        "{err}"
    );

    // Frozen: the same catalog read after its expiry (an hour from issue).
    let later = Utc::now() + chrono::Duration::hours(2);
    let err = subscribe_at(&list, &trust, &tmp.path().join("cache4"), later)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SyncError::Stale {
                source: Stale::Expired { .. },
                ..
            }
        ),
        "{err}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hepix_list_verifies_with_openssl_and_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = make_pki(tmp.path(), "marketplace signer");
    let server = signing_server(&pki.key, Some(&pki.cert), 3600).await;
    let token = server.user("dev", Role::Developer).await;
    let client = Client::new(&server.url, Some(token)).unwrap();
    let (a, a_data) = publish(&server, &client, "alpha", 1 << 20, 1).await;
    let url = format!("{}/api/v1/catalogues/public/hepix", server.url);
    let list = tmp.path().join("list.smime");
    std::fs::write(&list, get_bytes(&url).await).unwrap();

    // openssl accepts the S/MIME signature, in text and binary mode, smime and cms.
    for args in [
        &["smime", "-verify"][..],
        &["smime", "-verify", "-binary"],
        &["cms", "-verify"],
    ] {
        let out = tmp.path().join("content.json");
        run(Command::new("openssl")
            .args(args)
            .arg("-in")
            .arg(&list)
            .arg("-CAfile")
            .arg(&pki.ca)
            .arg("-out")
            .arg(&out));
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        let l = &doc["hv:imagelist"];
        assert_eq!(
            l["hv:endorser"]["hv:x509"]["hv:dn"],
            "/C=CH/O=kiln test/CN=marketplace signer"
        );
        assert_eq!(
            l["hv:endorser"]["hv:x509"]["hv:ca"],
            "/C=CH/O=kiln test/CN=marketplace signer CA"
        );
        let image = &l["hv:images"][0]["hv:image"];
        assert_eq!(image["dc:identifier"], a.to_string());
        assert_eq!(image["hv:size"], a_data.len() as u64);
        use sha2::Digest;
        assert_eq!(
            image["sl:checksum:sha512"],
            hex::encode(sha2::Sha512::digest(&a_data))
        );
    }
    // A tampered copy is refused by openssl too.
    let mut bad = std::fs::read(&list).unwrap();
    let at = bad.windows(8).position(|w| w == b"dc:title").unwrap();
    bad[at] = b'X';
    let bad_path = tmp.path().join("bad.smime");
    std::fs::write(&bad_path, bad).unwrap();
    let status = Command::new("openssl")
        .args(["smime", "-verify", "-in"])
        .arg(&bad_path)
        .arg("-CAfile")
        .arg(&pki.ca)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success());

    // kiln subscribes to it, trusting the CA, and verifies the image by sha512.
    let cache = tmp.path().join("cache");
    let report = subscribe(&url, &roots(&[&pki.ca]), &cache).await.unwrap();
    assert_eq!(report.format, "hepix");
    assert_eq!(report.downloaded.len(), 1);
    assert_eq!(
        file_sha256(&cache.join("valid").join(a.to_string())),
        sha256(&a_data)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kiln_reads_a_hepix_list_openssl_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = make_pki(tmp.path(), "marketplace signer");
    let (key, _) = ed25519_key(tmp.path(), "market");
    let server = signing_server(&key, None, 3600).await;
    let token = server.user("dev", Role::Developer).await;
    let client = Client::new(&server.url, Some(token)).unwrap();
    let (a, a_data) = publish(&server, &client, "alpha", 1 << 20, 1).await;
    use sha2::Digest;
    let expires =
        (Utc::now() + chrono::Duration::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let list = serde_json::json!({"hv:imagelist": {
        "dc:date:created": "2026-01-01T00:00:00Z",
        "dc:date:expires": expires,
        "dc:identifier": "a4b0a8e6-2d0b-4c5a-9c59-0b6c4c1d1e2f",
        "dc:title": "hand-made list",
        "hv:endorser": {"hv:x509": {
            "dc:creator": "test", "hv:ca": "/C=CH/O=kiln test/CN=marketplace signer CA",
            "hv:dn": "/C=CH/O=kiln test/CN=marketplace signer", "hv:email": "t@example.org"}},
        "hv:images": [{"hv:image": {
            "dc:identifier": a.to_string(), "dc:title": "alpha", "hv:size": a_data.len(),
            "hv:uri": format!("{}/api/v1/entries/{a}/file", server.url), "hv:version": "1",
            "sl:checksum:sha512": hex::encode(sha2::Sha512::digest(&a_data))}}],
        "hv:version": "20"}});
    let json = tmp.path().join("list.json");
    std::fs::write(&json, serde_json::to_string_pretty(&list).unwrap()).unwrap();
    let m = mirror(tmp.path().join("mirror")).await;
    // vmcaster's way (text mode, LF turned to CRLF) and binary mode.
    for (name, binary) in [("text.smime", false), ("binary.smime", true)] {
        let mut cmd = Command::new("openssl");
        cmd.args(["smime", "-sign"]);
        if binary {
            cmd.arg("-binary");
        }
        run(cmd
            .arg("-signer")
            .arg(&pki.cert)
            .arg("-inkey")
            .arg(&pki.key)
            .arg("-in")
            .arg(&json)
            .arg("-out")
            .arg(m.dir.join(name)));
        let cache = tmp.path().join(format!("cache-{name}"));
        let report = subscribe(&format!("{}/{name}", m.url), &roots(&[&pki.ca]), &cache)
            .await
            .unwrap();
        assert_eq!(report.version, "20");
        assert_eq!(report.downloaded.len(), 1, "{name}");
        assert_eq!(
            file_sha256(&cache.join("valid").join(a.to_string())),
            sha256(&a_data)
        );
    }
    // Signed by someone else than the endorser the list names (vmcatcher's error 12).
    let other_dir = tmp.path().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = make_pki(&other_dir, "somebody else");
    run(Command::new("openssl")
        .args(["smime", "-sign", "-signer"])
        .arg(&other.cert)
        .arg("-inkey")
        .arg(&other.key)
        .arg("-in")
        .arg(&json)
        .arg("-out")
        .arg(m.dir.join("other.smime")));
    let err = subscribe(
        &format!("{}/other.smime", m.url),
        &roots(&[&pki.ca, &other.ca]),
        &tmp.path().join("cache-other"),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("hv:dn"), "{err}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sstream_query_reads_the_simplestreams_export() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(Backend::Sqlite, |_| {}).await;
    let token = server.user("dev", Role::Developer).await;
    let client = Client::new(&server.url, Some(token)).unwrap();
    let (a, a_data) = publish(&server, &client, "alpha", 1 << 20, 1).await;
    let (b, b_data) = publish(&server, &client, "beta", 1 << 19, 2).await;
    let out = run(Command::new("sstream-query")
        .args(["--no-verify", "--json"])
        .arg(format!("{}/streams/v1/index.json", server.url)));
    let items: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    for (id, data) in [(a, &a_data), (b, &b_data)] {
        let item = items
            .iter()
            .find(|i| i["id"] == id.to_string())
            .unwrap_or_else(|| panic!("{id} not in {items:#?}"));
        assert_eq!(item["sha256"], sha256(data));
        // sstream-query prints every field as a string.
        assert_eq!(item["size"], data.len().to_string());
        let url = item["item_url"].as_str().unwrap();
        assert_eq!(get_bytes(url).await, *data);
    }
    // A filter, as sites use it.
    let out = run(Command::new("sstream-query")
        .args(["--no-verify", "--json"])
        .arg(format!("{}/streams/v1/index.json", server.url))
        .arg(format!("sha256={}", sha256(&b_data))));
    let items: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], b.to_string());
    drop(tmp);
    server.stop().await;
}
