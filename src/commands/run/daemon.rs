//! The scheduler's loop: sleep until the next fire time, start what is due, reload on
//! SIGHUP, drain on SIGTERM/SIGINT.
//!
//! - **No overlap.** A unit still running (or waiting for a slot) at its next fire time
//!   is not started again: the skip is logged, counted and, with a ping, reported. A
//!   backup another process holds the job lock for (a hand-started `vault backup`) is
//!   skipped the same way; the child would find the lock too.
//! - **Concurrency.** At most `max_concurrent` runs at once; the rest wait for a slot in
//!   fire-time order (the semaphore is fair).
//! - **Retries.** A run that fails (exit code 1) is tried again after `retry_delay`,
//!   doubling, at most `retries` times and never past the unit's next fire time.
//!   Configuration, integrity and access failures are not retried: a retry cannot help.
//! - **Missed runs.** Each fire time acted on is recorded; at start, a unit whose fire
//!   time passed while the scheduler was down, within `catch_up` (default: its
//!   interval), runs once.
//! - **Shutdown.** SIGTERM or SIGINT: nothing new starts, running children get
//!   `shutdown_grace` to finish, then SIGTERM; then the scheduler exits 0.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::plan::{self, Task, Unit};
use super::runner::{Launcher, Phase, backup_size, until};
use super::state::State;
use super::status::{Outcome, Status};
use super::systemd;
use crate::cli::RunOnly;
use crate::config::Settings;
use crate::joblock::{Busy, JobLock, holder};
use crate::notify::{self, Event};

/// The loop wakes at least this often, to say it is alive and to notice a clock that
/// jumped.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// One unit and where it is in its schedule.
struct Slot {
    unit: Unit,
    /// The next fire time.
    fire: Option<DateTime<Utc>>,
    /// When it starts: the fire time plus its jitter.
    due: Option<DateTime<Utc>>,
    /// Running or waiting for a run slot; shared with the run.
    busy: Arc<AtomicBool>,
}

/// What every run needs, shared.
struct Shared {
    launcher: Launcher,
    status: Arc<Status>,
    phase: watch::Receiver<Phase>,
    /// Where drills keep their evidence, and how many per job: for the drill metrics.
    drill_evidence: (std::path::PathBuf, usize),
}

pub struct Daemon {
    pub settings: Settings,
    pub only: Option<RunOnly>,
    /// Which vault this is, for the job locks and the state file.
    pub vault: String,
    pub launcher: Launcher,
    pub status: Arc<Status>,
}

/// What starting runs needs: the configuration in force, the run slots, the state
/// file and the runs under way.
struct Runs {
    settings: Settings,
    vault: String,
    shared: Arc<Shared>,
    semaphore: Arc<Semaphore>,
    state: State,
    set: JoinSet<()>,
}

impl Daemon {
    /// Runs until SIGTERM or SIGINT, then drains; the error is for a failure to start.
    pub async fn serve(self) -> anyhow::Result<()> {
        let Daemon {
            settings,
            only,
            vault,
            launcher,
            status,
        } = self;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let (phase_tx, phase_rx) = watch::channel(Phase::Running);
        let mut slots = make_slots(&settings, only, &[], &status);
        let mut runs = Runs {
            state: State::load(State::path(&settings.signing.state_dir, &vault)),
            semaphore: Arc::new(Semaphore::new(settings.scheduler.max_concurrent)),
            shared: Arc::new(Shared {
                launcher,
                status: status.clone(),
                phase: phase_rx,
                drill_evidence: (settings.signing.state_dir.clone(), settings.drill.history),
            }),
            settings,
            vault,
            set: JoinSet::new(),
        };

        // Fire times missed while the scheduler was down: once each.
        let now = Utc::now();
        for slot in slots.iter_mut() {
            let unit = &slot.unit;
            let window = runs.settings.scheduler.catch_up.unwrap_or(unit.interval);
            let last = runs.state.last_fire(&unit.key());
            if let Some(missed) = plan::missed(&unit.schedule, last, now, window) {
                tracing::info!(unit = %unit.key(), "missed its run at {} while vault run was down: running it once now", missed.to_rfc3339());
                let next = slot.fire;
                runs.dispatch(slot, missed, next);
            }
        }
        systemd::notify("READY=1");
        tracing::info!(
            "vault run: {} scheduled, {} at a time",
            describe(&slots),
            runs.settings.scheduler.max_concurrent
        );

        let signal = loop {
            status.beat();
            let now = Utc::now();
            for slot in slots.iter_mut() {
                let (Some(fire), Some(due)) = (slot.fire, slot.due) else {
                    continue;
                };
                if due > now {
                    continue;
                }
                let next = slot.unit.schedule.next_after(now.max(fire));
                runs.dispatch(slot, fire, next);
                slot.schedule(next, &runs.settings, &status);
            }
            let wait = slots
                .iter()
                .filter_map(|s| s.due)
                .min()
                .map_or(HEARTBEAT, |due| {
                    (due - Utc::now())
                        .to_std()
                        .unwrap_or_default()
                        .min(HEARTBEAT)
                });
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = term.recv() => break "SIGTERM",
                _ = int.recv() => break "SIGINT",
                _ = hup.recv() => slots = runs.reload(only, slots),
                Some(_) = runs.set.join_next(), if !runs.set.is_empty() => {}
            }
        };

