//! Command-line types (clap derive) and nothing else.
//!
//! A leaf: imports nothing of vault's; commands read these types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "vault",
    version,
    about = "Immutable, encrypted, off-site database backups",
    long_about = "vault dumps a database (PostgreSQL, MySQL/MariaDB, Redis, SQLite, a \
                  directory, any command), compresses it \
                  with zstd, encrypts it to age recipients and streams it into write-once \
                  storage, then writes a manifest as the commit point.\n\n\
                  Exit codes: 0 ok, 1 failure, 2 usage or config error, 3 integrity \
                  failure or tampering, 4 backup stale or missing, 5 access denied, 130 interrupted.",
    after_help = "Start with `vault demo` to see a full round trip in a scratch directory."
)]
pub struct Cli {
    /// Config file [default: ./vault.toml if present, else /etc/vault/vault.toml]
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "VAULT_CONFIG",
        hide_env_values = true,
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// Print results as JSON on stdout (for scripts)
    #[arg(long, global = true)]
    pub json: bool,

    /// More log output on stderr (-v info, -vv debug); VAULT_LOG overrides
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Log lines on stderr as text or as JSON objects (for log shippers)
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Read the config's text from standard input; the config file's path still names
    /// it in messages and anchors its relative paths. For `vault run`'s runs, which use
    /// the configuration the scheduler has in force rather than the file as it is now.
    #[arg(long, global = true, hide = true)]
    pub config_stdin: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an age identity (or with --signing a manifest signing key), mode 0600, and print its public key
    Keygen(KeygenArgs),
    /// Back up jobs (all configured jobs when none are named) [identity: writer]
    Backup(BackupArgs),
    /// List the backups of a job, or of every configured job [identity: verifier]
    List(ListArgs),
    /// Restore a backup into a database, a file, a directory or stdout [identity: restorer]
    Restore(RestoreArgs),
    /// Check stored backups against their manifests [identity: verifier; restorer with --deep]
    Verify(VerifyArgs),
    /// Hide backups whose lock has ended behind delete markers, keeping each job's newest [identity: pruner]
    Prune(PruneArgs),
    /// Prove what each identity can and cannot do, and that the store enforces locks
    Doctor(DoctorArgs),
    /// Try vault end to end in a scratch directory: backup, list, verify, restore, compare
    Demo(DemoArgs),
    /// Stay in the foreground and run every job's backup (and verify) on its schedule
    Run(RunArgs),
    /// Restore the newest backups into scratch servers, check them, and keep the evidence [identity: restorer]
    Drill(DrillArgs),
    /// Render what runs vault elsewhere from vault.toml (Kubernetes manifests)
    Deploy(DeployArgs),
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(subcommand)]
    pub target: DeployTarget,
}

#[derive(Debug, Subcommand)]
pub enum DeployTarget {
    /// Kubernetes manifests: a CronJob per job (and for [verify] and [drill] schedules),
    /// each under its role's ServiceAccount, the config as a ConfigMap, NetworkPolicies
    Kubernetes(KubernetesArgs),
}

#[derive(Debug, Args)]
pub struct KubernetesArgs {
    /// The image every pod runs (deploy/container/Dockerfile); pin it by digest
    /// (NAME:TAG@sha256:...)
    #[arg(long, value_name = "IMAGE")]
    pub image: String,

    /// The image of the drill CronJob, with the scratch servers (the Dockerfile's drill
    /// target) [default: --image]
    #[arg(long, value_name = "IMAGE")]
    pub drill_image: Option<String>,

    /// The namespace of every object
    #[arg(long, value_name = "NS", default_value = "vault")]
    pub namespace: String,

    /// The writer's namespace (the backup CronJobs) [default: --namespace]
    #[arg(long, value_name = "NS")]
    pub writer_namespace: Option<String>,

    /// The verifier's namespace (the verify CronJob) [default: --namespace]
    #[arg(long, value_name = "NS")]
    pub verifier_namespace: Option<String>,

    /// The restorer's namespace (the drill CronJob) [default: --namespace]
    #[arg(long, value_name = "NS")]
    pub restorer_namespace: Option<String>,

    /// Annotate each ServiceAccount with eks.amazonaws.com/role-arn (EKS IAM roles for
    /// service accounts)
    #[arg(long)]
    pub irsa: bool,

    /// The writer's IAM role for --irsa [default: [identities.writer] role_arn]
    #[arg(long, value_name = "ARN")]
    pub role_arn_writer: Option<String>,

