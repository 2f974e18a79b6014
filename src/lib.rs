//! vault: immutable, off-site, encrypted database backups.
//!
//! A backup is one streaming pass: a source's dump is hashed, compressed with zstd,
//! encrypted to age recipients, hashed again and written to a write-once store; a
//! manifest written last is the commit point. See docs/design.md.
//!
//! # Layout
//!
//! Layers, top to bottom; a module imports only modules below it, and nothing below
//! [`config`] imports it (`tests/layers.rs` checks both, and the 600-line limit).
//!
//! - [`cli`]: clap types only. [`commands`]: one module per subcommand, each with `run`
//!   (`backup`, `list`, `restore` + `restore/server`, `verify/` (bucket, job, backup,
//!   judge, output), `doctor/` (identities, canary, probes, probe, enforcement, matrix,
//!   principal, findings, output), `keygen`, `demo`, `run/`, `drill/`, `deploy/`
//!   (Kubernetes manifests)).
//! - [`config`]: `vault.toml` -> validated [`config::Settings`] (file, jobs, schedule,
//!   sections); deserialises into the types the layers below own.
//! - [`catalog`]: a job's manifests read back through the `Store` trait; choosing one;
//!   one listing of the vault split by job; the verifier's cache of what cannot change.
//! - [`pipeline`]: the backup and restore streams ([`pipe`] and [`digest`] are its
//!   parts); only it makes a `Written`, and [`manifest`] makes a manifest only from one.
//! - [`source`]: what a job backs up ([`source::Spec`], engine settings) and the dumps
//!   (sqlite, files, command, postgres, mysql, redis; `child` runs the tools).
//! - [`store`]: the small `Store` trait, its conformance suite, the local directory and
//!   `s3/` (target, session, upload, read, bucket, errors, auth); `cleanup` finishes
//!   abandoned uploads.
//! - [`notify`]: pings and Pushgateway pushes; [`metrics`]: Prometheus text.
//! - Leaves: [`manifest`] (manifest, backup ids, key scheme), [`signing`] (signatures,
//!   chain, trust rule), [`crypto`] (age keys), [`retention`] (tiers, lock dates),
//!   [`retry`] (the one backoff), [`https`] (the one TLS set-up), [`units`] (times,
//!   durations, sizes), [`names`] (job names, prefixes), [`private_file`] (state files
//!   written atomically, 0600), [`error`] (kinds and exit
//!   codes), [`report`] and [`progress`] (output), [`signal`] (SIGINT/SIGTERM).

#![forbid(unsafe_code)]

pub mod catalog;
pub mod cli;
pub mod commands;
pub mod config;
pub mod crypto;
pub mod digest;
pub mod error;
pub mod https;
pub mod joblock;
pub mod manifest;
pub mod metrics;
pub mod names;
pub mod notify;
pub mod pipe;
pub mod pipeline;
pub mod private_file;
pub mod progress;
pub mod report;
pub mod retention;
pub mod retry;
pub mod signal;
pub mod signing;
pub mod source;
pub mod store;
pub mod units;

use std::path::PathBuf;

use cli::{Cli, Command};
use commands::Context;
use config::Settings;

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Keygen(args) => return commands::keygen::run(args, cli.json),
        Command::Demo(args) => return commands::demo::run(args).await,
        _ => {}
    }
    let path = config_path(cli.config.clone());
    let settings = if cli.config_stdin {
        let text = std::io::read_to_string(std::io::stdin()).map_err(|e| {
            error::Error::config(format!("cannot read the config text from stdin: {e}"))
        })?;
        Settings::parse(&text, &path)?
    } else {
        Settings::load(&path)?
    };
    let ctx = Context {
        settings,
        json: cli.json,
        verbose: cli.verbose,
        log_format: cli.log_format,
    };
    let outcome = match &cli.command {
        Command::Backup(args) => commands::backup::run(&ctx, args).await,
        Command::List(args) => commands::list::run(&ctx, args).await,
        Command::Restore(args) => commands::restore::run(&ctx, args).await,
        Command::Verify(args) => commands::verify::run(&ctx, args).await,
        Command::Prune(args) => commands::prune::run(&ctx, args).await,
        Command::Doctor(args) => commands::doctor::run(&ctx, args).await,
        Command::Run(args) => commands::run::run(&ctx, args).await,
        Command::Drill(args) => commands::drill::run(&ctx, args).await,
        Command::Deploy(args) => commands::deploy::run(&ctx, args),
        Command::Keygen(_) | Command::Demo(_) => unreachable!("handled above"),
    };
    // An abandoned upload's abort, spawned when its future was dropped.
    store::cleanup::drain(std::time::Duration::from_secs(10)).await;
    outcome
}

/// `--config`/`VAULT_CONFIG`, else `./vault.toml` if present, else `/etc/vault/vault.toml`.
fn config_path(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| {
        let local = PathBuf::from("vault.toml");
        if local.exists() {
            local
        } else {
            PathBuf::from("/etc/vault/vault.toml")
        }
    })
}
