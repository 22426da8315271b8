//! Chat members through hand-overs in a row while messages go on (docs/handover.md,
//! docs/hub.md "Handing the hub to a new process"): idle members in two rooms, members
//! that only read, each on its own thread; publishers keeping a few messages in flight, on
//! theirs; ten hand-overs in a row (old → new → newer → ...) while they publish. Then every
//! member, publishers included, must have seen its room's messages exactly once each, in
//! id order, ids 1..N with no gap: the same (id, name, text) list for everyone, each
//! publisher's own messages in the order it sent them, no presence event once messages
//! began, and no close (a member closed with 1001 to resume is a failure here: the new
//! process holds its rooms' history until every member sent is seated, see
//! `Hub::hold_history`, with the default `--history`). Every hand-over moves every
//! connection.
//!
//! Idle members over plain TCP are written to directly by the publishing task
//! (`crates/wsduplex-hub/src/direct.rs`); a message published after a freeze once reached
//! them that way and again from history in the new process (99f023c). The second variant
//! serves with `--park-idle 100ms` and lets everyone idle for 500 ms before each hand-over,
//! so that the members are idle (parked, once `--park-idle` applies to chat members) when
//! publishing resumes and the new process starts: the pause is for the server's state, and
//! no assertion depends on what it reached.
//!
//! Nothing sleeps to synchronise: each step waits for a process line, a thread, or a
//! number of messages acknowledged (polled, with a limit); every read has the sockets'
//! 10 s timeout.
//!
//! `cargo test -p wsduplex-cli --test handover chat_stress -- --nocapture` prints the
//! times and counts; `WSDUPLEX_HANDOVER_BIN=PATH` runs another build of the server.

use crate::common::{self, Ws, BIN, CLOSE, PING, PONG};
use crate::procs::{control_path, handed_over, Proc, FLAGS, TEXT};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Hand-overs in a row. Against the build before 99f023c (a message published after the
/// freeze written to idle members and again from history), three hand-overs showed the
/// duplicate in 3 of 10 runs of a variant, ten in 16 of 16.
const ROUNDS: usize = 10;
/// Messages a publisher sends ahead of its own echoes: some are unread, read but not yet
/// published, or published and not yet delivered when a hand-over freezes the hub.
const WINDOW: u64 = 8;
/// Messages acknowledged (all publishers) before each hand-over, and after the last one.
const STEP: u64 = 300;
/// The bound of one wait for publishing to get on.
const PROGRESS_LIMIT: Duration = Duration::from_secs(20);
/// The last message of each room, sent once the publishers have stopped: members read
/// until they see it.
const END: &str = "end of the test";

/// The server: `WSDUPLEX_HANDOVER_BIN` (as for `pause.rs`: another build), or ours.
fn bin() -> String {
    std::env::var("WSDUPLEX_HANDOVER_BIN").unwrap_or_else(|_| BIN.to_owned())
}

/// `serve --listen 127.0.0.1:0 --control PATH FLAGS...`, and its address.
fn serve(path: &Path, flags: &[&str]) -> (Proc, SocketAddr) {
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--control",
        path.to_str().unwrap(),
    ];
    args.extend(flags);
    let old = Proc::spawn_bin(&bin(), &args, &[]);
    let addr = old.listening();
    (old, addr)
}

/// `serve --take-over PATH FLAGS...` once it has taken over (listening on `addr`): the
/// count it reports and the pid it took them from.
fn take_over(path: &Path, addr: SocketAddr, flags: &[&str]) -> (Proc, usize, u32) {
    let mut args = vec!["--take-over", path.to_str().unwrap()];
    args.extend(flags);
    let new = Proc::spawn_bin(&bin(), &args, &[]);
    assert_eq!(new.listening(), addr);
    let took = new.line("took over ");
    let (count, from) = took
        .split_once(" connections from process ")
        .unwrap_or_else(|| panic!("took over {took:?}"));
    (new, count.parse().unwrap(), from.parse().unwrap())
}

/// A room: its idle members, then its publishers, in the order they join.
struct RoomPlan {
    room: &'static str,
    members: usize,
    publishers: usize,
    member_prefix: &'static str,
    publisher_prefix: &'static str,
}

