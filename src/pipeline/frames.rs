//! What the compressor and the decompressor share: the frame size, the slots that
//! carry a frame between threads (their number is the memory bound), putting frames
//! back in order, and reading one zstd frame off a stream without decompressing it.
//!
//! A backup's zstd stream is a run of independent frames of at most [`FRAME`] bytes
//! of dump each, every one with its content size and checksum in it (see
//! docs/format.md §4.1). Independent frames are what lets several cores compress and,
//! at restore, decompress one stream; `zstd -d` reads the run as one stream.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Dump bytes per frame. 4 MiB: two windows at the default level 3 (2 MiB), so a
/// frame loses little by not seeing the one before (measured on text-like rows: the
/// stored size is 0.1% *smaller* than zstd's own multi-threaded stream at level 3),
/// and small enough that a few frames in flight per core stay well under 100 MiB.
pub const FRAME: usize = 4 << 20;

/// The largest frame the restore decompresses on its own thread; a frame that says
/// it is larger, or does not say, is decompressed as a stream (backups written before
/// frames, or by other tools).
pub const MAX_FRAME: u64 = 16 << 20;

/// One frame on its way through the threads: its place in the stream, the level it
/// was compressed at, and the two buffers (kept and reused, so memory stays at the
/// number of slots x their size); `input[..len]` is the frame's input.
#[derive(Default)]
pub struct Slot {
    pub seq: u64,
    pub level: i32,
    pub len: usize,
    pub input: Vec<u8>,
    pub output: Vec<u8>,
}

/// The free slots: whoever starts a frame takes one (and waits when all are in
/// flight), whoever finishes it gives it back.
pub fn slots(n: usize) -> (SyncSender<Slot>, Receiver<Slot>) {
    let (tx, rx) = sync_channel(n);
    for _ in 0..n {
        tx.send(Slot::default()).expect("the channel has room");
    }
    (tx, rx)
}

/// Frames finished out of order, handed out in order.
pub struct Reorder {
    next: u64,
    waiting: BTreeMap<u64, Slot>,
}

impl Reorder {
    pub fn new() -> Self {
        Reorder {
            next: 0,
            waiting: BTreeMap::new(),
        }
    }

    pub fn push(&mut self, slot: Slot) {
        self.waiting.insert(slot.seq, slot);
    }

    /// The next frame in stream order, when it has arrived.
    pub fn pop(&mut self) -> Option<Slot> {
        let slot = self.waiting.remove(&self.next)?;
        self.next += 1;
        Some(slot)
    }

    /// Frames handed out so far.
    pub fn count(&self) -> u64 {
        self.next
    }

    /// Whether frames arrived whose predecessors never did.
    pub fn has_gaps(&self) -> bool {
        !self.waiting.is_empty()
    }
}

const MAGIC: u32 = 0xFD2F_B528;

/// What [`read_frame`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// One whole frame is in the buffer; it says it holds this many bytes.
    Frame { content_size: u64 },
    /// A clean end of the stream, between frames.
    End,
    /// Something to decompress as a stream from here on (the bytes read so far are in
    /// the buffer): a frame without a content size or larger than [`MAX_FRAME`], with
    /// a dictionary, a skippable frame, or bytes zstd will have to judge.
    Stream,
}

/// Reads the next zstd frame of `input` into `buf` (cleared first) by walking its
/// header and block headers (RFC 8878 §3.1.1), without decompressing it. The buffer
/// never holds more than the compressed bound of [`MAX_FRAME`]: a frame that would
/// need more is handed to the stream decoder instead.
pub fn read_frame(input: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Next> {
    buf.clear();
    if !read_some(input, buf, 4)? {
        return Ok(if buf.is_empty() {
            Next::End
        } else {
            Next::Stream
        });
    }
    if u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) != MAGIC
        || !read_some(input, buf, 1)?
    {
        return Ok(Next::Stream);
    }
    let descriptor = buf[4];
    let single_segment = descriptor & 0x20 != 0;
    let reserved = descriptor & 0x08 != 0;
    let checksum = descriptor & 0x04 != 0;
    let dictionary = descriptor & 0x03;
    let size_bytes = match descriptor >> 6 {
        0 => usize::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    if reserved || dictionary != 0 || size_bytes == 0 {
        return Ok(Next::Stream);
    }
    let window = usize::from(!single_segment);
    if !read_some(input, buf, window + size_bytes)? {
        return Ok(Next::Stream);
    }
    let field = &buf[5 + window..];
    let content_size = match size_bytes {
        1 => u64::from(field[0]),
        2 => u64::from(u16::from_le_bytes([field[0], field[1]])) + 256,
        4 => u64::from(u32::from_le_bytes(field[..4].try_into().expect("4 bytes"))),
        _ => u64::from_le_bytes(field[..8].try_into().expect("8 bytes")),
    };
    if content_size > MAX_FRAME {
        return Ok(Next::Stream);
    }
    let limit = zstd::zstd_safe::compress_bound(content_size as usize) + 64;
    loop {
        if !read_some(input, buf, 3)? {
            return Ok(Next::Stream);
        }
        let at = buf.len() - 3;
        let header = u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], 0]);
        let last = header & 1 != 0;
        let size = (header >> 3) as usize;
        let payload = match (header >> 1) & 3 {
            0 | 2 => size,
            1 => 1,
            _ => return Ok(Next::Stream),
        };
        if buf.len() + payload > limit || !read_some(input, buf, payload)? {
            return Ok(Next::Stream);
        }
        if last {
            break;
        }
    }
    if checksum && !read_some(input, buf, 4)? {
        return Ok(Next::Stream);
    }
    Ok(Next::Frame { content_size })
}

