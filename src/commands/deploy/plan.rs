//! What runs where: from the settings and the flags, one [`Unit`] per CronJob (a backup
//! per `[[job]]`, verify, drill) or the scheduler's Deployment, each with its role, its
//! command line, and exactly what its pod needs: the files it reads (from the config's
//! ConfigMap, its role's Secret, the service-account token), the secrets it takes from
//! the environment, where it writes, its volumes, the ports it reaches, its size.
//!
//! Pure: no cluster, no network. Everything the manifests cannot express is refused
//! here (exit 2) with the job, key or flag named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::cron::CronLine;
use super::options::Options;
use super::units::Builder;
use crate::config::{Job, Settings};
use crate::error::Error;
use crate::store::Role;

/// Where the config sits in every pod; relative paths in it are read from here.
pub(super) const CONFIG_DIR: &str = "/etc/vault";
pub(super) const CONFIG_KEY: &str = "vault.toml";
/// The temporary directory of vault and the database tools.
pub(super) const TMP: &str = "/tmp";

/// What a unit does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    /// `vault backup GROUP`: one `[[job]]` (a multi-database job is one group).
    Backup {
        group: String,
    },
    Verify,
    Drill,
    /// `vault run --only backup`, a Deployment.
    Scheduler,
}

/// Where a file in the pod comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum FileSource {
    /// A key of the `vault-config` ConfigMap (the config, a recipients file).
    Config(String),
    /// A key of the role's Secret (`vault-<role>`).
    Secret(String),
    /// The projected service-account token (web identity).
    Token,
}

/// A file the pod reads, at its path in the pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct File {
    pub path: PathBuf,
    pub source: FileSource,
}

/// A directory the pod writes, or reads from a claim.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Dir {
    /// An emptyDir, gone with the pod.
    Scratch {
        path: PathBuf,
        size_limit: Option<String>,
    },
    /// A PersistentVolumeClaim.
    Claim {
        path: PathBuf,
        claim: String,
        read_only: bool,
    },
}

impl Dir {
    pub fn path(&self) -> &Path {
        match self {
            Dir::Scratch { path, .. } | Dir::Claim { path, .. } => path,
        }
    }
}

/// Memory and CPU, as Kubernetes quantities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Resources {
    pub memory_request_mib: u64,
    pub memory_limit_mib: u64,
    pub cpu_request: String,
    pub cpu_limit: String,
}

/// How a CronJob's runs are started and bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Timing {
    pub cron: CronLine,
    pub starting_deadline_seconds: i64,
    pub active_deadline_seconds: i64,
    pub backoff_limit: u32,
}

/// One CronJob (or the Deployment) and what its pod needs.
#[derive(Debug, Clone)]
pub(super) struct Unit {
    pub kind: Kind,
    pub role: Role,
    /// The object's name: `vault-backup-<job>`, `vault-verify`, `vault-drill`, `vault-run`.
    pub name: String,
    pub image: String,
    pub args: Vec<String>,
    /// None for the Deployment.
    pub timing: Option<Timing>,
    pub files: BTreeSet<File>,
    /// Environment variables from the role's Secret (the variable's name is the key).
    pub secret_env: BTreeSet<String>,
    pub dirs: BTreeSet<Dir>,
    /// TCP ports of databases (to `--database-cidr`, else anywhere).
    pub database_ports: BTreeSet<u16>,
    /// TCP ports of the store, STS, pings and pushes (anywhere).
    pub web_ports: BTreeSet<u16>,
    pub resources: Resources,
}

/// Everything to render.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub units: Vec<Unit>,
    /// The ConfigMap's data: the config text and the recipients file.
    pub config_data: BTreeMap<String, String>,
    /// The roles with a unit, and the IAM role each ServiceAccount is annotated with.
    pub roles: Vec<(Role, Option<String>)>,
    /// Said on stderr: what works, but not as well as on a host.
    pub warnings: Vec<String>,
    /// `[scheduler] listen`'s port, for the Deployment.
    pub listen_port: Option<u16>,
    pub shutdown_grace_seconds: u64,
}