const ROOMS: [RoomPlan; 2] = [
    RoomPlan {
        room: "stress",
        members: 50,
        publishers: 2,
        member_prefix: "m",
        publisher_prefix: "p",
    },
    RoomPlan {
        room: "side",
        members: 5,
        publishers: 1,
        member_prefix: "s",
        publisher_prefix: "q",
    },
];

impl RoomPlan {
    /// Everyone's name, in the order they join.
    fn names(&self) -> Vec<String> {
        let members = (0..self.members).map(|i| format!("{}{i}", self.member_prefix));
        let publishers = (0..self.publishers).map(|i| format!("{}{i}", self.publisher_prefix));
        members.chain(publishers).collect()
    }
}

/// A chat message as a member received it: id, sender, text.
type Msg = (u64, String, String);

/// What one connection saw of its room: the `joined` events before the first message (the
/// members who joined after it), then the messages.
struct View {
    room: &'static str,
    who: String,
    /// Those who joined after it, as announced.
    later: Vec<String>,
    messages: Vec<Msg>,
}

impl View {
    fn new(room: &'static str, who: &str) -> Self {
        Self {
            room,
            who: who.to_string(),
            later: Vec::new(),
            messages: Vec::new(),
        }
    }

    /// Reads the next event (answering pings); returns it if it was a message. Panics on a
    /// close, anything but `joined` and `message`, or `joined` once messages began.
    fn read(&mut self, ws: &mut Ws) -> Option<&Msg> {
        let event = loop {
            let f = ws.read_frame();
            match f.opcode {
                TEXT if f.fin => break f.payload,
                PING => ws.send(PONG, &f.payload),
                CLOSE => panic!(
                    "{}: closed by the server {:?} after id {:?}",
                    self.who,
                    f.close(),
                    self.messages.last().map(|m| m.0)
                ),
                _ => panic!("{}: unexpected frame {f:?}", self.who),
            }
        };
        let e: Value = serde_json::from_slice(&event)
            .unwrap_or_else(|err| panic!("{}: {err}: {event:?}", self.who));
        assert_eq!(e["room"], self.room, "{}: {e}", self.who);
        let name = e["name"].as_str().unwrap_or_default().to_string();
        match e["type"].as_str() {
            Some("joined") if self.messages.is_empty() => {
                self.later.push(name);
                None
            }
            Some("message") => {
                let id = e["id"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{}: {e}", self.who));
                let text = e["text"].as_str().unwrap_or_default().to_string();
                self.messages.push((id, name, text));
                self.messages.last()
            }
            _ => panic!(
                "{}: unexpected event after {} messages: {e}",
                self.who,
                self.messages.len()
            ),
        }
    }
}

/// Joins `room` as `name`; checks the welcome (no history yet: the room is new).
fn join(addr: SocketAddr, room: &'static str, name: &str) -> Ws {
    let mut ws = Ws::connect(addr, &format!("/chat/{room}?name={name}"));
    let (_, payload) = ws.read_message();
    let welcome: Value = serde_json::from_slice(&payload).expect("JSON");
    assert_eq!(
        (&welcome["type"], &welcome["name"], &welcome["last_id"]),
        (&"welcome".into(), &name.into(), &0.into()),
        "{welcome}"
    );
    ws
}

/// An idle member: reads on its own thread until its room's [`END`]. Returns what it saw
/// and, if it failed (a close, a timeout, a bad event), why: a partial view still shows
/// where it stopped.
fn idle_member(mut ws: Ws, mut view: View) -> JoinHandle<(View, Option<String>)> {
    thread::Builder::new()
        .name(view.who.clone())
        .spawn(move || {
            let result = panic::catch_unwind(AssertUnwindSafe(|| loop {
                if view.read(&mut ws).is_some_and(|m| m.2 == END) {
                    break;
                }
            }));
            (view, result.err().map(panic_message))
        })
        .expect("spawn a member")
}

fn panic_message(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic".to_string())
}

/// A member that publishes: `{name} {k}` for k = 0, 1, ...; it reads its room too.
struct Publisher {
    ws: Ws,
    view: View,
    /// Messages sent; the number of the next one to come back (those before it came
    /// back, or were lost and are reported at the end).
    sent: u64,
    acked: u64,
}

impl Publisher {
    /// Reads one event; whether it was one of its own numbered messages coming back for
    /// the first time. (Order, duplicates and gaps are checked at the end, on the view: a
    /// duplicate does not count, and one lost counts once a later one comes.)
    fn read(&mut self) -> bool {
        let Some((_, name, text)) = self.view.read(&mut self.ws).cloned() else {
            return false;
        };
        let k = text
            .strip_prefix(self.view.who.as_str())
            .and_then(|k| k.strip_prefix(' ')?.parse::<u64>().ok());
        match k {
            Some(k) if name == self.view.who && k >= self.acked && k < self.sent => {
                self.acked = k + 1;
                true
            }
            _ => false,
        }
    }

