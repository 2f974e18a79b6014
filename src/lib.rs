//! vault: immutable, off-site, encrypted database backups.
//!
//! A backup is one streaming pass: a source's dump is hashed, compressed with zstd,
//! encrypted to age recipients, hashed again and written to a write-once store; a
//! manifest written last is the commit point. See docs/design.md.
//!
//! # Layout
//!
//! - [`cli`]: clap types; [`commands`]: one module per subcommand, each with `run`.
//! - [`config`]: `vault.toml` -> validated [`config::Settings`].
//! - [`source`]: where dumps come from (sqlite, files, command).
//! - [`pipeline`]: the backup and restore streams; [`pipe`] and [`digest`] are its parts.
//! - [`store`]: the small `Store` trait, the local vault, the conformance suite.
//! - [`manifest`]: the manifest, backup ids and key scheme; [`catalog`] reads them back.
//! - [`retention`]: tiers and lock dates; [`crypto`]: age keys.
//! - [`notify`]: pings and Pushgateway pushes; [`https`]: the one HTTPS set-up (TLS
//!   decisions, the HTTP client) that they, doctor and the S3 store share.
//! - [`error`]: error kinds and exit codes; [`report`], [`progress`]: output.

#![forbid(unsafe_code)]

pub mod catalog;
pub mod cli;
pub mod commands;
pub mod config;
pub mod crypto;
pub mod digest;
pub mod error;
pub mod https;
pub mod manifest;
pub mod metrics;
pub mod names;
pub mod notify;
pub mod pipe;
pub mod pipeline;
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
    let ctx = Context {
        settings: Settings::load(&config_path(cli.config.clone()))?,
        json: cli.json,
    };
    let outcome = match &cli.command {
        Command::Backup(args) => commands::backup::run(&ctx, args).await,
        Command::List(args) => commands::list::run(&ctx, args).await,
        Command::Restore(args) => commands::restore::run(&ctx, args).await,
        Command::Verify(args) => commands::verify::run(&ctx, args).await,
        Command::Doctor(args) => commands::doctor::run(&ctx, args).await,
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
