//! `bench fanout`: N member connections in R rooms (K rooms each), P publishers sending at
//! a fixed total rate; every delivery is checked (each publisher's messages to a room in
//! order, none lost, none twice, the hub's ids consecutive) and its latency measured, and
//! the server's CPU is reported per delivery.
//!
//! Rooms are `PREFIX0`, `PREFIX1`…; member `i` follows rooms `i·K … i·K+K−1` (mod R), so
//! `-c 100 --rooms 100` puts one member in each room and `-c 1 --rooms-per-connection 100`
//! one member in all of them. With P ≤ R publisher `p` sends to rooms `p, p+P, …` in turn;
//! with P > R (a multiple of R) `P/R` publishers share each room. Each (publisher, room)
//! is a stream numbered from 0: that is what the members check.
//!
//! Two protocols: `hub` (wsduplex's chat hub: `/chat/ROOM?name=…`, `subscribe` for more
//! rooms, `message` with `data` or `text`) and `relay` (uWebSockets' room server: the path
//! is the room, a message is passed on as it is, to its sender too).

mod member;
mod wire;

use super::report::{self, Latency, LoadUsage, Outcome, Progress, ServerUsage};
use super::{control_runtime, measure, parse_duration, rate, Common, Fleet, Link};
use anyhow::bail;
use member::{Member, Tally};
use serde::Serialize;
use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// Member connections (publishers come on top).
    #[arg(long, short = 'c', default_value_t = 100)]
    connections: usize,
    /// Rooms each member follows (the hub only beyond 1).
    #[arg(long, default_value_t = 1, value_name = "K")]
    rooms_per_connection: usize,
    /// Rooms in all [default: --rooms-per-connection].
    #[arg(long, value_name = "R")]
    rooms: Option<usize>,
    /// Publisher connections, each a member of the rooms it sends to.
    #[arg(long, short = 'p', default_value_t = 1)]
    publishers: usize,
    /// Messages published per second, all publishers together.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Send `text` ("P SEQ STAMP") instead of `data` ({"p":P,"s":SEQ,"t":STAMP}).
    #[arg(long)]
    text: bool,
    /// `hub`: wsduplex's chat protocol; `relay`: the path is the room and messages are
    /// passed on as they are (uWebSockets' room-server.cpp).
    #[arg(long, value_enum, default_value_t = Protocol::Hub)]
    protocol: Protocol,
    /// The rooms' names start with this.
    #[arg(long, default_value = "fanout-")]
    room_prefix: String,
    /// Length of the measured window (5s, 500ms, 1m).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Publishing before the measured window, checked but not recorded.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Protocol {
    Hub,
    Relay,
}

/// Connections a thread opens at once. On the hub every join is announced to the room's
/// members, so joins that land together share the members' writes.
const OPENING: usize = 128;
/// How long connections may take to finish once the window has ended.
const GRACE: Duration = Duration::from_secs(15);

/// The run, shared by the load threads.
pub(super) struct Plan {
    endpoint: super::conn::Endpoint,
    protocol: Protocol,
    /// Member connections; publishers are the connections after them.
    connections: usize,
    rooms: usize,
    per_connection: usize,
    publishers: usize,
    rate: f64,
    text: bool,
    prefix: String,
    /// The clock of send stamps and receipts.
    epoch: std::time::Instant,
    /// Set once every connection has joined: the publishers start.
    go: watch::Sender<bool>,
    end: End,
}

/// What the publishers tell the members when they stop.
struct End {
    /// The messages each stream had.
    sent: Vec<AtomicU64>,
    stopped: AtomicUsize,
    changed: Notify,
}

