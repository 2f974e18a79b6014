//! The restore's decompressor: a splitting thread reads the zstd stream (decrypting
//! it as it goes: the stream comes out of age) and cuts it into frames, `threads`
//! workers decompress frames side by side, and the calling thread puts them back in
//! order for the sink. `threads + 2` slots are in flight at most.
//!
//! Frames that do not say their size, or say more than [`MAX_FRAME`] (backups written
//! before frames, or by other tools), are decompressed as one stream on the splitting
//! thread instead, from the first such frame to the end, in pieces of [`FRAME`].

use std::io::{self, Cursor, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use super::frames::{self, FRAME, Next, Reorder, Slot};

/// A failure on the way, so the caller can say whose fault it was.
#[derive(Debug)]
pub enum Failure {
    /// The data: decryption or decompression failed (after so many bytes of output).
    Data { after: u64, error: io::Error },
    /// The sink did not take the output.
    Sink(io::Error),
}

/// Decompresses all of `input`, handing the output in order to `sink`; the bytes
/// written.
pub fn decompress(
    input: impl Read + Send,
    threads: usize,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> Result<u64, Failure> {
    let threads = threads.max(1);
    let (free_tx, free_rx) = frames::slots(threads + 2);
    let (work_tx, work_rx) = sync_channel::<Slot>(threads + 2);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = sync_channel::<io::Result<Slot>>(threads + 2);

    std::thread::scope(|scope| {
        for _ in 0..threads {
            let work_rx = Arc::clone(&work_rx);
            let done_tx = done_tx.clone();
            scope.spawn(move || worker(&work_rx, &done_tx));
        }
        let splitter_done = done_tx.clone();
        drop(done_tx);
        scope.spawn(move || {
            if let Err(e) = split(input, &free_rx, &work_tx, &splitter_done) {
                let _ = splitter_done.send(Err(e));
            }
        });

        let mut order = Reorder::new();
        let mut written = 0u64;
        let data = |written, error| Failure::Data {
            after: written,
            error,
        };
        // The loop ends when the splitter and every worker have gone: their senders
        // are dropped.
        while let Ok(slot) = done_rx.recv() {
            order.push(slot.map_err(|e| data(written, e))?);
            while let Some(mut slot) = order.pop() {
                sink(&slot.output).map_err(Failure::Sink)?;
                written += slot.output.len() as u64;
                slot.output.clear();
                let _ = free_tx.send(slot);
            }
        }
        if order.has_gaps() {
            return Err(data(
                written,
                io::Error::other("a zstd worker stopped before its frame was done"),
            ));
        }
        Ok(written)
    })
}

/// The splitting thread: frames to the workers, or the stream decoded here.
fn split(
    mut input: impl Read,
    free: &Receiver<Slot>,
    work: &SyncSender<Slot>,
    done: &SyncSender<io::Result<Slot>>,
) -> io::Result<()> {
    let stopped = || io::Error::other("the restore stopped");
    for seq in 0.. {
        let mut slot = free.recv().map_err(|_| stopped())?;
        slot.seq = seq;
        match frames::read_frame(&mut input, &mut slot.input)? {
            Next::End if seq > 0 => return Ok(()),
            Next::End => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the zstd stream is empty",
                ));
            }
            Next::Frame { content_size } => {
                slot.len = content_size as usize;
                work.send(slot).map_err(|_| stopped())?;
            }
            Next::Stream => {
                let head = std::mem::take(&mut slot.input);
                return stream(Cursor::new(head).chain(input), slot, free, done);
            }
        }
    }
    Ok(())
}

