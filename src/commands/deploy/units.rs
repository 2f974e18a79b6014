//! The units, one by one: a backup per `[[job]]` (or the scheduler running them all),
//! verify and drill, with their command lines, timing and size; and what each source
//! of a backup needs in its pod. The needs every role shares (identity, state, claims,
//! URLs) are in `needs`.

use std::collections::BTreeSet;
use std::path::Path;

use super::cron::{CronLine, cron_line};
use super::options::Options;
use super::plan::{CONFIG_DIR, CONFIG_KEY, Dir, Kind, PodPaths, Resources, TMP, Timing, Unit};
use crate::config::{Job, Scratch, Settings};
use crate::error::Error;
use crate::source::{PasswordFrom, Spec};
use crate::store::{Role, Target};

pub(super) struct Builder<'a> {
    pub settings: &'a Settings,
    pub options: &'a Options,
    pub paths: &'a PodPaths,
    pub warnings: Vec<String>,
}

impl Builder<'_> {
    fn unit(&self, kind: Kind, role: Role, name: String, args: &[&str]) -> Unit {
        let mut full = vec!["--config".to_string(), format!("{CONFIG_DIR}/{CONFIG_KEY}")];
        full.extend(args.iter().map(|a| a.to_string()));
        let mut dirs = BTreeSet::new();
        dirs.insert(Dir::Scratch {
            path: TMP.into(),
            size_limit: (kind != Kind::Drill).then(|| "256Mi".to_string()),
        });
        let image = if kind == Kind::Drill {
            self.options.drill_image.clone()
        } else {
            self.options.image.clone()
        };
        Unit {
            kind,
            role,
            name,
            image,
            args: full,
            timing: None,
            files: BTreeSet::new(),
            secret_env: BTreeSet::new(),
            dirs,
            database_ports: BTreeSet::new(),
            web_ports: [443].into(),
            resources: Resources {
                memory_request_mib: 0,
                memory_limit_mib: 0,
                cpu_request: "100m".into(),
                cpu_limit: "1".into(),
            },
        }
    }

    pub(super) fn backup(&mut self, group: &str, jobs: &[&Job]) -> Result<Unit, Error> {
        let job = jobs[0];
        let named = |e: String| Error::config(format!("job `{group}`: {e}"));
        let schedule = job.schedule.as_ref().ok_or_else(|| {
            named(
                "no schedule: a CronJob needs one (schedule = \"15 3 * * *\"); back \
                 it up some other way, or give it a schedule"
                    .into(),
            )
        })?;
        let cron = cron_line(schedule).map_err(named)?;
        let name = object_name("vault-backup-", group);
        let mut unit = self.unit(
            Kind::Backup {
                group: group.to_string(),
            },
            Role::Writer,
            name,
            &["backup", group],
        );
        self.writer_needs(&mut unit, jobs)?;
        let interval = job.interval.num_seconds().max(60);
        let grace = job.grace.num_seconds().max(0);
        unit.timing = Some(Timing {
            cron,
            starting_deadline_seconds: grace.max(300),
            active_deadline_seconds: if interval > grace {
                interval - grace
            } else {
                interval
            },
            backoff_limit: self.settings.scheduler.retries,
        });
        unit.resources = backup_resources(self.settings, 1, false);
        Ok(unit)
    }

    pub(super) fn scheduler(&mut self, groups: &[(String, Vec<&Job>)]) -> Result<Unit, Error> {
        let mut unit = self.unit(
            Kind::Scheduler,
            Role::Writer,
            "vault-run".into(),
            &["run", "--only", "backup"],
        );
        let mut all = Vec::new();
        for (group, jobs) in groups {
            let schedule = jobs[0].schedule.as_ref().ok_or_else(|| {
                Error::config(format!(
                    "job `{group}`: no schedule: vault run would never back it up"
                ))
            })?;
            // vault run reads the line itself; the check keeps the two forms of the
            // manifests to the same schedules.
            schedule
                .to_string()
                .split_whitespace()
                .count()
                .le(&5)
                .then_some(())
                .ok_or_else(|| {
                    Error::config(format!(
                        "job `{group}`: schedule `{schedule}` has a seconds field"
                    ))
                })?;
            all.extend(jobs.iter().copied());
        }
        self.writer_needs(&mut unit, &all)?;
        if self
            .options
            .claim_for(&self.settings.signing.state_dir)
            .is_none()
        {
            self.warnings.push(format!(
                "state_dir {} is an emptyDir: after a restart vault run catches no missed \
                 run up (give --claim {}=CLAIM)",
                self.settings.signing.state_dir.display(),
                self.settings.signing.state_dir.display()
            ));
        }
        let concurrent = self.settings.scheduler.max_concurrent as u64;
        unit.resources = backup_resources(self.settings, concurrent, true);
        Ok(unit)
    }

    /// The writer's identity, signing key, state and local vault, and each job's
    /// source: its secrets, its data, its database port.
    fn writer_needs(&mut self, unit: &mut Unit, jobs: &[&Job]) -> Result<(), Error> {
        self.identity(unit, Role::Writer)?;
        let signing = &self.settings.signing;
        if let Some(key) = &signing.key_file {
            self.secret_file(unit, key)?;
            if self.options.claim_for(&signing.state_dir).is_none() {
                return Err(Error::config(format!(
                    "[signing] key_file is set, but state_dir {} is on no --claim: each \
                     run would start a new chain segment (give --claim {}=CLAIM)",
                    signing.state_dir.display(),
                    signing.state_dir.display()
                )));
            }
        }
        self.state_dir(unit);
        self.vault_dir(unit, true)?;
        for job in jobs {
            if let Some(ping) = &job.ping {
                self.ping(unit, ping, &format!("job `{}`: ping", job.group))?;
            }
            self.source(unit, job)?;
        }
        unit.database_ports
            .extend(self.options.egress_ports.iter().copied());
        Ok(())
    }

    fn source(&mut self, unit: &mut Unit, job: &Job) -> Result<(), Error> {
        let named = |e: String| Error::config(format!("job `{}`: {e}", job.group));
        match &job.source {
            Spec::Sqlite { path } | Spec::Files { path } | Spec::File { path, .. } => {
                let pod = self.paths.map(path);
                let claim = self.options.claim_for(&pod).ok_or_else(|| {
                    named(format!(
                        "its {} source {} is on no --claim: give --claim DIR=CLAIM for the \
                         volume that holds it",
                        job.source.kind(),
                        pod.display()
                    ))
                })?;
                add_claim(unit, &claim.path, &claim.name, true);
            }
            Spec::Command { command, .. } => {
                if self.options.egress_ports.is_empty() {
                    self.warnings.push(format!(
                        "job `{}`: the NetworkPolicy knows no port for `{}`: add \
                         --egress-port PORT for what it connects to",
                        job.group, command[0]
                    ));
                }
            }
            Spec::Postgres(pg) => {
                self.env(unit, &pg.password_env);
                if let Some(file) = &pg.passfile {
                    self.secret_file(unit, file)?;
                }
                let url_port = pg.url.as_deref().and_then(|u| url::Url::parse(u).ok());
                let socket = pg.host.as_deref().is_some_and(|h| h.starts_with('/'));
                if !socket {
                    unit.database_ports.insert(
                        pg.port
                            .or_else(|| url_port.and_then(|u| u.port()))
                            .unwrap_or(5432),
                    );
                }
            }
            Spec::Mysql(m) => {
                self.password(unit, &m.password)?;
                if m.socket.is_none() {
                    unit.database_ports.insert(m.port.unwrap_or(3306));
                }
            }
            Spec::Redis(r) => {
                self.password(unit, &r.password)?;
                unit.database_ports.insert(r.port.unwrap_or(6379));
            }
        }
        Ok(())
    }

    /// A MySQL or Redis password, as validated (a file's path made absolute).
    fn password(&self, unit: &mut Unit, from: &PasswordFrom) -> Result<(), Error> {
        match from {
            PasswordFrom::None => Ok(()),
            PasswordFrom::Env(var) => {
                unit.secret_env.insert(var.clone());
                Ok(())
            }
            PasswordFrom::File(path) => self.secret_file(unit, path),
        }
    }

    pub(super) fn verify(&mut self) -> Result<Unit, Error> {
        let verify = &self.settings.verify;
        let schedule = verify.schedule.as_ref().expect("checked by the caller");
        let cron = cron_line(schedule).map_err(|e| Error::config(format!("[verify] {e}")))?;
        let mut unit = self.unit(
            Kind::Verify,
            Role::Verifier,
            "vault-verify".into(),
            &["verify"],
        );
        self.identity(&mut unit, Role::Verifier)?;
        self.vault_dir(&mut unit, false)?;
        if let Some(ping) = &verify.ping {
            self.ping(&mut unit, ping, "[verify] ping")?;
        }
        if let Some(url) = &verify.pushgateway {
            self.web_url(&mut unit, url, "[verify] pushgateway")?;
        }
        if let Some(file) = &verify.prometheus {
            self.written_file(&mut unit, file, "[verify] prometheus")?;
        }
        if !self.cache_dir(&mut unit) {
            self.warnings.push(format!(
                "[verify] cache_dir {} is an emptyDir: each verify run reads every manifest \
                 and lock again (set cache_dir on a claim only the verifier mounts: --claim \
                 DIR=CLAIM)",
                verify.cache_dir.display()
            ));
        }
        unit.timing = Some(periodic(cron, schedule, self.settings.scheduler.retries));
        unit.resources = Resources {
            memory_request_mib: 64,
            memory_limit_mib: 256,
            cpu_request: "100m".into(),
            cpu_limit: "1".into(),
        };
        Ok(unit)
    }

    pub(super) fn drill(&mut self) -> Result<Unit, Error> {
        let drill = &self.settings.drill;
        let schedule = drill.schedule.as_ref().expect("checked by the caller");
        let cron = cron_line(schedule).map_err(|e| Error::config(format!("[drill] {e}")))?;
        let mut unit = self.unit(
            Kind::Drill,
            Role::Restorer,
            "vault-drill".into(),
            &["drill"],
        );
        self.identity(&mut unit, Role::Restorer)?;
        self.vault_dir(&mut unit, false)?;
        let restorer = &self.settings.identities.restorer;
        match &restorer.age_identity_file {
            Some(file) => self.secret_file(&mut unit, file)?,
            None => {
                return Err(Error::config(
                    "[drill] schedule is set, but [identities.restorer] has no \
                     age_identity_file: the drill CronJob could not decrypt",
                ));
            }
        }
        for file in &drill.identities {
            self.secret_file(&mut unit, file)?;
        }
        let scratches = std::iter::once(&drill.scratch).chain(
            self.settings
                .jobs
                .iter()
                .filter_map(|j| j.drill.scratch.as_ref()),
        );
        for scratch in scratches {
            if let Scratch::Url(url) = scratch {
                let parsed = url::Url::parse(url)
                    .map_err(|e| Error::config(format!("[drill] scratch: {e}")))?;
                let (port, password) = match parsed.scheme() {
                    "mysql" | "mariadb" => (3306, "MYSQL_PWD"),
                    _ => (5432, "PGPASSWORD"),
                };
                unit.database_ports.insert(parsed.port().unwrap_or(port));
                unit.secret_env.insert(password.to_string());
            }
        }
        if let Some(ping) = &drill.ping {
            self.ping(&mut unit, ping, "[drill] ping")?;
        }
        if let Some(url) = &drill.pushgateway {
            self.web_url(&mut unit, url, "[drill] pushgateway")?;
        }
        if let Some(file) = &drill.prometheus {
            self.written_file(&mut unit, file, "[drill] prometheus")?;
        }
        if self
            .options
            .claim_for(&self.settings.signing.state_dir)
            .is_none()
        {
            self.warnings.push(format!(
                "state_dir {} is an emptyDir: each drill's evidence goes with its pod, so \
                 no drill is compared with the one before (give --claim {}=CLAIM)",
                self.settings.signing.state_dir.display(),
                self.settings.signing.state_dir.display()
            ));
        }
        self.state_dir(&mut unit);
        unit.timing = Some(periodic(cron, schedule, 0));
        unit.resources = Resources {
            memory_request_mib: 512,
            memory_limit_mib: 2048,
            cpu_request: "500m".into(),
            cpu_limit: "2".into(),
        };
        Ok(unit)
    }
}

