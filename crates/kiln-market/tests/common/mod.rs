//! A marketplace server on a loopback port, on a fresh backend, per test.
#![allow(dead_code)] // Each test file uses its own part of the harness.

use std::path::PathBuf;

use kiln_catalog::model::Role;
use kiln_catalog::testkit::{Backend, Fresh, fresh};
use kiln_market::api::accounts::{NewUser, add_user};
use kiln_market::{AppState, Config};
use tokio::net::TcpListener;

pub struct Server {
    pub url: String,
    pub state: AppState,
    pub fresh: Fresh,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub async fn start(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Server {
    let fresh = fresh(backend).await;
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: fresh.database_url.clone(),
        blobs: fresh.blobs.clone(),
        spool_dir: fresh.dir.path().join("spool"),
        max_upload_bytes: kiln_market::config::DEFAULT_MAX_UPLOAD,
        session_ttl_secs: 3600,
        login_ttl_secs: kiln_market::config::DEFAULT_LOGIN_TTL_SECS,
        sweep_interval_secs: None,
        signing: None,
    };
    tweak(&mut config);
    let state = AppState::open(config).await.expect("open state");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(kiln_market::server::serve_on(
        state.clone(),
        listener,
        axum::Router::new(),
        async move {
            let _ = rx.await;
        },
    ));
    Server {
        url,
        state,
        fresh,
        stop: Some(tx),
        task: Some(task),
    }
}

impl Server {
    pub async fn user(&self, name: &str, role: Role) -> String {
        add_user(
            &self.state,
            NewUser {
                name: name.into(),
                role,
                password: Some(format!("{name}-password")),
            },
        )
        .await
        .expect("add user")
        .token
    }

    pub fn spool(&self) -> PathBuf {
        self.state.config.spool_dir.clone()
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

/// `n` bytes of a raw disk image the inspector accepts.
pub fn raw_image(n: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Generates one test per backend for each async fn(Backend).
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread")] async fn $name() { super::$name(kiln_catalog::testkit::Backend::Sqlite).await } )*
        }
        mod postgres_s3 {
            $( #[tokio::test(flavor = "multi_thread")] async fn $name() { super::$name(kiln_catalog::testkit::Backend::Postgres).await } )*
        }
    };
}