impl Plan {
    /// The keys `role`'s Secret must hold, sorted.
    pub fn secret_keys(&self, role: Role) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        for unit in self.units.iter().filter(|u| u.role == role) {
            keys.extend(unit.secret_env.iter().cloned());
            keys.extend(unit.files.iter().filter_map(|f| match &f.source {
                FileSource::Secret(key) => Some(key.clone()),
                _ => None,
            }));
        }
        keys
    }
}

/// Maps the paths of the settings (made absolute against the config file's directory
/// on this machine) to the pod, where the config is `CONFIG_DIR/vault.toml`.
pub(super) struct PodPaths {
    pub local_base: PathBuf,
}

impl PodPaths {
    fn new(settings: &Settings) -> PodPaths {
        let base = settings
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        PodPaths {
            local_base: std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf()),
        }
    }

    pub fn map(&self, path: &Path) -> PathBuf {
        match path.strip_prefix(&self.local_base) {
            Ok(rel) => Path::new(CONFIG_DIR).join(rel),
            Err(_) => path.to_path_buf(),
        }
    }
}

/// Makes the plan; the error names what cannot be expressed.
pub(super) fn plan(settings: &Settings, text: &str, options: &Options) -> Result<Plan, Error> {
    let paths = PodPaths::new(settings);
    let mut builder = Builder {
        settings,
        options,
        paths: &paths,
        warnings: Vec::new(),
    };
    let mut config_data = BTreeMap::new();
    config_data.insert(CONFIG_KEY.to_string(), text.to_string());
    let recipients = recipients_file(text, &paths, settings)?;
    if let Some((key, _, content)) = &recipients {
        config_data.insert(key.clone(), content.clone());
    }

    let mut units = Vec::new();
    let groups = job_groups(settings);
    if groups.is_empty() {
        return Err(Error::config(format!(
            "{}: no [[job]]: nothing to back up",
            settings.path.display()
        )));
    }
    if options.scheduler {
        units.push(builder.scheduler(&groups)?);
    } else {
        for (group, jobs) in &groups {
            units.push(builder.backup(group, jobs)?);
        }
    }
    if settings.verify.schedule.is_some() {
        units.push(builder.verify()?);
    }
    if settings.drill.schedule.is_some() {
        units.push(builder.drill()?);
    }
    for unit in &mut units {
        unit.files.insert(File {
            path: Path::new(CONFIG_DIR).join(CONFIG_KEY),
            source: FileSource::Config(CONFIG_KEY.into()),
        });
        if let Some((key, path, _)) = &recipients {
            unit.files.insert(File {
                path: path.clone(),
                source: FileSource::Config(key.clone()),
            });
        }
        check_mounts(unit)?;
    }
    check_secret_keys(&units)?;

    let mut roles = Vec::new();
    for role in [Role::Writer, Role::Verifier, Role::Restorer] {
        if units.iter().any(|u| u.role == role) {
            roles.push((role, builder.irsa_role(role)?));
        }
    }
    let listen_port = match (options.scheduler, settings.scheduler.listen) {
        (false, _) => None,
        (true, None) => {
            return Err(Error::config(
                "--scheduler: set [scheduler] listen = \"[::]:9464\" (or 0.0.0.0:PORT): the \
                 Deployment's probes and Prometheus reach vault run there",
            ));
        }
        (true, Some(addr)) if addr.ip().is_loopback() => {
            return Err(Error::config(format!(
                "--scheduler: [scheduler] listen = \"{addr}\" answers inside the pod only; \
                 the kubelet's probes and Prometheus come from outside it: listen on \
                 [::]:{} or 0.0.0.0:{}",
                addr.port(),
                addr.port()
            )));
        }
        (true, Some(addr)) => Some(addr.port()),
    };
    Ok(Plan {
        units,
        config_data,
        roles,
        warnings: builder.warnings,
        listen_port,
        shutdown_grace_seconds: settings.scheduler.shutdown_grace.as_secs(),
    })
}

