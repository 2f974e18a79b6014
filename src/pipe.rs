//! A bounded in-process pipe between pipeline stages.
//!
//! Stages run on their own threads and hand each other chunks through a bounded
//! channel, so memory stays at `depth x chunk size` whatever the stream length.
//!
//! The one rule that makes the backup safe: **a stream ends only when the writer says
//! so** ([`PipeWriter::finish`]). A writer that is dropped — because its stage failed,
//! panicked or was cancelled — makes the reader fail with [`PipeClosed`] instead of
//! seeing a clean end of file. A store therefore never completes an object from a
//! stream that was cut short.
//!
//! A leaf: imports nothing of vault's.

use std::fmt;
use std::io::{self, BufRead, Read, Write};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

/// Chunk size used between stages: large enough to amortise channel overhead.
pub const CHUNK: usize = 1 << 20;
/// Chunks queued between two stages.
pub const DEPTH: usize = 4;

enum Msg {
    Data(Bytes),
    End,
}

/// The marker error for "the other side of the pipe went away". Pipeline code uses it
/// to tell a knock-on failure from the root cause.
#[derive(Debug)]
pub struct PipeClosed(&'static str);

impl fmt::Display for PipeClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for PipeClosed {}

/// True when `err` (or anything in its chain) is only a consequence of another stage
/// failing.
pub fn is_knock_on(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause.downcast_ref::<PipeClosed>().is_some()
            || cause
                .downcast_ref::<io::Error>()
                .and_then(|e| e.get_ref())
                .is_some_and(|inner| inner.is::<PipeClosed>())
    })
}

fn closed(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, PipeClosed(what))
}

/// Creates a pipe holding at most `depth` chunks of about `chunk` bytes.
pub fn pipe(chunk: usize, depth: usize) -> (PipeWriter, PipeReader) {
    let (tx, rx) = mpsc::channel(depth.max(1));
    (
        PipeWriter {
            tx: Some(tx),
            buf: BytesMut::with_capacity(chunk),
            chunk,
        },
        PipeReader {
            rx,
            current: Bytes::new(),
            ended: false,
        },
    )
}

/// The sending half. Writes block when the reader is `depth` chunks behind.
pub struct PipeWriter {
    tx: Option<mpsc::Sender<Msg>>,
    buf: BytesMut,
    chunk: usize,
}

impl PipeWriter {
    fn send(&mut self, msg: Msg) -> io::Result<()> {
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| closed("pipe already finished"))?;
        tx.blocking_send(msg)
            .map_err(|_| closed("the next pipeline stage stopped reading"))
    }

    fn send_buffered(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = self.buf.split().freeze();
            self.buf.reserve(self.chunk);
            self.send(Msg::Data(chunk))?;
        }
        Ok(())
    }

    /// Sends `chunk` as it is, after whatever `write` buffered: no copy.
    pub fn write_chunk(&mut self, chunk: Bytes) -> io::Result<()> {
        self.send_buffered()?;
        if chunk.is_empty() {
            return Ok(());
        }
        self.send(Msg::Data(chunk))
    }

    /// Ends the stream cleanly. Without this call the reader sees an error.
    pub fn finish(mut self) -> io::Result<()> {
        self.send_buffered()?;
        self.send(Msg::End)?;
        self.tx = None;
        Ok(())
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.chunk - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= self.chunk {
            self.send_buffered()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Chunks go out when full or at finish; flushing mid-stream would only make
        // smaller chunks.
        Ok(())
    }
}

/// The receiving half: a blocking [`Read`] for threads, and [`PipeReader::next_chunk`]
/// for async consumers such as a store upload.
pub struct PipeReader {
    rx: mpsc::Receiver<Msg>,
    current: Bytes,
    ended: bool,
}

