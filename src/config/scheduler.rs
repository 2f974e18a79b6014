//! `[scheduler]`: how `vault run` runs the schedules — the time zone they are read in,
//! how many jobs at once, jitter, catch-up after downtime, retries, how long running
//! jobs get at shutdown, and where it answers for metrics and health.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::TimeDelta;
use chrono_tz::Tz;

use super::file::SchedulerSection;
use super::schedule::parse_timezone;
use crate::units::parse_duration;

/// The validated `[scheduler]` section.
#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// The zone schedules are read in unless a job names its own (default UTC).
    pub timezone: Tz,
    /// How many runs (backups and verifies) at once (default 1).
    pub max_concurrent: usize,
    /// Each run starts up to this much later than its fire time (default none).
    pub jitter: TimeDelta,
    /// With a seed the delay is fixed per job and day (for tests); else random.
    pub jitter_seed: Option<u64>,
    /// How long after a missed fire time a restarted scheduler still runs it once;
    /// `None`: each job's interval.
    pub catch_up: Option<TimeDelta>,
    /// A failed run is tried again this many times (default 2) ...
    pub retries: u32,
    /// ... after this pause, doubled each time (default 5m), never past the next fire.
    pub retry_delay: TimeDelta,
    /// At SIGTERM, running jobs get this long to finish (default 25s).
    pub shutdown_grace: Duration,
    /// Where `/metrics`, `/healthz` and `/readyz` answer (off unless set).
    pub listen: Option<SocketAddr>,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            timezone: Tz::UTC,
            max_concurrent: 1,
            jitter: TimeDelta::zero(),
            jitter_seed: None,
            catch_up: None,
            retries: 2,
            retry_delay: TimeDelta::minutes(5),
            shutdown_grace: Duration::from_secs(25),
            listen: None,
        }
    }
}

/// Validates `[scheduler]`; the error names the key.
pub(super) fn scheduler_settings(s: SchedulerSection) -> Result<SchedulerSettings, String> {
    let defaults = SchedulerSettings::default();
    let duration = |key: &str, text: &Option<String>| {
        text.as_deref()
            .map(|t| parse_duration(t).map_err(|e| format!("{key}: {e}")))
            .transpose()
    };
    let max_concurrent = s.max_concurrent.unwrap_or(defaults.max_concurrent);
    if !(1..=64).contains(&max_concurrent) {
        return Err(format!(
            "max_concurrent {max_concurrent} must be between 1 and 64"
        ));
    }
    let retries = s.retries.unwrap_or(defaults.retries);
    if retries > 10 {
        return Err(format!("retries {retries} must be at most 10"));
    }
    let shutdown_grace = duration("shutdown_grace", &s.shutdown_grace)?
        .map_or(defaults.shutdown_grace, |d| {
            d.to_std().unwrap_or(defaults.shutdown_grace)
        });
    let listen = s
        .listen
        .as_deref()
        .map(|a| {
            a.parse::<SocketAddr>().map_err(|_| {
                format!(
                    "listen `{}` is not an address and port (e.g. \"127.0.0.1:9464\" or \
                     \"[::]:9464\")",
                    crate::names::shown(a)
                )
            })
        })
        .transpose()?;
    Ok(SchedulerSettings {
        timezone: s
            .timezone
            .as_deref()
            .map(|t| parse_timezone(t).map_err(|e| format!("timezone: {e}")))
            .transpose()?
            .unwrap_or(defaults.timezone),
        max_concurrent,
        jitter: duration("jitter", &s.jitter)?.unwrap_or(defaults.jitter),
        jitter_seed: s.jitter_seed,
        catch_up: duration("catch_up", &s.catch_up)?,
        retries,
        retry_delay: duration("retry_delay", &s.retry_delay)?.unwrap_or(defaults.retry_delay),
        shutdown_grace,
        listen,
    })
}
