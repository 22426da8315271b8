//! `serve --control PATH` and `serve --take-over PATH`: a running server hands its
//! listening sockets and its live connections to a new process, over a Unix socket
//! (`SCM_RIGHTS`), without a close or a reconnect (docs/handover.md).
//!
//! Both sides run on a control thread of their own, blocking, beside the workers. The old
//! process: [`Control::serve`] waits for a new process, sends the listeners, tells the workers
//! to stop accepting and to give up their movable connections ([`Command::HandOver`]), and
//! sends each one ([`wire`] describes the conversation). A connection belongs to the new
//! process from its `Ack` on; until then the old one holds its descriptor and its state, and
//! rebuilds it if anything goes wrong ([`Control::roll_back`]): none is served by both, none
//! is lost. The new process: [`connect`] takes the listeners before anything is built,
//! [`TakeOver::receive`] the connections once the workers run; the workers accept only after
//! `Done`, so the old process may take accepting back until then.

mod channel;
mod wire;

use super::worker::{Adoption, Command, Report};
use super::HandedOver;
use anyhow::{bail, Context as _};
use channel::{Channel, ChannelError};
use rustix::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use wire::{Endpoint, Message, FORMAT, MAX_FRAME};
use wsduplex::SocketState;
use wsduplex_hub::{HandedMember, HandoverError, Hub, MemberState};

/// Connections sent ahead of their acknowledgement: the new process works on one while the
/// next ones travel. Its answers (a few bytes each) never fill the socket's buffer.
const WINDOW: usize = 64;

/// How long either process waits for the other's next message before giving up on it.
const PATIENCE: Duration = Duration::from_secs(30);

/// Test hook, never for production: the process taking over exits (status 75) right after
/// acknowledging this many connections, as if killed in the middle of a hand-over.
const TEST_HOOK_EXIT_AFTER: &str = "WSDUPLEX_TEST_HOOK_TAKE_OVER_EXIT_AFTER";

/// A connection given up by worker `.0`, not yet acknowledged by the new process: its
/// transport, its socket's state, and a hub member's state (`None`: `/echo`).
type Held = (
    usize,
    std::net::TcpStream,
    Box<SocketState>,
    Option<Box<MemberState>>,
);

/// Hub members stopped for a hand-over, with their sockets (see `Hub::hand_members_to`).
pub(super) type Members = tokio::sync::mpsc::UnboundedReceiver<HandedMember<tokio::net::TcpStream>>;

/// The control socket's side of a running server.
pub(super) struct Control {
    pub workers: Vec<UnboundedSender<Command>>,
    pub reports: mpsc::Receiver<Report>,
    /// The listening sockets (duplicates of the workers'), with their address.
    pub listeners: Vec<(OwnedFd, SocketAddr)>,
    pub handed_over: UnboundedSender<HandedOver>,
    /// The hub, whose rooms, sessions and members move too (a hub of one node).
    pub hub: Hub,
    pub members: std::sync::Mutex<Members>,
}

/// Binds the control socket at `path`, owner-only. Refuses a path where a live process
/// answers; removes a stale socket left by one that died.
pub(super) fn bind(path: &Path) -> anyhow::Result<ControlSocket> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("--control {}: {e}", path.display()),
        Ok(meta) if !meta.file_type().is_socket() => {
            bail!("--control {}: exists and is not a socket", path.display())
        }
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => bail!(
                "--control {}: a running wsduplex listens on it (replace it with --take-over)",
                path.display()
            ),
            Err(_) => std::fs::remove_file(path).with_context(|| {
                format!(
                    "--control {}: cannot remove the stale socket",
                    path.display()
                )
            })?,
        },
    }
    ControlSocket::bind(path).with_context(|| format!("--control {}", path.display()))
}

/// The control socket's listener, and how to tell whether the path is still its own.
pub(super) struct ControlSocket {
    pub listener: UnixListener,
    path: PathBuf,
    inode: (u64, u64),
}