    /// The verifier's IAM role for --irsa [default: [identities.verifier] role_arn]
    #[arg(long, value_name = "ARN")]
    pub role_arn_verifier: Option<String>,

    /// The restorer's IAM role for --irsa [default: [identities.restorer] role_arn]
    #[arg(long, value_name = "ARN")]
    pub role_arn_restorer: Option<String>,

    /// The audience of the projected service-account token mounted where
    /// web_identity_token_file points: the client id your IAM OIDC provider lists (with
    /// --output, overlays/web-identity's; the base keeps sts.amazonaws.com, as EKS needs)
    #[arg(long, value_name = "AUD", default_value = "sts.amazonaws.com")]
    pub token_audience: String,

    /// Mount PersistentVolumeClaim CLAIM at PATH (repeatable): sqlite and files
    /// sources, state_dir, a local vault, Prometheus files
    #[arg(long = "claim", value_name = "PATH=CLAIM")]
    pub claims: Vec<String>,

    /// Allow database traffic only to this network (repeatable) [default: anywhere]
    #[arg(long = "database-cidr", value_name = "CIDR")]
    pub database_cidrs: Vec<String>,

    /// One more TCP port the backup pods may reach (repeatable), e.g. a command job's
    /// database
    #[arg(long = "egress-port", value_name = "PORT")]
    pub egress_ports: Vec<u16>,

    /// Run the backups from one Deployment running `vault run --only backup` (with
    /// probes, a Service and a ServiceMonitor) instead of a CronJob per job
    #[arg(long)]
    pub scheduler: bool,

    /// Add a PrometheusRule with the alert rules of docs/operations.md
    #[arg(long)]
    pub prometheus_rule: bool,