    /// Keeps [`WINDOW`] messages in flight until `stop`, then reads the echoes of the rest.
    fn run(mut self, stop: Arc<AtomicBool>, progress: Arc<AtomicU64>) -> JoinHandle<Self> {
        thread::Builder::new()
            .name(self.view.who.clone())
            .spawn(move || loop {
                if !stop.load(Ordering::Relaxed) {
                    while self.sent - self.acked < WINDOW {
                        let text = format!("{} {}", self.view.who, self.sent);
                        let m = serde_json::json!({"type": "message", "text": text});
                        self.ws.send(TEXT, m.to_string().as_bytes());
                        self.sent += 1;
                    }
                } else if self.acked == self.sent {
                    return self;
                }
                if self.read() {
                    progress.fetch_add(1, Ordering::Relaxed);
                }
            })
            .expect("spawn a publisher")
    }
}

/// The publishers on their threads, and how to stop them.
struct Publishing {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Publisher>>,
}

impl Publishing {
    fn start(publishers: Vec<Publisher>, progress: &Arc<AtomicU64>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = publishers
            .into_iter()
            .map(|p| p.run(stop.clone(), progress.clone()))
            .collect();
        Self { stop, threads }
    }

    /// Waits until `progress` reaches `target` (a publisher that stopped early fails).
    fn reach(&self, progress: &AtomicU64, target: u64) {
        common::eventually("publishers getting on", PROGRESS_LIMIT, || {
            assert!(
                !self.threads.iter().any(JoinHandle::is_finished),
                "a publisher stopped (its panic is above)"
            );
            progress.load(Ordering::Relaxed) >= target
        });
    }

    /// Stops them once their messages are back.
    fn finish(self) -> Vec<Publisher> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|t| t.join().expect("a publisher failed"))
            .collect()
    }
}

/// What is wrong with `got` against `want` (both id-ordered lists), or `None`.
fn differences(got: &[Msg], want: &[Msg]) -> Option<String> {
    if got == want {
        return None;
    }
    let ids: Vec<u64> = got.iter().map(|m| m.0).collect();
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    let wanted: BTreeSet<u64> = want.iter().map(|m| m.0).collect();
    let mut what = vec![format!("{} messages, {} expected", got.len(), want.len())];
    let duplicated = ids.len() - unique.len();
    if duplicated > 0 {
        what.push(format!("{duplicated} ids twice"));
    }
    let disorder: Vec<_> = ids.windows(2).filter(|w| w[1] <= w[0]).take(10).collect();
    if !disorder.is_empty() {
        what.push(format!("out of order (previous, next): {disorder:?}"));
    }
    let missing: Vec<_> = wanted.difference(&unique).take(20).collect();
    if !missing.is_empty() {
        what.push(format!("missing ids {missing:?}"));
    }
    let extra: Vec<_> = unique.difference(&wanted).take(20).collect();
    if !extra.is_empty() {
        what.push(format!("ids never published {extra:?}"));
    }
    if let Some((g, w)) = got.iter().zip(want).find(|(g, w)| g != w) {
        what.push(format!("first difference: got {g:?}, expected {w:?}"));
    }
    Some(what.join("; "))
}

