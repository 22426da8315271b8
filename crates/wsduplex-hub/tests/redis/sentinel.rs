//! `redis+sentinel://`: a master, a replica and one sentinel (quorum 1) on free loopback
//! ports; nodes find the master through the sentinel and follow it through a failover the
//! sentinel is asked for, then through the death of the master. The same with
//! `rediss+sentinel://`, everything over TLS (replication and the sentinel's links too).

use crate::common::{join, next_of, say, Ws};
use crate::support::{free_port, have_redis, logged, text, Node, Pki, Redis, TempDir};
use crate::LIMIT;
use std::time::{Duration, Instant};

const MASTER: &str = "mymaster";

/// Polls `check` (a command to a Redis, say) until it holds.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The master's port, as the sentinel has it.
fn master_port(sentinel: &Redis) -> Option<u16> {
    let v = sentinel
        .command(&["SENTINEL", "get-master-addr-by-name", MASTER])
        .ok()?;
    match v {
        redis::Value::Array(a) => text(a.get(1)?)?.parse().ok(),
        _ => None,
    }
}

fn role(redis: &Redis) -> Option<String> {
    match redis.command(&["ROLE"]).ok()? {
        redis::Value::Array(a) => text(a.first()?),
        _ => None,
    }
}

/// Whether the replica has everything `master` has now (a write, then `WAIT` for it).
fn replicated(master: &Redis) -> bool {
    let client = master.client().unwrap();
    let Ok(mut conn) = client.get_connection_with_timeout(LIMIT) else {
        return false;
    };
    let acked: redis::RedisResult<i64> = redis::pipe()
        .cmd("SET")
        .arg("wsduplex-test:sync")
        .arg(1)
        .ignore()
        .cmd("WAIT")
        .arg(1)
        .arg(500)
        .query::<(i64,)>(&mut conn)
        .map(|(n,)| n);
    acked.is_ok_and(|n| n >= 1)
}

/// `from` says something (again, if its node delivered it locally while it had no
/// master) until the message gets an id from Redis, then `to` receives it with that id.
async fn round_trip_through_redis(from: &mut Ws, node: &Node, to: &mut Ws, what: &str) -> u64 {
    let deadline = Instant::now() + LIMIT;
    for attempt in 0.. {
        assert!(
            Instant::now() < deadline,
            "{what}: never went through Redis"
        );
        node.connected(true).await;
        let text = format!("{what} {attempt}");
        say(from, &text).await;
        let mine = loop {
            let m = next_of(from, "message").await;
            if m["text"] == text.as_str() {
                break m;
            }
        };
        if mine.get("local").is_some() {
            continue;
        }
        loop {
            let m = next_of(to, "message").await;
            if m["text"] == text.as_str() && m.get("local").is_none() {
                assert_eq!(m["id"], mine["id"], "{what}: one id on both nodes");
                return m["id"].as_u64().unwrap();
            }
        }
    }
    unreachable!()
}

#[tokio::test]
async fn nodes_follow_the_master_through_failovers() {
    failovers(false).await;
}

#[tokio::test]
async fn nodes_follow_the_master_through_failovers_over_tls() {
    failovers(true).await;
}