        // Draining: nothing new starts; what runs gets its grace time, then SIGTERM.
        systemd::notify("STOPPING=1");
        let grace = runs.settings.scheduler.shutdown_grace;
        tracing::info!(
            "{signal}: stopping; {} run(s) get {}s to finish",
            runs.set.len(),
            grace.as_secs()
        );
        let _ = phase_tx.send(Phase::Draining);
        let drained = tokio::time::timeout(grace, async {
            while runs.set.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "{} run(s) still going after {}s: sending them SIGTERM",
                runs.set.len(),
                grace.as_secs()
            );
            let _ = phase_tx.send(Phase::Terminating);
            while runs.set.join_next().await.is_some() {}
        }
        tracing::info!("vault run stopped");
        Ok(())
    }
}

impl Slot {
    /// Sets the next fire time, and when the run starts (with its jitter).
    fn schedule(&mut self, next: Option<DateTime<Utc>>, settings: &Settings, status: &Status) {
        let s = &settings.scheduler;
        let key = self.unit.key();
        self.fire = next;
        self.due = next.map(|f| f + plan::jitter(s.jitter, s.jitter_seed, &key, f));
        status.update(&key, |u| u.next_run = next);
        if let Some(next) = next {
            tracing::debug!(unit = %key, "next run at {}", next.to_rfc3339());
        }
    }
}

impl Runs {
    /// SIGHUP: the configuration read again and, if valid, put in force (runs under
    /// way go on); if not, the error logged and the old one kept.
    fn reload(&mut self, only: Option<RunOnly>, slots: Vec<Slot>) -> Vec<Slot> {
        systemd::notify("RELOADING=1");
        let slots = match Settings::load_with_text(&self.settings.path) {
            Err(e) => {
                tracing::error!("SIGHUP: {e}; still running the previous configuration");
                slots
            }
            Ok((new, text)) => {
                self.shared.launcher.set_config_text(text);
                if new.scheduler.max_concurrent != self.settings.scheduler.max_concurrent {
                    self.semaphore = Arc::new(Semaphore::new(new.scheduler.max_concurrent));
                }
                let slots = make_slots(&new, only, &slots, &self.shared.status);
                self.settings = new;
                tracing::info!(
                    "SIGHUP: configuration reloaded: {} scheduled",
                    describe(&slots)
                );
                slots
            }
        };
        systemd::notify("READY=1");
        slots
    }

    /// Starts the run of `slot` for its fire time `fire` (whose next fire time is
    /// `next`), unless it is still running or another process holds its job.
    fn dispatch(&mut self, slot: &mut Slot, fire: DateTime<Utc>, next: Option<DateTime<Utc>>) {
        let unit = slot.unit.clone();
        let key = unit.key();
        self.state.record(&key, fire);
        let held = match &unit.task {
            _ if slot.busy.load(Ordering::SeqCst) => {
                Some("its previous run is still going".to_string())
            }
            Task::Backup(job) => {
                match JobLock::try_acquire(&self.settings.signing.state_dir, &self.vault, job) {
                    Err(Busy::Held(pid)) => Some(format!(
                        "job `{job}` is being backed up by {} (not this scheduler)",
                        holder(pid)
                    )),
                    _ => None,
                }
            }
            Task::Verify | Task::Drill => None,
        };
        if let Some(why) = held {
            skipped(&self.shared.status, &unit, fire, &why);
            return;
        }
        slot.busy.store(true, Ordering::SeqCst);
        self.shared.status.update(&key, |u| u.running = true);
        let semaphore = self.semaphore.clone();
        let busy = slot.busy.clone();
        let shared = self.shared.clone();
        let s = &self.settings.scheduler;
        let retry = (s.retries, s.retry_delay);
        self.set.spawn(async move {
            run_unit(&unit, fire, next, semaphore, retry, &shared).await;
            busy.store(false, Ordering::SeqCst);
            shared.status.update(&unit.key(), |u| u.running = false);
        });
    }
}

/// A run not started: logged, counted and, with a ping, reported (healthchecks.io's
/// `/log`, which changes no check's state).
fn skipped(status: &Status, unit: &Unit, fire: DateTime<Utc>, why: &str) {
    let key = unit.key();
    tracing::warn!(unit = %key, "skipped the run at {}: {why}", fire.to_rfc3339());
    status.update(&key, |u| u.skipped_overlap += 1);
    if let Some(ping) = unit.ping.clone() {
        let body = format!("vault run skipped {key} at {}: {why}", fire.to_rfc3339());
        tokio::spawn(async move {
            if let Err(e) = notify::ping(&ping, Event::Log, &body).await {
                tracing::warn!("{e}");
            }
        });
    }
}