impl ControlSocket {
    /// Bound under a temporary name, made owner-only, then renamed onto `path` in one step:
    /// the path never names a socket others may use, and a process taking over replaces
    /// the old one's without a moment where `path` names nothing.
    fn bind(path: &Path) -> std::io::Result<Self> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let listener = UnixListener::bind(&tmp)?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let meta = std::fs::symlink_metadata(path)?;
        Ok(Self {
            listener,
            path: path.to_owned(),
            inode: (meta.dev(), meta.ino()),
        })
    }

    /// Removes the path at exit, unless a process that took over put its own there.
    pub(super) fn remove_if_own(path: &Path, inode: (u64, u64)) {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if (meta.dev(), meta.ino()) == inode {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    pub(super) fn identity(&self) -> (PathBuf, (u64, u64)) {
        (self.path.clone(), self.inode)
    }
}

impl Control {
    /// Serves hand-overs until one succeeds; a failed one leaves this process serving, and
    /// the next new process may try again.
    pub(super) fn serve(self, socket: ControlSocket) {
        for stream in socket.listener.incoming() {
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("control socket: {e}");
                    continue;
                }
            };
            match self.hand_over(stream) {
                Ok(done) => {
                    let _ = self.handed_over.send(done);
                    return;
                }
                Err(e) => tracing::warn!("hand-over failed, serving on: {e:#}"),
            }
        }
    }

    fn hand_over(&self, stream: UnixStream) -> anyhow::Result<HandedOver> {
        // Left from the last take-over's start (its workers' `Accepting`): only what the
        // workers say from here on counts.
        while self.reports.try_recv().is_ok() {}
        let mut ch = Channel::new(stream, PATIENCE)?;
        ch.send(&hello(), &[])?;
        let pid = match ch.recv_with(0)?.0 {
            Message::Hello { format, state, pid }
                if format == FORMAT && state == SocketState::VERSION =>
            {
                pid
            }
            Message::Hello { format, state, .. } => {
                let reason = format!("versions differ: control {format}, state {state}");
                let _ = ch.send(&Message::Refuse(reason.clone()), &[]);
                bail!(reason);
            }
            other => bail!(ChannelError::Unexpected {
                expected: "Hello",
                got: other.name()
            }),
        };
        let addrs = self.listeners.iter().map(|(_, a)| *a).collect();
        let fds: Vec<BorrowedFd<'_>> = self.listeners.iter().map(|(fd, _)| fd.as_fd()).collect();
        ch.send(&Message::Listeners(addrs), &fds)?;
        expect(&mut ch, "Ready", |m| matches!(m, Message::Ready))?;
        // From here on connections move: any failure gives them back to the workers (and
        // thaws the hub).
        let members = self.freeze_hub(&mut ch)?;
        let credit = (WINDOW / self.workers.len()).max(1);
        for w in &self.workers {
            let _ = w.send(Command::HandOver(credit));
        }
        let count = match self.move_connections(&mut ch, members) {
            Ok(count) => count,
            Err((e, held)) => {
                let _ = ch.send(&Message::Refuse("the hand-over failed".into()), &[]);
                self.roll_back(held);
                return Err(e);
            }
        };
        // Every connection is the new process's now. Accepting is too once it confirms the
        // end (it accepts only after `Done`): without its word, this process accepts again
        // rather than leave the listening sockets to nobody.
        let confirmed = ch
            .send(&Message::Done { count }, &[])
            .and_then(|()| expect(&mut ch, "Done", |m| matches!(m, Message::Done { .. })));
        if let Err(e) = confirmed {
            self.roll_back(Vec::new());
            bail!("no confirmation from process {pid} after {count} connections: {e}");
        }
        for w in &self.workers {
            let _ = w.send(Command::Commit);
        }
        Ok(HandedOver { count, pid })
    }

    /// Sends each connection the workers give up until every worker has none left, up to
    /// [`WINDOW`] ahead of the acknowledgements (each one's ownership still changes at its
    /// own `Ack`). On failure, every connection not acknowledged comes back with the error.
    fn move_connections(
        &self,
        ch: &mut Channel,
        mut members: VecDeque<Held>,
    ) -> Result<u64, (anyhow::Error, Vec<Held>)> {
        let mut idle = vec![false; self.workers.len()];
        let mut in_flight: VecDeque<(u64, Held)> = VecDeque::new();
        let (mut count, mut id) = (0, 0);
        let give_back = |in_flight: VecDeque<(u64, Held)>, members: VecDeque<Held>| {
            in_flight
                .into_iter()
                .map(|(_, h)| h)
                .chain(members)
                .collect()
        };
        loop {
            // The hub's members first (stopped already), then what the workers give up,
            // without waiting while answers are due.
            while in_flight.len() < WINDOW {
                let Some(held) = members.pop_front() else {
                    break;
                };
                id += 1;
                let (_, tcp, state, member) = &held;
                let msg = Message::Connection {
                    id,
                    endpoint: Ok(Endpoint::Hub),
                    state: hub_member_bytes(state, member.as_deref()),
                };
                let sent = ch.send(&msg, &[tcp.as_fd()]);
                in_flight.push_back((id, held));
                if let Err(e) = sent {
                    return Err((e.into(), give_back(in_flight, members)));
                }
            }
            while in_flight.len() < WINDOW && members.is_empty() && !idle.iter().all(|i| *i) {
                let report = if in_flight.is_empty() {
                    self.reports
                        .recv()
                        .map_err(|_| mpsc::TryRecvError::Disconnected)
                } else {
                    self.reports.try_recv()
                };
                let (worker, tcp, state) = match report {
                    Ok(Report::Idle(i)) => {
                        idle[i] = true;
                        continue;
                    }
                    Ok(Report::Accepting(_)) => continue,
                    Ok(Report::Surrendered { worker, tcp, state }) => (worker, tcp, state),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        let e = anyhow::anyhow!("the workers are gone");
                        return Err((e, give_back(in_flight, members)));
                    }
                };
                let bytes = state.encode();
                if bytes.len() > MAX_FRAME - 64 {
                    tracing::warn!(
                        "connection state of {} bytes is too large to move: kept",
                        bytes.len()
                    );
                    let _ = self.workers[worker].send(Command::HandOver(1));
                    self.keep((worker, tcp, state, None));
                    continue;
                }
                id += 1;
                let msg = Message::Connection {
                    id,
                    endpoint: Ok(Endpoint::Echo),
                    state: bytes,
                };
                let sent = ch.send(&msg, &[tcp.as_fd()]);
                in_flight.push_back((id, (worker, tcp, state, None)));
                if let Err(e) = sent {
                    return Err((e.into(), give_back(in_flight, members)));
                }
            }
            let Some((want, _)) = in_flight.front() else {
                if members.is_empty() {
                    return Ok(count);
                }
                continue;
            };
            let want = *want;
            let answer = ch.recv_with(0);
            match answer {
                Ok((Message::Ack(a), _)) if a == want => {
                    // The new process's now: this process's copy of the descriptor closes.
                    let (_, (worker, _, _, member)) = in_flight.pop_front().expect("front");
                    if member.is_none() {
                        let _ = self.workers[worker].send(Command::HandOver(1));
                    }
                    count += 1;
                }
                Ok((Message::Declined { id: d, reason }, _)) if d == want => {
                    tracing::warn!("the new process declined a connection ({reason}): kept");
                    let (_, held) = in_flight.pop_front().expect("front");
                    if held.3.is_none() {
                        let _ = self.workers[held.0].send(Command::HandOver(1));
                    }
                    self.keep(held);
                }
                Ok((other, _)) => {
                    let e = ChannelError::Unexpected {
                        expected: "Ack",
                        got: other.name(),
                    };
                    return Err((e.into(), give_back(in_flight, members)));
                }
                Err(e) => return Err((e.into(), give_back(in_flight, members))),
            }
        }
    }

    /// Takes accepting back, and serves again every connection not acknowledged: those in
    /// flight, and those the workers give up until they hear of it. A frozen hub serves
    /// again, and its members not acknowledged come back to it.
    fn roll_back(&self, held: Vec<Held>) {
        // Before accepting: a request accepted from then on must find the hub serving, not
        // frozen (`503 shutting_down` to a join or a push).
        self.hub.thaw();
        // Before restoring, so that the connections given back are not given up again.
        for w in &self.workers {
            let _ = w.send(Command::Accept);
        }
        for h in held {
            self.restore(h);
        }
        let mut back = vec![false; self.workers.len()];
        while !back.iter().all(|b| *b) {
            match self.reports.recv() {
                Ok(Report::Surrendered { worker, tcp, state }) => {
                    self.restore((worker, tcp, state, None))
                }
                Ok(Report::Accepting(i)) => back[i] = true,
                Ok(Report::Idle(_)) => {}
                Err(_) => return,
            }
        }
    }

    /// A connection that stays with this process for good (declined, or too large): served
    /// here and drained, never given up again. (A hub member's rooms have moved: the hub
    /// closes it with 1001, and its client resumes on the new process.)
    fn keep(&self, held: Held) {
        self.adopt(held, true);
    }

    fn restore(&self, held: Held) {
        self.adopt(held, false);
    }

    fn adopt(&self, (worker, tcp, state, member): Held, keep: bool) {
        let adoption = Adoption {
            tcp,
            state,
            member,
            reply: None,
            keep,
            hold: None,
        };
        if self.workers[worker].send(Command::Adopt(adoption)).is_err() {
            tracing::error!("worker {worker} is gone: a connection is lost");
        }
    }

    /// Freezes a hub of one node and sends its rooms and sessions; its members, stopped,
    /// are returned to be sent first. A hub on Redis moves nothing (its members are
    /// drained: their rooms live in Redis). On failure the hub serves again, its members
    /// with it.
    fn freeze_hub(&self, ch: &mut Channel) -> anyhow::Result<VecDeque<Held>> {
        match self.hub.freeze() {
            Err(HandoverError::Backplane) => return Ok(VecDeque::new()),
            Err(e) => bail!("the hub: {e}"),
            Ok(()) => {}
        }
        let mut members = VecDeque::new();
        // A runtime of this thread's own for the wait (and a context for the sockets'
        // `into_std`, which leaves the worker's reactor).
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build();
        let stopped = rt.as_ref().map(|rt| {
            rt.block_on(async {
                tokio::time::timeout(PATIENCE, self.hub.members_stopped())
                    .await
                    .is_ok()
            })
        });
        let _context = rt.as_ref().ok().map(|rt| rt.enter());
        let mut rx = self.members.lock().unwrap_or_else(|p| p.into_inner());
        while let Ok(m) = rx.try_recv() {
            let (socket, state) = m.socket.into_parts();
            match socket.into_std() {
                Ok(tcp) => members.push_back((0, tcp, Box::new(state), Some(Box::new(m.state)))),
                Err(e) => tracing::warn!("a hub member's socket: {e}: lost"),
            }
        }
        drop(rx);
        let sent = match stopped {
            Ok(true) => self
                .hub
                .export_state()
                .map_err(anyhow::Error::from)
                .and_then(|state| Ok(ch.send(&Message::Hub(state.encode()), &[])?)),
            Ok(false) => Err(anyhow::anyhow!("the hub's members did not stop in time")),
            Err(e) => Err(anyhow::anyhow!("a runtime for the wait: {e}")),
        };
        if let Err(e) = sent {
            let _ = ch.send(&Message::Refuse("the hand-over failed".into()), &[]);
            self.roll_back(members.into());
            return Err(e.context("handing the hub over"));
        }
        Ok(members)
    }
}

