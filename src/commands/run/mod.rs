//! `vault run`: the scheduler. Stays in the foreground (a systemd service, a
//! container's main process, a Kubernetes Deployment) and runs each job's backup on
//! its `schedule`, and `vault verify` on `[verify] schedule`.
//!
//! Read top to bottom: the configuration was loaded and fully validated before this
//! runs (exit 2 otherwise); `--dry-run` prints the next fire times and stops; else the
//! units are planned (`plan`), the HTTP endpoint started when `listen` is set (`http`),
//! and the loop runs (`daemon`) until SIGTERM or SIGINT. Each run is a `vault backup
//! JOB` or `vault verify` child process (`runner`), recorded for `/metrics` (`status`)
//! and, for catch-up after downtime, in the state directory (`state`).

mod daemon;
mod http;
mod plan;
mod runner;
mod state;
mod status;
mod systemd;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::Context;
use crate::cli::{RunArgs, RunOnly};
use crate::config::Settings;
use crate::error::Error;

pub async fn run(ctx: &Context, args: &RunArgs) -> anyhow::Result<()> {
    let settings = &ctx.settings;
    let (units, unscheduled) = plan::units(settings, args.only);
    if units.is_empty() {
        return Err(Error::config(nothing_to_run(settings, args.only, &unscheduled)).into());
    }
    if args.dry_run {
        print!("{}", fire_times(&units, Utc::now(), 5));
        return Ok(());
    }
    // The configuration in force and the text its runs read (runner): read again, so
    // that both come from one reading of the file.
    let (settings, config_text) = Settings::load_with_text(&settings.path)?;
    let status = Arc::new(status::Status::default());
    if let Some(addr) = settings.scheduler.listen {
        http::serve(addr, status.clone()).await?;
    }
    let launcher = runner::Launcher {
        exe: std::env::current_exe().map_err(|e| {
            Error::config(format!(
                "cannot find the vault binary to run jobs with: {e}"
            ))
        })?,
        config: std::path::absolute(&settings.path).unwrap_or_else(|_| settings.path.clone()),
        config_text: std::sync::Mutex::new(config_text.into()),
        verbose: ctx.verbose,
        log_format: ctx.log_format,
    };
    daemon::Daemon {
        vault: super::vault_id(&settings),
        settings,
        only: args.only,
        launcher,
        status,
    }
    .serve()
    .await
}

/// Each unit's next `n` fire times after `now`, in UTC and in its time zone.
fn fire_times(units: &[plan::Unit], now: DateTime<Utc>, n: usize) -> String {
    let mut out = String::new();
    for unit in units {
        let tz = unit.schedule.timezone();
        out.push_str(&format!("{}  \"{}\"  ({tz})\n", unit.key(), unit.schedule));
        let mut at = now;
        for _ in 0..n {
            let Some(next) = unit.schedule.next_after(at) else {
                break;
            };
            let local = next.with_timezone(&tz);
            out.push_str(&format!(
                "  {}   {}\n",
                next.format("%Y-%m-%d %H:%M:%S UTC"),
                local.format("%Y-%m-%d %H:%M:%S %Z (%:z)")
            ));
            at = next;
        }
    }
    out
}

/// Why `vault run` has nothing to run, in the words of what is missing for `only`.
fn nothing_to_run(settings: &Settings, only: Option<RunOnly>, unscheduled: &[String]) -> String {
    let path = settings.path.display();
    let backups = if unscheduled.is_empty() {
        format!("no job in {path} has a `schedule`")
    } else {
        format!(
            "no job in {path} has a `schedule` (jobs without one: {})",
            unscheduled.join(", ")
        )
    };
    match only {
        Some(RunOnly::Backup) => format!("nothing to run with --only backup: {backups}"),
        Some(RunOnly::Verify) => format!(
            "nothing to run with --only verify: {path} has no [verify] schedule \
             (e.g. `schedule = \"0 */6 * * *\"` in its [verify] section)"
        ),
        Some(RunOnly::Drill) => format!(
            "nothing to run with --only drill: {path} has no [drill] schedule \
             (e.g. `schedule = \"0 5 * * 0\"` in its [drill] section)"
        ),
        None => format!(
            "nothing to run: {backups}, and there is neither a [verify] nor a [drill] schedule"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_dry_run_shows_the_next_fire_times_in_utc_and_the_zone() {
        let tz: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        let unit = plan::Unit {
            task: plan::Task::Backup("app".into()),
            schedule: crate::config::Schedule::parse_in("30 2 * * *", tz).unwrap(),
            interval: chrono::TimeDelta::days(1),
            ping: None,
        };
        let now = Utc.with_ymd_and_hms(2027, 3, 27, 12, 0, 0).unwrap();
        assert_eq!(
            fire_times(&[unit], now, 2),
            "backup:app  \"30 2 * * *\"  (Europe/Berlin)\n  \
             2027-03-28 01:00:00 UTC   2027-03-28 03:00:00 CEST (+02:00)\n  \
             2027-03-29 00:30:00 UTC   2027-03-29 02:30:00 CEST (+02:00)\n"
        );
    }
}