fn periodic(cron: CronLine, schedule: &crate::config::Schedule, backoff_limit: u32) -> Timing {
    let interval = schedule.interval().num_seconds().max(60);
    let grace = interval / 4;
    Timing {
        cron,
        starting_deadline_seconds: grace.max(300),
        active_deadline_seconds: interval - grace,
        backoff_limit,
    }
}

/// A backup's memory, from docs/design.md §7 (measured peak resident memory on two
/// CPUs with every frame slot full: 57 MiB at level 3 on incompressible data, 15 MiB
/// more for the contexts at level 9, 136 MiB at level 19, 169 MiB at 22; rounded up
/// here), plus the S3 parts in flight
/// (`part_size × (upload_concurrency + 1)`, 80 MiB with the defaults, measured as 77 MiB)
/// and 16 MiB for the dump tool. The request is that estimate; the limit adds the parts
/// once more, as their size doubles after 1,000 parts (15.6 GiB with the defaults).
/// `concurrent` backups share the pod under `vault run`, which itself takes 12 MiB.
fn backup_resources(settings: &Settings, concurrent: u64, scheduler: bool) -> Resources {
    let zstd = match settings.compression.level {
        ..=5 => 64,
        6..=9 => 80,
        10..=19 => 160,
        _ => 192,
    };
    let parts = match &settings.target {
        Target::S3(s3) => (s3.part_size >> 20) * (s3.upload_concurrency as u64 + 1),
        Target::Local(_) => 0,
    };
    let one = zstd + parts + 16;
    let scheduler = if scheduler { 12 } else { 0 };
    let request = round_up(one * concurrent + scheduler, 32);
    let limit = round_up((one + parts.max(64)) * concurrent + scheduler, 32);
    let cpus = match settings.compression.threads {
        0 => 2,
        n => n,
    };
    Resources {
        memory_request_mib: request,
        memory_limit_mib: limit,
        cpu_request: "500m".into(),
        cpu_limit: cpus.to_string(),
    }
}