/// A hub member's state on the wire: its socket's state (its length first), then the
/// member's.
fn hub_member_bytes(socket: &SocketState, member: Option<&MemberState>) -> Vec<u8> {
    let socket = socket.encode();
    let mut out = (socket.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&socket);
    if let Some(member) = member {
        out.extend_from_slice(&member.encode());
    }
    out
}

/// What [`hub_member_bytes`] wrote.
fn read_hub_member(bytes: &[u8]) -> anyhow::Result<(SocketState, MemberState)> {
    let (len, rest) = bytes
        .split_first_chunk::<4>()
        .context("a hub member's state cut short")?;
    let len = u32::from_be_bytes(*len) as usize;
    anyhow::ensure!(rest.len() >= len, "a hub member's state cut short");
    let (socket, member) = rest.split_at(len);
    Ok((SocketState::decode(socket)?, MemberState::decode(member)?))
}

fn hello() -> Message {
    Message::Hello {
        format: FORMAT,
        state: SocketState::VERSION,
        pid: std::process::id(),
    }
}

fn expect(
    ch: &mut Channel,
    name: &'static str,
    ok: impl Fn(&Message) -> bool,
) -> Result<(), ChannelError> {
    let (msg, _) = ch.recv_with(0)?;
    if ok(&msg) {
        Ok(())
    } else {
        Err(ChannelError::Unexpected {
            expected: name,
            got: msg.name(),
        })
    }
}

