//! SIGINT and SIGTERM: what cron, systemd and Kubernetes send to stop a run.
//!
//! Commands that write something (backup, restore) race their work against
//! [`interrupted`] and clean up before exiting with the "interrupted" code.
//!
//! A leaf: imports nothing of vault's.

/// Resolves when SIGINT or SIGTERM arrives, naming it.
pub async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    match term {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}
