//! The hub's rooms as a value, for a new process (feature `handover`): each room's last id
//! and history move, so ids go on from where they were, with no duplicate and no gap, and a
//! client that resumes with `since` on the new process gets what it missed.
//!
//! What moves: the rooms of a hub of one node (their names, last ids and histories). What
//! does not: members (a member is a connection; one that is not moved with its socket
//! leaves, and its client resumes with `since`), long-polling sessions, and anything of a
//! hub with Redis, where rooms live in Redis and stay there (its export is empty).

use crate::backplane::Nodes;
use crate::Hub;
use serde::{Deserialize, Serialize};
use wsduplex::Utf8Bytes;

/// The first bytes of an encoded [`HubState`].
const MAGIC: [u8; 4] = *b"WSDH";

/// The rooms of a hub, from [`Hub::export_state`], for [`Hub::import_state`];
/// [`HubState::encode`] and [`HubState::decode`] carry it between processes.
#[cfg_attr(docsrs, doc(cfg(feature = "handover")))]
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HubState {
    rooms: Vec<RoomState>,
}

#[derive(Clone, Serialize, Deserialize)]
struct RoomState {
    name: String,
    last_id: u64,
    /// `(id, encoded event)`, oldest first.
    history: Vec<(u64, String)>,
}

impl std::fmt::Debug for RoomState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomState")
            .field("name", &self.name)
            .field("last_id", &self.last_id)
            .field("history", &self.history.len())
            .finish()
    }
}

/// Why a hub's state cannot be read.
#[cfg_attr(docsrs, doc(cfg(feature = "handover")))]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubStateError {
    /// The state was written in a format version this build cannot read.
    #[error(
        "hub state format version {found} is not supported (this build reads version {supported})"
    )]
    Version {
        /// The version the state was written in.
        found: u16,
        /// The version this build reads and writes.
        supported: u16,
    },
    /// The bytes are not an encoded hub state (no magic, or cut short).
    #[error("not a wsduplex hub state")]
    NotAState,
    /// The state's body could not be decoded.
    #[error("malformed hub state")]
    Malformed(#[source] postcard::Error),
}

/// What [`Hub::import_state`] did.
#[cfg_attr(docsrs, doc(cfg(feature = "handover")))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Imported {
    /// Rooms that took the saved ids and history.
    pub rooms: usize,
    /// Rooms left as they were: an invalid name, one that already has messages here, no
    /// room for more rooms, or a hub with Redis (where rooms live in Redis).
    pub skipped: usize,
}

impl HubState {
    /// The format version this build writes, and the only one it reads.
    pub const VERSION: u16 = 1;

    /// How many rooms it holds.
    pub fn rooms(&self) -> usize {
        self.rooms.len()
    }

    /// The state as bytes: `WSDH`, the format version (a big-endian `u16`), then postcard.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&Self::VERSION.to_be_bytes());
        postcard::to_extend(self, out).expect("writing to a Vec cannot fail")
    }

    /// Reads what [`HubState::encode`] wrote; another format version fails with
    /// [`HubStateError::Version`], anything else that is not a whole state fails too.
    pub fn decode(bytes: &[u8]) -> Result<HubState, HubStateError> {
        let rest = bytes.strip_prefix(&MAGIC).ok_or(HubStateError::NotAState)?;
        let (version, body) = rest
            .split_first_chunk::<2>()
            .ok_or(HubStateError::NotAState)?;
        let found = u16::from_be_bytes(*version);
        if found != Self::VERSION {
            return Err(HubStateError::Version {
                found,
                supported: Self::VERSION,
            });
        }
        let (state, rest) = postcard::take_from_bytes(body).map_err(HubStateError::Malformed)?;
        if !rest.is_empty() {
            return Err(HubStateError::Malformed(
                postcard::Error::DeserializeBadEncoding,
            ));
        }
        Ok(state)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "handover")))]
impl Hub {
    /// Every room's last id and history, for [`Hub::import_state`] in a new process. Empty
    /// for a hub with Redis (its rooms live there).
    pub fn export_state(&self) -> HubState {
        if !matches!(self.inner.nodes, Nodes::One) {
            return HubState::default();
        }
        let rooms: Vec<_> = self.rooms().values().cloned().collect();
        let rooms = rooms
            .iter()
            .map(|room| {
                let s = room.lock();
                RoomState {
                    name: room.name.to_string(),
                    last_id: s.last_id,
                    history: s
                        .history
                        .iter()
                        .map(|(id, m)| (*id, m.as_str().to_owned()))
                        .collect(),
                }
            })
            .collect();
        HubState { rooms }
    }

    /// Gives each room of `state` its saved last id and history (cut to this hub's
    /// `history` setting), so ids go on from there. Call it before serving: a room that
    /// already has messages here is left as it is. A hub with Redis imports nothing.
    pub fn import_state(&self, state: HubState) -> Imported {
        let mut done = Imported::default();
        for saved in state.rooms {
            let imported =
                matches!(self.inner.nodes, Nodes::One) && self.import_room(&saved).is_some();
            if imported {
                done.rooms += 1;
            } else {
                done.skipped += 1;
            }
        }
        done
    }

    fn import_room(&self, saved: &RoomState) -> Option<()> {
        let room = self.room(&saved.name).ok()?;
        let mut s = room.lock();
        if s.last_id != 0 {
            return None;
        }
        let keep = s.history_len;
        let ordered = saved.history.windows(2).all(|w| w[0].0 < w[1].0);
        let in_range = saved
            .history
            .last()
            .is_none_or(|(id, _)| *id <= saved.last_id);
        if !ordered || !in_range {
            return None;
        }
        let skip = saved.history.len().saturating_sub(keep);
        s.history = saved.history[skip..]
            .iter()
            .map(|(id, m)| (*id, Utf8Bytes::from(m.clone())))
            .collect();
        s.last_id = saved.last_id;
        Some(())
    }
}
