//! A chat member's task: the member and its slot in the worker's registry (which holds the
//! connection's permit), nothing else. Once the member has waited a whole `--park-idle`
//! period, the registry's sweep asks it to stop idle, and over plain TCP it is parked in
//! the lot (`echo/lot.rs`) without a task: the rooms go on writing its messages to its
//! socket, and it gets a task again when its client sends something, a deadline comes, or
//! its mailbox wakes it (presence, an event the socket did not take, the hub stopping or
//! handed over).

use super::echo::registry::{Entry, Signal};
use super::echo::Transport;
use super::listen::spawn_in;
use std::future::Future;
use tokio_util::task::TaskTracker;
use wsduplex::limits::Permit;
use wsduplex_hub::{Member, Run};

/// Serves `member` in a task of its own, counted by `permit` (`None`: a member given back
/// by a failed hand-over, served beyond the limits).
pub(super) fn spawn<S: Transport>(
    tasks: &TaskTracker,
    member: Member<S>,
    permit: Option<Permit>,
    span: tracing::Span,
) {
    spawn_in(tasks, serve(member, entry::<S>(permit)), span);
}

/// A member's slot in this worker's registry. Not movable: the hub hands its members over
/// itself (`Hub::hand_members_to`).
pub(super) fn entry<S: Transport>(permit: Option<Permit>) -> Entry {
    Entry::new(permit, false, S::PARKABLE)
}

/// Runs `member` until it leaves, or until it is parked.
// Not an `async fn`: its state would hold the member (about 600 bytes) beside the running
// future's own copy; a box between runs is 8 bytes.
pub(super) fn serve<S: Transport>(member: Member<S>, entry: Entry) -> impl Future<Output = ()> {
    serve_boxed(Box::new(member), entry)
}

async fn serve_boxed<S: Transport>(mut member: Box<Member<S>>, mut entry: Entry) {
    loop {
        // Stop and hand-over reach a member through its mailbox, not through here.
        let run = unbox(member).run_or_idle(|waker| matches!(entry.signal(waker), Signal::Park));
        match run.await {
            Run::Over(Ok(())) => return,
            Run::Over(Err(e)) => return tracing::debug!("hub member: {e}"),
            Run::Idle(idle) => match S::park_member(idle, entry) {
                Ok(()) => return,
                // Something is in flight after all: it waits here, as before.
                Err((idle, back)) => {
                    member = Box::new(idle);
                    entry = back;
                }
            },
        }
    }
}

/// The box's content, the box freed now (moving out of `*member` in place would keep the
/// empty box until `member` is assigned again).
#[allow(clippy::boxed_local)] // unboxing is the point
fn unbox<T>(boxed: Box<T>) -> T {
    *boxed
}
