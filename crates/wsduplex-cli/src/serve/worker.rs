//! A worker thread: a single-threaded runtime accepting on its own listener, and the
//! hand-over's commands to it ([`Command`]) and reports from it ([`Report`]).

use super::{echo, listen, Server};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::task::TaskTracker;

/// What the control thread tells a worker.
// Without Unix there is no control thread: only the stop signal is sent.
#[cfg_attr(not(unix), allow(dead_code))]
pub(super) enum Command {
    /// Stop accepting; this many movable connections give themselves up
    /// ([`Report::Surrendered`]); more with each `HandOver` after, until [`Report::Idle`].
    HandOver(usize),
    /// Accept (again): a process that took over starts, a failed hand-over ends. Answered
    /// with [`Report::Accepting`].
    Accept,
    /// The hand-over is done: drop the listener, serve what stayed until it ends or the
    /// stop signal.
    Commit,
    /// Serve this connection.
    #[cfg(unix)]
    Adopt(Adoption),
}

/// A connection to serve on a worker: from another process, or one given back.
#[cfg(unix)]
pub(super) struct Adoption {
    pub tcp: std::net::TcpStream,
    pub state: Box<wsduplex::SocketState>,
    /// A hub member's rooms and identity (`None`: an `/echo` connection).
    pub member: Option<Box<wsduplex_hub::MemberState>>,
    /// From another process: told once the socket is rebuilt (or why not), with a go-ahead
    /// to send when the old process has its `Ack`; dropping it drops the connection unserved.
    /// `None`: served at once.
    pub reply: Option<std::sync::mpsc::Sender<Result<tokio::sync::oneshot::Sender<()>, String>>>,
    /// Stays with this process: never given up to a hand-over (drained instead).
    pub keep: bool,
    /// A member taken over: the rooms keep their history until it is seated.
    pub hold: Option<wsduplex_hub::HistoryHold>,
}

/// What a worker tells the control thread. Reports of one worker arrive in order.
#[cfg_attr(not(unix), allow(dead_code))]
pub(super) enum Report {
    /// A connection given up for the hand-over: its transport and its state.
    #[cfg(unix)]
    Surrendered {
        worker: usize,
        tcp: std::net::TcpStream,
        state: Box<wsduplex::SocketState>,
    },
    /// Worker `i` holds no movable connection and no request in progress.
    Idle(usize),
    /// Worker `i` accepts again; none of its connections will be given up after this.
    Accepting(usize),
}

/// One worker's ends of the hand-over.
pub(super) struct Links {
    pub index: usize,
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub reports: std::sync::mpsc::Sender<Report>,
    /// Dropped when the worker ends: the main thread waits for all of them.
    pub finished: mpsc::UnboundedSender<()>,
    /// Accept from the start (else only after [`Command::Accept`]).
    pub accepting: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Accepting,
    /// Taking over: not yet accepting. Or handing over, connections given up.
    Paused,
    HandingOver,
}

/// A worker thread: a single-threaded runtime accepting on its own listener until `stop`
/// (or until a hand-over commits).
pub(super) fn run(
    listener: std::net::TcpListener,
    server: Arc<Server>,
    stop: watch::Receiver<bool>,
    links: Links,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return tracing::error!("worker runtime: {e}"),
    };
    server.metrics.attach_current_thread();
    let Links {
        index,
        mut commands,
        reports,
        finished,
        accepting,
    } = links;
    echo::registry::start(index, reports.clone());
    rt.block_on(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => return tracing::error!("worker listener: {e}"),
        };
        // Tracks handshake tasks and the echo tasks they hand over to, for graceful shutdown.
        let tasks = TaskTracker::new();
        #[cfg(unix)]
        if let Some(after) = server.park_idle {
            if let Err(e) = echo::lot::start(tasks.clone(), after) {
                tracing::warn!("idle connections will not be parked: {e}");
            }
        }
        let mut stopping = stop.clone();
        let mut mode = if accepting {
            Mode::Accepting
        } else {
            Mode::Paused
        };
        let mut commands_open = true;
        let mut committed = false;
        loop {
            tokio::select! {
                accepted = listener.accept(), if mode == Mode::Accepting => match accepted {
                    Ok((tcp, peer)) => {
                        listen::accepted(tcp, peer, &server, &stop, &tasks);
                        accept_more(&listener, &server, &stop, &tasks);
                    }
                    // Out of descriptors and the like: keep serving the others.
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                command = commands.recv(), if commands_open => match command {
                    Some(Command::HandOver(credit)) => {
                        if mode != Mode::Paused {
                            mode = Mode::HandingOver;
                        }
                        echo::registry::hand_over(credit);
                    }
                    Some(Command::Accept) => {
                        mode = Mode::Accepting;
                        echo::registry::resume();
                        let _ = reports.send(Report::Accepting(index));
                    }
                    Some(Command::Commit) => {
                        committed = true;
                        break;
                    }
                    #[cfg(unix)]
                    Some(Command::Adopt(adoption)) => adopt(adoption, &server, &tasks),
                    None => commands_open = false,
                },
                () = echo::registry::idle(), if mode == Mode::HandingOver => {
                    mode = Mode::Paused;
                    let _ = reports.send(Report::Idle(index));
                }
                _ = stopping.changed() => break,
            }
        }
        drop(listener);
        tasks.close();
        // Every connection in a task, so that waiting for the tasks waits for them all.
        echo::registry::settle();
        if committed {
            // Connections that could not move are served until they end, or the stop signal
            // (after --drain-timeout, or SIGTERM).
            tokio::select! {
                () = tasks.wait() => {}
                _ = stopping.wait_for(|stopped| *stopped) => {}
            }
        }
        // Every connection sends 1001 and waits (bounded by its close timeout) for the reply.
        echo::registry::stop();
        let grace = server.config.socket.close_timeout + Duration::from_secs(1);
        let _ = tokio::time::timeout(grace, tasks.wait()).await;
    });
    drop(finished);
}