/// Appends exactly `n` bytes of `input` to `buf`; false when the stream ended first
/// (what was there is appended).
fn read_some(input: &mut impl Read, buf: &mut Vec<u8>, n: usize) -> io::Result<bool> {
    let start = buf.len();
    buf.resize(start + n, 0);
    let mut filled = 0;
    while filled < n {
        match input.read(&mut buf[start + filled..]) {
            Ok(0) => {
                buf.truncate(start + filled);
                return Ok(false);
            }
            Ok(k) => filled += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.truncate(start + filled);
                return Err(e);
            }
        }
    }
    Ok(true)
}

/// Fills `buf` from `input` up to its length; the bytes read (fewer only at the end
/// of the stream).
pub fn fill(input: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(data: &[u8], level: i32) -> Vec<u8> {
        let mut c = zstd::bulk::Compressor::new(level).unwrap();
        c.set_parameter(zstd::stream::raw::CParameter::ChecksumFlag(true))
            .unwrap();
        c.compress(data).unwrap()
    }

    #[test]
    fn frames_are_read_one_by_one_to_a_clean_end() {
        let texts: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"x".to_vec(),
            vec![7u8; 300],
            (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect(),
        ];
        let stream: Vec<u8> = texts.iter().flat_map(|t| frame(t, 3)).collect();
        let mut input = &stream[..];
        let mut buf = Vec::new();
        for text in &texts {
            let next = read_frame(&mut input, &mut buf).unwrap();
            assert_eq!(
                next,
                Next::Frame {
                    content_size: text.len() as u64
                }
            );
            assert_eq!(&zstd::decode_all(&buf[..]).unwrap(), text);
        }
        assert_eq!(read_frame(&mut input, &mut buf).unwrap(), Next::End);
    }

    #[test]
    fn streams_without_sizes_or_cut_short_go_to_the_stream_decoder() {
        // zstd's streaming encoder writes no content size.
        let streamed = zstd::encode_all(&[5u8; 1000][..], 3).unwrap();
        let mut buf = Vec::new();
        assert_eq!(
            read_frame(&mut &streamed[..], &mut buf).unwrap(),
            Next::Stream
        );
        assert_eq!(buf, streamed[..buf.len()]);

        let whole = frame(&[1u8; 100_000], 3);
        for cut in [1, 4, 5, 7, whole.len() - 1] {
            let mut input = &whole[..cut];
            assert_eq!(read_frame(&mut input, &mut buf).unwrap(), Next::Stream);
            assert_eq!(buf, whole[..cut]);
        }
        let mut input = &b"not zstd at all"[..];
        assert_eq!(read_frame(&mut input, &mut buf).unwrap(), Next::Stream);
    }

    #[test]
    fn reorder_hands_frames_out_in_sequence() {
        let mut r = Reorder::new();
        for seq in [2, 0, 1] {
            r.push(Slot {
                seq,
                ..Slot::default()
            });
        }
        let order: Vec<u64> = std::iter::from_fn(|| r.pop()).map(|s| s.seq).collect();
        assert_eq!(order, [0, 1, 2]);
        r.push(Slot {
            seq: 5,
            ..Slot::default()
        });
        assert!(r.pop().is_none());
        assert!(r.has_gaps());
        assert_eq!(r.count(), 3);
    }
}
