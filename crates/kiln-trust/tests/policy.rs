//! Site policy over endorsed entries: one test per refusal, plus acceptance,
//! for Ed25519 and X.509 endorsers. Endorsements are made here the way the
//! server stores them.

use std::path::Path;

use chrono::{Duration, Utc};
use kiln_catalog::model::{Checksums, Endorsement, EndorsementStatus, Entry, Location, Status};
use kiln_trust::endorsement::{canonical_metadata, check_new};
use kiln_trust::identity::{generate_key, write_key_pair};
use kiln_trust::policy::{EndorserSpec, Policy, Report};
use kiln_trust::testkit::{KeyType, TestPki};
use kiln_trust::{Error, Signer};
use uuid::Uuid;

fn entry() -> Entry {
    let now = Utc::now();
    Entry {
        id: Uuid::new_v4(),
        title: "Debian 12".into(),
        description: String::new(),
        version: Some("1".into()),
        os: Some("debian".into()),
        os_version: Some("12".into()),
        arch: Some("x86_64".into()),
        hypervisor: None,
        format: Some("qcow2".into()),
        virtual_size: Some(1 << 30),
        bytes: Some(123_456),
        checksums: Checksums {
            sha256: Some("a".repeat(64)),
            sha512: Some("b".repeat(128)),
            ..Default::default()
        },
        locations: vec![Location::Blob { key: "k".into() }],
        publisher: "dev".into(),
        created: now,
        updated: now,
        valid_until: Some(now + Duration::days(30)),
        status: Status::Active,
        deprecated: None,
        replaces: None,
        replaced_by: None,
        series: None,
        tags: vec![],
        catalogue: "public".into(),
        min_ram_mib: None,
        min_cpus: None,
        context_kind: None,
        properties: Default::default(),
        endorsements: vec![],
    }
}

fn endorse(signer: &Signer, e: &Entry) -> Endorsement {
    let sig = String::from_utf8(
        signer
            .sign(&canonical_metadata(e).unwrap())
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    let who = check_new(e, &sig).unwrap();
    Endorsement {
        id: Uuid::new_v4(),
        entry_id: e.id,
        endorser: who.to_string(),
        signature: sig,
        submitted_by: "site".into(),
        created: Utc::now(),
        updated: Utc::now(),
        status: EndorsementStatus::Active,
        reason: None,
        status_signature: None,
    }
}

fn key(dir: &Path, name: &str) -> (Signer, std::path::PathBuf) {
    let (secret, public) = write_key_pair(&dir.join(name), &generate_key().unwrap()).unwrap();
    (Signer::load(&secret, None).unwrap(), public)
}

fn fp(s: &Signer) -> String {
    s.identity().to_string()
}

fn failed(r: &Report) -> Vec<&'static str> {
    r.rules
        .iter()
        .filter(|x| !x.passed)
        .map(|x| x.rule)
        .collect()
}

struct World {
    _dir: tempfile::TempDir,
    alice: Signer,
    bob: Signer,
    policy: Policy,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let (alice, alice_pub) = key(dir.path(), "alice");
    let (bob, _) = key(dir.path(), "bob");
    let policy = Policy::from_trust(&[alice_pub]).unwrap();
    World {
        _dir: dir,
        alice,
        bob,
        policy,
    }
}

#[test]
fn a_trusted_endorsement_is_accepted_and_explained() {
    let w = world();
    let e = entry();
    let r = w
        .policy
        .check(&e, &[endorse(&w.alice, &e)], Utc::now())
        .unwrap();
    assert!(r.accepted, "{}", r.reasons());
    assert_eq!(r.rules.len(), 9);
    assert!(r.endorsements[0].counts);
    // No endorsement at all: refused by min-endorsements.
    let r = w.policy.check(&e, &[], Utc::now()).unwrap();
    assert_eq!(failed(&r), vec!["min-endorsements"]);
}

#[test]
fn tampered_metadata_is_refused() {
    let w = world();
    let e = entry();
    let end = endorse(&w.alice, &e);
    // The server now says the image has other bytes (a swapped sha256), or a later expiry.
    let mut swapped = e.clone();
    swapped.checksums.sha256 = Some("c".repeat(64));
    let mut extended = e.clone();
    extended.valid_until = Some(Utc::now() + Duration::days(3650));
    for changed in [swapped, extended] {
        let r = w
            .policy
            .check(&changed, std::slice::from_ref(&end), Utc::now())
            .unwrap();
        assert!(!r.accepted);
        assert_eq!(failed(&r), vec!["min-endorsements"]);
        assert!(
            r.endorsements[0].detail.contains("does not match"),
            "{}",
            r.endorsements[0].detail
        );
    }
    // The server refuses such an endorsement on arrival too.
    let mut other = e.clone();
    other.bytes = Some(1);
    assert!(matches!(
        check_new(&other, &end.signature),
        Err(Error::BadSignature(_))
    ));
}

#[test]
fn unknown_signer_is_refused() {
    let w = world();
    let e = entry();
    let r = w
        .policy
        .check(&e, &[endorse(&w.bob, &e)], Utc::now())
        .unwrap();
    assert_eq!(failed(&r), vec!["min-endorsements"]);
    assert!(
        r.endorsements[0].detail.contains("unknown signer"),
        "{}",
        r.endorsements[0].detail
    );
}

