//! The rooms one connection follows. A connection (a WebSocket, a long-polling session) has
//! one mailbox; each room it subscribes to is a [`Membership`] whose room pushes into that
//! same mailbox, so the connection reads one queue, in the order the rooms delivered, and
//! the slow-member rule is the connection's: once the mailbox overflows it has ended, and
//! every room drops the member at its next push.
//!
//! `/chat/ROOM` (and `/poll/ROOM`, `/sse/ROOM`) opens a connection subscribed to ROOM; the
//! client subscribes to more rooms, and unsubscribes, with JSON messages (`docs/hub.md`).

use crate::event::{self, Inbound};
use crate::identity::Access;
use crate::mailbox::Mailbox;
use crate::{Hub, JoinError, Membership};
use std::sync::Arc;
use wsduplex::Utf8Bytes;

/// A connection's rooms.
pub(crate) struct Subscriptions {
    hub: Hub,
    mailbox: Arc<Mailbox>,
    /// The name asked for; each room makes it unique in that room.
    name: String,
    /// In the order subscribed: a message without `room` goes to the first.
    rooms: Vec<Membership>,
}

/// A client request refused: the HTTP status a long-polling `POST` answers with, and the
/// `error` event (naming the room when the request named one).
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) status: u16,
    pub(crate) event: Utf8Bytes,
}

fn refused(status: u16, room: &str, error: &str, message: &str) -> Refused {
    Refused {
        status,
        event: event::room_error(room, error, message),
    }
}

fn join_refused(room: &str, e: &JoinError) -> Refused {
    let code = match e {
        JoinError::Name(crate::NameError::Room) => "bad_room",
        JoinError::Name(_) => "bad_name",
        JoinError::TooManyRooms => "too_many_rooms",
        JoinError::Unavailable => "unavailable",
        _ => "shutting_down",
    };
    refused(e.status(), room, code, &e.to_string())
}

impl Subscriptions {
    /// A connection whose first room is `first`'s; its mailbox is the connection's.
    pub(crate) fn new(hub: Hub, first: Membership, name: &str) -> Self {
        Self {
            hub,
            mailbox: first.mailbox.clone(),
            name: name.to_string(),
            rooms: vec![first],
        }
    }

    /// A member handed over from another process, seated again in `rooms` (in the order
    /// it had subscribed).
    pub(crate) fn resumed(
        hub: Hub,
        mailbox: Arc<Mailbox>,
        name: &str,
        rooms: Vec<Membership>,
    ) -> Self {
        Self {
            hub,
            mailbox,
            name: name.to_string(),
            rooms,
        }
    }

    pub(crate) fn hub(&self) -> &Hub {
        &self.hub
    }

    pub(crate) fn memberships(&self) -> &[Membership] {
        &self.rooms
    }

    /// The name asked for.
    pub(crate) fn asked(&self) -> &str {
        &self.name
    }

    pub(crate) fn mailbox(&self) -> &Arc<Mailbox> {
        &self.mailbox
    }

    /// Leaves every room (a member that is closing: nothing more is pushed to it).
    pub(crate) fn leave_all(&mut self) {
        self.rooms.clear();
    }

    /// Carries out a client request. A message is published (`Some(its id)`: 0 if the room
    /// was handed to another process); a subscription's welcome, and an unsubscription's
    /// `unsubscribed`, arrive through the mailbox, in order with the room's events.
    pub(crate) async fn handle(
        &mut self,
        request: Inbound,
        access: &Access,
    ) -> Result<Option<u64>, Refused> {
        match request {
            Inbound::Message { room, payload } => {
                let member = match room.as_deref() {
                    None => self.rooms.first().ok_or_else(|| {
                        let why = "this connection follows no room: subscribe first";
                        Refused {
                            status: 409,
                            event: event::error("not_subscribed", why),
                        }
                    })?,
                    Some(room) => self.find(room)?,
                };
                if !access.may_write(member.room()) {
                    let why = "you may not write to this room";
                    return Err(refused(403, member.room(), "forbidden", why));
                }
                Ok(Some(member.send(payload.body()).await))
            }
            Inbound::Subscribe { room, since } => {
                self.subscribe(&room, since, access).await.map(|()| None)
            }
            Inbound::Unsubscribe { room } => {
                let i = self.position(&room)?;
                // Leaves the room: none of its events is pushed after this.
                drop(self.rooms.remove(i));
                self.mailbox.push(event::unsubscribed(&room));
                Ok(None)
            }
        }
    }

    /// After a `refresh`: leaves the rooms the new identity may not read, each answered
    /// with an `error` (`forbidden`, naming it) and `unsubscribed`.
    pub(crate) fn keep_readable(&mut self, access: &Access) {
        let mut i = 0;
        while i < self.rooms.len() {
            if access.may_read(self.rooms[i].room()) {
                i += 1;
                continue;
            }
            let member = self.rooms.remove(i);
            let room = member.room().to_string();
            drop(member);
            let why = "the refreshed credentials may not read this room";
            self.mailbox
                .push(event::room_error(&room, "forbidden", why));
            self.mailbox.push(event::unsubscribed(&room));
        }
    }

    async fn subscribe(
        &mut self,
        room: &str,
        since: Option<u64>,
        access: &Access,
    ) -> Result<(), Refused> {
        if self.rooms.iter().any(|m| m.room() == room) {
            let why = "already subscribed: unsubscribe first to start again from since";
            return Err(refused(409, room, "already_subscribed", why));
        }
        let max = self.hub.config().max_subscriptions;
        if self.rooms.len() >= max {
            let why = format!("at most {max} rooms per connection");
            return Err(refused(429, room, "too_many_subscriptions", &why));
        }
        if !access.may_read(room) {
            return Err(refused(
                403,
                room,
                "forbidden",
                "you may not read this room",
            ));
        }
        let mailbox = self.mailbox.clone();
        let member = self
            .hub
            .join_into(room, &self.name, since, mailbox)
            .await
            .map_err(|e| join_refused(room, &e))?;
        self.rooms.push(member);
        Ok(())
    }

    fn position(&self, room: &str) -> Result<usize, Refused> {
        self.rooms
            .iter()
            .position(|m| m.room() == room)
            .ok_or_else(|| refused(409, room, "not_subscribed", "not subscribed to this room"))
    }

    fn find(&self, room: &str) -> Result<&Membership, Refused> {
        self.position(room).map(|i| &self.rooms[i])
    }
}