/// The messages of a room: every one that anyone in it received, once each, by id. What
/// does not add up goes to `failures`: two messages with one id, ids nobody received
/// (ids are 1..=N: nothing else publishes there, and no hand-over fails), a publisher's
/// messages missing, repeated or out of the order it sent them, [`END`] not last.
fn published(
    room: &str,
    views: &[&View],
    publishers: &[&Publisher],
    failures: &mut Vec<String>,
) -> Vec<Msg> {
    let mut by_id: BTreeMap<u64, (&str, &str)> = BTreeMap::new();
    let mut clashes = Vec::new();
    for view in views {
        for (id, name, text) in &view.messages {
            let first = *by_id.entry(*id).or_insert((name, text));
            if first != (name.as_str(), text.as_str()) {
                clashes.push(format!(
                    "{id} is {first:?} and, for {}, {:?}",
                    view.who,
                    (name, text)
                ));
            }
        }
    }
    if !clashes.is_empty() {
        clashes.truncate(10);
        failures.push(format!(
            "{room}: two messages with one id: {}",
            clashes.join("; ")
        ));
    }
    let want: Vec<Msg> = by_id
        .iter()
        .map(|(id, (name, text))| (*id, name.to_string(), text.to_string()))
        .collect();
    let last = want.last().map_or(0, |m| m.0);
    let unseen: Vec<u64> = (1..=last)
        .filter(|id| !by_id.contains_key(id))
        .take(20)
        .collect();
    if !unseen.is_empty() {
        failures.push(format!("{room}: ids nobody received: {unseen:?}"));
    }
    if want.last().is_none_or(|m| m.2 != END) {
        failures.push(format!("{room}: the last message is not {END:?}"));
    }
    for p in publishers {
        let who = &p.view.who;
        let own: Vec<&str> = want
            .iter()
            .filter(|m| m.1 == *who && m.2 != END)
            .map(|m| m.2.as_str())
            .collect();
        let sent: Vec<String> = (0..p.sent).map(|k| format!("{who} {k}")).collect();
        if own != sent {
            let first = own.iter().zip(&sent).position(|(o, s)| o != s);
            failures.push(format!(
                "{who}: {} of its {} messages in the room; first out of place: {:?}",
                own.len(),
                p.sent,
                first.map(|i| (own[i], &sent[i]))
            ));
        }
    }
    want
}

