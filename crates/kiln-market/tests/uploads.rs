//! Uploads, downloads, sessions, imports, the safety inspector and the
//! sweeper, on both backends.

mod common;

use std::process::Command;
use std::time::Duration;

use kiln_catalog::model::{NewEntry, Role, Status, TokenKind};
use kiln_catalog::testkit::Backend;
use kiln_market::Client;
use kiln_market::api::uploads::Import;
use kiln_market::auth::{SESSION_COOKIE, issue_token};
use kiln_market::client::{ClientError, NoProgress};
use kiln_market::ingest::Declared;
use reqwest::StatusCode;
use uuid::Uuid;

use common::{Server, raw_image, sha256, start};

async fn developer(server: &Server) -> (Client, reqwest::Client, String) {
    let token = server.user("dev", Role::Developer).await;
    (
        Client::new(&server.url, Some(token.clone())).unwrap(),
        reqwest::Client::new(),
        token,
    )
}

fn new_entry(title: &str) -> NewEntry {
    NewEntry {
        title: title.into(),
        ..Default::default()
    }
}

fn api_status(e: ClientError) -> (StatusCode, String) {
    match e {
        ClientError::Api { status, message } => (status, message),
        other => panic!("expected an API error, got {other}"),
    }
}

async fn download_with_range_head_and_etag(backend: Backend) {
    let server = start(backend, |_| {}).await;
    let (client, http, _) = developer(&server).await;
    let data = raw_image(3 << 20, 1);
    let file = server.fresh.dir.path().join("img.raw");
    std::fs::write(&file, &data).unwrap();
    let entry = client.create_entry(&new_entry("ranges")).await.unwrap();
    let declared = Declared {
        sha256: Some(sha256(&data)),
        ..Default::default()
    };
    let entry = client.put_file(entry.id, &file, &declared).await.unwrap();
    assert_eq!(entry.status, Status::Active);
    assert_eq!(entry.format.as_deref(), Some("raw"));
    assert_eq!(entry.virtual_size, Some(data.len() as u64));
    assert_eq!(
        entry.checksums.sha256.as_deref(),
        Some(sha256(&data).as_str())
    );
    assert_eq!(entry.checksums.sha512.as_ref().map(String::len), Some(128));
    let url = format!("{}/api/v1/entries/{}/file", server.url, entry.id);
    let etag = format!("\"sha256:{}\"", sha256(&data));

    let full = http.get(&url).send().await.unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers()["etag"], etag.as_str());
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    assert_eq!(full.bytes().await.unwrap().as_ref(), data.as_slice());

    let head = http.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        data.len().to_string().as_str()
    );
    assert_eq!(head.headers()["etag"], etag.as_str());

    let part = http
        .get(&url)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 100-199/{}", data.len()).as_str()
    );
    assert_eq!(part.bytes().await.unwrap().as_ref(), &data[100..200]);
    let tail = http
        .get(&url)
        .header("range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(
        tail.bytes().await.unwrap().as_ref(),
        &data[data.len() - 10..]
    );
    let beyond = http
        .get(&url)
        .header("range", format!("bytes={}-", data.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), 416);
    assert_eq!(
        beyond.headers()["content-range"],
        format!("bytes */{}", data.len()).as_str()
    );
    // If-Range with a stale validator gets the whole file; with the ETag, the range.
    let stale = http
        .get(&url)
        .header("range", "bytes=0-9")
        .header("if-range", "\"sha256:00\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
    let fresh = http
        .get(&url)
        .header("range", "bytes=0-9")
        .header("if-range", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 206);
    let cached = http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);

    // pull: resumes a partial file and verifies it.
    let dest = server.fresh.dir.path().join("pulled.raw");
    std::fs::write(kiln_market::client::part_path(&dest), &data[..1_000_000]).unwrap();
    client.pull(entry.id, &dest, &NoProgress).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    // A corrupt partial file is caught by the checksum and removed.
    let mut bad = data[..1_000_000].to_vec();
    bad[10] ^= 1;
    let dest2 = server.fresh.dir.path().join("pulled2.raw");
    std::fs::write(kiln_market::client::part_path(&dest2), &bad).unwrap();
    let err = client
        .pull(entry.id, &dest2, &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Verify(_)), "{err}");
    assert!(!dest2.exists() && !kiln_market::client::part_path(&dest2).exists());
    server.stop().await;
}