    /// Write a kustomize tree (base/, overlays/eks/, overlays/web-identity/) into DIR
    /// instead of one stream on stdout
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run only the backups, only verify or only the drills (a backup host must not hold
    /// the verifier's or the restorer's credentials)
    #[arg(long, value_enum, value_name = "WHAT")]
    pub only: Option<RunOnly>,

    /// Print each schedule's next five fire times (UTC and its time zone) and exit
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RunOnly {
    Backup,
    Verify,
    Drill,
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// The jobs to drill [default: every configured job]
    #[arg(value_name = "JOB")]
    pub jobs: Vec<String>,

    /// Drill this backup (one JOB only)
    #[arg(long, value_name = "ID", conflicts_with_all = ["before", "sample"])]
    pub id: Option<String>,

    /// Drill the newest backup started before TIME (RFC 3339 or YYYY-MM-DD[THH:MM[:SS]], UTC)
    #[arg(long, value_name = "TIME", conflicts_with = "sample")]
    pub before: Option<String>,

    /// Drill N backups chosen at random among the newest --among of each job
    #[arg(long, value_name = "N")]
    pub sample: Option<usize>,

    /// How many of the newest backups --sample chooses among
    #[arg(long, value_name = "M", default_value_t = 10, requires = "sample")]
    pub among: usize,

    /// The age identity file [default: VAULT_AGE_IDENTITY_FILE, then [identities.restorer]]
    #[arg(long, short = 'i', value_name = "FILE")]
    pub identity: Option<PathBuf>,

    /// Show the evidence of earlier drills of JOB instead of drilling (no store access)
    #[arg(long, conflicts_with_all = ["id", "before", "sample", "prometheus", "pushgateway"])]
    pub history: bool,

    /// How many drills --history shows
    #[arg(long, value_name = "N", default_value_t = 10, requires = "history")]
    pub last: usize,

    /// Write Prometheus metrics to FILE [default: [drill] prometheus]
    #[arg(long, value_name = "FILE")]
    pub prometheus: Option<PathBuf>,

    /// Push Prometheus metrics to this Pushgateway URL [default: [drill] pushgateway]
    #[arg(long, value_name = "URL")]
    pub pushgateway: Option<String>,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the key; never overwritten [default: vault-identity.txt, or
    /// vault-signing.key with --signing]
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Make an ed25519 manifest signing key for the writer instead of an age identity
    #[arg(long)]
    pub signing: bool,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Jobs to back up, by name
    #[arg(value_name = "JOB")]
    pub jobs: Vec<String>,
    /// When a job is already being backed up by another run, wait for it to finish
    /// instead of failing (exit 2)
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this job
    #[arg(value_name = "JOB")]
    pub job: Option<String>,

    /// Read every manifest from the store, not from the cache of those already read
    /// (the cache is brought up to date)
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").args(["id", "latest", "before"])))]
#[command(group(clap::ArgGroup::new("dest").required(true).args(["output", "to", "stdout"])))]
pub struct RestoreArgs {
    /// The job to restore
    #[arg(value_name = "JOB")]
    pub job: String,

    /// Write the dump to stdout
    #[arg(value_name = "-", value_parser = clap::builder::PossibleValuesParser::new(["-"]))]
    pub stdout: Option<String>,

    /// The backup id to restore (see `vault list`)
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,

    /// The newest backup (the default)
    #[arg(long)]
    pub latest: bool,

    /// The newest backup started before TIME (RFC 3339 or YYYY-MM-DD[THH:MM[:SS]], UTC)
    #[arg(long, value_name = "TIME")]
    pub before: Option<String>,

    /// Write the dump to FILE (made atomically: a failed restore leaves no FILE); an
    /// existing FILE must be a regular file (for a pipe or device, use `-`)
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Restore into TARGET: a database URL (postgresql://USER@HOST:PORT/DB,
    /// mysql://USER@HOST:PORT/DB), a directory (files jobs; redis: DIR/dump.rdb), or
    /// what a command job's restore_command takes as {to}. Passwords come from
    /// PGPASSWORD/PGPASSFILE or MYSQL_PWD, never the URL.
    #[arg(long, value_name = "TARGET")]
    pub to: Option<String>,

    /// The age identity file [default: VAULT_AGE_IDENTITY_FILE, then [identities.restorer]]
    #[arg(long, short = 'i', value_name = "FILE")]
    pub identity: Option<PathBuf>,

    /// Replace an existing --output FILE (a regular file, never a link or device); restore into a database that already has tables
    #[arg(long)]
    pub force: bool,

    /// Files jobs, --to DIR: keep setuid, setgid and sticky bits from the archive
    /// (removed by default: owners are not restored, so a kept setuid bit runs as the
    /// user who restored). World-write is removed either way
    #[arg(long)]
    pub keep_special_bits: bool,

    /// Create the --to database first when it does not exist
    #[arg(long)]
    pub create: bool,

    /// PostgreSQL: drop the objects in the dump before recreating them (pg_restore --clean --if-exists); needs --force on a non-empty database
    #[arg(long)]
    pub clean: bool,

    /// PostgreSQL: restore with N parallel workers (the dump is first written to a private temporary file)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: Option<u32>,

    /// One more argument for the restore tool (pg_restore, mariadb), e.g. --restore-arg=--no-owner
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub restore_arg: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Only this job
    #[arg(value_name = "JOB")]
    pub job: Option<String>,

    /// Also decrypt and decompress, checking the plaintext hash (needs the age identity)
    #[arg(long)]
    pub deep: bool,

    /// The age identity file for --deep [default: VAULT_AGE_IDENTITY_FILE, then [identities.restorer]]
    #[arg(long, short = 'i', value_name = "FILE")]
    pub identity: Option<PathBuf>,

    /// Download and hash every backup (default: the newest of each job; every backup's
    /// versions, locks and signature are checked either way)
    #[arg(long, conflicts_with_all = ["sample", "since"])]
    pub all: bool,

    /// Also download and hash N randomly chosen older backups of each job
    #[arg(long, value_name = "N")]
    pub sample: Option<usize>,

    /// Also download and hash every backup started at or after TIME (RFC 3339 or YYYY-MM-DD[THH:MM[:SS]], UTC)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// Write Prometheus metrics to FILE (for node-exporter's textfile collector) [default: [verify] prometheus]
    #[arg(long, value_name = "FILE")]
    pub prometheus: Option<PathBuf>,

    /// Push Prometheus metrics to this Pushgateway URL [default: [verify] pushgateway]
    #[arg(long, value_name = "URL")]
    pub pushgateway: Option<String>,

    /// Read every manifest and lock from the store, not from the cache of what cannot
    /// change (the cache is checked against the store and brought up to date)
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Only these jobs (a `[[job]]` name covers the jobs it expands into) [default: every configured job]
    #[arg(value_name = "JOB")]
    pub jobs: Vec<String>,

    /// Print what would be pruned and the bytes it would free; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Probe only this identity (repeatable), e.g. on a host that holds only its
    /// credentials; without the writer the newest canary of an earlier run is used
    #[arg(
        long,
        value_name = "ROLE",
        value_parser = clap::builder::PossibleValuesParser::new(["writer", "verifier", "restorer", "pruner"])
    )]
    pub only: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory to create [default: ./vault-demo, or vault-demo-2, ... if taken]
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
}
