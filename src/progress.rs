//! Progress on long operations, on stderr, only when stderr is a terminal.
//!
//! Stages bump a shared counter; a ticker task redraws one line every half second.
//! Scripts and service managers (no terminal) see nothing.
//!
//! Imports only `report`.

use std::io::{self, IsTerminal, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::report::human_bytes;

/// A byte counter shown as a live line on a terminal.
pub struct Progress {
    counter: Arc<AtomicU64>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts showing `label` with the counter, if stderr is a terminal.
    pub fn start(label: String, total: Option<u64>) -> Progress {
        let counter = Arc::new(AtomicU64::new(0));
        let ticker = std::io::stderr().is_terminal().then(|| {
            let counter = counter.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let done = counter.load(Ordering::Relaxed);
                    let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
                    let of = total
                        .map(|t| format!(" of {}", human_bytes(t)))
                        .unwrap_or_default();
                    eprint!(
                        "\r\x1b[K{label}: {}{of} ({}/s)",
                        human_bytes(done),
                        human_bytes(rate as u64)
                    );
                    let _ = std::io::stderr().flush();
                }
            })
        });
        Progress { counter, ticker }
    }

    /// The counter stages add their byte counts to.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.counter.clone()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
            eprint!("\r\x1b[K");
        }
    }
}

/// A reader that adds what it reads to a progress counter and fails once `cancel` is
/// set, so a blocking stage notices an interrupt at its next read.
pub struct Tracked<R> {
    pub inner: R,
    pub counter: Arc<AtomicU64>,
    pub cancel: Arc<AtomicBool>,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other("interrupted"));
        }
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
