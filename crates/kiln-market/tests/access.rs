//! Every endpoint × role: anonymous, reader, developer owner, developer
//! non-owner, admin; public vs private catalogue. Runs on both backends.

mod common;

use kiln_catalog::model::Role;
use kiln_catalog::testkit::Backend;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::{Server, raw_image, start};

const CALLERS: [&str; 5] = ["anonymous", "reader", "owner", "other", "admin"];

struct World {
    server: Server,
    http: reqwest::Client,
    /// Token per caller, in CALLERS order (None for anonymous).
    tokens: Vec<Option<String>>,
    public_entry: String,
    private_entry: String,
}

/// What a case needs made fresh for each caller, owned by `owner`.
#[derive(Clone, Copy)]
enum Fresh {
    Nothing,
    ActiveEntry,
    QueuedEntry,
    DeactivatedEntry,
    Session,
    Membership,
    UserName,
}

impl World {
    async fn new(backend: Backend) -> World {
        let server = start(backend, |_| {}).await;
        let admin = server.user("admin", Role::Admin).await;
        let tokens = vec![
            None,
            Some(server.user("reader", Role::Reader).await),
            Some(server.user("owner", Role::Developer).await),
            Some(server.user("other", Role::Developer).await),
            Some(admin),
        ];
        let mut w = World {
            server,
            http: reqwest::Client::new(),
            tokens,
            public_entry: String::new(),
            private_entry: String::new(),
        };
        let admin = w.tokens[4].clone();
        w.call(
            &admin,
            Method::PUT,
            "/api/v1/catalogues/lab",
            Some(json!({"public": false})),
            200,
        )
        .await;
        for member in ["reader", "owner"] {
            w.call(
                &admin,
                Method::PUT,
                &format!("/api/v1/catalogues/lab/members/{member}"),
                None,
                204,
            )
            .await;
        }
        w.public_entry = w.active_entry("public").await;
        w.private_entry = w.active_entry("lab").await;
        w
    }

    async fn send(
        &self,
        token: &Option<String>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.server.url));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn call(
        &self,
        token: &Option<String>,
        method: Method,
        path: &str,
        body: Option<Value>,
        want: u16,
    ) -> Value {
        let (status, v) = self.send(token, method.clone(), path, body).await;
        assert_eq!(status.as_u16(), want, "{method} {path}: {v}");
        v
    }

    fn owner(&self) -> Option<String> {
        self.tokens[2].clone()
    }

    async fn queued_entry(&self, catalogue: &str) -> String {
        let v = self
            .call(
                &self.owner(),
                Method::POST,
                "/api/v1/entries",
                Some(json!({"title": "t", "catalogue": catalogue})),
                201,
            )
            .await;
        v["id"].as_str().unwrap().to_string()
    }

    async fn active_entry(&self, catalogue: &str) -> String {
        let id = self.queued_entry(catalogue).await;
        let r = self
            .http
            .put(format!("{}/api/v1/entries/{id}/file", self.server.url))
            .bearer_auth(self.owner().unwrap())
            .body(raw_image(4096, 7))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        id
    }

    async fn session(&self) -> String {
        let id = self.queued_entry("public").await;
        let v = self
            .call(
                &self.owner(),
                Method::POST,
                &format!("/api/v1/entries/{id}/uploads"),
                None,
                201,
            )
            .await;
        let sid = v["id"].as_str().unwrap().to_string();
        let r = self
            .http
            .patch(format!("{}/api/v1/uploads/{sid}", self.server.url))
            .bearer_auth(self.owner().unwrap())
            .body(raw_image(1024, 3))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        sid
    }

    async fn fresh(&self, what: Fresh, caller: usize) -> String {
        match what {
            Fresh::Nothing => String::new(),
            Fresh::ActiveEntry => self.active_entry("public").await,
            Fresh::QueuedEntry => self.queued_entry("public").await,
            Fresh::Session => self.session().await,
            Fresh::DeactivatedEntry => {
                let id = self.active_entry("public").await;
                let path = format!("/api/v1/entries/{id}/deactivate");
                self.call(&self.tokens[4], Method::POST, &path, None, 200)
                    .await;
                id
            }
            Fresh::UserName => format!("new{caller}"),
            Fresh::Membership => {
                let name = format!("member{caller}");
                self.server.user(&name, Role::Reader).await;
                let admin = self.tokens[4].clone();
                self.call(
                    &admin,
                    Method::PUT,
                    &format!("/api/v1/catalogues/lab/members/{name}"),
                    None,
                    204,
                )
                .await;
                name
            }
        }
    }

    /// Runs one case for every caller: `{id}` in the path is replaced by a
    /// fresh object, `{pub}`/`{priv}` by the shared entries.
    async fn case(
        &self,
        method: Method,
        path: &str,
        fresh: Fresh,
        body: Option<String>,
        want: [u16; 5],
    ) {
        for (i, caller) in CALLERS.iter().enumerate() {
            let id = self.fresh(fresh, i).await;
            let fill = |t: &str| {
                t.replace("{id}", &id)
                    .replace("{pub}", &self.public_entry)
                    .replace("{priv}", &self.private_entry)
                    .replace("{server}", &self.server.url)
                    .replace("{other}", "other")
                    .replace("{lab}", "lab")
                    .replace("{extra}", "extra")
            };
            let path = fill(path);
            let body = body
                .as_deref()
                .map(|b| serde_json::from_str(&fill(b)).unwrap());
            let (status, v) = self
                .send(&self.tokens[i], method.clone(), &path, body)
                .await;
            assert_eq!(status.as_u16(), want[i], "{method} {path} as {caller}: {v}");
        }
    }
}

