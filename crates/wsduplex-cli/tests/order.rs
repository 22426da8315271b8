//! One room on `wsduplex serve --workers 2` (two worker threads, each with its own runtime
//! and listener: the kernel spreads the members over them), eight members sending at once:
//! every member gets one identical order, ids 1, 2, 3... with no gap and no duplicate, and
//! each sender's messages in the order it sent them.

mod common;

use common::*;
use std::sync::{Arc, Barrier};

const SENDERS: usize = 8;
const LISTENERS: usize = 4;
const PER_SENDER: usize = 200;

fn json(payload: &[u8]) -> serde_json::Value {
    serde_json::from_slice(payload).expect("an event is JSON")
}

#[test]
fn concurrent_senders_on_two_workers_give_every_member_one_order() {
    // Members read only once they are done sending: the queue holds everything meanwhile
    // (a member dropped as too slow would fail the test, not hide a bug).
    let server = Server::start_on_loopback(&["--workers", "2", "--send-queue", "4096"]);
    let total = SENDERS * PER_SENDER;
    let start = Arc::new(Barrier::new(SENDERS + LISTENERS));
    let mut members = Vec::new();
    for i in 0..SENDERS + LISTENERS {
        let name = match i < SENDERS {
            true => format!("s{i}"),
            false => format!("l{}", i - SENDERS),
        };
        let mut ws = Ws::connect(server.addr, &format!("/chat/order?name={name}"));
        let welcome = json(&ws.read_message().1);
        assert_eq!(
            (&welcome["type"], &welcome["name"]),
            (&"welcome".into(), &name.clone().into())
        );
        let start = start.clone();
        members.push(std::thread::spawn(move || {
            start.wait();
            if i < SENDERS {
                for k in 0..PER_SENDER {
                    let msg = serde_json::json!({"type": "message", "text": format!("{name}:{k}")});
                    ws.send(TEXT, msg.to_string().as_bytes());
                }
            }
            let mut seen = Vec::with_capacity(total);
            while seen.len() < total {
                let (op, payload) = ws.read_message();
                assert_eq!(op, TEXT);
                let v = json(&payload);
                if v["type"] == "message" {
                    seen.push((
                        v["id"].as_u64().unwrap(),
                        v["name"].as_str().unwrap().to_string(),
                        v["text"].as_str().unwrap().to_string(),
                    ));
                }
            }
            ws.send_close(1000, "");
            (name, seen)
        }));
    }
    let seen: Vec<_> = members.into_iter().map(|t| t.join().unwrap()).collect();
    let first = &seen[0].1;
    let ids: Vec<u64> = first.iter().map(|m| m.0).collect();
    assert_eq!(
        ids,
        (1..=total as u64).collect::<Vec<_>>(),
        "ids from 1, no gap, no duplicate"
    );
    for (name, other) in &seen[1..] {
        if let Some(at) = (0..total).find(|&k| other[k] != first[k]) {
            panic!(
                "{name} differs at {at}: {:?} against {:?}",
                other[at], first[at]
            );
        }
    }
    for s in 0..SENDERS {
        let name = format!("s{s}");
        let texts: Vec<&str> = first
            .iter()
            .filter(|m| m.1 == name)
            .map(|m| m.2.as_str())
            .collect();
        let sent: Vec<String> = (0..PER_SENDER).map(|k| format!("{name}:{k}")).collect();
        assert_eq!(texts, sent, "{name}'s messages, once each, in its order");
    }
    server.stop();
}