/// Decodes the rest of `input` as one zstd stream, in pieces of [`FRAME`]; the first
/// goes into `first` (the slot taken for what turned out not to be a frame), the
/// rest into free slots.
fn stream(
    input: impl Read,
    first: Slot,
    free: &Receiver<Slot>,
    done: &SyncSender<io::Result<Slot>>,
) -> io::Result<()> {
    let stopped = || io::Error::other("the restore stopped");
    let mut decoder = zstd::stream::read::Decoder::new(input)?;
    let mut next = Some(first);
    for seq in next.as_ref().map_or(0, |s| s.seq).. {
        let mut slot = match next.take() {
            Some(slot) => slot,
            None => free.recv().map_err(|_| stopped())?,
        };
        slot.seq = seq;
        slot.output.resize(FRAME, 0);
        let n = frames::fill(&mut decoder, &mut slot.output)?;
        slot.output.truncate(n);
        done.send(Ok(slot)).map_err(|_| stopped())?;
        if n < FRAME {
            return Ok(());
        }
    }
    Ok(())
}

fn worker(work: &Mutex<Receiver<Slot>>, done: &SyncSender<io::Result<Slot>>) {
    let mut zstd = match zstd::bulk::Decompressor::new() {
        Ok(d) => d,
        Err(e) => {
            let _ = done.send(Err(e));
            return;
        }
    };
    loop {
        let Ok(mut slot) = work.lock().expect("work queue lock").recv() else {
            return;
        };
        slot.output.clear();
        slot.output.reserve(slot.len);
        // zstd checks the frame's checksum, and that it holds exactly the size its
        // header says.
        let result = zstd
            .decompress_to_buffer(&slot.input[..], &mut slot.output)
            .and_then(|n| {
                if n == slot.len {
                    Ok(())
                } else {
                    Err(io::Error::other(format!(
                        "a zstd frame says it holds {} bytes and holds {n}",
                        slot.len
                    )))
                }
            });
        let sent = match result {
            Ok(()) => done.send(Ok(slot)),
            Err(e) => done.send(Err(e)),
        };
        if sent.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::compress::{self, Settings};

    fn framed(data: &[u8]) -> Vec<u8> {
        let settings = Settings {
            level: 3,
            adapt: None,
            threads: 2,
        };
        compress::compress(&mut &data[..], Vec::new(), settings)
            .unwrap()
            .0
    }

    fn restore(stream: &[u8], threads: usize) -> Result<Vec<u8>, Failure> {
        let mut out = Vec::new();
        decompress(stream, threads, |b| {
            out.extend_from_slice(b);
            Ok(())
        })
        .map(|n| {
            assert_eq!(n, out.len() as u64);
            out
        })
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i % 253) as u8 ^ (i >> 11) as u8)
            .collect()
    }

    #[test]
    fn framed_and_streamed_backups_restore_alike() {
        for len in [0, 5, FRAME, 2 * FRAME + 7] {
            let data = sample(len);
            for threads in [1, 3] {
                assert_eq!(restore(&framed(&data), threads).unwrap(), data);
            }
            // A backup from before frames: one frame without a content size.
            let streamed = zstd::encode_all(&data[..], 3).unwrap();
            assert_eq!(restore(&streamed, 2).unwrap(), data);
            // Framed, then streamed: the stream decoder takes over mid-way.
            let mixed = [framed(&data), streamed].concat();
            assert_eq!(restore(&mixed, 2).unwrap(), [&data[..], &data[..]].concat());
        }
    }

    #[test]
    fn damage_anywhere_fails_as_data_and_a_sink_error_as_the_sink() {
        let data = sample(3 * FRAME);
        let good = framed(&data);
        for at in [10, good.len() / 2, good.len() - 2] {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            assert!(
                matches!(restore(&bad, 2), Err(Failure::Data { .. })),
                "a flipped byte at {at} went unnoticed"
            );
        }
        let cut = &good[..good.len() - 100];
        assert!(matches!(restore(cut, 2), Err(Failure::Data { .. })));
        assert!(matches!(restore(&[], 2), Err(Failure::Data { .. })));

        let err = decompress(&good[..], 2, |_| Err(io::Error::other("disk full"))).unwrap_err();
        assert!(matches!(err, Failure::Sink(ref e) if e.to_string() == "disk full"));
    }
}