impl Plan {
    fn nanos(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn room(&self, r: u32) -> String {
        format!("{}{r}", self.prefix)
    }

    /// Connection `id`'s request path for its first room.
    fn path(&self, id: usize, room: u32) -> String {
        let base = self.endpoint.path().trim_end_matches('/');
        let room = self.room(room);
        match self.protocol {
            Protocol::Relay => format!("{base}/{room}"),
            Protocol::Hub if id < self.connections => format!("{base}/{room}?name=m{id}"),
            Protocol::Hub => format!("{base}/{room}?name=p{}", id - self.connections),
        }
    }

    fn rooms_of(&self, id: usize) -> Vec<u32> {
        let (n, r, k, p) = (
            self.connections,
            self.rooms,
            self.per_connection,
            self.publishers,
        );
        if id < n {
            (0..k).map(|j| ((id * k + j) % r) as u32).collect()
        } else if p <= r {
            (id - n..r).step_by(p).map(|r| r as u32).collect()
        } else {
            vec![((id - n) % r) as u32]
        }
    }

    fn publishers_per_room(&self) -> usize {
        (self.publishers / self.rooms).max(1)
    }

    /// Which of its room's publishers `publisher` is.
    fn publisher_slot(&self, publisher: u32) -> usize {
        if self.publishers > self.rooms {
            publisher as usize / self.rooms
        } else {
            0
        }
    }

    /// The run's index of the stream of `room`'s publisher number `slot`.
    fn stream(&self, room: u32, slot: usize) -> usize {
        if self.publishers <= self.rooms {
            room as usize
        } else {
            slot * self.rooms + room as usize
        }
    }

    /// Where a message of `publisher` in `room` is among connection `id`'s streams: the
    /// room's place among its rooms and the publisher's among the room's; None if `id` does
    /// not follow the room or the publisher does not send there.
    fn local(&self, id: usize, room: u32, publisher: u32) -> Option<(usize, usize)> {
        let (n, r, k, p) = (
            self.connections,
            self.rooms,
            self.per_connection,
            self.publishers,
        );
        let (room, publisher) = (room as usize, publisher as usize);
        if room >= r || publisher >= p {
            return None;
        }
        let sends_there = if p <= r {
            room % p == publisher
        } else {
            publisher % r == room
        };
        if !sends_there {
            return None;
        }
        let j = if id < n {
            let j = (room + r - (id * k) % r) % r;
            (j < k).then_some(j)?
        } else if p <= r {
            let own = id - n;
            (room % p == own).then_some(room / p)?
        } else {
            (room == (id - n) % r).then_some(0)?
        };
        Some((j, self.publisher_slot(publisher as u32)))
    }
}

#[derive(Serialize)]
struct Report {
    mode: &'static str,
    url: String,
    protocol: Protocol,
    threads: usize,
    connections: usize,
    rooms: usize,
    rooms_per_connection: usize,
    publishers: usize,
    /// Messages per second asked for.
    rate: f64,
    text: bool,
    warmup_secs: f64,
    secs: f64,
    /// Published in the window.
    sent: u64,
    messages_per_sec: f64,
    /// Received by the connections in the window.
    deliveries: u64,
    deliveries_per_sec: f64,
    deliveries_per_message: f64,
    latency: Option<Latency>,
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    mismatches: u64,
    /// CPU figures are per delivery.
    #[serde(flatten)]
    outcome: Outcome,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rooms = args.rooms.unwrap_or(args.rooms_per_connection);
    let (k, p) = (args.rooms_per_connection, args.publishers);
    if args.connections == 0 || p == 0 || rooms == 0 || k == 0 {
        bail!("--connections, --publishers, --rooms and --rooms-per-connection must be at least 1");
    }
    if k > rooms {
        bail!("--rooms-per-connection {k} is more than the {rooms} rooms");
    }
    if p > rooms && !p.is_multiple_of(rooms) {
        bail!("--publishers {p} is more than the {rooms} rooms and not a multiple of them");
    }
    if !(args.rate.is_finite() && args.rate > 0.0) {
        bail!("--rate must be a positive number of messages per second");
    }
    if args.protocol == Protocol::Relay && (k > 1 || p < rooms) {
        bail!(
            "--protocol relay: a connection is in one room, its path's, so \
             --rooms-per-connection must be 1 and --publishers at least --rooms"
        );
    }
    let endpoint = args.common.endpoint()?.plain_only("fanout")?;
    if endpoint.path().contains('?') {
        bail!("{}: the rooms' base takes no query", args.common.url);
    }
    let probe = args.common.probe()?;
    let total = args.connections + p;
    let threads = args.common.threads(total);
    let plan = Arc::new(Plan {
        endpoint,
        protocol: args.protocol,
        connections: args.connections,
        rooms,
        per_connection: k,
        publishers: p,
        rate: args.rate,
        text: args.text,
        prefix: args.room_prefix.clone(),
        epoch: std::time::Instant::now(),
        go: watch::Sender::new(false),
        end: End {
            sent: (0..p.max(rooms)).map(|_| AtomicU64::new(0)).collect(),
            stopped: AtomicUsize::new(0),
            changed: Notify::new(),
        },
    });
    let threads_plan = plan.clone();
    let mut fleet = Fleet::start(threads, move |i, link| {
        worker(threads_plan.clone(), i, threads, link)
    })?;
    let mut progress = Progress::new(args.common.quiet);
    let mut seen = 0;
    let status = |fleet: &Fleet<Tally>, label: &str, elapsed: Duration, dt: Duration| {
        let total = fleet.total();
        let line = format!(
            "fanout {label} {:.1} s: {} deliveries/s",
            elapsed.as_secs_f64(),
            report::thousands(rate(total - seen, dt) as u64)
        );
        seen = total;
        line
    };
    let window = control_runtime()?.block_on(async {
        let ready = fleet.ready().await;
        if ready.failed > 0 {
            bail!(
                "{} of {total} connections failed to join: {}",
                ready.failed,
                ready.first_error.unwrap_or_default()
            );
        }
        plan.go.send_replace(true);
        measure(
            &mut fleet,
            args.warmup,
            Some(args.duration),
            probe.as_ref(),
            &mut progress,
            status,
        )
        .await
    });
    let mut tally = Tally::new();
    for t in fleet.join()? {
        tally.merge(t);
    }
    let window = window?;
    let secs = window.elapsed.as_secs_f64();
    let r = Report {
        mode: "fanout",
        url: args.common.url.clone(),
        protocol: args.protocol,
        threads,
        connections: args.connections,
        rooms,
        rooms_per_connection: k,
        publishers: p,
        rate: args.rate,
        text: args.text,
        warmup_secs: args.warmup.as_secs_f64(),
        secs,
        sent: tally.sent,
        messages_per_sec: rate(tally.sent, window.elapsed),
        deliveries: tally.deliveries,
        deliveries_per_sec: rate(tally.deliveries, window.elapsed),
        deliveries_per_message: tally.deliveries as f64 / tally.sent.max(1) as f64,
        latency: report::latency(&tally.latency),
        lost: tally.lost,
        duplicated: tally.duplicated,
        out_of_order: tally.out_of_order,
        mismatches: tally.mismatches,
        outcome: Outcome {
            errors: tally.errors,
            first_error: tally.first_error.clone(),
            interrupted: window.interrupted,
            server: ServerUsage::new(
                probe.as_ref(),
                window.server_cpu,
                window.server_rss_kib,
                tally.deliveries,
            ),
            load: LoadUsage::new(window.load_cpu, window.elapsed, threads, tally.deliveries),
        },
    };
    report::print_measured(args.common.json, &r, &r.outcome, || human(&r));
    if r.messages_per_sec < 0.9 * r.rate && !r.outcome.interrupted {
        eprintln!(
            "wsduplex bench: warning: the publishers sent {:.0} messages/s of the {} asked for",
            r.messages_per_sec, r.rate
        );
    }
    let mut failures = vec![];
    let bad = r.lost + r.duplicated + r.out_of_order + r.mismatches;
    if bad > 0 {
        failures.push(Some(format!(
            "lost {}, duplicated {}, out of order {}, mismatches {}; first: {}",
            r.lost,
            r.duplicated,
            r.out_of_order,
            r.mismatches,
            r.outcome.first_error.as_deref().unwrap_or("-")
        )));
    }
    if r.outcome.errors > 0 {
        failures.push(Some(format!(
            "{} connection errors; first: {}",
            r.outcome.errors,
            r.outcome.first_error.as_deref().unwrap_or("?")
        )));
    }
    if r.deliveries == 0 && !r.outcome.interrupted {
        failures.push(Some("nothing was delivered in the window".into()));
    }
    Ok(super::verdict(&failures))
}

fn human(r: &Report) -> String {
    let mut out = format!(
        "fanout {} ({:?}): {} connections in {} rooms ({} each), {} publisher{} at {} messages/s; {}\n",
        r.url,
        r.protocol,
        r.connections,
        r.rooms,
        r.rooms_per_connection,
        r.publishers,
        if r.publishers == 1 { "" } else { "s" },
        r.rate,
        report::measured(r.threads, r.secs, r.warmup_secs)
    );
    out += &format!(
        "  {:<12}{} messages ({:.1}/s)\n",
        "published",
        report::thousands(r.sent),
        r.messages_per_sec
    );
    out += &format!(
        "  {:<12}{} ({}/s, {:.1} per message)\n",
        "delivered",
        report::thousands(r.deliveries),
        report::thousands(r.deliveries_per_sec as u64),
        r.deliveries_per_message
    );
    if let Some(l) = &r.latency {
        out += &format!("  {:<12}{}\n", "latency", l.human());
    }
    out += &format!(
        "  {:<12}lost {}, duplicated {}, out of order {}, mismatches {}, errors {}\n",
        "checked", r.lost, r.duplicated, r.out_of_order, r.mismatches, r.outcome.errors
    );
    out + &r.outcome.human(12, "delivery")
}

async fn worker(plan: Arc<Plan>, index: usize, threads: usize, link: Link) -> Tally {
    let tally = Rc::new(RefCell::new(Tally::new()));
    let errors = Rc::new(RefCell::new(report::Tally::new()));
    let ids = (index..plan.connections + plan.publishers).step_by(threads);
    let late = link
        .connections(ids, OPENING, GRACE, &errors, |id, opening| {
            let (plan, control, counter, tally) = (
                plan.clone(),
                link.control.clone(),
                link.counter.clone(),
                tally.clone(),
            );
            async move {
                let member = Member::new(&plan, id);
                let Some((tcp, inbox)) = opening.open(member.join()).await else {
                    return Ok(());
                };
                let publisher = (id >= plan.connections).then(|| (id - plan.connections) as u32);
                member
                    .run(tcp, inbox, publisher, &control, &tally, &counter)
                    .await
            }
        })
        .await;
    let mut t = tally.replace(Tally::new());
    let errors = errors.replace(report::Tally::new());
    if late > 0 {
        t.error(format!(
            "{late} connections still draining {GRACE:?} after the end"
        ));
    }
    t.errors += errors.errors;
    t.first_error = t.first_error.or(errors.first_error);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(connections: usize, rooms: usize, k: usize, publishers: usize) -> Plan {
        Plan {
            endpoint: super::super::conn::Endpoint::resolve(
                "ws://127.0.0.1:9/chat",
                &Default::default(),
            )
            .unwrap(),
            protocol: Protocol::Hub,
            connections,
            rooms,
            per_connection: k,
            publishers,
            rate: 1.0,
            text: false,
            prefix: "fanout-".into(),
            epoch: std::time::Instant::now(),
            go: watch::Sender::new(false),
            end: End {
                sent: vec![],
                stopped: AtomicUsize::new(0),
                changed: Notify::new(),
            },
        }
    }

    /// Every member follows K rooms, every room's streams reach exactly its followers, and
    /// every stream has one publisher.
    #[test]
    fn rooms_and_streams_match_up() {
        for (n, r, k, p) in [
            (1, 100, 100, 1),
            (100, 100, 1, 1),
            (10, 1, 1, 4),
            (7, 5, 2, 3),
        ] {
            let plan = plan(n, r, k, p);
            for id in 0..n + p {
                let rooms = plan.rooms_of(id);
                if id < n {
                    assert_eq!(rooms.len(), k);
                }
                for pub_ in 0..p as u32 {
                    for room in 0..r as u32 {
                        let local = plan.local(id, room, pub_);
                        let follows = rooms.contains(&room);
                        let sends = plan.rooms_of(n + pub_ as usize).contains(&room);
                        assert_eq!(local.is_some(), follows && sends, "{n} {r} {k} {p} {id}");
                        if let Some((j, _)) = local {
                            assert_eq!(rooms[j], room);
                        }
                    }
                }
            }
            // Each (publisher, room) is a stream of its own.
            let mut streams: Vec<usize> = (0..p as u32)
                .flat_map(|q| {
                    let plan = &plan;
                    plan.rooms_of(n + q as usize)
                        .into_iter()
                        .map(move |room| plan.stream(room, plan.publisher_slot(q)))
                })
                .collect();
            let all = streams.len();
            streams.sort();
            streams.dedup();
            assert_eq!(streams.len(), all);
            assert!(streams.iter().all(|&s| s < p.max(r)));
        }
        let p = plan(3, 1, 1, 1);
        assert_eq!(p.path(0, 0), "/chat/fanout-0?name=m0");
        assert_eq!(p.path(3, 0), "/chat/fanout-0?name=p0");
    }
}