async fn declared_digest_size_and_cap_are_enforced(backend: Backend) {
    let server = start(backend, |c| c.max_upload_bytes = 1 << 20).await;
    let (client, _, _) = developer(&server).await;
    let data = raw_image(100_000, 2);
    let file = server.fresh.dir.path().join("img.raw");
    std::fs::write(&file, &data).unwrap();

    let e = client.create_entry(&new_entry("digest")).await.unwrap();
    let wrong = Declared {
        sha256: Some("0".repeat(64)),
        ..Default::default()
    };
    let (status, msg) = api_status(client.put_file(e.id, &file, &wrong).await.unwrap_err());
    assert_eq!(status, 422);
    assert!(msg.contains("declared sha256"), "{msg}");
    assert_eq!(
        client.entry(e.id).await.unwrap().status,
        Status::Queued,
        "back to queued, retryable"
    );

    let mut declared_size = new_entry("size");
    declared_size.bytes = Some(99_999);
    let e2 = client.create_entry(&declared_size).await.unwrap();
    let (status, msg) = api_status(
        client
            .put_file(e2.id, &file, &Declared::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 422);
    assert!(msg.contains("declared size 99999"), "{msg}");

    // Far more than socket buffers hold: the answer must still reach the
    // client that is sending it (crate::linger).
    let big = server.fresh.dir.path().join("big.raw");
    std::fs::write(&big, raw_image(32 << 20, 3)).unwrap();
    let e3 = client.create_entry(&new_entry("cap")).await.unwrap();
    let (status, _) = api_status(
        client
            .put_file(e3.id, &big, &Declared::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 413);
    // The refused uploads left nothing behind: no blob, no spool file.
    assert!(server.state.blobs.list("blobs").await.unwrap().is_empty());
    assert_eq!(std::fs::read_dir(server.spool()).unwrap().count(), 0);
    // The first entry can still take the right bytes.
    let ok = Declared {
        sha256: Some(sha256(&data)),
        ..Default::default()
    };
    assert_eq!(
        client.put_file(e.id, &file, &ok).await.unwrap().status,
        Status::Active
    );
    server.stop().await;
}

async fn unsafe_image_is_refused_with_the_inspectors_reason(backend: Backend) {
    let server = start(backend, |_| {}).await;
    let (client, _, _) = developer(&server).await;
    let dir = server.fresh.dir.path();
    let base = dir.join("base.qcow2");
    let overlay = dir.join("overlay.qcow2");
    for args in [
        vec!["create", "-f", "qcow2", base.to_str().unwrap(), "16M"],
        vec![
            "create",
            "-f",
            "qcow2",
            "-b",
            base.to_str().unwrap(),
            "-F",
            "qcow2",
            overlay.to_str().unwrap(),
        ],
    ] {
        let out = Command::new("qemu-img")
            .args(&args)
            .output()
            .expect("qemu-img is installed (scripts/setup)");
        assert!(
            out.status.success(),
            "qemu-img {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let e = client.create_entry(&new_entry("overlay")).await.unwrap();
    let (status, msg) = api_status(
        client
            .put_file(e.id, &overlay, &Declared::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 422);
    assert!(
        msg.starts_with("unsafe image:") && msg.contains("backing file"),
        "{msg}"
    );
    // The plain qcow2 passes, and its format and virtual size are recorded.
    let e2 = client.create_entry(&new_entry("base")).await.unwrap();
    let ok = client
        .put_file(e2.id, &base, &Declared::default())
        .await
        .unwrap();
    assert_eq!(
        (ok.format.as_deref(), ok.virtual_size),
        (Some("qcow2"), Some(16 << 20))
    );
    server.stop().await;
}

async fn import_by_url_from_a_loopback_server(backend: Backend) {
    let server = start(backend, |_| {}).await;
    let (client, _, _) = developer(&server).await;
    let data = raw_image(500_000, 4);
    // A separate loopback HTTP server holding the image.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let body = data.clone();
    let app = axum::Router::new()
        .route(
            "/img.raw",
            axum::routing::get(move || async move { body.clone() }),
        )
        .route(
            "/missing",
            axum::routing::get(|| async { StatusCode::NOT_FOUND }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let e = client.create_entry(&new_entry("imported")).await.unwrap();
    let import = Import {
        url: format!("{origin}/img.raw"),
        size: Some(data.len() as u64),
        sha256: Some(sha256(&data)),
        sha512: None,
    };
    let got = client.import(e.id, &import).await.unwrap();
    assert_eq!(got.status, Status::Active);
    assert_eq!(
        got.checksums.sha256.as_deref(),
        Some(sha256(&data).as_str())
    );
    let dest = server.fresh.dir.path().join("imported.raw");
    client.pull(e.id, &dest, &NoProgress).await.unwrap();
    assert_eq!(std::fs::read(dest).unwrap(), data);

    let e2 = client.create_entry(&new_entry("missing")).await.unwrap();
    let bad = Import {
        url: format!("{origin}/missing"),
        size: None,
        sha256: None,
        sha512: None,
    };
    let (status, msg) = api_status(client.import(e2.id, &bad).await.unwrap_err());
    assert_eq!(status, 502, "{msg}");
    let wrong = Import {
        url: format!("{origin}/img.raw"),
        size: None,
        sha256: Some("1".repeat(64)),
        sha512: None,
    };
    let (status, _) = api_status(client.import(e2.id, &wrong).await.unwrap_err());
    assert_eq!(status, 422);
    let not_http = Import {
        url: "file:///etc/passwd".into(),
        size: None,
        sha256: None,
        sha512: None,
    };
    assert_eq!(
        api_status(client.import(e2.id, &not_http).await.unwrap_err()).0,
        400
    );
    server.stop().await;
}

async fn resumable_session_protocol(backend: Backend) {
    let server = start(backend, |_| {}).await;
    let (client, http, token) = developer(&server).await;
    let data = raw_image(5 << 20, 5);
    let e = client.create_entry(&new_entry("chunked")).await.unwrap();
    let s = client.start_session(e.id).await.unwrap();
    assert_eq!(s.offset, 0);
    assert_eq!(client.entry(e.id).await.unwrap().status, Status::Uploading);
    let first = client
        .send_chunk(s.id, 0, data[..2 << 20].to_vec().into())
        .await
        .unwrap();
    assert_eq!(first.offset, 2 << 20);
    // A chunk at the wrong offset is refused with the session's real offset.
    let r = http
        .patch(format!("{}/api/v1/uploads/{}", server.url, s.id))
        .bearer_auth(&token)
        .header("content-range", "bytes 0-9/*")
        .body(vec![0u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(
        r.headers()["kiln-upload-offset"],
        (2u64 << 20).to_string().as_str()
    );
    // A new client asks where the session stands and continues from there.
    let again = Client::new(&server.url, Some(token.clone())).unwrap();
    let at = again.session(s.id).await.unwrap().offset;
    assert_eq!(at, 2 << 20);
    again
        .send_chunk(s.id, at, data[at as usize..].to_vec().into())
        .await
        .unwrap();
    // Finishing with a wrong digest is refused and ends the session.
    let e_wrong = client.create_entry(&new_entry("wrong")).await.unwrap();
    let s_wrong = client.start_session(e_wrong.id).await.unwrap();
    client
        .send_chunk(s_wrong.id, 0, data.clone().into())
        .await
        .unwrap();
    let bad = Declared {
        sha256: Some("2".repeat(64)),
        ..Default::default()
    };
    assert_eq!(
        api_status(client.finish_session(s_wrong.id, &bad).await.unwrap_err()).0,
        422
    );
    assert_eq!(
        api_status(client.session(s_wrong.id).await.unwrap_err()).0,
        404
    );
    // The right digest publishes.
    let ok = Declared {
        size: Some(data.len() as u64),
        sha256: Some(sha256(&data)),
        sha512: None,
    };
    let done = client.finish_session(s.id, &ok).await.unwrap();
    assert_eq!(
        (done.status, done.bytes),
        (Status::Active, Some(data.len() as u64))
    );
    // Chunks and sessions are gone; only the published blob stays.
    assert!(server.state.blobs.list("uploads").await.unwrap().is_empty());
    let blobs: Vec<String> = server
        .state
        .blobs
        .list("blobs")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(blobs, vec![format!("blobs/{}", e.id)]);
    server.stop().await;
}

async fn push_resumes_an_interrupted_upload(backend: Backend) {
    let server = start(backend, |_| {}).await;
    let (client, _, _) = developer(&server).await;
    let data = raw_image(3 << 20, 6);
    let file = server.fresh.dir.path().join("push.raw");
    std::fs::write(&file, &data).unwrap();
    let state_dir = server.fresh.dir.path().join("push-state");
    // Simulate a push that died after its first chunk: same state file, same session.
    let (_, digests) = kiln_market::client::hash_file(&file, None).unwrap();
    let mut new = new_entry("pushed");
    new.bytes = Some(data.len() as u64);
    new.checksums.sha256 = Some(digests.sha256.clone());
    let e = client.create_entry(&new).await.unwrap();
    let s = client.start_session(e.id).await.unwrap();
    client
        .send_chunk(s.id, 0, data[..1 << 20].to_vec().into())
        .await
        .unwrap();
    std::fs::create_dir_all(&state_dir).unwrap();
    let state =
        serde_json::json!({"server": client.server(), "entry_id": e.id, "session_id": s.id});
    std::fs::write(
        state_dir.join(format!("{}.json", digests.sha256)),
        state.to_string(),
    )
    .unwrap();

    let pushed = client
        .push(&file, new_entry("pushed"), &state_dir, 1 << 20, &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        pushed.id, e.id,
        "the interrupted entry was completed, not a new one"
    );
    assert_eq!(pushed.checksums.sha256, Some(digests.sha256));
    assert_eq!(
        std::fs::read_dir(&state_dir).unwrap().count(),
        0,
        "state removed after success"
    );
    server.stop().await;
}

/// A request to the API with a web login's cookie.
async fn with_login_cookie(server: &Server, cookie: &str) -> StatusCode {
    reqwest::Client::new()
        .get(format!("{}/api/v1/entries", server.url))
        .header("cookie", format!("{SESSION_COOKIE}={cookie}"))
        .send()
        .await
        .unwrap()
        .status()
}

async fn sweeper_collects_abandoned_uploads_and_expired_logins(backend: Backend) {
    let server = start(backend, |c| {
        c.session_ttl_secs = 1;
        c.login_ttl_secs = 1;
        c.sweep_interval_secs = Some(3600); // swept by hand below
    })
    .await;
    let (client, _, _) = developer(&server).await;
    let login = issue_token(&server.state, "dev", TokenKind::Session)
        .await
        .unwrap();
    assert_eq!(with_login_cookie(&server, &login).await, StatusCode::OK);
    let e = client.create_entry(&new_entry("abandoned")).await.unwrap();
    let s = client.start_session(e.id).await.unwrap();
    client
        .send_chunk(s.id, 0, raw_image(10_000, 8).into())
        .await
        .unwrap();
    let queued = client
        .create_entry(&new_entry("never uploaded"))
        .await
        .unwrap();
    // A blob with no entry, as a crash between commit and publish leaves it.
    server
        .state
        .blobs
        .put(&format!("blobs/{}", Uuid::new_v4()), vec![1u8; 10].into())
        .await
        .unwrap();
    std::fs::write(server.spool().join("left.part"), b"x").unwrap();
    assert_eq!(server.state.blobs.list("uploads").await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        with_login_cookie(&server, &login).await,
        StatusCode::UNAUTHORIZED,
        "a login older than login_ttl_secs is refused before it is swept"
    );
    let report = kiln_market::sweeper::sweep_once(&server.state)
        .await
        .unwrap();
    assert_eq!(report.logins, 1, "{report:?}");
    assert_eq!(
        (
            report.sessions,
            report.entries,
            report.blobs,
            report.spool_files
        ),
        (1, 2, 1, 1),
        "{report:?}"
    );
    assert!(server.state.blobs.list("uploads").await.unwrap().is_empty());
    assert!(server.state.blobs.list("blobs").await.unwrap().is_empty());
    for id in [e.id, queued.id] {
        assert_eq!(
            server.state.store.entry(id).await.unwrap().unwrap().status,
            Status::Deleted
        );
    }
    server.stop().await;
}

async fn external_locations_redirect_and_series(backend: Backend) {
    let server = start(backend, |_| {}).await;
    let (client, _, token) = developer(&server).await;
    let mut ext = new_entry("elsewhere");
    ext.external_url = Some("http://127.0.0.1:9/images/x.qcow2".into());
    let no_digest = client.create_entry(&ext).await.unwrap_err();
    assert_eq!(api_status(no_digest).0, 400);
    ext.bytes = Some(10);
    ext.checksums.sha256 = Some("a".repeat(64));
    let e = client.create_entry(&ext).await.unwrap();
    assert_eq!(e.status, Status::Active);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .get(format!("{}/api/v1/entries/{}/file", server.url, e.id))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "http://127.0.0.1:9/images/x.qcow2");
    // A newer version in the same series, replacing the old one.
    let mut v2 = ext.clone();
    v2.series = Some("s".into());
    v2.replaces = Some(e.id);
    let e2 = client.create_entry(&v2).await.unwrap();
    assert_eq!(client.entry(e.id).await.unwrap().replaced_by, Some(e2.id));
    let dep = client.deprecate(e.id, "superseded").await.unwrap();
    assert_eq!(
        (dep.status, dep.deprecated.as_deref()),
        (Status::Deprecated, Some("superseded"))
    );
    let page = client.search(&Default::default()).await.unwrap();
    assert_eq!(
        page.entries.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![e2.id]
    );
    server.stop().await;
}

async fn openapi_and_metrics(backend: Backend) {
    let server = start(backend, |_| {}).await;
    let doc: serde_json::Value = reqwest::get(format!("{}/api/v1/openapi.json", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/entries",
        "/api/v1/entries/{id}",
        "/api/v1/entries/{id}/file",
        "/api/v1/entries/{id}/uploads",
        "/api/v1/uploads/{sid}",
        "/api/v1/entries/{id}/import",
        "/api/v1/users",
        "/api/v1/login",
        "/api/v1/catalogues/{name}/members/{user}",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["Entry"].is_object());
    let health = reqwest::get(format!("{}/healthz", server.url))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "kiln_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE kiln_upload_bytes_total counter"));
    assert!(metrics.contains("kiln_entries{status=\"valid\"} 0"));
    server.stop().await;
}

on_both_backends!(
    download_with_range_head_and_etag,
    declared_digest_size_and_cap_are_enforced,
    unsafe_image_is_refused_with_the_inspectors_reason,
    import_by_url_from_a_loopback_server,
    resumable_session_protocol,
    push_resumes_an_interrupted_upload,
    sweeper_collects_abandoned_uploads_and_expired_logins,
    external_locations_redirect_and_series,
    openapi_and_metrics,
);
