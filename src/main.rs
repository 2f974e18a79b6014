//! The `vault` binary: parse, set up logging, run, map the outcome to an exit code.

use std::io::IsTerminal;
use std::time::Duration;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = vault::cli::Cli::parse();
    // The cloud SDK's own warnings (e.g. each failed credential refresh) repeat what
    // vault's error says; they show with -vv or VAULT_LOG.
    // `vault run` logs each event (scheduled, started, finished, skipped, failed) at
    // info: that is its output.
    let daemon = matches!(cli.command, vault::cli::Command::Run(_));
    let default = match cli.verbose {
        0 if daemon => "vault=info,warn,aws_config=error",
        0 => "warn,aws_config=error",
        1 => "vault=info,warn,aws_config=error",
        _ => "vault=debug,info",
    };
    let filter = EnvFilter::try_from_env("VAULT_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match cli.log_format {
        vault::cli::LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        vault::cli::LogFormat::Json => logs.json().flatten_event(true).init(),
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(vault::run(cli));
    // Stages of an abandoned backup stop on their own once their pipes close; do not
    // wait long for them.
    runtime.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(vault::error::exit_code_for(&err) as u8)
        }
    }
}
