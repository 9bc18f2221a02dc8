//! Endorsements through the API on both backends: the server verifies each
//! one against the entry's current canonical metadata and refuses a bad one;
//! endorsements are listed with the entry; only the endorser can deprecate
//! or revoke its endorsement.

mod common;

use kiln_catalog::model::{Endorsement, EndorsementStatus, EntryPatch, NewEntry, Role};
use kiln_catalog::testkit::Backend;
use kiln_market::Client;
use kiln_market::client::ClientError;
use kiln_market::ingest::Declared;
use kiln_trust::endorsement::{canonical_metadata, status_statement};
use kiln_trust::identity::{generate_key, write_key_pair};
use kiln_trust::testkit::{KeyType, TestPki};
use kiln_trust::{Signature, Signer};
use reqwest::StatusCode;

use common::{raw_image, sha256, start};

fn text(sig: &Signature) -> String {
    String::from_utf8(sig.to_bytes()).unwrap()
}

fn api_status(e: ClientError) -> (StatusCode, String) {
    match e {
        ClientError::Api { status, message } => (status, message),
        other => panic!("expected an API error, got {other}"),
    }
}

async fn endorse_list_refuse_deprecate_revoke(backend: Backend) {
    let server = start(backend, |_| {}).await;
    let dev = server.user("dev", Role::Developer).await;
    let reader = server.user("site", Role::Reader).await;
    let client = Client::new(&server.url, Some(dev)).unwrap();
    let site = Client::new(&server.url, Some(reader)).unwrap();
    let data = raw_image(1 << 20, 3);
    let file = server.fresh.dir.path().join("e.raw");
    std::fs::write(&file, &data).unwrap();
    let entry = client
        .create_entry(&NewEntry {
            title: "endorsed".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let declared = Declared {
        sha256: Some(sha256(&data)),
        ..Default::default()
    };
    let entry = client.put_file(entry.id, &file, &declared).await.unwrap();

    let keys = tempfile::tempdir().unwrap();
    let (alice_key, _) =
        write_key_pair(&keys.path().join("alice"), &generate_key().unwrap()).unwrap();
    let (mallory_key, _) =
        write_key_pair(&keys.path().join("mallory"), &generate_key().unwrap()).unwrap();
    let alice = Signer::load(&alice_key, None).unwrap();
    let mallory = Signer::load(&mallory_key, None).unwrap();
    let doc = canonical_metadata(&entry).unwrap();

    // A signature over other metadata (here: a different size) is refused.
    let mut lying = entry.clone();
    lying.bytes = Some(1);
    let bad = alice.sign(&canonical_metadata(&lying).unwrap()).unwrap();
    let (status, msg) = api_status(site.endorse(entry.id, &text(&bad)).await.unwrap_err());
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{msg}");
    assert!(msg.contains("bad signature"), "{msg}");
    let (status, _) = api_status(site.endorse(entry.id, "not a signature").await.unwrap_err());
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Anonymous callers cannot endorse.
    let anon = Client::new(&server.url, None).unwrap();
    let good = text(&alice.sign(&doc).unwrap());
    let (status, _) = api_status(anon.endorse(entry.id, &good).await.unwrap_err());
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A good Ed25519 endorsement, and a CMS one.
    let e1 = site.endorse(entry.id, &good).await.unwrap();
    assert_eq!(e1.endorser, alice.identity().to_string());
    assert_eq!(e1.status, EndorsementStatus::Active);
    assert_eq!(e1.submitted_by, "site");
    let (status, _) = api_status(site.endorse(entry.id, &good).await.unwrap_err());
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "one active endorsement per endorser"
    );
    let pki = TestPki::new("Kiln Test CA");
    let (cert, key) = pki.signer("carol", KeyType::Ecdsa);
    let carol = Signer::load(&key, Some(&cert)).unwrap();
    let e2 = client
        .endorse(entry.id, &text(&carol.sign(&doc).unwrap()))
        .await
        .unwrap();
    assert!(e2.endorser.contains("/CN=carol"), "{}", e2.endorser);

    // Listed with the entry, oldest first, and on their own.
    let shown = anon.entry(entry.id).await.unwrap();
    let listed: Vec<Endorsement> = shown
        .endorsements
        .iter()
        .map(|v| serde_json::from_value(v.clone()).unwrap())
        .collect();
    assert_eq!(listed, vec![e1.clone(), e2.clone()]);
    let http = reqwest::Client::new();
    let own: Vec<Endorsement> = http
        .get(format!(
            "{}/api/v1/entries/{}/endorsements",
            server.url, entry.id
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(own, listed);

    // Only the endorser can change its endorsement: mallory's statement is refused.
    let stmt = status_statement(e1.id, entry.id, EndorsementStatus::Revoked, "stolen");
    let forged = text(&mallory.sign(&stmt).unwrap());
    let (status, msg) = api_status(
        site.change_endorsement(
            entry.id,
            e1.id,
            EndorsementStatus::Revoked,
            "stolen",
            &forged,
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{msg}");
    // A statement signed for another status does not verify for this one.
    let wrong = text(&alice.sign(&stmt).unwrap());
    let (status, _) = api_status(
        site.change_endorsement(
            entry.id,
            e1.id,
            EndorsementStatus::Deprecated,
            "stolen",
            &wrong,
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Alice deprecates, then revokes; revoked is final.
    let dep = status_statement(e1.id, entry.id, EndorsementStatus::Deprecated, "superseded");
    let d = site
        .change_endorsement(
            entry.id,
            e1.id,
            EndorsementStatus::Deprecated,
            "superseded",
            &text(&alice.sign(&dep).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(d.status, EndorsementStatus::Deprecated);
    assert_eq!(d.reason.as_deref(), Some("superseded"));
    let r = site
        .change_endorsement(
            entry.id,
            e1.id,
            EndorsementStatus::Revoked,
            "stolen",
            &wrong,
        )
        .await
        .unwrap();
    assert_eq!(r.status, EndorsementStatus::Revoked);
    let (status, _) = api_status(
        site.change_endorsement(
            entry.id,
            e1.id,
            EndorsementStatus::Revoked,
            "stolen",
            &wrong,
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(status, StatusCode::CONFLICT);
    // CMS status statements work the same way.
    let cstmt = status_statement(e2.id, entry.id, EndorsementStatus::Revoked, "");
    let c = client
        .change_endorsement(
            entry.id,
            e2.id,
            EndorsementStatus::Revoked,
            "",
            &text(&carol.sign(&cstmt).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(c.status, EndorsementStatus::Revoked);

    // After the owner changes a bound field, an old signature no longer verifies.
    let patched = {
        let body = EntryPatch {
            title: Some("renamed".into()),
            ..Default::default()
        };
        http.patch(format!("{}/api/v1/entries/{}", server.url, entry.id))
            .bearer_auth(client_token(&server).await)
            .json(&body)
            .send()
            .await
            .unwrap()
    };
    assert!(patched.status().is_success());
    let (status, _) = api_status(site.endorse(entry.id, &good).await.unwrap_err());
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    server.stop().await;
}

/// A second developer token for dev (tokens are per issue).
async fn client_token(server: &common::Server) -> String {
    let c = Client::new(&server.url, None).unwrap();
    c.login("dev", "dev-password").await.unwrap().token
}

on_both_backends!(endorse_list_refuse_deprecate_revoke);
