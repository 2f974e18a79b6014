//! Adaptive compression: the zstd level moves between frames, within configured
//! bounds, so the compressor keeps pace with the dump instead of holding it up.
//!
//! Every [`INTERVAL`] the reading thread looks at where the time went:
//! - it mostly waited for a free slot, and the writer mostly waited for frames: the
//!   compressor is the bottleneck — one level down;
//! - it mostly waited for a free slot, and the writer mostly wrote (the store takes
//!   the data slower than it is compressed): one level up, smaller output is faster;
//! - it mostly waited for the source: up when the machine has CPU to spare (half a
//!   core idle), **down when it has none** — then the compressor competes with the
//!   database for the cores and every cycle it saves goes to the dump — else stay.
//!
//! Idle CPU is read from /proc/stat (the whole machine; in a container with a CPU
//! quota that overstates what is spare, and the first rule then lowers the level
//! again).

use std::time::{Duration, Instant};

use super::compress::WriterTimes;
use std::sync::atomic::Ordering;

/// How often the level may change.
pub const INTERVAL: Duration = Duration::from_millis(250);

/// The levels adaptive compression may use, lowest and highest (zstd's negative
/// "fast" levels are allowed as the lowest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levels {
    pub min: i32,
    pub max: i32,
}

impl Levels {
    pub const LOWEST: i32 = -7;
    pub const HIGHEST: i32 = 22;

    /// Parses `"MIN..=MAX"` (e.g. `"1..=6"`); the error says what is wrong.
    pub fn parse(text: &str) -> Result<Levels, String> {
        let bad = || {
            format!(
                "`{text}` is not a level range: write \"MIN..=MAX\", e.g. \"1..=6\", with \
                 {} <= MIN <= MAX <= {}",
                Levels::LOWEST,
                Levels::HIGHEST
            )
        };
        let (min, max) = text.split_once("..=").ok_or_else(bad)?;
        let min: i32 = min.trim().parse().map_err(|_| bad())?;
        let max: i32 = max.trim().parse().map_err(|_| bad())?;
        if !(Levels::LOWEST..=Levels::HIGHEST).contains(&min)
            || !(Levels::LOWEST..=Levels::HIGHEST).contains(&max)
            || min > max
            || min == 0
        {
            return Err(bad());
        }
        Ok(Levels { min, max })
    }
}

/// What one interval showed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observed {
    /// The reader waited for a free slot (compressor or output behind).
    pub waited: Duration,
    /// The reader waited for the source.
    pub reading: Duration,
    /// The writer waited for the next frame.
    pub writer_waiting: Duration,
    /// The writer encrypted and handed frames on.
    pub writer_writing: Duration,
    /// Idle CPUs on the machine, on average (None: unknown).
    pub idle_cores: Option<f64>,
}

/// The step one interval calls for: -1, 0 or +1.
pub fn decide(o: &Observed) -> i32 {
    if o.waited > o.reading {
        if o.writer_writing > o.writer_waiting {
            1
        } else {
            -1
        }
    } else {
        match o.idle_cores {
            Some(idle) if idle >= 0.5 => 1,
            Some(idle) if idle < 0.2 => -1,
            _ => 0,
        }
    }
}

/// The controller the reading thread asks for each frame's level.
pub struct Adapt {
    levels: Levels,
    level: i32,
    interval: Duration,
    started: Instant,
    seen: Observed,
    writer_start: (u64, u64),
    cpu_start: Option<CpuTicks>,
}

impl Adapt {
    pub fn new(levels: Levels, start: i32) -> Self {
        Self::with_interval(levels, start, INTERVAL)
    }

    pub fn with_interval(levels: Levels, start: i32, interval: Duration) -> Self {
        Adapt {
            levels,
            level: start.clamp(levels.min, levels.max),
            interval,
            started: Instant::now(),
            seen: Observed::default(),
            writer_start: (0, 0),
            cpu_start: CpuTicks::read(),
        }
    }

