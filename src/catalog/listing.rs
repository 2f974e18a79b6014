//! The version listing of a run over several jobs: one `all_versions` of the whole
//! vault, split by job, rather than one per job.
//!
//! A listing answers 1,000 keys a page, whichever jobs they belong to: 100 jobs of 10
//! backups (2,000 keys) are two pages as one listing and 100 pages as one per job.
//! The listing is what every run must ask afresh (it shows new versions, delete
//! markers and deleted versions), so it is what a repeat run mostly costs. A run over
//! one job lists only that job. Keys of jobs not asked for (not configured here) are
//! listed with the rest and left out.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::cache::Cache;
use crate::error::Error;
use crate::manifest::Layout;
use crate::store::{Store, VersionInfo};

/// A listing split by job.
type ByJob = BTreeMap<String, Vec<VersionInfo>>;

/// What each job's part must cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cover {
    /// Data and manifests: `verify`.
    Everything,
    /// Manifests only: `list`.
    Manifests,
}

/// The versions under the jobs of one run, listed once for the whole vault or job by
/// job.
pub struct Listing<'r> {
    store: &'r dyn Store,
    layout: &'r Layout,
    cover: Cover,
    cache: &'r Cache,
    /// The whole vault's listing split by job, when several jobs were asked for (the
    /// error of that one listing otherwise).
    whole: Option<Result<Mutex<ByJob>, Error>>,
}

impl<'r> Listing<'r> {
    /// For `jobs`: the whole vault is listed now when there are several; for one, its
    /// listing is made when [`Listing::job`] asks. Each listing is recorded in `cache`.
    pub async fn new(
        store: &'r dyn Store,
        layout: &'r Layout,
        jobs: &[String],
        cover: Cover,
        cache: &'r Cache,
    ) -> Listing<'r> {
        let whole = if jobs.len() > 1 {
            let root = layout.root();
            Some(store.all_versions(&root).await.map(|versions| {
                cache.listed(&root, &versions);
                Mutex::new(split(layout, jobs, versions))
            }))
        } else {
            None
        };
        Listing {
            store,
            layout,
            cover,
            cache,
            whole,
        }
    }

    /// Every version and delete marker under `job` (its manifests only with
    /// [`Cover::Manifests`]), sorted by key, newest first within a key. Each job is
    /// asked for once: its part of the whole listing is handed over, not copied.
    pub async fn job(&self, job: &str) -> Result<Vec<VersionInfo>, Error> {
        let manifests = self.layout.manifests_prefix(job);
        let versions = match &self.whole {
            Some(Ok(split)) => split
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(job)
                .unwrap_or_default(),
            Some(Err(e)) => return Err(e.clone()),
            None => {
                let prefix = match self.cover {
                    Cover::Everything => self.layout.job_root(job),
                    Cover::Manifests => manifests.clone(),
                };
                let versions = self.store.all_versions(&prefix).await?;
                self.cache.listed(&prefix, &versions);
                versions
            }
        };
        Ok(match self.cover {
            Cover::Everything => versions,
            Cover::Manifests => versions
                .into_iter()
                .filter(|v| v.key.starts_with(&manifests))
                .collect(),
        })
    }
}

/// The vault's listing by job, for `jobs` only; the order within each is kept.
fn split(layout: &Layout, jobs: &[String], versions: Vec<VersionInfo>) -> ByJob {
    let root = layout.root();
    let mut by_job: ByJob = jobs.iter().map(|j| (j.clone(), Vec::new())).collect();
    for v in versions {
        let job = v
            .key
            .strip_prefix(root.as_str())
            .and_then(|rest| rest.split_once('/'))
            .map(|(job, _)| job);
        if let Some(list) = job.and_then(|j| by_job.get_mut(j)) {
            list.push(v);
        }
    }
    by_job
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(key: &str) -> VersionInfo {
        VersionInfo {
            key: key.into(),
            version_id: Some("v".into()),
            delete_marker: false,
            size: 1,
            modified: None,
        }
    }

    #[test]
    fn the_vault_listing_is_split_by_job_and_other_jobs_are_left_out() {
        let layout = Layout::new("acme");
        let jobs = ["a".to_string(), "a.b".to_string()];
        let listing = vec![
            v("acme/a.b/data/1"),
            v("acme/a.b/manifests/1.json"),
            v("acme/a/data/1"),
            v("acme/a/manifests/1.json"),
            v("acme/ab/manifests/1.json"),
            v("acme/c/manifests/1.json"),
            v("acme/stray"),
        ];
        let split = split(&layout, &jobs, listing);
        let keys = |job: &str| -> Vec<&str> { split[job].iter().map(|v| v.key.as_str()).collect() };
        assert_eq!(keys("a"), ["acme/a/data/1", "acme/a/manifests/1.json"]);
        assert_eq!(
            keys("a.b"),
            ["acme/a.b/data/1", "acme/a.b/manifests/1.json"]
        );
        assert_eq!(split.len(), 2);

        let bare = Layout::new("");
        let split = super::split(&bare, &jobs, vec![v("a/m"), v("x/m")]);
        assert_eq!(split["a"].len(), 1);
        assert!(
            split["a.b"].is_empty(),
            "a job without backups has an empty part"
        );
    }
}
