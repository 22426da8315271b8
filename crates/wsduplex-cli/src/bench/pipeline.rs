//! One echo connection: pre-encoded frames out, every echo checked on the way in.
//!
//! The connection keeps D messages in flight. Whenever echoes complete, as many new frames
//! leave in one write; latency is the time from the write that carried a message to the
//! read that completed its echo. Frames are encoded before the run, in one of two layouts:
//!
//! - small payloads: 2·D whole frames back to back (frame `k` equals frame `k + D`), so any
//!   run of up to D consecutive frames is one slice and one `write`;
//! - large payloads: per message slot a head (header and the first 16 payload bytes, which
//!   differ per connection and slot) and one body shared by every frame of the run, written
//!   with `writev`. The bytes being copied then stay in cache instead of streaming
//!   D × size per connection through memory, which otherwise makes the generator, not the
//!   server, the limit.
//!
//! Payloads differ per connection and slot, so a server that mixes up connections or replays
//! messages fails the check as surely as one that flips a bit.

use super::conn;
use super::report::Tally;
use super::{Control, Counter, Phase};
use anyhow::{anyhow, bail};
use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{ErrorKind, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead as _, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use wsduplex::proto::frame::{FrameHeader, OpCode};
use wsduplex::proto::mask::apply_mask;

/// Payloads of at least this many bytes use the head + shared body layout.
const SPLIT_FROM: usize = 512;
/// Payload bytes at the start of each head that differ per connection and slot.
const PREFIX: usize = 16;
/// Read buffer per connection.
const READ_BUF: usize = 64 * 1024;
/// At most this many slices per `writev` (Linux's IOV_MAX).
const MAX_IOV: usize = 1024;

/// What every connection of a run sends, decided once.
pub(crate) struct Shape {
    pub(crate) size: usize,
    pub(crate) depth: usize,
    pub(crate) binary: bool,
    /// One mask key for the whole run (see [`conn::masked_frame`] on why that is acceptable);
    /// it lets the large-payload body be masked once for every connection.
    key: [u8; 4],
    body: Option<Arc<Body>>,
}

/// Payload bytes after [`PREFIX`], shared by every large frame of the run.
struct Body {
    masked: Vec<u8>,
    plain: Vec<u8>,
}

impl Shape {
    pub(crate) fn new(size: usize, depth: usize, binary: bool, key: [u8; 4]) -> Self {
        let body = (size >= SPLIT_FROM).then(|| {
            let plain = conn::payload(u64::MAX, 0, size - PREFIX, binary);
            let mut masked = plain.clone();
            apply_mask(&mut masked, key, PREFIX);
            Arc::new(Body { masked, plain })
        });
        Self {
            size,
            depth,
            binary,
            key,
            body,
        }
    }

    fn opcode(&self) -> OpCode {
        if self.binary {
            OpCode::Binary
        } else {
            OpCode::Text
        }
    }
}

enum Layout {
    /// 2·D whole frames, and the D payloads they carry.
    Whole { frames: Vec<u8>, expected: Vec<u8> },
    /// D heads of `head_len` bytes, the D payload prefixes they carry, the shared body.
    Split {
        heads: Vec<u8>,
        head_len: usize,
        prefixes: Vec<u8>,
        body: Arc<Body>,
    },
}

pub(crate) enum Wake {
    Read(usize),
    Writable,
}

/// One connection's sending and checking state.
pub(crate) struct Pipeline {
    layout: Layout,
    frame_len: usize,
    size: usize,
    depth: usize,
    opcode: OpCode,
    close: Vec<u8>,
    /// Bytes queued but not yet written start `wpos` bytes into a round of D frames.
    wpos: usize,
    unsent: usize,
    /// Slot of the next message to queue, and when each slot's message was written.
    next_send: usize,
    sent_at: Vec<Instant>,
    /// Queued messages whose echo has not completed.
    in_flight: usize,
    /// Slot of the next echo, and how much of its payload has been compared.
    next_recv: usize,
    recv_off: Option<usize>,
    corrupt: bool,
}

impl Pipeline {
    pub(crate) fn new(shape: &Shape, id: u64) -> Self {
        let (opcode, key, depth) = (shape.opcode(), shape.key, shape.depth);
        let payloads =
            (0..depth).map(|slot| conn::payload(id, slot as u64, shape.size, shape.binary));
        let (layout, frame_len) = match &shape.body {
            None => {
                let mut frames = Vec::new();
                let mut expected = Vec::with_capacity(depth * shape.size);
                for p in payloads {
                    frames.extend_from_slice(&conn::masked_frame(opcode, &p, key));
                    expected.extend_from_slice(&p);
                }
                let frame_len = frames.len() / depth;
                frames.extend_from_within(..);
                (Layout::Whole { frames, expected }, frame_len)
            }
            Some(body) => {
                let (mut heads, mut prefixes) = (Vec::new(), Vec::new());
                for mut p in payloads {
                    p.truncate(PREFIX);
                    heads.extend_from_slice(&conn::masked_start(opcode, shape.size, &p, key));
                    prefixes.extend_from_slice(&p);
                }
                let head_len = heads.len() / depth;
                let frame_len = head_len + body.masked.len();
                let body = body.clone();
                let layout = Layout::Split {
                    heads,
                    head_len,
                    prefixes,
                    body,
                };
                (layout, frame_len)
            }
        };
        let now = Instant::now();
        Self {
            layout,
            frame_len,
            size: shape.size,
            depth,
            opcode,
            close: conn::close_frame(key),
            wpos: 0,
            unsent: 0,
            next_send: 0,
            sent_at: vec![now; depth],
            in_flight: 0,
            next_recv: 0,
            recv_off: None,
            corrupt: false,
        }
    }

    /// Runs the connection until the phase is `Done` and every echo is in, then closes it.
    pub(crate) async fn run(
        mut self,
        mut stream: TcpStream,
        leftover: Vec<u8>,
        control: &Control,
        counter: &Counter,
        stats: &RefCell<Tally>,
    ) -> anyhow::Result<()> {
        let mut buf = vec![0u8; READ_BUF.max(leftover.len() + 1)];
        buf[..leftover.len()].copy_from_slice(&leftover);
        let mut filled = leftover.len();
        self.queue(self.depth, Instant::now());
        self.flush(&stream)?;
        let mut closing = false;
        // Bytes that came with the handshake response are parsed before the first read.
        let mut parse_now = filled > 0;
        loop {
            if !parse_now {
                match self.wait(&mut stream, &mut buf[filled..]).await? {
                    Wake::Writable => {
                        self.flush(&stream)?;
                        continue;
                    }
                    Wake::Read(0) => bail!("the server closed the connection"),
                    Wake::Read(n) => filled += n,
                }
            }
            parse_now = false;
            let now = Instant::now();
            let phase = control.phase();
            let (consumed, completed) = {
                let mut stats = stats.borrow_mut();
                self.receive(&buf[..filled], now, phase == Phase::Measure, &mut stats)?
            };
            buf.copy_within(consumed..filled, 0);
            filled -= consumed;
            counter.add(completed as u64);
            closing |= phase == Phase::Done;
            if !closing {
                self.queue(completed, now);
                self.flush(&stream)?;
            } else if self.in_flight == 0 && self.unsent == 0 {
                break;
            }
        }
        stream.write_all(&self.close).await?;
        conn::finish_close(&mut stream, buf[..filled].to_vec()).await
    }

    /// Reads what has arrived, or reports that queued bytes can be written.
    ///
    /// `poll_read`, unlike `try_read`, takes a short read to mean the socket is drained, so
    /// the next wait goes straight to epoll instead of costing a read that finds nothing.
    async fn wait(&self, stream: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<Wake> {
        poll_fn(|cx| {
            if self.unsent > 0 && stream.poll_write_ready(cx)?.is_ready() {
                return Poll::Ready(Ok(Wake::Writable));
            }
            let mut read = ReadBuf::new(buf);
            ready!(Pin::new(&mut *stream).poll_read(cx, &mut read))?;
            Poll::Ready(Ok(Wake::Read(read.filled().len())))
        })
        .await
    }

    /// Queues the next `k` messages (at most what is not in flight).
    fn queue(&mut self, k: usize, now: Instant) {
        for _ in 0..k {
            self.sent_at[self.next_send] = now;
            self.next_send = (self.next_send + 1) % self.depth;
        }
        self.unsent += k * self.frame_len;
        self.in_flight += k;
        debug_assert!(self.in_flight <= self.depth);
    }

    /// Writes what is queued, as far as the socket takes it without waiting.
    fn flush(&mut self, stream: &TcpStream) -> std::io::Result<()> {
        let round = self.depth * self.frame_len;
        while self.unsent > 0 {
            let written = match &self.layout {
                Layout::Whole { frames, .. } => {
                    stream.try_write(&frames[self.wpos..self.wpos + self.unsent])
                }
                Layout::Split { .. } => stream.try_write_vectored(&self.slices()),
            };
            match written {
                Ok(n) => {
                    self.unsent -= n;
                    self.wpos += n;
                    if self.wpos >= round {
                        self.wpos -= round;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The queued bytes of the split layout, head and body slices in turn.
    fn slices(&self) -> Vec<IoSlice<'_>> {
        let Layout::Split {
            heads,
            head_len,
            body,
            ..
        } = &self.layout
        else {
            unreachable!("only the split layout is written in slices")
        };
        let round = self.depth * self.frame_len;
        let mut out = Vec::with_capacity((2 * self.depth + 2).min(MAX_IOV));
        let (mut pos, mut left) = (self.wpos, self.unsent);
        while left > 0 && out.len() < MAX_IOV {
            let (slot, off) = (pos / self.frame_len, pos % self.frame_len);
            let part = if off < *head_len {
                &heads[slot * head_len + off..(slot + 1) * head_len]
            } else {
                &body.masked[off - head_len..]
            };
            let part = &part[..part.len().min(left)];
            out.push(IoSlice::new(part));
            left -= part.len();
            pos += part.len();
            if pos == round {
                pos = 0;
            }
        }
        out
    }

    /// The expected payload of `slot` from `off`, up to where it stops being contiguous.
    fn expected(&self, slot: usize, off: usize) -> &[u8] {
        match &self.layout {
            Layout::Whole { expected, .. } => {
                &expected[slot * self.size + off..(slot + 1) * self.size]
            }
            Layout::Split { prefixes, .. } if off < PREFIX => {
                &prefixes[slot * PREFIX + off..(slot + 1) * PREFIX]
            }
            Layout::Split { body, .. } => &body.plain[off - PREFIX..],
        }
    }

    /// Checks echoes in `data`; returns the bytes consumed (all but a partial header) and
    /// the number of echoes completed.
    pub(crate) fn receive(
        &mut self,
        data: &[u8],
        now: Instant,
        record: bool,
        stats: &mut Tally,
    ) -> anyhow::Result<(usize, usize)> {
        let mut at = 0;
        let mut completed = 0;
        loop {
            if let Some(mut off) = self.recv_off {
                let end = at + (self.size - off).min(data.len() - at);
                while at < end {
                    let expected = self.expected(self.next_recv, off);
                    let m = expected.len().min(end - at);
                    let differs = data[at..at + m] != expected[..m];
                    self.corrupt |= differs;
                    at += m;
                    off += m;
                }
                if off < self.size {
                    self.recv_off = Some(off);
                    break;
                }
                self.recv_off = None;
                if std::mem::take(&mut self.corrupt) {
                    stats.mismatches += 1;
                }
                if record {
                    stats.count += 1;
                    let ns = (now - self.sent_at[self.next_recv]).as_nanos();
                    stats.latency.saturating_record(ns as u64);
                }
                self.next_recv = (self.next_recv + 1) % self.depth;
                self.in_flight -= 1;
                completed += 1;
                continue;
            }
            let header = FrameHeader::decode(&data[at..])
                .map_err(|e| anyhow!("malformed frame from the server: {e}"))?;
            let Some((h, n)) = header else { break };
            self.check(&h, stats)?;
            at += n;
            self.recv_off = Some(0);
        }
        Ok((at, completed))
    }

    /// An echo is an unmasked, unfragmented frame of the type and size sent.
    fn check(&self, h: &FrameHeader, stats: &mut Tally) -> anyhow::Result<()> {
        if h.opcode == OpCode::Close {
            bail!("the server sent a close frame");
        }
        if h.opcode.is_control() {
            bail!(
                "the server sent a {:?} frame, which an echo run does not expect",
                h.opcode
            );
        }
        let expected = h.opcode == self.opcode
            && h.fin
            && !(h.rsv1 || h.rsv2 || h.rsv3)
            && h.mask.is_none()
            && h.payload_len == self.size as u64;
        if self.in_flight == 0 || !expected {
            stats.mismatches += 1;
            bail!(
                "expected {}, got an echo with header {h:?}",
                if self.in_flight == 0 {
                    "no echo (none was in flight)".to_string()
                } else {
                    format!(
                        "an unmasked final {:?} frame of {} bytes",
                        self.opcode, self.size
                    )
                }
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

    /// The bytes `k` queued frames put on the wire, taken from the layout as `flush` would.
    fn queued(p: &Pipeline) -> Vec<u8> {
        match &p.layout {
            Layout::Whole { frames, .. } => frames[p.wpos..p.wpos + p.unsent].to_vec(),
            Layout::Split { .. } => p.slices().iter().flat_map(|s| s.to_vec()).collect(),
        }
    }

    /// Pretends `n` queued bytes were written.
    fn written(p: &mut Pipeline, n: usize) {
        let round = p.depth * p.frame_len;
        p.unsent -= n;
        p.wpos = (p.wpos + n) % round;
    }

    /// What a correct server sends back for `frames`, and the payloads, in order.
    fn echoes(frames: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
        let (mut out, mut payloads, mut at) = (Vec::new(), Vec::new(), 0);
        while at < frames.len() {
            let (mut h, n) = FrameHeader::decode(&frames[at..]).unwrap().unwrap();
            let key = h.mask.take().unwrap();
            let len = h.payload_len as usize;
            let mut payload = frames[at + n..at + n + len].to_vec();
            apply_mask(&mut payload, key, 0);
            let (head, hn) = h.encode();
            out.extend_from_slice(&head[..hn]);
            out.extend_from_slice(&payload);
            payloads.push(payload);
            at += n + len;
        }
        assert_eq!(at, frames.len());
        (out, payloads)
    }

    const SHAPES: [(usize, usize, bool); 7] = [
        (1, 0, false),
        (3, 1, false),
        (8, 32, false),
        (2, 200, true),
        (3, 512, false),
        (2, 70_000, true),
        (4, 65_536, true),
    ];

    #[test]
    fn echoes_are_checked_across_arbitrary_read_boundaries() {
        for (depth, size, binary) in SHAPES {
            let shape = Shape::new(size, depth, binary, KEY);
            let now = Instant::now();
            let mut sender = Pipeline::new(&shape, 5);
            sender.queue(depth, now);
            let (wire, payloads) = echoes(&queued(&sender));
            assert_eq!(payloads.len(), depth);
            assert!(payloads.iter().all(|p| p.len() == size));
            if !binary {
                assert!(payloads.iter().all(|p| std::str::from_utf8(p).is_ok()));
            }
            for chunk in [1, 3, 13, 4096, wire.len().max(1)] {
                let mut p = Pipeline::new(&shape, 5);
                p.queue(depth, now);
                let mut stats = Tally::new();
                let (mut pending, mut total) = (Vec::new(), 0);
                for piece in wire.chunks(chunk) {
                    pending.extend_from_slice(piece);
                    let (used, done) = p.receive(&pending, now, true, &mut stats).unwrap();
                    pending.drain(..used);
                    total += done;
                }
                assert!(pending.is_empty());
                let counts = (total, stats.count, stats.mismatches);
                assert_eq!(counts, (depth, depth as u64, 0), "{depth} × {size}");
                assert_eq!(p.in_flight, 0);
            }
            // Every single flipped byte is caught.
            for i in (0..wire.len()).step_by(wire.len() / 50 + 1) {
                let mut bad = wire.clone();
                bad[i] ^= 0x20;
                let mut p = Pipeline::new(&shape, 5);
                p.queue(depth, now);
                let mut stats = Tally::new();
                let result = p.receive(&bad, now, false, &mut stats);
                assert!(
                    result.is_err() || stats.mismatches == 1,
                    "byte {i} of {size}"
                );
            }
        }
    }

    #[test]
    fn payloads_differ_between_connections_and_slots() {
        for (depth, size, binary) in SHAPES {
            if size < 8 || depth < 2 {
                continue;
            }
            let shape = Shape::new(size, depth, binary, KEY);
            let now = Instant::now();
            let (mut a, mut b) = (Pipeline::new(&shape, 1), Pipeline::new(&shape, 2));
            a.queue(depth, now);
            b.queue(depth, now);
            let (wire_a, payloads_a) = echoes(&queued(&a));
            let (_, payloads_b) = echoes(&queued(&b));
            assert_ne!(payloads_a[0], payloads_a[1]);
            assert_ne!(payloads_a[0], payloads_b[0]);
            // Connection 2 receiving connection 1's echoes notices.
            let mut stats = Tally::new();
            b.receive(&wire_a, now, true, &mut stats).unwrap();
            assert_eq!(stats.mismatches, depth as u64);
        }
    }

    #[test]
    fn wrong_frames_fail() {
        let shape = Shape::new(4, 2, true, KEY);
        let now = Instant::now();
        for wire in [
            vec![0x82, 5, 0, 0, 0, 0, 0],             // wrong length
            vec![0x81, 4, 0, 0, 0, 0],                // wrong type
            vec![0x02, 4, 0, 0, 0, 0],                // not final
            vec![0x88, 2, 0x03, 0xE8],                // close
            vec![0x89, 0],                            // ping
            vec![0x82, 0x84, 1, 2, 3, 4, 0, 0, 0, 0], // masked
        ] {
            let mut p = Pipeline::new(&shape, 1);
            p.queue(2, now);
            assert!(p.receive(&wire, now, true, &mut Tally::new()).is_err());
        }
        let mut idle = Pipeline::new(&shape, 1);
        let unsolicited = [0x82, 4, 0, 0, 0, 0];
        assert!(idle
            .receive(&unsolicited, now, true, &mut Tally::new())
            .is_err());
    }

    #[test]
    fn partial_writes_wrap_around_the_round() {
        for (depth, size, binary) in SHAPES {
            let shape = Shape::new(size, depth, binary, KEY);
            let now = Instant::now();
            let mut p = Pipeline::new(&shape, 3);
            p.queue(depth, now);
            let first_round = queued(&p);
            assert_eq!(first_round.len(), depth * p.frame_len);
            // Write all but part of the last frame, have the others echoed, queue as many.
            let tail = p.frame_len / 2;
            written(&mut p, first_round.len() - tail);
            p.in_flight = 1;
            p.queue(depth - 1, now);
            let rest = queued(&p);
            let frames_before_tail = first_round.len() - p.frame_len;
            assert_eq!(rest.len(), tail + frames_before_tail);
            let mut expected = first_round[first_round.len() - tail..].to_vec();
            expected.extend_from_slice(&first_round[..frames_before_tail]);
            assert_eq!(rest, expected, "{depth} × {size}");
        }
    }
}