    /// The level for the next frame, after the reader waited `waited` for its slot
    /// and `reading` for its data.
    pub fn next(&mut self, waited: Duration, reading: Duration, writer: &WriterTimes) -> i32 {
        self.seen.waited += waited;
        self.seen.reading += reading;
        if self.started.elapsed() < self.interval {
            return self.level;
        }
        let waiting = writer.waiting_ns.load(Ordering::Relaxed);
        let writing = writer.writing_ns.load(Ordering::Relaxed);
        self.seen.writer_waiting = Duration::from_nanos(waiting - self.writer_start.0);
        self.seen.writer_writing = Duration::from_nanos(writing - self.writer_start.1);
        let cpu = CpuTicks::read();
        self.seen.idle_cores = match (&self.cpu_start, &cpu) {
            (Some(a), Some(b)) => b.idle_cores_since(a),
            _ => None,
        };
        self.level = (self.level + decide(&self.seen)).clamp(self.levels.min, self.levels.max);
        // zstd has no level 0 (it means "the default", 3): step over it.
        if self.level == 0 {
            self.level = if self.seen.waited > self.seen.reading {
                -1
            } else {
                1
            };
        }
        self.started = Instant::now();
        self.seen = Observed::default();
        self.writer_start = (waiting, writing);
        self.cpu_start = cpu;
        self.level
    }
}

/// The machine's CPU time so far, from the first line of /proc/stat.
struct CpuTicks {
    idle: u64,
    total: u64,
    cpus: usize,
}

impl CpuTicks {
    fn read() -> Option<CpuTicks> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let mut lines = stat.lines();
        let fields: Vec<u64> = lines
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .take(8)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        let cpus = lines.filter(|l| l.starts_with("cpu")).count();
        // user nice system idle iowait irq softirq steal
        Some(CpuTicks {
            idle: fields.get(3)? + fields.get(4)?,
            total: fields.iter().sum(),
            cpus,
        })
    }

    fn idle_cores_since(&self, before: &CpuTicks) -> Option<f64> {
        let total = self.total.checked_sub(before.total)?;
        let idle = self.idle.checked_sub(before.idle)?;
        (total > 0).then(|| idle as f64 / total as f64 * self.cpus as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ranges_parse_and_bad_ones_are_refused_saying_the_form() {
        assert_eq!(Levels::parse("1..=6"), Ok(Levels { min: 1, max: 6 }));
        assert_eq!(Levels::parse("-3..=19"), Ok(Levels { min: -3, max: 19 }));
        for bad in ["1..6", "6..=1", "0..=3", "1..=23", "-8..=3", "a..=b", ""] {
            let err = Levels::parse(bad).unwrap_err();
            assert!(err.contains("MIN..=MAX") && err.contains(bad), "{err}");
        }
    }

    #[test]
    fn the_level_goes_where_the_time_went() {
        let compressor_behind = Observed {
            waited: 90 * MS,
            reading: 5 * MS,
            writer_waiting: 200 * MS,
            writer_writing: 10 * MS,
            idle_cores: Some(0.0),
        };
        assert_eq!(decide(&compressor_behind), -1);
        let output_behind = Observed {
            writer_waiting: 10 * MS,
            writer_writing: 200 * MS,
            ..compressor_behind
        };
        assert_eq!(decide(&output_behind), 1);
        let source_behind = |idle| Observed {
            waited: MS,
            reading: 200 * MS,
            idle_cores: idle,
            ..Observed::default()
        };
        assert_eq!(decide(&source_behind(Some(1.2))), 1);
        assert_eq!(decide(&source_behind(Some(0.3))), 0);
        assert_eq!(decide(&source_behind(Some(0.05))), -1);
        assert_eq!(decide(&source_behind(None)), 0);
    }

    #[test]
    fn the_level_stays_within_its_bounds_and_changes_once_per_interval() {
        let writer = WriterTimes::default();
        let mut adapt = Adapt::with_interval(Levels { min: 2, max: 4 }, 9, Duration::ZERO);
        assert_eq!(adapt.level, 4, "the start is clamped into the bounds");
        for _ in 0..5 {
            // The reader waits, the writer waits too: the compressor is behind.
            adapt.next(50 * MS, MS, &writer);
        }
        assert_eq!(adapt.level, 2);
        let mut slow =
            Adapt::with_interval(Levels { min: 2, max: 4 }, 3, Duration::from_secs(3600));
        assert_eq!(
            slow.next(50 * MS, MS, &writer),
            3,
            "no change within an interval"
        );

        let mut around_zero = Adapt::with_interval(Levels { min: -2, max: 2 }, 1, Duration::ZERO);
        assert_eq!(
            around_zero.next(50 * MS, MS, &writer),
            -1,
            "zstd has no level 0"
        );
    }
}
