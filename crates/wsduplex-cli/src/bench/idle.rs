//! `bench idle`: open N connections, hold them idle until Ctrl-C or `--duration`, and report
//! the server's memory per connection (its RSS growth over its RSS before the first one).
//!
//! A client address has only the ephemeral port range to connect from, so beyond it the
//! connections are bound to 127.0.0.2, 127.0.0.3, … in turn (a loopback target only).

use super::conn::{self, Endpoint};
use super::report::{self, Probe, Progress, Tally};
use super::{control_runtime, measure, parse_duration, Common, Control, Fleet, Link};
use anyhow::{bail, Context as _};
use serde::Serialize;
use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use wsduplex::proto::frame::{FrameHeader, OpCode};
use wsduplex::ClientStream;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// Connections to hold.
    #[arg(long, short = 'c', default_value_t = 10_000)]
    connections: usize,
    /// How long to hold them once open [default: until Ctrl-C].
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Connections per source address before moving on to the next 127.0.0.x
    /// [default: 90% of the ephemeral port range].
    #[arg(long, value_name = "N")]
    per_source: Option<usize>,
}

/// Connections a thread opens at once (more would only overflow the server's backlog).
const OPENING: usize = 128;
/// How long the connections may take to close once the hold is over.
const GRACE: Duration = Duration::from_secs(10);
/// Largest frame an idle connection buffers (a server has no reason to send more).
const MAX_FRAME: u64 = 1 << 20;

struct Plan {
    endpoint: Endpoint,
    connections: usize,
    /// Connections per source address, when they are spread.
    per_source: Option<usize>,
}

impl Plan {
    fn source(&self, id: usize) -> Option<IpAddr> {
        let per = self.per_source?;
        Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (id / per) as u8)))
    }
}

#[derive(Serialize)]
struct Report {
    mode: &'static str,
    url: String,
    threads: usize,
    connections: usize,
    opened: u64,
    failed: u64,
    /// Connections the server closed, or that failed, while held or closing.
    dropped: u64,
    first_error: Option<String>,
    source_addresses: usize,
    secs: f64,
    server: Option<ServerMemory>,
}

#[derive(Serialize)]
struct ServerMemory {
    pid: u32,
    rss_before_kib: u64,
    rss_opened_kib: u64,
    rss_end_kib: u64,
    /// (RSS at the end − RSS before) / connections opened.
    bytes_per_connection: Option<f64>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let endpoint = args.common.endpoint()?;
    let per_source = spread(&endpoint, args.connections, args.per_source)?;
    let probe = args.common.probe()?;
    let threads = args.common.threads(args.connections);
    let plan = Arc::new(Plan {
        endpoint,
        connections: args.connections,
        per_source,
    });
    let sources = per_source.map_or(1, |p| args.connections.div_ceil(p));
    let rss_before = probe.as_ref().map(Probe::rss_kib).transpose()?;
    let mut progress = Progress::new(args.common.quiet);
    let mut fleet = Fleet::start(threads, move |i, link| {
        worker(plan.clone(), i, threads, link)
    })?;
    let outcome = control_runtime()?.block_on(async {
        let ready = fleet.ready().await;
        if !args.common.quiet && !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            // For a script (or a test) to act once every connection is open.
            eprintln!("idle: {} connections open", ready.opened);
        }
        let rss_opened = probe.as_ref().map(Probe::rss_kib).transpose()?;
        let status = |_: &Fleet<Tally>, _: &str, elapsed: Duration, _: Duration| {
            let mut line = format!(
                "idle: holding {} connections, {:.0} s",
                ready.opened,
                elapsed.as_secs_f64()
            );
            if let (Some(p), Some(before)) = (&probe, rss_before) {
                if let Ok(now) = p.rss_kib() {
                    let per = per_connection(before, now, ready.opened).unwrap_or(0.0);
                    line += &format!(
                        ", server RSS {} KiB ({per:.0} B each)",
                        report::thousands(now)
                    );
                }
            }
            line
        };
        let window = if ready.opened > 0 {
            Some(
                measure(
                    &mut fleet,
                    Duration::ZERO,
                    args.duration,
                    probe.as_ref(),
                    &mut progress,
                    status,
                )
                .await?,
            )
        } else {
            None
        };
        anyhow::Ok((ready, rss_opened, window))
    });
    let tally: Tally = fleet.join()?.into_iter().collect();
    let (ready, rss_opened, window) = outcome?;
    let server = match (&probe, rss_before, rss_opened, window.as_ref()) {
        (Some(p), Some(before), Some(opened), Some(w)) => {
            let end = w.server_rss_kib.unwrap_or(opened);
            Some(ServerMemory {
                pid: p.pid(),
                rss_before_kib: before,
                rss_opened_kib: opened,
                rss_end_kib: end,
                bytes_per_connection: per_connection(before, end, ready.opened),
            })
        }
        _ => None,
    };
    let r = Report {
        mode: "idle",
        url: args.common.url.clone(),
        threads,
        connections: args.connections,
        opened: ready.opened,
        failed: ready.failed,
        dropped: tally.errors,
        first_error: ready.first_error.or(tally.first_error),
        source_addresses: sources,
        secs: window.map_or(0.0, |w| w.elapsed.as_secs_f64()),
        server,
    };
    report::print(args.common.json, &r, || human(&r));
    if r.failed > 0 || r.dropped > 0 {
        eprintln!(
            "wsduplex bench: FAILED: {} connections did not open and {} were dropped; first: {}",
            r.failed,
            r.dropped,
            r.first_error.as_deref().unwrap_or("?")
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn per_connection(before_kib: u64, after_kib: u64, connections: u64) -> Option<f64> {
    (connections > 0).then(|| (after_kib as f64 - before_kib as f64) * 1024.0 / connections as f64)
}

fn human(r: &Report) -> String {
    let mut out = format!(
        "idle {}: {} of {} connections open from {} source address{}, held {:.1} s\n",
        r.url,
        r.opened,
        r.connections,
        r.source_addresses,
        if r.source_addresses == 1 { "" } else { "es" },
        r.secs
    );
    if let Some(s) = &r.server {
        out += &format!(
            "  server RSS {} KiB before, {} KiB once open, {} KiB at the end",
            report::thousands(s.rss_before_kib),
            report::thousands(s.rss_opened_kib),
            report::thousands(s.rss_end_kib)
        );
        if let Some(b) = s.bytes_per_connection {
            out += &format!(": {b:.0} B per connection");
        }
        out += "\n";
    }
    out += &format!("  failed {}, dropped {}\n", r.failed, r.dropped);
    out
}

/// Connections per source address when `n` would exhaust one address's ephemeral ports.
fn spread(endpoint: &Endpoint, n: usize, per: Option<usize>) -> anyhow::Result<Option<usize>> {
    let ports = ephemeral_ports();
    // Leave a tenth of the range for everything else on the machine.
    let per = per.unwrap_or(ports * 9 / 10).max(1);
    if n <= per {
        return Ok(None);
    }
    let ip = endpoint.addr.ip();
    if !(ip.is_ipv4() && ip.is_loopback()) {
        bail!(
            "{n} connections exceed the {per} allowed per client address ({ports} ephemeral \
             ports), and source addresses can only be spread over 127.0.0.x for a 127.x target"
        );
    }
    if n.div_ceil(per) > 253 {
        bail!("{n} connections need more than 253 source addresses");
    }
    Ok(Some(per))
}

fn ephemeral_ports() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_ascii_whitespace().map(str::parse::<usize>);
            Some((it.next()?.ok()?, it.next()?.ok()?))
        })
        .map_or(28_232, |(lo, hi)| hi.saturating_sub(lo) + 1)
}