impl PipeReader {
    /// The next chunk, `None` at a clean end, an error when the writer went away
    /// without finishing.
    pub async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        if !self.current.is_empty() {
            return Ok(Some(std::mem::take(&mut self.current)));
        }
        if self.ended {
            return Ok(None);
        }
        let msg = self.rx.recv().await;
        self.accept(msg)
    }

    fn accept(&mut self, msg: Option<Msg>) -> io::Result<Option<Bytes>> {
        match msg {
            Some(Msg::Data(chunk)) => Ok(Some(chunk)),
            Some(Msg::End) => {
                self.ended = true;
                Ok(None)
            }
            None => Err(closed("the stream was cut short by a failed earlier stage")),
        }
    }

    /// Writes every chunk straight into `out` until the clean end (no intermediate
    /// buffer: one copy fewer than `io::copy`). Blocking; for threads.
    pub fn copy_into(&mut self, out: &mut impl Write) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            let chunk = if self.current.is_empty() {
                if self.ended {
                    return Ok(total);
                }
                let msg = self.rx.blocking_recv();
                match self.accept(msg)? {
                    Some(chunk) => chunk,
                    None => return Ok(total),
                }
            } else {
                std::mem::take(&mut self.current)
            };
            out.write_all(&chunk)?;
            total += chunk.len() as u64;
        }
    }

    /// A reader that yields `data` and then ends cleanly (for small objects).
    pub fn from_bytes(data: impl Into<Bytes>) -> Self {
        let (tx, rx) = mpsc::channel(2);
        let data = data.into();
        if !data.is_empty() {
            tx.try_send(Msg::Data(data))
                .expect("fresh channel has room");
        }
        tx.try_send(Msg::End).expect("fresh channel has room");
        PipeReader {
            rx,
            current: Bytes::new(),
            ended: false,
        }
    }
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = {
            let current = self.fill_buf()?;
            let n = out.len().min(current.len());
            out[..n].copy_from_slice(&current[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

/// The chunks as they came, without a copy into a buffer of the reader's.
impl BufRead for PipeReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.current.is_empty() {
            if self.ended {
                break;
            }
            let msg = self.rx.blocking_recv();
            match self.accept(msg)? {
                Some(chunk) => self.current = chunk,
                None => break,
            }
        }
        Ok(&self.current)
    }

    fn consume(&mut self, n: usize) {
        bytes::Buf::advance(&mut self.current, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_stream_reads_to_clean_eof() {
        let (mut w, mut r) = pipe(4, 2);
        let t = std::thread::spawn(move || {
            w.write_all(b"hello world").unwrap();
            w.finish().unwrap();
        });
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        t.join().unwrap();
        assert_eq!(out, b"hello world");
    }

    #[test]
    fn copy_into_moves_every_chunk_and_fails_on_a_cut() {
        let (mut w, mut r) = pipe(4, 2);
        let t = std::thread::spawn(move || {
            w.write_all(b"0123456789").unwrap();
            w.finish().unwrap();
        });
        let mut first = [0u8; 3];
        r.read_exact(&mut first).unwrap();
        let mut rest = Vec::new();
        assert_eq!(r.copy_into(&mut rest).unwrap(), 7);
        t.join().unwrap();
        assert_eq!([&first[..], &rest].concat(), b"0123456789");

        let (mut w, mut r) = pipe(4, 2);
        std::thread::spawn(move || w.write_all(b"abcdef").unwrap());
        assert!(r.copy_into(&mut Vec::new()).is_err());
    }

    #[test]
    fn dropped_writer_is_an_error_not_eof() {
        let (mut w, mut r) = pipe(4, 2);
        let t = std::thread::spawn(move || {
            w.write_all(b"partial").unwrap();
            drop(w);
        });
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).unwrap_err();
        t.join().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert!(is_knock_on(&anyhow::Error::new(err)));
    }

    #[test]
    fn dropped_reader_fails_the_writer() {
        let (mut w, r) = pipe(4, 1);
        drop(r);
        let err = w.write_all(&[0u8; 64]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[tokio::test]
    async fn async_reader_sees_chunks_then_end() {
        let mut r = PipeReader::from_bytes(&b"abc"[..]);
        assert_eq!(r.next_chunk().await.unwrap().unwrap(), &b"abc"[..]);
        assert!(r.next_chunk().await.unwrap().is_none());
        assert!(r.next_chunk().await.unwrap().is_none());
    }
}
