//! The backup's compressor: the dump is cut into [`FRAME`]-sized pieces on the
//! reading thread (which hashes them as they arrive), each piece is compressed into
//! its own zstd frame by one of `threads` workers, and a writer thread puts the frames
//! back in order and writes them on (into age). `threads + 2` slots are in flight at
//! most, so memory is fixed: 2 x [`FRAME`] per slot plus one zstd context per worker.
//!
//! With [`Levels`], the level adapts between frames, as `zstd --adapt` does: down when
//! the compressor holds the dump up (or competes with the source for the CPU), up when
//! the output or an idle source leaves time to spare.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use zstd::stream::raw::CParameter;

use super::adapt::{Adapt, Levels};
use super::frames::{self, FRAME, Reorder, Slot};

/// How to compress.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub level: i32,
    pub adapt: Option<Levels>,
    pub threads: usize,
}

/// What the compressor did.
#[derive(Debug, Clone, Copy)]
pub struct Compressed {
    /// Bytes of the zstd stream.
    pub size: u64,
    pub frames: u64,
    /// The lowest and highest level a frame was compressed at.
    pub levels: (i32, i32),
}

/// Time the writer spent waiting for the next frame, and writing frames on.
#[derive(Default)]
pub(super) struct WriterTimes {
    pub waiting_ns: AtomicU64,
    pub writing_ns: AtomicU64,
}

/// A stage's failure, so the caller can say whose fault it was.
#[derive(Debug)]
pub enum Failure {
    /// Reading the dump failed (the source's fault) after so many bytes.
    Read(io::Error),
    /// zstd failed, or a thread went away.
    Compress(anyhow::Error),
    /// Writing the compressed stream on failed (usually: a later stage stopped).
    Write(io::Error),
}

/// Compresses all of `input` into `out`; gives `out` back to be finished.
pub fn compress<W: Write + Send>(
    input: &mut (dyn Read + Send),
    out: W,
    settings: Settings,
) -> Result<(W, Compressed), Failure> {
    let threads = settings.threads.max(1);
    let (free_tx, free_rx) = frames::slots(threads + 2);
    let (work_tx, work_rx) = sync_channel::<Slot>(threads + 2);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = sync_channel::<anyhow::Result<Slot>>(threads + 2);
    let times = Arc::new(WriterTimes::default());

    std::thread::scope(|scope| {
        for _ in 0..threads {
            let work_rx = Arc::clone(&work_rx);
            let done_tx = done_tx.clone();
            scope.spawn(move || worker(&work_rx, &done_tx, settings.level));
        }
        drop(done_tx);
        let writer_times = Arc::clone(&times);
        let writer = scope.spawn(move || write_in_order(out, &done_rx, free_tx, &writer_times));

        let read = read_frames(input, &free_rx, &work_tx, settings, &times);
        drop(work_tx);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(Failure::Compress(anyhow!("the zstd writer panicked"))));
        match (read, written) {
            (Ok(levels), Ok((out, size, frames))) => Ok((
                out,
                Compressed {
                    size,
                    frames,
                    levels,
                },
            )),
            // The reader stops when the writer does: the writer's error says why.
            (Err(Failure::Compress(_)), Err(e)) => Err(e),
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        }
    })
}

/// The reading thread: fills slots with the dump and hands them to the workers.
/// Returns the lowest and highest level used.
fn read_frames(
    input: &mut (dyn Read + Send),
    free: &Receiver<Slot>,
    work: &SyncSender<Slot>,
    settings: Settings,
    times: &WriterTimes,
) -> Result<(i32, i32), Failure> {
    let stopped = || Failure::Compress(anyhow!("the zstd writer stopped"));
    let mut adapt = settings.adapt.map(|l| Adapt::new(l, settings.level));
    let mut level = settings.level;
    let mut used = (level, level);
    for seq in 0.. {
        let waited = Instant::now();
        let mut slot = free.recv().map_err(|_| stopped())?;
        let waited = waited.elapsed();
        if slot.input.len() != FRAME {
            slot.input = vec![0; FRAME];
        }
        let reading = Instant::now();
        let n = frames::fill(input, &mut slot.input).map_err(Failure::Read)?;
        let reading = reading.elapsed();
        if n == 0 && seq > 0 {
            break;
        }
        if let Some(adapt) = &mut adapt {
            level = adapt.next(waited, reading, times);
            used = (used.0.min(level), used.1.max(level));
        }
        slot.seq = seq;
        slot.level = level;
        slot.len = n;
        slot.output.clear();
        work.send(slot).map_err(|_| stopped())?;
        if n < FRAME {
            break;
        }
    }
    Ok(used)
}