/// Connections waiting behind the one just accepted, taken at once, up to a bound (the
/// other branches wait at most that long). A round of the worker's `select!` per
/// connection registered and dropped a waiter on the stop signal and the commands each
/// time: most of the accept loop's user time per handshake (bench/README.md, E). Stops at
/// the first error too: the next round's accept meets it again, and handles it.
fn accept_more(
    listener: &TcpListener,
    server: &Arc<Server>,
    stop: &watch::Receiver<bool>,
    tasks: &TaskTracker,
) {
    const MAX: usize = 64;
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    for _ in 0..MAX {
        // With nothing waiting, the readiness is cleared and the no-op waker left in the
        // listener's registration; the next round's accept registers the task's again.
        match listener.poll_accept(&mut cx) {
            std::task::Poll::Ready(Ok((tcp, peer))) => {
                listen::accepted(tcp, peer, server, stop, tasks)
            }
            _ => break,
        }
    }
}

/// Rebuilds a connection from its transport and state, and serves it.
#[cfg(unix)]
fn adopt(adoption: Adoption, server: &Arc<Server>, tasks: &TaskTracker) {
    let Adoption {
        tcp,
        state,
        member,
        reply,
        keep,
        hold,
    } = adoption;
    let fail = |reply: Option<std::sync::mpsc::Sender<_>>, reason: String| match reply {
        Some(reply) => {
            let _ = reply.send(Err(reason));
        }
        None => tracing::error!("a connection given back could not be rebuilt: {reason}"),
    };
    let peer = match tcp.peer_addr() {
        Ok(peer) => peer,
        Err(e) => return fail(reply, format!("peer address: {e}")),
    };
    let tcp = match tokio::net::TcpStream::from_std(tcp) {
        Ok(tcp) => tcp,
        Err(e) => return fail(reply, format!("registering the socket: {e}")),
    };
    let config = match member {
        Some(_) => server.hub.member_socket_config(&server.config),
        None => server.echo.socket.clone(),
    };
    let ws = match wsduplex::WebSocket::from_parts(tcp, *state, config) {
        Ok(ws) => ws,
        Err(e) => return fail(reply, e.to_string()),
    };
    // A connection given back was counted until a moment ago: it is served even if a new
    // one took its place in the limits meanwhile.
    let permit = match server.config.open_connection(peer.ip()) {
        Ok(permit) => Some(permit),
        Err(refusal) if reply.is_some() => return fail(reply, refusal.to_string()),
        Err(_) => None,
    };
    let span = listen::connection_span(peer);
    if let Some(member) = member {
        let gate = match reply {
            Some(reply) => {
                let (go, gate) = tokio::sync::oneshot::channel();
                if reply.send(Ok(go)).is_err() {
                    return;
                }
                Some(gate)
            }
            None => None,
        };
        let server = server.clone();
        let task = async move {
            // Served only once the old process has the new one's `Ack`.
            if let Some(gate) = gate {
                if gate.await.is_err() {
                    return;
                }
            }
            let entry = super::member::entry::<tokio::net::TcpStream>(permit);
            let hub = server.hub.clone();
            let resumed = hub.resumed_member(ws, *member, &server.config).await;
            // Seated (or not): it needs nothing more from history than its mailbox has.
            drop(hold);
            match resumed {
                Ok(Some(member)) => super::member::serve(member, entry).await,
                Ok(None) => {}
                Err(e) => tracing::debug!("hub member: {e}"),
            }
        };
        return listen::spawn_in(tasks, task, span);
    }
    match reply {
        None => echo::spawn(tasks, ws, permit, None, !keep, span),
        Some(reply) => {
            let (go, gate) = tokio::sync::oneshot::channel();
            if reply.send(Ok(go)).is_ok() {
                echo::spawn(tasks, ws, permit, Some(gate), true, span);
            }
        }
    }
}
