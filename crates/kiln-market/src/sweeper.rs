//! The sweeper collects what failed or abandoned uploads leave behind:
//! sessions and entries with no progress for the session TTL, their chunks,
//! blobs no entry names, and old spool files. It runs at start and then
//! periodically; several servers may run it at once (every step is a
//! compare-and-set or an idempotent delete).

use std::collections::HashSet;

use chrono::Utc;
use kiln_catalog::model::{Status, TokenKind, UploadSession};
use serde::Serialize;
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::state::AppState;

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct SweepReport {
    pub sessions: usize,
    pub entries: usize,
    pub blobs: usize,
    pub spool_files: usize,
    pub logins: u64,
}

/// Deletes a session's chunks, then the session.
pub async fn drop_session(state: &AppState, session: &UploadSession) -> kiln_catalog::Result<()> {
    for key in &session.chunks {
        state.blobs.delete(key).await?;
    }
    state.store.delete_session(session.id).await
}

pub async fn drop_sessions(state: &AppState, entry: Uuid) -> kiln_catalog::Result<()> {
    for s in state.store.sessions_of(entry).await? {
        drop_session(state, &s).await?;
    }
    Ok(())
}

pub async fn sweep_once(state: &AppState) -> kiln_catalog::Result<SweepReport> {
    let ttl = state.config.session_ttl();
    let cutoff = Utc::now() - chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(1));
    let mut report = SweepReport::default();

    for session in state.store.stale_sessions(cutoff).await? {
        drop_session(state, &session).await?;
        report.sessions += 1;
    }
    for mut entry in state.store.stale_entries(cutoff).await? {
        let was = entry.status;
        entry.status = Status::Deleted;
        entry.updated = Utc::now();
        if state.store.update_entry(&entry, was).await? {
            drop_sessions(state, entry.id).await?;
            state.blobs.delete(&crate::ingest::blob_key(&entry)).await?;
            tracing::info!(entry = %entry.id, was = was.as_str(), "abandoned upload collected");
            report.entries += 1;
        }
    }
    // Blobs nobody names, older than the TTL (younger ones may be mid-commit).
    let live: HashSet<String> = state.store.live_blob_keys().await?.into_iter().collect();
    for (key, modified) in state.blobs.list("blobs").await? {
        if modified < cutoff && !live.contains(&key) {
            state.blobs.delete(&key).await?;
            report.blobs += 1;
        }
    }
    for (key, modified) in state.blobs.list("uploads").await? {
        let session = key.split('/').nth(1).and_then(|s| s.parse::<Uuid>().ok());
        let orphan = match session {
            Some(id) => state.store.session(id).await?.is_none(),
            None => true,
        };
        if modified < cutoff && orphan {
            state.blobs.delete(&key).await?;
            report.blobs += 1;
        }
    }
    report.spool_files = state.spool.sweep(ttl)?;
    report.logins = state
        .store
        .delete_tokens_before(
            TokenKind::Session,
            state.config.logins_issued_after(Utc::now()),
        )
        .await?;
    Metrics::add(&state.metrics.swept_entries, report.entries as u64);
    Metrics::add(&state.metrics.swept_blobs, report.blobs as u64);
    if report != SweepReport::default() {
        tracing::info!(?report, "sweep");
    }
    Ok(report)
}

/// Runs the sweeper until `shutdown` resolves.
pub fn spawn(
    state: AppState,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.config.sweep_interval());
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = sweep_once(&state).await {
                        tracing::warn!(error = %e, "sweep failed");
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    })
}