fn worker(work: &Mutex<Receiver<Slot>>, done: &SyncSender<anyhow::Result<Slot>>, level: i32) {
    let mut zstd = match compressor(level) {
        Ok(c) => c,
        Err(e) => {
            let _ = done.send(Err(e));
            return;
        }
    };
    let mut current = level;
    loop {
        let Ok(mut slot) = work.lock().expect("work queue lock").recv() else {
            return;
        };
        let result = (|| {
            if slot.level != current {
                zstd.set_compression_level(slot.level)?;
                current = slot.level;
            }
            slot.output
                .reserve(zstd::zstd_safe::compress_bound(slot.len));
            zstd.compress_to_buffer(&slot.input[..slot.len], &mut slot.output)?;
            Ok::<_, io::Error>(())
        })();
        let sent = match result {
            Ok(()) => done.send(Ok(slot)),
            Err(e) => done.send(Err(anyhow::Error::new(e).context("zstd failed"))),
        };
        if sent.is_err() {
            return;
        }
    }
}

fn compressor(level: i32) -> anyhow::Result<zstd::bulk::Compressor<'static>> {
    let mut zstd = zstd::bulk::Compressor::new(level).context("cannot set up zstd")?;
    zstd.set_parameter(CParameter::ChecksumFlag(true))?;
    zstd.set_parameter(CParameter::ContentSizeFlag(true))?;
    Ok(zstd)
}

/// The writer thread: frames in order into `out`; slots back to the reader.
fn write_in_order<W: Write>(
    mut out: W,
    done: &Receiver<anyhow::Result<Slot>>,
    free: SyncSender<Slot>,
    times: &WriterTimes,
) -> Result<(W, u64, u64), Failure> {
    let mut order = Reorder::new();
    let mut size = 0u64;
    loop {
        let waiting = Instant::now();
        let Ok(slot) = done.recv() else { break };
        add(&times.waiting_ns, waiting.elapsed());
        order.push(slot.map_err(Failure::Compress)?);
        while let Some(mut slot) = order.pop() {
            let writing = Instant::now();
            out.write_all(&slot.output).map_err(Failure::Write)?;
            add(&times.writing_ns, writing.elapsed());
            size += slot.output.len() as u64;
            slot.output.clear();
            // The reader may have stopped; then nobody needs the slot.
            let _ = free.send(slot);
        }
    }
    if order.has_gaps() {
        return Err(Failure::Compress(anyhow!(
            "a zstd worker stopped before its frame was done"
        )));
    }
    Ok((out, size, order.count()))
}

fn add(counter: &AtomicU64, d: Duration) {
    counter.fetch_add(
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(threads: usize) -> Settings {
        Settings {
            level: 3,
            adapt: None,
            threads,
        }
    }

    #[test]
    fn any_length_round_trips_through_independent_frames() {
        for len in [0, 1, FRAME - 1, FRAME, FRAME + 1, 3 * FRAME + 12345] {
            let data: Vec<u8> = (0..len)
                .map(|i| (i % 251) as u8 ^ (i >> 13) as u8)
                .collect();
            for threads in [1, 3] {
                let (out, done) = compress(&mut &data[..], Vec::new(), settings(threads)).unwrap();
                assert_eq!(done.size, out.len() as u64);
                assert_eq!(done.frames, (len as u64).div_ceil(FRAME as u64).max(1));
                assert_eq!(zstd::decode_all(&out[..]).unwrap(), data, "len {len}");
                // Every frame says its size, so the restore can split the stream.
                let mut input = &out[..];
                let mut buf = Vec::new();
                for _ in 0..done.frames {
                    assert!(matches!(
                        frames::read_frame(&mut input, &mut buf).unwrap(),
                        frames::Next::Frame { .. }
                    ));
                }
                assert_eq!(
                    frames::read_frame(&mut input, &mut buf).unwrap(),
                    frames::Next::End
                );
            }
        }
    }

    #[test]
    fn a_failing_read_or_write_is_reported_as_such() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let err = compress(&mut Broken, Vec::new(), settings(2)).unwrap_err();
        assert!(matches!(err, Failure::Read(ref e) if e.to_string() == "disk on fire"));

        #[derive(Debug)]
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("pipe gone"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let data = vec![1u8; 3 * FRAME];
        let err = compress(&mut &data[..], Full, settings(2)).unwrap_err();
        assert!(matches!(err, Failure::Write(ref e) if e.to_string() == "pipe gone"));
    }
}