async fn failovers(tls: bool) {
    if !have_redis() {
        return;
    }
    let dir = TempDir::new("sentinel");
    let pki = Pki::new(&dir, "a");
    let (m, r, s) = (free_port(), free_port(), free_port());
    let replica_of = ["--replicaof", "127.0.0.1", &m.to_string()].map(String::from);
    let replica_of: Vec<&str> = replica_of.iter().map(String::as_str).collect();
    let (first, mut second) = match tls {
        false => (Redis::plain(m, &[]), Redis::plain(r, &replica_of)),
        true => {
            let replication = ["--tls-replication", "yes"];
            let replica: Vec<&str> = replication.iter().chain(&replica_of).copied().collect();
            (
                Redis::tls(m, &pki, "no", &replication),
                Redis::tls(r, &pki, "no", &replica),
            )
        }
    };
    let listen = match tls {
        false => format!("port {s}\n"),
        true => pki.sentinel_conf(s),
    };
    let conf = dir.write(
        "sentinel.conf",
        &format!(
            "{listen}bind 127.0.0.1\ndir {}\n\
             sentinel monitor {MASTER} 127.0.0.1 {m} 1\n\
             sentinel down-after-milliseconds {MASTER} 1000\n\
             sentinel failover-timeout {MASTER} 5000\n",
            dir.0.display()
        ),
    );
    let sentinel = Redis::sentinel(s, &conf, tls.then_some(&pki));
    eventually("the sentinel names the master", || {
        master_port(&sentinel) == Some(m)
    })
    .await;

    let (scheme, query) = match tls {
        false => ("redis+sentinel", String::new()),
        true => ("rediss+sentinel", format!("?cacert={}", pki.ca.display())),
    };
    let url = format!("{scheme}://127.0.0.1:{s}/{MASTER}{query}");
    let nodes: Vec<Node> = (0..2)
        .map(|_| Node::with_url(&url, Duration::from_secs(15)))
        .collect();
    for n in &nodes {
        n.connected(true).await;
    }
    logged(&[
        &url,
        &format!("master {MASTER} at 127.0.0.1:{m}"),
        "connected as",
    ])
    .await;
    let (mut alice, _) = join(nodes[0].addr, "/chat/fo?name=alice").await;
    let (mut bob, _) = join(nodes[1].addr, "/chat/fo?name=bob").await;
    next_of(&mut alice, "joined").await;
    let before = round_trip_through_redis(&mut alice, &nodes[0], &mut bob, "before").await;
    assert_eq!(before, 1);

    // 1. A failover the sentinel is asked for: the nodes hear `+switch-master` and move,
    // without waiting for the old master to be demoted.
    eventually("the replica has everything", || replicated(&first)).await;
    eventually("the sentinel fails over", || {
        sentinel.command(&["SENTINEL", "FAILOVER", MASTER]).is_ok()
    })
    .await;
    eventually("the replica is the master", || {
        master_port(&sentinel) == Some(r)
    })
    .await;
    let moved = logged(&[&url, &format!("at 127.0.0.1:{r}"), "connected again"]).await;
    assert!(moved.contains(MASTER), "{moved}");
    let after = round_trip_through_redis(&mut bob, &nodes[1], &mut alice, "after").await;
    assert!(after > before, "ids go up: {after} after {before}");
    assert_eq!(role(&second).as_deref(), Some("master"));

    // 2. The master dies: the sentinel notices and promotes the old master, made a replica
    // of the new one first (the sentinel does that itself, but only some 10 s later).
    let new_master = r.to_string();
    first
        .command(&["REPLICAOF", "127.0.0.1", &new_master])
        .unwrap();
    eventually("the old master is a replica", || {
        role(&first).as_deref() == Some("slave")
    })
    .await;
    eventually("the new replica has everything", || replicated(&second)).await;
    second.stop();
    eventually("the old master is the master again", || {
        master_port(&sentinel) == Some(m)
    })
    .await;
    let again = round_trip_through_redis(&mut alice, &nodes[0], &mut bob, "again").await;
    assert!(again > after, "ids go up: {again} after {after}");

    // A node started now finds the master of the moment (through the second sentinel of
    // its URL: the first is not there), and the same history.
    let dead = free_port();
    let late = Node::with_url(
        &format!("{scheme}://127.0.0.1:{dead},127.0.0.1:{s}/{MASTER}{query}"),
        Duration::from_secs(15),
    );
    late.connected(true).await;
    let (_carol, w) = join(late.addr, "/chat/fo?name=carol").await;
    assert_eq!(w["last_id"], again);
    let texts: Vec<&str> = w["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert!(texts.first().unwrap().starts_with("before"), "{texts:?}");
    assert!(texts.last().unwrap().starts_with("again"), "{texts:?}");

    // Without the sentinel, the nodes stay on the master they have.
    let mut sentinel = sentinel;
    sentinel.stop();
    logged(&[&url, "the sentinel watched for failovers went away"]).await;
    let last = round_trip_through_redis(&mut bob, &nodes[1], &mut alice, "unwatched").await;
    assert!(last > again);
    assert!(nodes.iter().all(|n| n.hub.is_connected() == Some(true)));
}

/// The master takes messages it never passes to its replica (replication is cut first:
/// its link dropped, and the replica's `PSYNC` refused by an ACL), then dies; the sentinel
/// promotes the replica. What `docs/hub.md` promises: members who got those messages keep
/// them (they arrived, with their ids, before the failover); the messages are gone from
/// the shared history; their ids are not handed out again; chat goes on through the new
/// master with ids above them.
#[tokio::test]
async fn messages_the_master_did_not_replicate_are_lost_from_history_and_ids_go_on() {
    if !have_redis() {
        return;
    }
    let dir = TempDir::new("sentinel-unreplicated");
    let (m, r, s) = (free_port(), free_port(), free_port());
    let mut master = Redis::plain(m, &[]);
    let replica = Redis::plain(r, &["--replicaof", "127.0.0.1", &m.to_string()]);
    let conf = dir.write(
        "sentinel.conf",
        &format!(
            "port {s}\nbind 127.0.0.1\ndir {}\n\
             sentinel monitor {MASTER} 127.0.0.1 {m} 1\n\
             sentinel down-after-milliseconds {MASTER} 1000\n\
             sentinel failover-timeout {MASTER} 5000\n",
            dir.0.display()
        ),
    );
    let sentinel = Redis::sentinel(s, &conf, None);
    eventually("the sentinel names the master", || {
        master_port(&sentinel) == Some(m)
    })
    .await;
    let url = format!("redis+sentinel://127.0.0.1:{s}/{MASTER}");
    let nodes: Vec<Node> = (0..2)
        .map(|_| Node::with_url(&url, Duration::from_secs(15)))
        .collect();
    for n in &nodes {
        n.connected(true).await;
    }
    let (mut alice, _) = join(nodes[0].addr, "/chat/unrep?name=alice").await;
    let (mut bob, _) = join(nodes[1].addr, "/chat/unrep?name=bob").await;
    next_of(&mut alice, "joined").await;
    let before = round_trip_through_redis(&mut alice, &nodes[0], &mut bob, "before").await;
    eventually("the replica has everything", || replicated(&master)).await;
    // The sentinel must know the replica before the master goes.
    eventually("the sentinel knows the replica", || {
        matches!(
            sentinel.command(&["SENTINEL", "REPLICAS", MASTER]),
            Ok(redis::Value::Array(a)) if !a.is_empty()
        )
    })
    .await;

    // Cut replication: the replica may not resync, then its link goes.
    master
        .command(&["ACL", "SETUSER", "default", "-psync", "-sync"])
        .unwrap();
    master
        .command(&["CLIENT", "KILL", "TYPE", "replica"])
        .unwrap();
    // Published through the master alone: both members get them, with ids from Redis.
    let mut lost = Vec::new();
    for i in 0..3 {
        let text = format!("unreplicated {i}");
        say(&mut alice, &text).await;
        let mine = next_of(&mut alice, "message").await;
        assert_eq!(mine["text"], text.as_str());
        assert!(mine.get("local").is_none(), "the master took it: {mine}");
        let theirs = next_of(&mut bob, "message").await;
        assert_eq!(theirs, mine, "bob got it too, with the same id");
        lost.push(mine["id"].as_u64().unwrap());
    }
    assert_eq!(lost[0], before + 1);
    let top = *lost.last().unwrap();
    let on_replica = replica.command(&["GET", "wsduplex-test:sync"]);
    assert!(on_replica.is_ok(), "the replica answers: {on_replica:?}");

    master.stop();
    eventually("the replica is the master", || {
        master_port(&sentinel) == Some(r)
    })
    .await;
    let after = round_trip_through_redis(&mut bob, &nodes[1], &mut alice, "after").await;
    assert!(
        after > top,
        "ids are not handed out again: {after} after the lost {lost:?}"
    );

    // The shared history is the new master's: without the lost messages. (A node that
    // followed the room keeps its own copy of its recent history; a node that loads the
    // room reads it from Redis.)
    let late = Node::with_url(&url, Duration::from_secs(15));
    late.connected(true).await;
    let (_carol, w) = join(late.addr, "/chat/unrep?name=carol").await;
    let history: Vec<(u64, String)> = w["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_u64().unwrap(),
                m["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let ids: Vec<u64> = history.iter().map(|m| m.0).collect();
    assert_eq!(ids, [before, after], "{history:?}");
    assert_eq!(w["last_id"], after);
}