/// The `[[job]]`s in config order, each with the jobs it expanded into.
fn job_groups(settings: &Settings) -> Vec<(String, Vec<&Job>)> {
    let mut groups: Vec<(String, Vec<&Job>)> = Vec::new();
    for job in &settings.jobs {
        match groups.iter_mut().find(|(g, _)| *g == job.group) {
            Some((_, jobs)) => jobs.push(job),
            None => groups.push((job.group.clone(), vec![job])),
        }
    }
    groups
}

/// `[encryption] recipients_file`: the ConfigMap key, its path in the pod, its text.
fn recipients_file(
    text: &str,
    paths: &PodPaths,
    settings: &Settings,
) -> Result<Option<(String, PathBuf, String)>, Error> {
    let value: toml::Value = toml::from_str(text)
        .map_err(|e| Error::config(format!("{}: {e}", settings.path.display())))?;
    let Some(file) = value
        .get("encryption")
        .and_then(|e| e.get("recipients_file"))
        .and_then(|f| f.as_str())
    else {
        return Ok(None);
    };
    let local = paths.local_base.join(file);
    let content = std::fs::read_to_string(&local).map_err(|e| {
        Error::config(format!(
            "[encryption] recipients_file {}: {e}",
            local.display()
        ))
    })?;
    let pod = paths.map(&local);
    Ok(Some((file_key(&pod)?, pod, content)))
}

/// The Secret or ConfigMap key of a file: its name.
pub(super) fn file_key(path: &Path) -> Result<String, Error> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| {
            n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
        .ok_or_else(|| {
            Error::config(format!(
                "{}: a Secret or ConfigMap key is the file's name, which may hold only \
                 letters, digits, -, _ and .",
                path.display()
            ))
        })?;
    Ok(name.to_string())
}

/// Two paths the pod mounts one inside the other cannot both be mounted.
fn check_mounts(unit: &Unit) -> Result<(), Error> {
    let mut mounts: Vec<(PathBuf, String)> = unit
        .dirs
        .iter()
        .map(|d| (d.path().to_path_buf(), "a volume".to_string()))
        .collect();
    for file in &unit.files {
        mounts.push((file.path.clone(), "a file".into()));
    }
    for (i, (a, what_a)) in mounts.iter().enumerate() {
        for (b, what_b) in &mounts[i + 1..] {
            let (outer, inner, what) = if b.starts_with(a) {
                (a, b, what_b)
            } else if a.starts_with(b) {
                (b, a, what_a)
            } else {
                continue;
            };
            if outer == inner || (what == "a file" && what_a == what_b) {
                continue;
            }
            return Err(Error::config(format!(
                "{}: {} would be mounted at {}, inside the volume at {}: keep files, \
                 state_dir and claims in directories of their own",
                unit.name,
                what,
                inner.display(),
                outer.display()
            )));
        }
    }
    Ok(())
}

/// Within one role's Secret a key means one thing: two files of one name, or a file
/// and a variable, cannot share it.
fn check_secret_keys(units: &[Unit]) -> Result<(), Error> {
    for role in [Role::Writer, Role::Verifier, Role::Restorer] {
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for unit in units.iter().filter(|u| u.role == role) {
            let files = unit.files.iter().filter_map(|f| match &f.source {
                FileSource::Secret(key) => Some((key.clone(), f.path.display().to_string())),
                _ => None,
            });
            let vars = unit.secret_env.iter().map(|v| (v.clone(), format!("${v}")));
            for (key, what) in files.chain(vars) {
                match seen.get(&key) {
                    Some(other) if *other != what => {
                        return Err(Error::config(format!(
                            "Secret vault-{}: {other} and {what} would both be key `{key}`: \
                             rename one",
                            role.as_str()
                        )));
                    }
                    _ => {
                        seen.insert(key, what);
                    }
                }
            }
        }
    }
    Ok(())
}