async fn worker(plan: Arc<Plan>, index: usize, threads: usize, link: Link) -> Tally {
    let tally = Rc::new(RefCell::new(Tally::new()));
    let ids = (index..plan.connections).step_by(threads);
    // A connection still closing GRACE after the end is aborted without counting as dropped.
    link.connections(ids, OPENING, GRACE, &tally, |id, opening| {
        let (plan, control, counter) = (plan.clone(), link.control.clone(), link.counter.clone());
        async move {
            let source = plan.source(id);
            let open = async {
                plan.endpoint
                    .open(source)
                    .await
                    .with_context(|| match source {
                        Some(ip) => format!("connection {id} from {ip}"),
                        None => format!("connection {id}"),
                    })
            };
            let Some((stream, leftover)) = opening.open(open).await else {
                return Ok(());
            };
            counter.add(1);
            hold(stream, leftover, conn::mask_key(id as u64), &control).await
        }
    })
    .await;
    tally.replace(Tally::new())
}

/// Holds a connection open: answers pings, ignores pongs and data, and closes at the end.
async fn hold(
    mut stream: ClientStream,
    mut buf: Vec<u8>,
    key: [u8; 4],
    control: &Control,
) -> anyhow::Result<()> {
    let mut chunk = [0u8; 256];
    loop {
        while let Some((h, n)) = FrameHeader::decode(&buf)? {
            if h.payload_len > MAX_FRAME {
                bail!(
                    "the server sent a {} byte frame to an idle connection",
                    h.payload_len
                );
            }
            let end = n + h.payload_len as usize;
            if buf.len() < end {
                break;
            }
            match h.opcode {
                // RFC 6455 §5.5.2: a Ping is answered with a Pong carrying its payload.
                OpCode::Ping => {
                    let pong = conn::masked_frame(OpCode::Pong, &buf[n..end], key);
                    stream.write_all(&pong).await?;
                }
                OpCode::Close => bail!("the server closed the connection"),
                _ => {}
            }
            buf.drain(..end);
        }
        tokio::select! {
            read = stream.read(&mut chunk) => match read? {
                0 => bail!("the server closed the connection without a close frame"),
                n => buf.extend_from_slice(&chunk[..n]),
            },
            _ = control.done() => break,
        }
    }
    stream.write_all(&conn::close_frame(key)).await?;
    conn::finish_close(&mut stream, buf).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_spread_past_the_port_range() {
        let local = Endpoint::resolve("ws://127.0.0.1:9/", &Default::default()).unwrap();
        assert_eq!(spread(&local, 100, None).unwrap(), None);
        let per = spread(&local, 1_000_000, None).unwrap().unwrap();
        let plan = Plan {
            endpoint: local.clone(),
            connections: 1_000_000,
            per_source: Some(per),
        };
        assert_eq!(
            plan.source(0),
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        );
        assert_eq!(
            plan.source(per),
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)))
        );
        let remote = Endpoint::resolve("ws://10.0.0.1:9/", &Default::default()).unwrap();
        assert!(spread(&remote, 1_000_000, None).is_err());
        assert_eq!(spread(&local, 5, Some(2)).unwrap(), Some(2));
        assert!(spread(&local, 1000, Some(2)).is_err());
    }
}
