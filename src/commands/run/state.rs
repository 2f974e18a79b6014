//! What the scheduler remembers across restarts: the last fire time it acted on for
//! each unit, so that a run missed while it was down is caught up once
//! (`plan::missed`). One small JSON file in the state directory, per vault, written
//! atomically (a temporary file renamed over it); a damaged or missing file is a
//! scheduler that remembers nothing, never an error.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    /// Unit key (`backup:app`, `verify`) -> the last fire time acted on.
    last_fire: BTreeMap<String, DateTime<Utc>>,
}

/// The scheduler's memory, as loaded, and where it is kept.
#[derive(Debug)]
pub struct State {
    path: PathBuf,
    file: File,
}

impl State {
    /// `<state_dir>/scheduler.<vault>.json`, where `<vault>` is the same short hash of the
    /// store and prefix that the job locks use.
    pub fn path(state_dir: &Path, vault: &str) -> PathBuf {
        let hash = blake3::hash(vault.as_bytes()).to_hex();
        state_dir.join(format!("scheduler.{}.json", &hash[..12]))
    }

    /// Loads the file at `path`; missing or unreadable is empty (said in the log).
    pub fn load(path: PathBuf) -> State {
        let file = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(
                    "the scheduler state {} is damaged ({e}); starting without it: no \
                     missed run is caught up",
                    path.display()
                );
                File::default()
            }),
            Err(_) => File::default(),
        };
        State { path, file }
    }

    pub fn last_fire(&self, key: &str) -> Option<DateTime<Utc>> {
        self.file.last_fire.get(key).copied()
    }

    /// Records that `key` acted on its fire time `at`, and saves. A state directory
    /// that cannot be written is a warning: the scheduler runs on, but cannot catch up
    /// after a restart.
    pub fn record(&mut self, key: &str, at: DateTime<Utc>) {
        self.file.last_fire.insert(key.to_string(), at);
        if let Err(e) = self.save() {
            tracing::warn!(
                "cannot write the scheduler state {}: {e}; a run missed while vault run \
                 is down will not be caught up",
                self.path.display()
            );
        }
    }

    fn save(&self) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.file).expect("state serialises");
        crate::private_file::write(&self.path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_a_restart_and_damage_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let path = State::path(dir.path(), "local directory /v\nv/");
        let at = Utc::now();
        let mut s = State::load(path.clone());
        assert_eq!(s.last_fire("backup:app"), None);
        s.record("backup:app", at);
        assert_eq!(State::load(path.clone()).last_fire("backup:app"), Some(at));
        fs::write(&path, b"{not json").unwrap();
        assert_eq!(State::load(path).last_fire("backup:app"), None);
    }
}
