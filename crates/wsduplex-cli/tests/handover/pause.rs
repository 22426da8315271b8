//! The pause a connection sees during a hand-over: a benchmark, ignored by `cargo test`.

use crate::common::BIN;
use crate::procs::{control_path, handed_over, Proc};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Benchmark, not a test: the pause a connection sees during a hand-over, and the total
/// time, with many connections (docs/handover.md shows the figures). Idle connections make
/// up the crowd; a sample of them echo in lockstep all along, and each one's longest gap
/// between two echoes during the hand-over is its pause.
///
/// `WSDUPLEX_HANDOVER_BIN=target/release/wsduplex cargo test -p wsduplex-cli --test handover
/// -- --ignored --nocapture pause` (`WSDUPLEX_HANDOVER_CONNECTIONS`, default 10000).
#[test]
#[ignore = "a benchmark: run with --ignored --nocapture"]
fn pause_per_connection() {
    use std::time::Instant;
    let bin = std::env::var("WSDUPLEX_HANDOVER_BIN").unwrap_or_else(|_| BIN.to_owned());
    let n: usize = std::env::var("WSDUPLEX_HANDOVER_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let sampled = 200.min(n);
    let path = control_path("ctl");
    let p = path.to_str().unwrap();
    let limits = [
        "--max-connections",
        "0",
        "--max-connections-per-client",
        "0",
    ];
    let mut args = vec!["--listen", "127.0.0.1:0", "--workers", "2", "--control", p];
    args.extend(limits);
    let old = Proc::spawn_bin(&bin, &args, &[]);
    let addr: SocketAddr = old.line("listening on http://").parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut config = wsduplex::ClientConfig::default();
    config.proxy = wsduplex::ProxySetting::None;
    config.deflate = None;
    let url = format!("ws://{addr}/echo");
    let connected = Instant::now();
    let mut sockets = rt.block_on(async {
        let mut all = Vec::with_capacity(n);
        for chunk in (0..n).collect::<Vec<_>>().chunks(256) {
            let mut set = tokio::task::JoinSet::new();
            for _ in chunk {
                let (url, config) = (url.clone(), config.clone());
                set.spawn(async move { wsduplex::connect_with(url, &config).await });
            }
            while let Some(r) = set.join_next().await {
                all.push(r.unwrap().expect("connect").0);
            }
        }
        all
    });
    eprintln!("{n} connections in {:?}", connected.elapsed());
    // 0: before the hand-over, 1: during it, 2: stop.
    let phase = Arc::new(AtomicUsize::new(0));
    let trips = Arc::new(AtomicUsize::new(0));
    // Spread over the crowd (connections are asked in about the order they came).
    let step = n / sampled;
    let mut picked = Vec::with_capacity(sampled);
    for i in (0..sampled).rev() {
        picked.push(sockets.swap_remove(i * step));
    }
    let probes: Vec<_> = picked
        .into_iter()
        .map(|mut ws| {
            let (phase, trips) = (phase.clone(), trips.clone());
            rt.spawn(async move {
                let (mut before, mut during) = (Duration::ZERO, Duration::ZERO);
                let mut last = Instant::now();
                loop {
                    let now_phase = phase.load(Ordering::Relaxed);
                    if now_phase == 2 {
                        break;
                    }
                    ws.send(wsduplex::Message::text("probe"))
                        .await
                        .expect("send");
                    match ws.recv().await {
                        Some(Ok(wsduplex::Message::Text(_))) => {}
                        other => panic!("probe: {other:?}"),
                    }
                    let now = Instant::now();
                    let gap = now - last;
                    last = now;
                    let slot = if now_phase == 0 {
                        &mut before
                    } else {
                        &mut during
                    };
                    *slot = (*slot).max(gap);
                    trips.fetch_add(1, Ordering::Relaxed);
                }
                (before, during)
            })
        })
        .collect();
    let wait_trips = |k: usize| {
        let start = trips.load(Ordering::Relaxed);
        while trips.load(Ordering::Relaxed) < start + k {
            thread::yield_now();
        }
    };
    wait_trips(sampled * 50);
    phase.store(1, Ordering::Relaxed);
    let t0 = Instant::now();
    let new = Proc::spawn_bin(
        &bin,
        &["--take-over", p, limits[0], limits[1], limits[2], limits[3]],
        &[],
    );
    new.line("listening on http://");
    let took = new.line("took over ");
    let total = t0.elapsed();
    handed_over(old, n);
    wait_trips(sampled * 50);
    phase.store(2, Ordering::Relaxed);
    let gaps: Vec<(Duration, Duration)> = rt.block_on(async {
        let mut out = Vec::new();
        for p in probes {
            out.push(p.await.unwrap());
        }
        out
    });
    let pct = |mut v: Vec<Duration>, q: f64| {
        v.sort();
        v[((v.len() - 1) as f64 * q).round() as usize]
    };
    let during: Vec<_> = gaps.iter().map(|g| g.1).collect();
    let before: Vec<_> = gaps.iter().map(|g| g.0).collect();
    eprintln!("took over {took}; total {total:?} from starting the new process");
    eprintln!(
        "pause per connection ({sampled} sampled of {n}): p50 {:?}, p99 {:?}, max {:?}",
        pct(during.clone(), 0.5),
        pct(during.clone(), 0.99),
        pct(during, 1.0)
    );
    eprintln!(
        "longest gap before the hand-over: p50 {:?}, p99 {:?}, max {:?}",
        pct(before.clone(), 0.5),
        pct(before.clone(), 0.99),
        pct(before, 1.0)
    );
    drop(sockets);
    new.stop();
}
