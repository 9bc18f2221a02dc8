//! Fresh, isolated state for tests, on either backend: SQLite + a blob
//! directory, or the PostgreSQL + S3 (SeaweedFS) services that
//! `scripts/market-services` starts (their addresses come from the
//! `KILN_TEST_*` variables it writes; without them the tests fail, they do
//! not skip).

use sqlx::Connection;
use uuid::Uuid;

use crate::BlobConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database URL, a blob configuration and a scratch directory (spool,
/// SQLite file, blob directory), all new.
pub struct Fresh {
    pub database_url: String,
    pub blobs: BlobConfig,
    pub dir: tempfile::TempDir,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the suite with scripts/test, or `scripts/market-services start DIR` and source DIR/env")
    })
}

pub async fn fresh(backend: Backend) -> Fresh {
    let dir = tempfile::tempdir().expect("temporary directory");
    match backend {
        Backend::Sqlite => Fresh {
            database_url: format!("sqlite://{}?mode=rwc", dir.path().join("kiln.db").display()),
            blobs: BlobConfig::Dir {
                path: dir.path().join("blobs"),
            },
            dir,
        },
        Backend::Postgres => {
            sqlx::any::install_default_drivers();
            let admin = env("KILN_TEST_PG_URL");
            let name = format!("t_{}", Uuid::new_v4().simple());
            let mut conn = sqlx::AnyConnection::connect(&admin)
                .await
                .expect("connecting to the test PostgreSQL");
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("CREATE DATABASE");
            conn.close().await.ok();
            let base = admin
                .rsplit_once('/')
                .map(|(b, _)| b)
                .expect("URL with a database");
            Fresh {
                database_url: format!("{base}/{name}"),
                blobs: BlobConfig::S3 {
                    bucket: env("KILN_TEST_S3_BUCKET"),
                    endpoint: Some(env("KILN_TEST_S3_ENDPOINT")),
                    region: "us-east-1".to_string(),
                    access_key_id: env("KILN_TEST_S3_KEY"),
                    secret_access_key: env("KILN_TEST_S3_SECRET"),
                    prefix: Some(format!("t-{}", Uuid::new_v4().simple())),
                },
                dir,
            }
        }
    }
}