/// One row: method, path, what to make fresh per caller, JSON body, and the
/// expected status for anonymous, reader, owner, other developer, admin.
type Case = (
    &'static str,
    &'static str,
    Fresh,
    Option<&'static str>,
    [u16; 5],
);

#[rustfmt::skip]
const CASES: &[Case] = &[
    // Reading.
    ("GET", "/api/v1/entries", Fresh::Nothing, None, [200, 200, 200, 200, 200]),
    ("GET", "/api/v1/entries/{pub}", Fresh::Nothing, None, [200, 200, 200, 200, 200]),
    ("GET", "/api/v1/entries/{priv}", Fresh::Nothing, None, [404, 200, 200, 404, 200]),
    ("GET", "/api/v1/entries/{pub}/file", Fresh::Nothing, None, [200, 200, 200, 200, 200]),
    ("GET", "/api/v1/entries/{priv}/file", Fresh::Nothing, None, [404, 200, 200, 404, 200]),
    ("HEAD", "/api/v1/entries/{pub}/file", Fresh::Nothing, None, [200, 200, 200, 200, 200]),
    ("HEAD", "/api/v1/entries/{priv}/file", Fresh::Nothing, None, [404, 200, 200, 404, 200]),
    ("GET", "/api/v1/entries/{id}", Fresh::QueuedEntry, None, [404, 404, 200, 404, 200]),
    // Publishing: developers, in catalogues they can read.
    ("POST", "/api/v1/entries", Fresh::Nothing, Some(r#"{"title": "new"}"#), [401, 403, 201, 201, 201]),
    ("POST", "/api/v1/entries", Fresh::Nothing, Some(r#"{"title": "new", "catalogue": "lab"}"#), [401, 403, 201, 403, 201]),
    // An empty body is no image: 422 for those allowed to upload.
    ("PUT", "/api/v1/entries/{id}/file", Fresh::QueuedEntry, None, [401, 404, 422, 404, 422]),
    ("POST", "/api/v1/entries/{id}/import", Fresh::QueuedEntry, Some(r#"{"url": "{server}/api/v1/entries/{pub}/file"}"#), [401, 404, 201, 404, 201]),
    ("POST", "/api/v1/entries/{id}/uploads", Fresh::QueuedEntry, None, [401, 404, 201, 404, 201]),
    ("GET", "/api/v1/uploads/{id}", Fresh::Session, None, [401, 404, 200, 404, 200]),
    ("PATCH", "/api/v1/uploads/{id}", Fresh::Session, None, [401, 404, 202, 404, 202]),
    ("PUT", "/api/v1/uploads/{id}", Fresh::Session, None, [401, 404, 201, 404, 201]),
    ("DELETE", "/api/v1/uploads/{id}", Fresh::Session, None, [401, 404, 204, 404, 204]),
    // Changing: the owner or an admin; status changes: admins.
    ("PATCH", "/api/v1/entries/{id}", Fresh::ActiveEntry, Some(r#"{"title": "renamed"}"#), [401, 403, 200, 403, 200]),
    ("POST", "/api/v1/entries/{id}/deprecate", Fresh::ActiveEntry, Some(r#"{"reason": "old"}"#), [401, 403, 200, 403, 200]),
    ("DELETE", "/api/v1/entries/{id}", Fresh::ActiveEntry, None, [401, 403, 204, 403, 204]),
    ("POST", "/api/v1/entries/{id}/deactivate", Fresh::ActiveEntry, None, [401, 403, 403, 403, 200]),
    ("POST", "/api/v1/entries/{id}/reactivate", Fresh::DeactivatedEntry, None, [401, 403, 403, 403, 200]),
    // Endorsements: anyone who reads the entry lists them; signed-in readers submit
    // (a bad signature is 422); a status change names an endorsement (none here: 404).
    ("GET", "/api/v1/entries/{pub}/endorsements", Fresh::Nothing, None, [200, 200, 200, 200, 200]),
    ("GET", "/api/v1/entries/{priv}/endorsements", Fresh::Nothing, None, [404, 200, 200, 404, 200]),
    ("POST", "/api/v1/entries/{id}/endorsements", Fresh::ActiveEntry, Some(r#"{"signature": "x"}"#), [401, 422, 422, 422, 422]),
    ("POST", "/api/v1/entries/{id}/endorsements/{id}/status", Fresh::ActiveEntry, Some(r#"{"status": "revoked", "signature": "x"}"#), [401, 404, 404, 404, 404]),
    // Accounts.
    ("GET", "/api/v1/me", Fresh::Nothing, None, [401, 200, 200, 200, 200]),
    ("POST", "/api/v1/tokens", Fresh::Nothing, None, [401, 201, 201, 201, 201]),
    ("GET", "/api/v1/users", Fresh::Nothing, None, [401, 403, 403, 403, 200]),
    ("POST", "/api/v1/users", Fresh::UserName, Some(r#"{"name": "{id}", "role": "reader"}"#), [401, 403, 403, 403, 201]),
    ("PUT", "/api/v1/users/{other}/role", Fresh::Nothing, Some(r#"{"role": "developer"}"#), [401, 403, 403, 403, 204]),
    ("POST", "/api/v1/login", Fresh::Nothing, Some(r#"{"name": "reader", "password": "reader-password"}"#), [201; 5]),
    ("POST", "/api/v1/login", Fresh::Nothing, Some(r#"{"name": "reader", "password": "wrong"}"#), [401; 5]),
    // Catalogues.
    ("GET", "/api/v1/catalogues", Fresh::Nothing, None, [200, 200, 200, 200, 200]),
    ("PUT", "/api/v1/catalogues/{extra}", Fresh::Nothing, Some(r#"{"public": true}"#), [401, 403, 403, 403, 200]),
    ("PUT", "/api/v1/catalogues/{lab}/members/{other}", Fresh::Nothing, None, [401, 403, 403, 403, 204]),
    ("DELETE", "/api/v1/catalogues/{lab}/members/{id}", Fresh::Membership, None, [401, 403, 403, 403, 204]),
    // Signed catalogs and exports: this world has no signing key, so the
    // signed forms are 404 for everyone (tests/catalogs.rs serves them signed);
    // simplestreams lists what the caller may read.
    ("GET", "/api/v1/catalogues/{lab}/signed", Fresh::Nothing, None, [404; 5]),
    ("GET", "/api/v1/catalogues/{lab}/signed.sig", Fresh::Nothing, None, [404; 5]),
    ("GET", "/api/v1/catalogues/{lab}/hepix", Fresh::Nothing, None, [404; 5]),
    ("GET", "/streams/v1/index.json", Fresh::Nothing, None, [200; 5]),
    ("GET", "/streams/v1/{lab}", Fresh::Nothing, None, [404; 5]),
    // Service endpoints are open.
    ("GET", "/healthz", Fresh::Nothing, None, [200; 5]),
    ("GET", "/metrics", Fresh::Nothing, None, [200; 5]),
    ("GET", "/api/v1/openapi.json", Fresh::Nothing, None, [200; 5]),
];

/// A path with every `{parameter}` made alike, to compare rows with routes.
fn template(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => in_param = true,
            '}' => {
                in_param = false;
                out.push_str("{}");
            }
            _ if !in_param => out.push(c),
            _ => {}
        }
    }
    out
}

async fn every_endpoint_by_every_role(backend: Backend) {
    let w = World::new(backend).await;
    for (method, path, fresh, body, want) in CASES {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        w.case(method, path, *fresh, body.map(str::to_string), *want)
            .await;
    }
    // Every route of the OpenAPI document has a row.
    let doc = w
        .call(&None, Method::GET, "/api/v1/openapi.json", None, 200)
        .await;
    let rows: Vec<(String, String)> = CASES
        .iter()
        .map(|(m, p, ..)| (m.to_lowercase(), template(p)))
        .collect();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let row = (method.clone(), template(path));
            assert!(rows.contains(&row), "{method} {path} has no row in CASES");
        }
    }
    // A wrong token is refused, not treated as anonymous.
    let (status, _) = w
        .send(
            &Some("kiln_wrong".into()),
            Method::GET,
            "/api/v1/entries",
            None,
        )
        .await;
    assert_eq!(status, 401);
    w.server.stop().await;
}

async fn listings_follow_catalogue_visibility(backend: Backend) {
    let w = World::new(backend).await;
    let count = |v: &Value| v["total"].as_u64().unwrap();
    let mut seen = Vec::new();
    for i in 0..5 {
        let v = w
            .call(&w.tokens[i], Method::GET, "/api/v1/entries", None, 200)
            .await;
        seen.push(count(&v));
    }
    // Anonymous and the non-member see the public entry; members and the admin both.
    assert_eq!(seen, vec![1, 2, 2, 1, 2]);
    let cats = w
        .call(&None, Method::GET, "/api/v1/catalogues", None, 200)
        .await;
    let names: Vec<&str> = cats
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["public"]);
    let cats = w
        .call(&w.tokens[4], Method::GET, "/api/v1/catalogues", None, 200)
        .await;
    let lab = cats
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "lab")
        .unwrap();
    assert_eq!(lab["members"], json!(["owner", "reader"]));
    // A deactivated entry disappears for everyone but its owner and admins.
    w.call(
        &w.tokens[4],
        Method::POST,
        &format!("/api/v1/entries/{}/deactivate", w.public_entry),
        None,
        200,
    )
    .await;
    let mut seen = Vec::new();
    for i in 0..5 {
        let (status, _) = w
            .send(
                &w.tokens[i],
                Method::GET,
                &format!("/api/v1/entries/{}/file", w.public_entry),
                None,
            )
            .await;
        seen.push(status.as_u16());
    }
    assert_eq!(seen, vec![404, 404, 200, 404, 200]);
    w.server.stop().await;
}

on_both_backends!(
    every_endpoint_by_every_role,
    listings_follow_catalogue_visibility
);
