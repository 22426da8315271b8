//! `bench connect`: the handshake rate. C openers each loop over: TCP connect, opening
//! handshake, closing handshake (the server closes the TCP connection, as RFC 6455 §7.1.1
//! asks, so the server side keeps the TIME_WAIT state and client ports do not run out).

use super::conn::{self, Endpoint};
use super::report::{self, Latency, Outcome, Tally};
use super::{measure_and_join, parse_duration, rate, rate_line, Common, Fleet, Link, Phase, Ready};
use anyhow::bail;
use serde::Serialize;
use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt as _;
use tokio::task::JoinSet;
use wsduplex::proto::handshake::client::Request;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// Openers working at once.
    #[arg(long, short = 'c', default_value_t = 50)]
    concurrency: usize,
    /// Length of the measured window (5s, 500ms, 1m).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Load before the measured window, not recorded.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Stop after this many handshakes instead (no warm-up, no fixed duration).
    #[arg(long, conflicts_with_all = ["duration", "warmup"])]
    count: Option<u64>,
}

struct Plan {
    endpoint: Endpoint,
    concurrency: usize,
    /// Handshakes left to start, with --count.
    tickets: Option<AtomicU64>,
}

#[derive(Serialize)]
struct Report {
    mode: &'static str,
    url: String,
    threads: usize,
    concurrency: usize,
    warmup_secs: f64,
    secs: f64,
    handshakes: u64,
    handshakes_per_sec: f64,
    /// From the start of the TCP connect to the checked `101` response.
    latency: Option<Latency>,
    #[serde(flatten)]
    outcome: Outcome,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.concurrency == 0 || args.count == Some(0) {
        bail!("--concurrency and --count must be at least 1");
    }
    let endpoint = args.common.endpoint()?;
    let probe = args.common.probe()?;
    let threads = args.common.threads(args.concurrency);
    let plan = Arc::new(Plan {
        endpoint,
        concurrency: args.concurrency,
        tickets: args.count.map(AtomicU64::new),
    });
    let (warmup, duration) = match args.count {
        Some(_) => (Duration::ZERO, None),
        None => (args.warmup, Some(args.duration)),
    };
    let fleet = Fleet::start(threads, move |i, link| {
        worker(plan.clone(), i, threads, link)
    })?;
    // Nothing to check: every opener counts as open, and one that fails is a report error.
    let (window, tally) = measure_and_join(
        fleet,
        warmup,
        duration,
        probe.as_ref(),
        args.common.quiet,
        rate_line("connect", "handshakes/s"),
        |_| Ok(()),
    )?;
    let r = Report {
        mode: "connect",
        url: args.common.url.clone(),
        threads,
        concurrency: args.concurrency,
        warmup_secs: warmup.as_secs_f64(),
        secs: window.elapsed.as_secs_f64(),
        handshakes: tally.count,
        handshakes_per_sec: rate(tally.count, window.elapsed),
        latency: report::latency(&tally.latency),
        outcome: Outcome::new(&tally, &window, probe.as_ref(), threads),
    };
    report::print_measured(args.common.json, &r, &r.outcome, || human(&r));
    Ok(verdict(&r))
}

fn human(r: &Report) -> String {
    let measured = report::measured(r.threads, r.secs, r.warmup_secs);
    let mut out = format!("connect {}: {} openers, {measured}\n", r.url, r.concurrency);
    out += &format!(
        "  handshakes {} ({} /s)\n",
        report::thousands(r.handshakes),
        report::thousands(r.handshakes_per_sec.round() as u64)
    );
    if let Some(l) = &r.latency {
        out += &format!("  handshake  {}\n", l.human());
    }
    out += &r.outcome.human(11, "handshake");
    out += &format!("  errors     {}\n", r.outcome.errors);
    out
}

fn verdict(r: &Report) -> ExitCode {
    let first = r.outcome.first_error.as_deref().unwrap_or("?");
    super::verdict(&[
        (r.outcome.errors > 0)
            .then(|| format!("{} openers failed; first: {first}", r.outcome.errors)),
        (r.handshakes == 0).then(|| "no handshake completed in the measured window".to_string()),
    ])
}

async fn worker(plan: Arc<Plan>, index: usize, threads: usize, link: Link) -> Tally {
    let tally = Rc::new(RefCell::new(Tally::new()));
    let mut openers = JoinSet::new();
    for id in (index..plan.concurrency).step_by(threads) {
        let (plan, tally) = (plan.clone(), tally.clone());
        let (control, counter) = (link.control.clone(), link.counter.clone());
        openers.spawn_local(async move {
            // One request per opener: the key is a nonce against caches, and a server under
            // test gains nothing from seeing the same one again.
            let request = plan.endpoint.request();
            let request_bytes = request.to_bytes();
            let close = conn::close_frame(conn::mask_key(id as u64));
            if plan.tickets.is_some() {
                control.started().await;
            }
            loop {
                if control.phase() == Phase::Done {
                    break;
                }
                if let Some(tickets) = &plan.tickets {
                    let take = |n: u64| n.checked_sub(1);
                    if tickets
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, take)
                        .is_err()
                    {
                        break;
                    }
                }
                match cycle(&plan.endpoint, &request, &request_bytes, &close).await {
                    Ok(handshake) => {
                        counter.add(1);
                        if control.phase() == Phase::Measure {
                            let mut t = tally.borrow_mut();
                            t.count += 1;
                            t.latency.saturating_record(handshake.as_nanos() as u64);
                        }
                    }
                    Err(e) => {
                        tally.borrow_mut().error(format!("opener {id}: {e:#}"));
                        break;
                    }
                }
            }
        });
    }
    let _ = link.ready.send(Ready {
        opened: openers.len() as u64,
        ..Ready::default()
    });
    while let Some(joined) = openers.join_next().await {
        if let Err(e) = joined {
            tally.borrow_mut().error(format!("an opener failed: {e}"));
        }
    }
    let _ = link.finished.send(());
    tally.replace(Tally::new())
}

/// One connection's life; returns the time from connect to the checked response.
async fn cycle(
    endpoint: &Endpoint,
    request: &Request,
    request_bytes: &[u8],
    close: &[u8],
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let (mut stream, leftover) = conn::open(endpoint, None, request, request_bytes).await?;
    let handshake = start.elapsed();
    stream.write_all(close).await?;
    conn::finish_close(&mut stream, leftover).await?;
    Ok(handshake)
}
