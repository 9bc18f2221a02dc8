//! The store and blob suite, run against both backends: SQLite + a blob
//! directory, and PostgreSQL + S3 (SeaweedFS).

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{Duration, Utc};
use futures::TryStreamExt;
use kiln_catalog::model::{
    Catalogue, Checksums, Entry, Location, Role, Status, TokenKind, UploadSession, User,
};
use kiln_catalog::query::{Query, Scope, Sort, StatusFilter};
use kiln_catalog::testkit::{Backend, fresh};
use kiln_catalog::{Blobs, SqlStore, Store};
use uuid::Uuid;

fn entry(title: &str, publisher: &str) -> Entry {
    let now = Utc::now();
    Entry {
        id: Uuid::new_v4(),
        title: title.to_string(),
        description: format!("{title} description"),
        version: None,
        os: Some("debian".into()),
        os_version: Some("12".into()),
        arch: Some("x86_64".into()),
        hypervisor: Some("kvm".into()),
        format: Some("qcow2".into()),
        virtual_size: Some(1 << 30),
        bytes: Some(1000),
        checksums: Checksums::default(),
        locations: vec![],
        publisher: publisher.to_string(),
        created: now,
        updated: now,
        valid_until: None,
        status: Status::Active,
        deprecated: None,
        replaces: None,
        replaced_by: None,
        series: None,
        tags: vec![],
        catalogue: "public".to_string(),
        min_ram_mib: None,
        min_cpus: None,
        context_kind: None,
        properties: BTreeMap::new(),
        endorsements: vec![],
    }
}

fn everyone() -> Scope {
    Scope {
        all: true,
        ..Default::default()
    }
}

async fn titles(store: &SqlStore, q: Query, scope: &Scope) -> Vec<String> {
    store
        .search(&q, scope, Utc::now())
        .await
        .unwrap()
        .entries
        .into_iter()
        .map(|e| e.title)
        .collect()
}

async fn lifecycle_is_compare_and_set(backend: Backend) {
    let f = fresh(backend).await;
    let store = SqlStore::connect(&f.database_url).await.unwrap();
    let mut e = entry("queued one", "ann");
    e.status = Status::Queued;
    store.insert_entry(&e).await.unwrap();
    assert!(
        titles(
            &store,
            Query {
                status: StatusFilter::All,
                ..Default::default()
            },
            &everyone()
        )
        .await
        .is_empty(),
        "queued entries are never listed"
    );
    e.status = Status::Uploading;
    assert!(store.update_entry(&e, Status::Queued).await.unwrap());
    assert!(
        !store.update_entry(&e, Status::Queued).await.unwrap(),
        "a second writer loses the compare-and-set"
    );
    e.status = Status::Active;
    e.locations = vec![Location::Blob {
        key: format!("blobs/{}", e.id),
    }];
    assert!(store.update_entry(&e, Status::Uploading).await.unwrap());
    assert_eq!(store.entry(e.id).await.unwrap().unwrap(), e);
    assert_eq!(
        titles(&store, Query::default(), &everyone()).await,
        vec!["queued one"]
    );
    assert_eq!(
        store.live_blob_keys().await.unwrap(),
        vec![format!("blobs/{}", e.id)]
    );
}

