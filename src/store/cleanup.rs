//! Cleanup that must outlive an abandoned operation.
//!
//! When a backup is interrupted (SIGINT/SIGTERM) its upload future is dropped in the
//! middle; the multipart upload it had started should still be aborted. A drop guard
//! cannot await, so it [`spawn`]s the abort here, and the command runner [`drain`]s
//! these tasks, for a bounded time, before the process exits. Must not import
//! `config` or anything above the store.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::task::JoinHandle;

static PENDING: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());

/// Runs `task` on the current runtime; [`drain`] waits for it. Without a runtime (never
/// the case in vault) the task is dropped and the caller's backstop applies.
pub fn spawn(task: impl Future<Output = ()> + Send + 'static) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        let join = handle.spawn(task);
        PENDING.lock().unwrap_or_else(|e| e.into_inner()).push(join);
    }
}

/// Waits up to `limit` for every spawned cleanup task.
pub async fn drain(limit: Duration) {
    let tasks: Vec<_> = std::mem::take(&mut *PENDING.lock().unwrap_or_else(|e| e.into_inner()));
    if tasks.is_empty() {
        return;
    }
    let all = async {
        for task in tasks {
            let _ = task.await;
        }
    };
    if tokio::time::timeout(limit, all).await.is_err() {
        tracing::warn!("cleanup did not finish within {}s", limit.as_secs());
    }
}
