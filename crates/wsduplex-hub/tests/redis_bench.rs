//! A benchmark (`#[ignore]`) that also fails if a delivery is lost: one room, many WebSocket
//! members spread over three hub nodes sharing it through Redis, against the same load on one
//! node (in memory, and alone on Redis). Some members send at a fixed rate; every member
//! receives everything.
//! It prints deliveries per second and delivery latency (send to receive, same clock).
//!
//! ```sh
//! cargo test --release -p wsduplex-hub --test redis_bench -- --ignored --nocapture
//! ```
//! Knobs (environment): `BENCH_MEMBERS` (300), `BENCH_SENDERS` (10), `BENCH_RATE` (messages
//! per second per sender, 20), `BENCH_SECS` (5). Needs `redis-server`.

#[path = "common/serve.rs"]
mod serve;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wsduplex::server::ServerConfig;
use wsduplex::Message;
use wsduplex_hub::{Hub, HubConfig, RedisConfig};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Redis(Child, u16);

impl Redis {
    fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Self(child, port))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A node on its own runtime (two worker threads).
struct Node {
    addr: SocketAddr,
    hub: Hub,
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.hub.shutdown();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn node(redis: Option<&Redis>) -> Node {
    let mut config = HubConfig::default();
    config.queue = 4096;
    let hub = match redis {
        None => Hub::new(config),
        Some(r) => {
            let url = format!("redis://127.0.0.1:{}", r.1);
            Hub::with_redis(config, RedisConfig::new(url)).unwrap()
        }
    };
    let (rt, addr) = serve::start(&hub, ServerConfig::default());
    Node {
        addr,
        hub,
        rt: Some(rt),
    }
}

struct Figures {
    deliveries: u64,
    expected: u64,
    per_second: f64,
    latencies_us: Vec<u64>,
}

/// Runs the load in `room` against `nodes` (members spread round-robin).
async fn run(nodes: &[Node], room: &str) -> Figures {
    let members = knob("BENCH_MEMBERS", 300) as usize;
    let senders = knob("BENCH_SENDERS", 10).min(members as u64) as usize;
    let rate = knob("BENCH_RATE", 20);
    let secs = knob("BENCH_SECS", 5);
    for n in nodes {
        let deadline = Instant::now() + Duration::from_secs(10);
        while n.hub.is_connected() == Some(false) {
            assert!(Instant::now() < deadline, "node never connected");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let base = Instant::now();
    let deliveries = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut sockets = Vec::new();
    for i in 0..members {
        let addr = nodes[i % nodes.len()].addr;
        let url = format!("ws://{addr}/chat/{room}?name=m{i}");
        let (mut ws, _) = wsduplex::connect(&url).await.unwrap();
        // The welcome.
        ws.recv().await.unwrap().unwrap();
        sockets.push(ws);
    }
    // Everyone has seen everyone join before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for (i, ws) in sockets.into_iter().enumerate() {
        let (deliveries, latencies) = (deliveries.clone(), latencies.clone());
        let (mut read, mut write) = ws.split();
        readers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Ok(Some(Ok(msg))) =
                tokio::time::timeout(Duration::from_secs(3), read.recv()).await
            {
                let Message::Text(t) = msg else { continue };
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] != "message" {
                    continue;
                }
                let sent: u64 = v["text"].as_str().unwrap().parse().unwrap();
                let now = base.elapsed().as_micros() as u64;
                mine.push(now.saturating_sub(sent));
                deliveries.fetch_add(1, Ordering::Relaxed);
            }
            latencies.lock().unwrap().extend(mine);
        }));
        if i < senders {
            let sent = sent.clone();
            writers.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
                let end = Instant::now() + Duration::from_secs(secs);
                while Instant::now() < end {
                    tick.tick().await;
                    let at = base.elapsed().as_micros() as u64;
                    let msg = format!(r#"{{"type":"message","text":"{at}"}}"#);
                    write.send(msg).await.unwrap();
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                write
            }));
        }
    }
    let started = Instant::now();
    let mut sent_writers = Vec::new();
    for w in writers {
        sent_writers.push(w.await.unwrap());
    }
    let sending = started.elapsed();
    for r in readers {
        r.await.unwrap();
    }
    let deliveries = deliveries.load(Ordering::Relaxed);
    let mut latencies_us = std::mem::take(&mut *latencies.lock().unwrap());
    latencies_us.sort_unstable();
    Figures {
        deliveries,
        expected: sent.load(Ordering::Relaxed) * members as u64,
        per_second: deliveries as f64 / sending.as_secs_f64(),
        latencies_us,
    }
}

/// Prints the figures, then checks that the load lost nothing: every member received every
/// message sent (the order is `order.rs`'s and `redis/delivery.rs`'s to check).
fn report(setup: &str, f: &Figures) {
    let pct = |p: f64| {
        let i = ((f.latencies_us.len() as f64 * p) as usize).min(f.latencies_us.len() - 1);
        f.latencies_us[i] as f64 / 1000.0
    };
    println!(
        "{setup:<28} {:>9.0} deliveries/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  \
         ({} of {} delivered)",
        f.per_second,
        pct(0.5),
        pct(0.99),
        pct(1.0),
        f.deliveries,
        f.expected
    );
    assert_eq!(f.deliveries, f.expected, "{setup}: deliveries lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --ignored --nocapture (and --release)"]
async fn one_room_three_nodes_against_one() {
    let Some(redis) = Redis::start() else {
        eprintln!("no redis-server: nothing to measure");
        return;
    };
    println!(
        "members {}, senders {}, {} msg/s each, {} s",
        knob("BENCH_MEMBERS", 300),
        knob("BENCH_SENDERS", 10),
        knob("BENCH_RATE", 20),
        knob("BENCH_SECS", 5)
    );
    let one = [node(None)];
    report("one node, in memory", &run(&one, "bench1").await);
    drop(one);
    let alone = [node(Some(&redis))];
    report("one node on Redis", &run(&alone, "bench2").await);
    drop(alone);
    let three = [node(Some(&redis)), node(Some(&redis)), node(Some(&redis))];
    report("three nodes on Redis", &run(&three, "bench3").await);
}