/// The new process's side, from its first message to the listeners.
pub(super) struct TakeOver {
    ch: Channel,
    pub listeners: Vec<std::net::TcpListener>,
    pub old_pid: u32,
}

/// Connects to the running server at `path` and takes its listening sockets. `listen`
/// (given with `--listen`) must be where they listen.
pub(super) fn connect(path: &Path, listen: Option<SocketAddr>) -> anyhow::Result<TakeOver> {
    let context = || format!("--take-over {}", path.display());
    let sock = UnixStream::connect(path).with_context(context)?;
    let mut ch = Channel::new(sock, PATIENCE).with_context(context)?;
    let (old_pid, format, state) = match ch.recv_with(0).with_context(context)?.0 {
        Message::Hello { format, state, pid } => (pid, format, state),
        other => bail!(
            "{}: {}",
            context(),
            ChannelError::Unexpected {
                expected: "Hello",
                got: other.name()
            }
        ),
    };
    let unreadable = if format != FORMAT {
        Some(format!(
            "control format version {format} (this wsduplex speaks version {FORMAT})"
        ))
    } else if state != SocketState::VERSION {
        Some(format!(
            "connection state format version {state} (this wsduplex reads version {})",
            SocketState::VERSION
        ))
    } else {
        None
    };
    if let Some(what) = unreadable {
        let reason = format!("cannot read {what}");
        let _ = ch.send(&Message::Refuse(reason.clone()), &[]);
        bail!(
            "{}: process {old_pid} speaks {what}; it keeps serving",
            context()
        );
    }
    ch.send(&hello(), &[]).with_context(context)?;
    let (msg, fds) = ch.recv().with_context(context)?;
    let addrs = match msg {
        Message::Listeners(addrs) if addrs.len() == fds.len() => addrs,
        Message::Refuse(reason) => bail!("{}: {}", context(), ChannelError::Refused(reason)),
        other => bail!(
            "{}: {}",
            context(),
            ChannelError::Unexpected {
                expected: "Listeners",
                got: other.name()
            }
        ),
    };
    if let Some(want) = listen {
        let differs =
            |a: &SocketAddr| a.ip() != want.ip() || (want.port() != 0 && a.port() != want.port());
        if let Some(a) = addrs.iter().find(|a| differs(a)) {
            let reason = format!("--listen {want}, but the sockets taken over listen on {a}");
            let _ = ch.send(&Message::Refuse(reason.clone()), &[]);
            bail!("{reason}: leave --listen out, or give the same address");
        }
    }
    let listeners = fds
        .into_iter()
        .map(|fd: OwnedFd| {
            let l = std::net::TcpListener::from(fd);
            l.set_nonblocking(true).map(|()| l)
        })
        .collect::<Result<_, _>>()
        .with_context(context)?;
    Ok(TakeOver {
        ch,
        listeners,
        old_pid,
    })
}

