//! Printing a frame trace (`wsduplex relay --trace`, `wsduplex client -vv`): the events of
//! the core's [`Tracer`] as one text line each, or as JSON lines. The format is described in
//! `docs/relay.md`.

use serde_json::{Map, Value};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use wsduplex::proto::frame::OpCode;
use wsduplex::proto::trace::{Direction, TraceEvent, TracedFrame, Tracer};
use wsduplex::tap::Tap;
use wsduplex::{ClientConfig, ClientStream, Handshake, WebSocket};

/// Characters of text (or bytes of binary, in hex) shown per frame in the text format.
const SHOWN: usize = 60;

/// How trace lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Where trace lines go, and how they look. Each line is written and flushed whole, so
/// lines from concurrent connections never interleave.
#[derive(Clone, Copy, Debug)]
pub struct Printer {
    pub format: Format,
    pub stderr: bool,
}

impl Printer {
    pub fn line(&self, line: &str) {
        // A closed pipe ends tracing, not the connection.
        if self.stderr {
            let mut out = std::io::stderr().lock();
            let _ = writeln!(out, "{line}");
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    /// A JSON line of an event that is not a frame (the relay's own: a connection, an
    /// error, a close passed on), stamped like the frames.
    pub fn json_event(&self, conn: u64, start: Instant, mut fields: Map<String, Value>) {
        let mut v = Map::new();
        v.insert("conn".into(), conn.into());
        v.insert("t".into(), seconds(start).into());
        v.append(&mut fields);
        self.line(&Value::Object(v).to_string());
    }
}

/// The names of the two ends of one traced wire: who the client is, who the server is.
#[derive(Clone, Copy, Debug)]
pub struct Ends {
    pub client: &'static str,
    pub server: &'static str,
}

impl Ends {
    fn of(&self, from: Direction) -> (&'static str, &'static str) {
        match from {
            Direction::FromClient => (self.client, self.server),
            Direction::FromServer => (self.server, self.client),
        }
    }
}

/// Wraps `io` in a tap that traces its wire from the opening handshake on. `server`:
/// this end is the server of the connection (it reads what the client sends).
pub fn tap<S>(
    io: S,
    server: bool,
    ends: Ends,
    conn: u64,
    start: Instant,
    printer: Option<Arc<Printer>>,
) -> Tap<S> {
    let mut tracer = Tracer::new();
    let on_bytes = move |from, bytes: &[u8]| {
        let Some(printer) = &printer else {
            return;
        };
        tracer.receive(from, bytes);
        while let Some(event) = tracer.poll_event() {
            printer.line(&render(&event, ends, conn, start, printer.format));
        }
    };
    if server {
        Tap::server(io, on_bytes)
    } else {
        Tap::client(io, on_bytes)
    }
}

/// A client's transport, traced or not.
pub type TracedStream = Tap<ClientStream>;

/// Connects as [`wsduplex::connect_with`] does; with `trace`, every frame of the
/// connection is printed on stderr (`wsduplex client -vv`).
pub async fn connect(
    url: &str,
    config: &ClientConfig,
    trace: bool,
) -> wsduplex::Result<(WebSocket<TracedStream>, Handshake)> {
    let printer = trace.then(|| {
        Arc::new(Printer {
            format: Format::Text,
            stderr: true,
        })
    });
    let ends = Ends {
        client: "client",
        server: "server",
    };
    let (start, conn) = (
        Instant::now(),
        CONNECTIONS.fetch_add(1, Ordering::Relaxed) + 1,
    );
    wsduplex::client::connect_wrapped(url, config, move |io| {
        tap(io, false, ends, conn, start, printer)
    })
    .await
}

/// A client's connections (more than one with --reconnect), numbering its trace.
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

fn seconds(start: Instant) -> f64 {
    (start.elapsed().as_secs_f64() * 1e6).round() / 1e6
}

/// One event as one line.
pub fn render(event: &TraceEvent, ends: Ends, conn: u64, start: Instant, format: Format) -> String {
    let t = seconds(start);
    let (from, to) = ends.of(match event {
        TraceEvent::Head { from, .. } | TraceEvent::Lost { from, .. } => *from,
        TraceEvent::Frame(f) => f.from,
        _ => Direction::FromClient,
    });
    match format {
        Format::Text => {
            let wire = format!("[{conn}] +{t:.3}s {:<16}", format!("{from}→{to}"));
            match event {
                TraceEvent::Head { head, .. } => {
                    let mut lines = head.lines();
                    let mut s = format!("{wire} {}", lines.next().unwrap_or_default());
                    for l in lines {
                        s.push_str("\n        ");
                        s.push_str(l);
                    }
                    s
                }
                TraceEvent::Frame(f) => format!("{wire} {}", text_frame(f)),
                TraceEvent::Lost { error, .. } => format!(
                    "{wire} !! framing lost: {error} ({}); nothing more is traced this way",
                    error.close_code()
                ),
                _ => wire,
            }
        }
        Format::Json => {
            let mut v = Map::new();
            v.insert("conn".into(), conn.into());
            v.insert("t".into(), t.into());
            v.insert("from".into(), from.into());
            v.insert("to".into(), to.into());
            match event {
                TraceEvent::Head { head, .. } => {
                    v.insert("type".into(), "head".into());
                    v.insert("head".into(), head.as_str().into());
                }
                TraceEvent::Frame(f) => json_frame(f, &mut v),
                TraceEvent::Lost { error, .. } => {
                    v.insert("type".into(), "lost".into());
                    v.insert("error".into(), error.to_string().into());
                    v.insert("error_code".into(), error.close_code().as_u16().into());
                }
                _ => {}
            }
            Value::Object(v).to_string()
        }
    }
}

fn opcode_name(op: OpCode) -> &'static str {
    match op {
        OpCode::Continuation => "cont",
        OpCode::Text => "text",
        OpCode::Binary => "binary",
        OpCode::Close => "close",
        OpCode::Ping => "ping",
        OpCode::Pong => "pong",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Text quoted and cut to [`SHOWN`] characters, or binary as hex cut to [`SHOWN`] digits.
fn shown(bytes: &[u8], text: bool, more: bool) -> String {
    if text {
        let s = String::from_utf8_lossy(bytes);
        let mut out: String = s.chars().take(SHOWN).collect();
        if more || s.chars().count() > SHOWN {
            out.push('…');
        }
        format!("{out:?}")
    } else {
        let mut out = hex(&bytes[..bytes.len().min(SHOWN / 2)]);
        if more || bytes.len() > SHOWN / 2 {
            out.push('…');
        }
        out
    }
}

fn text_frame(f: &TracedFrame) -> String {
    let bit = |b: bool| if b { '1' } else { '0' };
    let mut s = format!(
        "{:<6} fin={} rsv={}{}{} {} len={}",
        opcode_name(f.opcode).to_uppercase(),
        bit(f.fin),
        bit(f.rsv1),
        bit(f.rsv2),
        bit(f.rsv3),
        f.mask
            .map_or("unmasked".to_string(), |k| format!("mask={}", hex(&k))),
        f.payload_len,
    );
    let text = f.message_opcode == OpCode::Text;
    if let Some((code, reason)) = &f.close {
        s.push_str(&format!(" code={code} reason={reason:?}"));
    } else if let Some(i) = &f.inflated {
        s.push_str(&format!(" inflated={}", i.len));
        if let Some(m) = i.message_len {
            s.push_str(&format!(" message={m}"));
        }
        s.push(' ');
        s.push_str(&shown(&i.data, text, i.len > i.data.len() as u64));
    } else if !f.payload.is_empty() {
        let control_text = f.opcode.is_control() && std::str::from_utf8(&f.payload).is_ok();
        s.push(' ');
        s.push_str(&shown(&f.payload, text || control_text, f.is_truncated()));
    }
    if let Some(e) = &f.error {
        s.push_str(&format!("  !! {e} ({})", e.close_code()));
    }
    s
}

fn json_frame(f: &TracedFrame, v: &mut Map<String, Value>) {
    v.insert("type".into(), "frame".into());
    v.insert("opcode".into(), opcode_name(f.opcode).into());
    v.insert("message".into(), opcode_name(f.message_opcode).into());
    v.insert("fin".into(), f.fin.into());
    v.insert("rsv1".into(), f.rsv1.into());
    v.insert("rsv2".into(), f.rsv2.into());
    v.insert("rsv3".into(), f.rsv3.into());
    v.insert("masked".into(), f.mask.is_some().into());
    if let Some(k) = f.mask {
        v.insert("mask".into(), hex(&k).into());
    }
    v.insert("header_len".into(), f.header_len.into());
    v.insert("len".into(), f.payload_len.into());
    v.insert("truncated".into(), f.is_truncated().into());
    let text = f.message_opcode == OpCode::Text;
    if text && f.inflated.is_none() {
        v.insert(
            "payload_text".into(),
            String::from_utf8_lossy(&f.payload).into(),
        );
    } else {
        v.insert("payload_hex".into(), hex(&f.payload).into());
    }
    if let Some(i) = &f.inflated {
        v.insert("inflated_len".into(), i.len.into());
        if text {
            v.insert(
                "inflated_text".into(),
                String::from_utf8_lossy(&i.data).into(),
            );
        } else {
            v.insert("inflated_hex".into(), hex(&i.data).into());
        }
        if let Some(m) = i.message_len {
            v.insert("message_len".into(), m.into());
        }
    }
    if let Some((code, reason)) = &f.close {
        v.insert("close_code".into(), code.as_u16().into());
        v.insert("close_reason".into(), reason.as_str().into());
    }
    if let Some(e) = &f.error {
        v.insert("error".into(), e.to_string().into());
        v.insert("error_code".into(), e.close_code().as_u16().into());
    }
}

/// A relay event's fields, for [`Printer::json_event`].
pub fn fields(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}