async fn search_filters_status_and_series(backend: Backend) {
    let f = fresh(backend).await;
    let store = SqlStore::connect(&f.database_url).await.unwrap();
    let base = Utc::now() - Duration::hours(1);
    let mut a = entry("Alpha Linux", "ann");
    a.tags = vec!["minimal".into(), "cloud".into()];
    a.created = base;
    let mut b = entry("Beta 100% BSD", "bob");
    b.os = Some("freebsd".into());
    b.arch = Some("aarch64".into());
    b.format = Some("raw".into());
    b.created = base + Duration::minutes(1);
    let mut expired = entry("Old expired", "ann");
    expired.valid_until = Some(Utc::now() - Duration::minutes(5));
    expired.created = base + Duration::minutes(2);
    let mut dep = entry("Deprecated thing", "ann");
    dep.status = Status::Deprecated;
    dep.deprecated = Some("CVE".into());
    dep.created = base + Duration::minutes(3);
    let mut s1 = entry("Series v1", "ann");
    s1.series = Some("deb".into());
    s1.created = base + Duration::minutes(4);
    let mut s2 = entry("Series v2", "ann");
    s2.series = Some("deb".into());
    s2.created = base + Duration::minutes(5);
    for e in [&a, &b, &expired, &dep, &s1, &s2] {
        store.insert_entry(e).await.unwrap();
    }
    let all = everyone();
    let q = |f: fn(&mut Query)| {
        let mut q = Query::default();
        f(&mut q);
        q
    };
    assert_eq!(
        titles(&store, q(|_| {}), &all).await,
        vec!["Series v2", "Series v1", "Beta 100% BSD", "Alpha Linux"]
    );
    assert_eq!(
        titles(&store, q(|q| q.latest = true), &all).await,
        vec!["Series v2", "Beta 100% BSD", "Alpha Linux"]
    );
    assert_eq!(
        titles(&store, q(|q| q.status = StatusFilter::Expired), &all).await,
        vec!["Old expired"]
    );
    assert_eq!(
        titles(&store, q(|q| q.status = StatusFilter::Deprecated), &all).await,
        vec!["Deprecated thing"]
    );
    assert_eq!(
        store
            .search(&q(|q| q.status = StatusFilter::All), &all, Utc::now())
            .await
            .unwrap()
            .total,
        6
    );
    assert_eq!(
        titles(&store, q(|q| q.os = Some("freebsd".into())), &all).await,
        vec!["Beta 100% BSD"]
    );
    assert_eq!(
        titles(&store, q(|q| q.arch = Some("aarch64".into())), &all).await,
        vec!["Beta 100% BSD"]
    );
    assert_eq!(
        titles(&store, q(|q| q.format = Some("raw".into())), &all).await,
        vec!["Beta 100% BSD"]
    );
    assert_eq!(
        titles(&store, q(|q| q.tag = Some("cloud".into())), &all).await,
        vec!["Alpha Linux"]
    );
    assert_eq!(
        titles(&store, q(|q| q.publisher = Some("bob".into())), &all).await,
        vec!["Beta 100% BSD"]
    );
    assert_eq!(
        titles(&store, q(|q| q.q = Some("alpha".into())), &all).await,
        vec!["Alpha Linux"]
    );
    // LIKE wildcards in free text are literal.
    assert_eq!(
        titles(&store, q(|q| q.q = Some("100%".into())), &all).await,
        vec!["Beta 100% BSD"]
    );
    assert!(
        titles(&store, q(|q| q.q = Some("_%".into())), &all)
            .await
            .is_empty()
    );
    assert_eq!(
        titles(
            &store,
            q(|q| {
                q.sort = Sort::Title;
                q.limit = Some(2);
                q.offset = Some(1)
            }),
            &all
        )
        .await,
        vec!["Beta 100% BSD", "Series v1"]
    );
    assert_eq!(
        titles(&store, q(|q| q.sort = Sort::Oldest), &all).await[0],
        "Alpha Linux"
    );
}

async fn scope_hides_private_catalogues_and_deactivated(backend: Backend) {
    let f = fresh(backend).await;
    let store = SqlStore::connect(&f.database_url).await.unwrap();
    store
        .put_catalogue(&Catalogue {
            name: "lab".into(),
            public: false,
            description: String::new(),
            members: vec![],
        })
        .await
        .unwrap();
    store.add_member("lab", "carol").await.unwrap();
    store.add_member("lab", "carol").await.unwrap(); // idempotent
    let cats = store.catalogues().await.unwrap();
    assert_eq!(
        cats.iter().find(|c| c.name == "lab").unwrap().members,
        vec!["carol"]
    );
    assert!(cats.iter().find(|c| c.name == "public").unwrap().public);
    let mut private = entry("Private", "carol");
    private.catalogue = "lab".into();
    let mut hidden = entry("Hidden", "dave");
    hidden.status = Status::Deactivated;
    store.insert_entry(&private).await.unwrap();
    store.insert_entry(&hidden).await.unwrap();
    let anon = Scope {
        all: false,
        catalogues: vec!["public".into()],
        user: None,
    };
    let all = Query {
        status: StatusFilter::All,
        ..Default::default()
    };
    assert!(titles(&store, all.clone(), &anon).await.is_empty());
    let member = Scope {
        all: false,
        catalogues: vec!["public".into(), "lab".into()],
        user: Some("carol".into()),
    };
    assert_eq!(titles(&store, all.clone(), &member).await, vec!["Private"]);
    let owner = Scope {
        all: false,
        catalogues: vec!["public".into()],
        user: Some("dave".into()),
    };
    assert_eq!(titles(&store, all.clone(), &owner).await, vec!["Hidden"]);
    assert_eq!(titles(&store, all, &everyone()).await.len(), 2);
    assert!(store.remove_member("lab", "carol").await.unwrap());
    assert!(!store.remove_member("lab", "carol").await.unwrap());
}