impl TakeOver {
    /// Receives the connections, each adopted by a worker (in turn) and acknowledged, until
    /// `Done`. A connection is served only once its `Ack` is written: until then the old
    /// process may still take it back. `confirm` runs before the last word (the control
    /// socket bound, systemd told).
    pub(super) fn receive(
        mut self,
        workers: &[UnboundedSender<Command>],
        hub: &Hub,
        confirm: impl FnOnce(),
    ) -> anyhow::Result<u64> {
        let exit_after: Option<u64> = std::env::var(TEST_HOOK_EXIT_AFTER)
            .ok()
            .and_then(|v| v.parse().ok());
        self.ch.send(&Message::Ready, &[])?;
        let mut count = 0u64;
        // From the hub's state on, until every member sent is seated: a member moved late
        // finds every message published since the freeze by those moved before it.
        let mut history = None;
        loop {
            let (msg, mut fds) = self.ch.recv()?;
            let (id, endpoint, state) = match msg {
                Message::Connection {
                    id,
                    endpoint,
                    state,
                } if fds.len() == 1 => (id, endpoint, state),
                Message::Done { count: sent } => {
                    if sent != count {
                        tracing::warn!("hand-over: {sent} connections sent, {count} taken");
                    }
                    confirm();
                    self.ch.send(&Message::Done { count }, &[])?;
                    return Ok(count);
                }
                Message::Hub(state) => {
                    history = Some(hub.hold_history());
                    // Before any member, and before anything is accepted here.
                    let imported = wsduplex_hub::HubState::decode(&state)
                        .and_then(|state| hub.import_state(state));
                    match imported {
                        Ok(done) if done.skipped > 0 => {
                            tracing::warn!("hand-over: {} rooms not taken", done.skipped)
                        }
                        Ok(_) => {}
                        Err(e) => {
                            let _ = self.ch.send(&Message::Refuse(e.to_string()), &[]);
                            bail!("the hub's state: {e}");
                        }
                    }
                    continue;
                }
                Message::Refuse(reason) => bail!(ChannelError::Refused(reason)),
                other => bail!(ChannelError::Unexpected {
                    expected: "Connection",
                    got: other.name()
                }),
            };
            let tcp = std::net::TcpStream::from(fds.pop().expect("one descriptor"));
            if let Err(kind) = endpoint {
                let reason = format!("unknown endpoint kind {kind}");
                self.ch.send(&Message::Declined { id, reason }, &[])?;
                continue;
            }
            let decoded = match endpoint {
                Ok(Endpoint::Hub) => read_hub_member(&state).map(|(s, m)| (s, Some(Box::new(m)))),
                _ => SocketState::decode(&state)
                    .map(|s| (s, None))
                    .map_err(anyhow::Error::from),
            };
            let (state, member) = match decoded {
                Ok(decoded) => decoded,
                Err(e) => {
                    let _ = self.ch.send(&Message::Refuse(format!("{e:#}")), &[]);
                    bail!("connection {id}: {e:#}");
                }
            };
            tcp.set_nonblocking(true)?;
            let (reply, adopted) = mpsc::channel();
            let worker = &workers[(id as usize) % workers.len()];
            let _ = worker.send(Command::Adopt(Adoption {
                tcp,
                state: Box::new(state),
                hold: member.as_ref().and(history.clone()),
                member,
                reply: Some(reply),
                keep: false,
            }));
            match adopted.recv() {
                Ok(Ok(go)) => {
                    self.ch.send(&Message::Ack(id), &[])?;
                    let _ = go.send(());
                    count += 1;
                    if exit_after == Some(count) {
                        std::process::exit(75);
                    }
                }
                Ok(Err(reason)) => self.ch.send(&Message::Declined { id, reason }, &[])?,
                Err(_) => {
                    let reason = "the worker is gone".to_owned();
                    self.ch.send(&Message::Declined { id, reason }, &[])?;
                }
            }
        }
    }
}

/// Where the control socket goes after a take-over: `--control`, else the path taken over.
pub(super) fn rebind(path: &Path) -> anyhow::Result<ControlSocket> {
    ControlSocket::bind(path).with_context(|| format!("control socket {}", path.display()))
}