fn round_up(value: u64, step: u64) -> u64 {
    value.div_ceil(step) * step
}

pub(super) fn add_claim(unit: &mut Unit, path: &Path, claim: &str, read_only: bool) {
    // One mount per claim path: read-write wins.
    let existing = unit
        .dirs
        .iter()
        .find(|d| matches!(d, Dir::Claim { path: p, .. } if p == path))
        .cloned();
    if let Some(Dir::Claim { read_only: ro, .. }) = &existing {
        if *ro && !read_only {
            unit.dirs.remove(existing.as_ref().unwrap());
        } else {
            return;
        }
    }
    unit.dirs.insert(Dir::Claim {
        path: path.to_path_buf(),
        claim: claim.to_string(),
        read_only,
    });
}

/// `prefix` + the job name as a Kubernetes object name: lower case, `_` and `.` as `-`,
/// at most 52 characters (a CronJob's limit), a long name cut and given a hash suffix.
pub(super) fn object_name(prefix: &str, job: &str) -> String {
    let cleaned: String = job
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    let name = format!("{prefix}{cleaned}");
    if name.len() <= 52 {
        return name.trim_end_matches('-').to_string();
    }
    let hash = blake3::hash(job.as_bytes()).to_hex();
    format!("{}-{}", name[..43].trim_end_matches('-'), &hash[..8])
}