/// The slots of `settings`' units, keeping the `busy` flag of units that were already
/// there (a reload does not forget what is running).
fn make_slots(
    settings: &Settings,
    only: Option<RunOnly>,
    old: &[Slot],
    status: &Status,
) -> Vec<Slot> {
    let (units, unscheduled) = plan::units(settings, only);
    if !unscheduled.is_empty() {
        tracing::info!("not scheduled (no `schedule`): {}", unscheduled.join(", "));
    }
    let now = Utc::now();
    let slots: Vec<Slot> = units
        .into_iter()
        .map(|unit| {
            let key = unit.key();
            let busy = old
                .iter()
                .find(|o| o.unit.key() == key)
                .map_or_else(Arc::default, |o| o.busy.clone());
            status.update(&key, |u| {
                u.task = unit.kind();
                u.job = unit.job().map(str::to_string);
            });
            let next = unit.schedule.next_after(now);
            let mut slot = Slot {
                unit,
                fire: None,
                due: None,
                busy,
            };
            slot.schedule(next, settings, status);
            slot
        })
        .collect();
    let keys: Vec<String> = slots.iter().map(|s| s.unit.key()).collect();
    status.retain(&keys);
    slots
}

fn describe(slots: &[Slot]) -> String {
    let names: Vec<String> = slots
        .iter()
        .map(|s| format!("{} ({})", s.unit.key(), s.unit.schedule))
        .collect();
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

/// A slot to run in, unless the scheduler starts draining first.
async fn slot(
    semaphore: Arc<Semaphore>,
    key: &str,
    phase: &mut watch::Receiver<Phase>,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(permit) = semaphore.clone().try_acquire_owned() {
        return Some(permit);
    }
    tracing::info!(unit = %key, "waiting for a run slot (max_concurrent)");
    tokio::select! {
        permit = semaphore.acquire_owned() => permit.ok(),
        _ = until(phase, |p| *p != Phase::Running) => None,
    }
}

/// One run of `unit` for `fire`, with its retries, recorded in the status and the log.
async fn run_unit(
    unit: &Unit,
    fire: DateTime<Utc>,
    next: Option<DateTime<Utc>>,
    semaphore: Arc<Semaphore>,
    (retries, retry_delay): (u32, TimeDelta),
    shared: &Shared,
) {
    let key = unit.key();
    let mut phase = shared.phase.clone();
    let Some(_permit) = slot(semaphore, &key, &mut phase).await else {
        tracing::info!(unit = %key, "not started: vault run is stopping");
        return;
    };
    tracing::info!(unit = %key, "started (scheduled for {})", fire.to_rfc3339());
    let started = std::time::Instant::now();
    let mut attempt = 0;
    let (outcome, size) = loop {
        let ran = match shared.launcher.run(unit, &mut phase).await {
            Ok(ran) => ran,
            Err(e) => {
                tracing::error!(unit = %key, "could not start `vault {}`: {e}", unit.args().join(" "));
                break (Outcome::Failure, None);
            }
        };
        if unit.task == Task::Drill
            && let Some(metrics) = crate::commands::drill::metrics_of_report(
                &shared.drill_evidence.0,
                shared.drill_evidence.1,
                &ran.stdout,
            )
        {
            shared.status.set_drill(metrics);
        }
        if ran.stopped {
            tracing::warn!(unit = %key, "interrupted at shutdown after {:.1}s: no manifest was written", ran.took.as_secs_f64());
            break (Outcome::Interrupted, None);
        }
        if ran.code == Some(0) {
            break (Outcome::Success, backup_size(&ran.stdout));
        }
        let code = ran
            .code
            .map_or_else(|| "a signal".to_string(), |c| format!("exit code {c}"));
        let tail = ran.tail.last().cloned().unwrap_or_default();
        let delay = retry_delay * 2i32.pow(attempt);
        let retry_at = Utc::now() + delay;
        let retryable = ran.code == Some(1) && *phase.borrow() == Phase::Running;
        if retryable && attempt < retries && next.is_none_or(|n| retry_at < n) {
            attempt += 1;
            tracing::warn!(unit = %key, "failed ({code}: {tail}); retry {attempt} of {retries} in {}s", delay.num_seconds());
            let stopped = tokio::select! {
                _ = tokio::time::sleep(delay.to_std().unwrap_or_default()) => false,
                _ = until(&mut phase, |p| *p != Phase::Running) => true,
            };
            if !stopped {
                continue;
            }
        } else if retryable && attempt < retries {
            tracing::warn!(unit = %key, "failed ({code}: {tail}); not retried: the next run is sooner");
        }
        tracing::error!(unit = %key, "failed ({code}): {tail}");
        break (Outcome::Failure, None);
    };
    let took = started.elapsed().as_secs_f64();
    let now = Utc::now();
    shared.status.update(&key, |u| {
        *u.runs.entry(outcome).or_default() += 1;
        u.last_duration = Some(took);
        match outcome {
            Outcome::Success => {
                u.last_success = Some(now);
                if size.is_some() {
                    u.last_size = size;
                }
            }
            Outcome::Failure | Outcome::Interrupted => u.last_failure = Some(now),
        }
    });
    if outcome == Outcome::Success {
        let size = size
            .map(|s| format!(", {} stored", crate::report::human_bytes(s)))
            .unwrap_or_default();
        tracing::info!(unit = %key, "finished in {took:.1}s{size}");
    }
}