#[test]
fn denied_signer_refuses_the_image_even_with_a_trusted_endorsement() {
    let mut w = world();
    w.policy.denied.push(EndorserSpec {
        key: Some(fp(&w.bob)),
        ..Default::default()
    });
    let e = entry();
    let r = w
        .policy
        .check(
            &e,
            &[endorse(&w.alice, &e), endorse(&w.bob, &e)],
            Utc::now(),
        )
        .unwrap();
    assert_eq!(failed(&r), vec!["denied-endorsers"]);
    assert!(r.reasons().contains(&fp(&w.bob)));
}

#[test]
fn expired_entry_is_refused() {
    let w = world();
    let mut e = entry();
    e.valid_until = Some(Utc::now() - Duration::hours(1));
    let r = w
        .policy
        .check(&e, &[endorse(&w.alice, &e)], Utc::now())
        .unwrap();
    assert_eq!(failed(&r), vec!["refuse-expired"]);
    let mut lax = w.policy.clone();
    lax.refuse_expired = false;
    assert!(
        lax.check(&e, &[endorse(&w.alice, &e)], Utc::now())
            .unwrap()
            .accepted
    );
}

#[test]
fn deprecated_entry_and_deprecated_endorsement_are_refused() {
    let w = world();
    let mut e = entry();
    let end = endorse(&w.alice, &e);
    e.status = Status::Deprecated;
    e.deprecated = Some("use 12.1".into());
    let r = w
        .policy
        .check(&e, std::slice::from_ref(&end), Utc::now())
        .unwrap();
    assert_eq!(failed(&r), vec!["refuse-deprecated"]);
    assert!(r.reasons().contains("use 12.1"));
    let e = entry();
    let mut end = endorse(&w.alice, &e);
    end.status = EndorsementStatus::Deprecated;
    let r = w.policy.check(&e, &[end.clone()], Utc::now()).unwrap();
    assert_eq!(failed(&r), vec!["min-endorsements"]);
    end.status = EndorsementStatus::Revoked;
    let r = w.policy.check(&e, &[end], Utc::now()).unwrap();
    assert!(
        r.reasons().contains("revoked by its endorser"),
        "{}",
        r.reasons()
    );
}

#[test]
fn revoked_key_is_refused() {
    let mut w = world();
    w.policy.revoked_keys.push(fp(&w.alice));
    let e = entry();
    let r = w
        .policy
        .check(&e, &[endorse(&w.alice, &e)], Utc::now())
        .unwrap();
    assert_eq!(failed(&r), vec!["min-endorsements"]);
    assert!(r.reasons().contains("revoked key"), "{}", r.reasons());
}

#[test]
fn checksum_on_the_deny_list_is_refused() {
    let mut w = world();
    let e = entry();
    w.policy
        .denied_checksums
        .push(format!("sha512:{}", "B".repeat(128)));
    let r = w
        .policy
        .check(&e, &[endorse(&w.alice, &e)], Utc::now())
        .unwrap();
    assert_eq!(failed(&r), vec!["denied-checksums"]);
}

#[test]
fn image_lists_and_formats() {
    let mut w = world();
    let e = entry();
    let ends = [endorse(&w.alice, &e)];
    w.policy.denied_images.push(e.id);
    w.policy.allowed_images.push(Uuid::new_v4());
    w.policy.allowed_formats = vec!["raw".into()];
    let r = w.policy.check(&e, &ends, Utc::now()).unwrap();
    assert_eq!(
        failed(&r),
        vec!["allowed-images", "denied-images", "allowed-formats"]
    );
}

#[test]
fn policy_file_with_certificate_endorsers_and_a_ca_dir_with_crls() {
    let pki = TestPki::new("Kiln Test CA");
    let (ccert, ckey) = pki.signer("carol", KeyType::Rsa);
    let (dcert, dkey) = pki.signer("dave", KeyType::Ecdsa);
    pki.revoke("dave");
    let ca_dir = pki.ca_dir(true);
    let carol = Signer::load(&ckey, Some(&ccert)).unwrap();
    let dave = Signer::load(&dkey, Some(&dcert)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (bob, _) = key(dir.path(), "bob");
    key(dir.path(), "erin");
    let policy_path = dir.path().join("site.toml");
    std::fs::write(
        &policy_path,
        format!(
            r#"
ca_dir = {ca_dir:?}
min_endorsements = 1
allowed_formats = ["qcow2"]
[[trusted]]
issuer = "/C=CH/O=Kiln Test/CN=Kiln Test CA"
[[trusted]]
key_file = "erin.pub"
[[denied]]
key = "{bob}"
"#,
            bob = fp(&bob)
        ),
    )
    .unwrap();
    let policy = Policy::load(&policy_path).unwrap();
    assert_eq!(policy.trusted[1].key.as_deref().map(|k| k.len()), Some(72));
    let e = entry();
    let r = policy
        .check(&e, &[endorse(&carol, &e)], Utc::now())
        .unwrap();
    assert!(r.accepted, "{}", r.reasons());
    // dave's certificate is on the CA's CRL.
    let r = policy.check(&e, &[endorse(&dave, &e)], Utc::now()).unwrap();
    assert!(!r.accepted);
    assert!(r.reasons().contains("revoked"), "{}", r.reasons());
    // Unknown fields are refused, so a typo cannot silently weaken a policy.
    std::fs::write(&policy_path, "refuse_expird = false\n").unwrap();
    assert!(Policy::load(&policy_path).is_err());
}