/// How one run went, for the report.
struct Report {
    setup: Duration,
    rounds: Vec<(Duration, u64)>,
    messages: Vec<(&'static str, u64)>,
    total: Duration,
}

fn chat_through_hand_overs(parked: bool) -> Report {
    let start = Instant::now();
    let path = control_path("ctl");
    let mut flags: Vec<&str> = FLAGS.to_vec();
    // The default `--history` (100): a member moved late gets every message published
    // since the freeze, those the new process published meanwhile included (the members
    // moved first are served, and publish, at once), from the held history. Before
    // `Hub::hold_history`, publishing as fast as here closed half the members with 1001 at
    // the first hand-over. The queue is long: with the default 256, a debug build starved
    // of CPU by this test's own 60 threads (and CI's other tests) closes members with 4008
    // ("too slow", as it should), with parking or without; the backlog beyond the queue
    // that a member seated late takes is pinned by the hub's unit tests.
    flags.extend(["--send-queue", "100000"]);
    if parked {
        flags.extend(["--park-idle", "100ms"]);
    }
    let serve_flags: Vec<&str> = ["--workers", "2"]
        .into_iter()
        .chain(flags.clone())
        .collect();
    let (mut current, addr) = serve(&path, &serve_flags);

    // Everyone joins before anything is published: their `joined` events come first.
    let mut members = Vec::new();
    let mut publishers = Vec::new();
    let mut connections = 0;
    for plan in &ROOMS {
        let names = plan.names();
        for (i, name) in names.iter().enumerate() {
            let ws = join(addr, plan.room, name);
            let view = View::new(plan.room, name);
            connections += 1;
            if i < plan.members {
                members.push((ws, view));
            } else {
                publishers.push(Publisher {
                    ws,
                    view,
                    sent: 0,
                    acked: 0,
                });
            }
        }
    }
    let members: Vec<_> = members
        .into_iter()
        .map(|(ws, view)| idle_member(ws, view))
        .collect();
    let setup = start.elapsed();

    let progress = Arc::new(AtomicU64::new(0));
    let mut publishing = Publishing::start(publishers, &progress);
    let mut rounds = Vec::new();
    for round in 1..=ROUNDS {
        let target = progress.load(Ordering::Relaxed) + STEP;
        publishing.reach(&progress, target);
        if parked {
            // Everyone idle for a while (parked, where chat members are), then publishing
            // resumes as the new process starts.
            let publishers = publishing.finish();
            thread::sleep(Duration::from_millis(500));
            publishing = Publishing::start(publishers, &progress);
        }
        let (before, at) = (progress.load(Ordering::Relaxed), Instant::now());
        let (new, count, from) = take_over(&path, addr, &flags);
        let took = at.elapsed();
        assert_eq!(
            (count, from),
            (connections, current.pid()),
            "hand-over {round}"
        );
        handed_over(current, count);
        current = new;
        rounds.push((took, progress.load(Ordering::Relaxed) - before));
    }
    // Publishing goes on in the newest process too.
    let target = progress.load(Ordering::Relaxed) + STEP;
    publishing.reach(&progress, target);
    let mut publishers = publishing.finish();

    // The last message of each room, from its first publisher; the others read up to it.
    for plan in &ROOMS {
        let mut room: Vec<&mut Publisher> = publishers
            .iter_mut()
            .filter(|p| p.view.room == plan.room)
            .collect();
        let m = serde_json::json!({"type": "message", "text": END});
        room[0].ws.send(TEXT, m.to_string().as_bytes());
        for p in room {
            while p.view.messages.last().is_none_or(|m| m.2 != END) {
                p.read();
            }
        }
    }

    let mut failures = Vec::new();
    let mut messages = Vec::new();
    let mut views: Vec<View> = Vec::new();
    for m in members {
        let (view, failed) = m.join().expect("a member's thread");
        if let Some(why) = failed {
            failures.push(format!("{}: {why}", view.who));
        }
        views.push(view);
    }
    for plan in &ROOMS {
        let room: Vec<&Publisher> = publishers
            .iter()
            .filter(|p| p.view.room == plan.room)
            .collect();
        let seen: Vec<&View> = views
            .iter()
            .chain(room.iter().map(|p| &p.view))
            .filter(|v| v.room == plan.room)
            .collect();
        let want = published(plan.room, &seen, &room, &mut failures);
        messages.push((plan.room, want.len() as u64));
        let names = plan.names();
        for view in seen {
            let i = names.iter().position(|n| *n == view.who).expect("a name");
            if view.later != names[i + 1..] {
                failures.push(format!(
                    "{}: joined events {:?}, expected {:?}",
                    view.who,
                    view.later,
                    &names[i + 1..]
                ));
            }
            if let Some(d) = differences(&view.messages, &want) {
                failures.push(format!("{}: {d}", view.who));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} things wrong ({connections} members in all):\n{}",
        failures.len(),
        failures.join("\n")
    );
    drop(publishers);
    current.stop();
    Report {
        setup,
        rounds,
        messages,
        total: start.elapsed(),
    }
}

fn print(what: &str, r: &Report) {
    let rounds: Vec<String> = r
        .rounds
        .iter()
        .map(|(took, during)| format!("{took:.2?} ({during} acknowledged meanwhile)"))
        .collect();
    eprintln!(
        "{what}: {:.2?} in all; joining {:.2?}; hand-overs {}; messages per room {:?}",
        r.total,
        r.setup,
        rounds.join(", "),
        r.messages
    );
}

#[test]
fn chat_members_get_every_message_once_across_hand_overs_under_load() {
    print("under load", &chat_through_hand_overs(false));
}

#[test]
fn chat_members_idle_before_each_hand_over_get_every_message_once() {
    print("idle before each", &chat_through_hand_overs(true));
}