async fn users_and_tokens(backend: Backend) {
    let f = fresh(backend).await;
    let store = SqlStore::connect(&f.database_url).await.unwrap();
    let u = User {
        name: "erin".into(),
        role: Role::Developer,
        created: Utc::now(),
        password_hash: Some("$argon2id$x".into()),
    };
    store.insert_user(&u).await.unwrap();
    let err = store.insert_user(&u).await.unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    store
        .insert_token("h1", "erin", TokenKind::Api)
        .await
        .unwrap();
    assert_eq!(
        store
            .user_by_token("h1", TokenKind::Api, None)
            .await
            .unwrap()
            .unwrap()
            .name,
        "erin"
    );
    assert!(
        store
            .user_by_token("h1", TokenKind::Session, None)
            .await
            .unwrap()
            .is_none(),
        "an API token is no session"
    );
    assert!(
        store
            .user_by_token("h2", TokenKind::Api, None)
            .await
            .unwrap()
            .is_none()
    );
    // A token issued before the cut-off is refused, then deleted; a later one stays.
    store
        .insert_token("s1", "erin", TokenKind::Session)
        .await
        .unwrap();
    let later = Utc::now() + chrono::Duration::seconds(1);
    let earlier = Utc::now() - chrono::Duration::seconds(60);
    assert!(
        store
            .user_by_token("s1", TokenKind::Session, Some(later))
            .await
            .unwrap()
            .is_none(),
        "issued before the cut-off"
    );
    assert!(
        store
            .user_by_token("s1", TokenKind::Session, Some(earlier))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store
            .delete_tokens_before(TokenKind::Session, earlier)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .delete_tokens_before(TokenKind::Session, later)
            .await
            .unwrap(),
        1,
        "only the session goes; the API token h1 stays"
    );
    assert!(
        store
            .user_by_token("h1", TokenKind::Api, None)
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.set_role("erin", Role::Admin).await.unwrap());
    assert_eq!(store.user("erin").await.unwrap().unwrap().role, Role::Admin);
    assert_eq!(store.users().await.unwrap().len(), 1);
}

async fn sessions_advance_once_per_offset(backend: Backend) {
    let f = fresh(backend).await;
    let store = SqlStore::connect(&f.database_url).await.unwrap();
    let mut e = entry("up", "ann");
    e.status = Status::Uploading;
    e.updated = Utc::now() - Duration::hours(2);
    store.insert_entry(&e).await.unwrap();
    let now = Utc::now() - Duration::hours(2);
    let s = UploadSession {
        id: Uuid::new_v4(),
        entry_id: e.id,
        offset: 0,
        chunks: vec![],
        created: now,
        updated: now,
    };
    store.insert_session(&s).await.unwrap();
    assert_eq!(
        store
            .stale_sessions(Utc::now() - Duration::hours(1))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .stale_entries(Utc::now() - Duration::hours(1))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .advance_session(s.id, 0, "uploads/a", 10)
            .await
            .unwrap()
    );
    assert!(
        !store
            .advance_session(s.id, 0, "uploads/b", 10)
            .await
            .unwrap(),
        "the same offset twice"
    );
    assert!(
        store
            .advance_session(s.id, 10, "uploads/c", 5)
            .await
            .unwrap()
    );
    let got = store.session(s.id).await.unwrap().unwrap();
    assert_eq!(
        (got.offset, got.chunks),
        (15, vec!["uploads/a".to_string(), "uploads/c".to_string()])
    );
    // Progress keeps the session and its entry alive.
    assert!(
        store
            .stale_sessions(Utc::now() - Duration::hours(1))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .stale_entries(Utc::now() - Duration::hours(1))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.sessions_of(e.id).await.unwrap().len(), 1);
    store.delete_session(s.id).await.unwrap();
    assert!(store.session(s.id).await.unwrap().is_none());
}

async fn blobs_round_trip(backend: Backend) {
    let f = fresh(backend).await;
    let blobs = Blobs::open(&f.blobs).unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let spool = f.dir.path().join("spooled");
    std::fs::write(&spool, &data).unwrap();
    blobs.commit_file(&spool, "blobs/x").await.unwrap();
    assert_eq!(
        blobs.size("blobs/x").await.unwrap(),
        Some(data.len() as u64)
    );
    let all: Vec<Bytes> = blobs
        .read("blobs/x", None)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.concat(), data);
    let part: Vec<Bytes> = blobs
        .read("blobs/x", Some(1000..2000))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(part.concat(), &data[1000..2000]);
    blobs
        .put("uploads/s/1", Bytes::from_static(b"chunk"))
        .await
        .unwrap();
    let keys: Vec<String> = blobs
        .list("uploads")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec!["uploads/s/1"]);
    blobs.delete("blobs/x").await.unwrap();
    blobs.delete("blobs/x").await.unwrap(); // deleting twice is fine
    assert_eq!(blobs.size("blobs/x").await.unwrap(), None);
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $( #[tokio::test(flavor = "multi_thread")] async fn $name() { super::$name(Backend::Sqlite).await } )*
        }
        mod postgres_s3 {
            use super::*;
            $( #[tokio::test(flavor = "multi_thread")] async fn $name() { super::$name(Backend::Postgres).await } )*
        }
    };
}

on_both_backends!(
    lifecycle_is_compare_and_set,
    search_filters_status_and_series,
    scope_hides_private_catalogues_and_deactivated,
    users_and_tokens,
    sessions_advance_once_per_offset,
    blobs_round_trip,
);
