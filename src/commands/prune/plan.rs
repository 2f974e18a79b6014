//! Which of a job's backups `vault prune` hides, and why the others stay: pure
//! judgement over what was read, unit-tested here. `verify` asks the same question
//! about the next 30 days.
//!
//! The lock is the guarantee, pruning the cost control: a backup is pruned only when
//! every lock it carries (the manifest's promise and both objects' locks as the store
//! reports them) ended at least `grace` ago, and never while it is among the job's
//! newest `keep_last` good backups — so a job that stopped backing up keeps its last
//! good copy however old it gets.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

/// One backup as the pruner sees it.
#[derive(Debug, Clone)]
pub struct Backup {
    pub backup_id: String,
    /// The latest retain-until among the manifest's promise and the locks the store
    /// reports on the data and the manifest; `None` when a lock could not be read.
    pub until: Option<DateTime<Utc>>,
    /// Its manifest was read and its data version is in the vault: it counts towards
    /// `keep_last`. (`verify` is what proves it intact.)
    pub good: bool,
    /// A delete marker already hides the manifest (the data is hidden after it).
    pub manifest_hidden: bool,
    pub data_hidden: bool,
}

impl Backup {
    fn hidden(&self) -> bool {
        self.manifest_hidden && self.data_hidden
    }
}

/// What becomes of one backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "decision")]
pub enum Decision {
    /// Hide it (or finish hiding it).
    Prune,
    /// Already hidden, data and manifest: the bucket's lifecycle removes it.
    Pruned,
    /// One of the job's newest `keep_last` good backups.
    KeepNewest,
    /// Its lock, plus the grace, has not ended.
    KeepLocked { until: DateTime<Utc> },
    /// Not provably expired: a lock could not be read, or the manifest not parsed.
    KeepUnknown,
}

/// The decision for each of `backups` (oldest first), in the same order.
pub fn plan(
    backups: &[Backup],
    keep_last: u32,
    grace: TimeDelta,
    now: DateTime<Utc>,
) -> Vec<Decision> {
    // The newest `keep_last` good backups still visible; never fewer than one kept.
    let keep = keep_last.max(1) as usize;
    let mut kept = 0;
    let mut newest = vec![false; backups.len()];
    for (i, b) in backups.iter().enumerate().rev() {
        if kept == keep {
            break;
        }
        if b.good && !b.manifest_hidden {
            newest[i] = true;
            kept += 1;
        }
    }
    backups
        .iter()
        .zip(newest)
        .map(|(b, newest)| {
            if b.hidden() {
                return Decision::Pruned;
            }
            if newest {
                return Decision::KeepNewest;
            }
            match b.until {
                None => Decision::KeepUnknown,
                Some(until) if until + grace > now => Decision::KeepLocked { until },
                Some(_) => Decision::Prune,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 3, 0, 0).unwrap()
    }

    fn backup(id: &str, until_days: i64) -> Backup {
        Backup {
            backup_id: id.into(),
            until: Some(now() + TimeDelta::days(until_days)),
            good: true,
            manifest_hidden: false,
            data_hidden: false,
        }
    }

    fn decide(backups: &[Backup], keep_last: u32) -> Vec<Decision> {
        plan(backups, keep_last, TimeDelta::days(1), now())
    }

    #[test]
    fn expired_backups_go_and_locked_ones_and_the_newest_stay() {
        let b = [
            backup("a", -40),
            backup("b", -2),
            backup("c", 0), // ended, but not a grace ago
            backup("d", 30),
            backup("e", -5), // expired (a daily after a monthly), but the newest
        ];
        let d = decide(&b, 1);
        assert_eq!(d[0], Decision::Prune);
        assert_eq!(d[1], Decision::Prune);
        assert!(matches!(d[2], Decision::KeepLocked { .. }));
        assert!(matches!(d[3], Decision::KeepLocked { .. }));
        assert_eq!(d[4], Decision::KeepNewest);
        let d = decide(&b, 3);
        assert_eq!(d[0], Decision::Prune);
        assert_eq!(d[2..], [Decision::KeepNewest; 3]);
    }

    #[test]
    fn a_job_that_stopped_keeps_its_last_good_backup() {
        // Every tier's lock long over: keep_last 0 is read as 1.
        let b = [backup("a", -3000), backup("b", -400), backup("c", -100)];
        for keep in [0, 1] {
            let d = decide(&b, keep);
            assert_eq!(d, [Decision::Prune, Decision::Prune, Decision::KeepNewest]);
        }
    }

    #[test]
    fn bad_and_hidden_backups_do_not_count_as_kept() {
        let mut b = vec![backup("a", -40), backup("b", -30), backup("c", -20)];
        b[2].good = false; // its data is gone: keep the one before it
        b[0].until = None;
        let d = decide(&b, 1);
        assert_eq!(
            d,
            [Decision::KeepUnknown, Decision::KeepNewest, Decision::Prune]
        );
        // Half pruned (the manifest hidden first, then interrupted): finished.
        let mut b = vec![backup("a", -40), backup("b", -30)];
        b[0].manifest_hidden = true;
        assert_eq!(decide(&b, 1), [Decision::Prune, Decision::KeepNewest]);
        b[0].data_hidden = true;
        assert_eq!(decide(&b, 1), [Decision::Pruned, Decision::KeepNewest]);
    }
}
