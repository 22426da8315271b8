//! The Lua scripts that change what the backplane keeps in Redis (`keys.rs`), and their
//! replies. Each script runs atomically, so every change and the event that announces it
//! (`PUBLISH` on the room's channel) happen together, in one order for every node. The
//! scripts are in `lua/`, one file each, as Redis runs them after `lua/prelude.lua`; each
//! file's first lines say its KEYS, ARGV and reply.

use super::keys::Keys;
use super::room::{LogEntry, SyncState};
use crate::backplane::SessionInfo;
use ::redis::aio::MultiplexedConnection;
use ::redis::{RedisError, Script, ScriptInvocation, Value};
use wsduplex::Utf8Bytes;

/// `script` called on a room's presence, as most scripts here are: KEYS members, nodes,
/// pseq first, ARGV the room's channel first (more of each may follow). One place, since
/// the scripts read them by position.
fn on_presence<'a>(script: &'a Script, keys: &Keys) -> ScriptInvocation<'a> {
    let mut call = script.prepare_invoke();
    call.key(&keys.members)
        .key(&keys.nodes)
        .key(&keys.pseq)
        .arg(&keys.channel);
    call
}

/// A Redis failure, or a reply that is not what the script returns.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error("unexpected reply to {0}")]
    Reply(&'static str),
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("connection closed")]
    Closed,
    #[error("a command failed")]
    Broken,
    #[error("no sentinel named the master {master} ({said})")]
    NoMaster { master: String, said: String },
    #[error("it says it is a {role}, not the master (a failover is under way?)")]
    NotMaster { role: String },
    #[error("master {name} at {addr}: {failure}")]
    AtMaster {
        name: String,
        addr: String,
        failure: Box<Failure>,
    },
    #[error("sentinels moved master {master} to {to}")]
    Switched { master: String, to: String },
}

/// What the resync script returns.
pub(crate) struct Resynced {
    pub(crate) top: u64,
    pub(crate) presence_seq: u64,
    /// `(name, node, presence seq of its join)`.
    pub(crate) members: Vec<(String, String, u64)>,
    /// Oldest first.
    pub(crate) messages: Vec<LogEntry>,
    pub(crate) missed: bool,
    pub(crate) conflicts: Vec<String>,
}

pub(crate) struct Scripts {
    room: Script,
    cut: Script,
    record: Script,
    take_over: Script,
    publish: Script,
    join: Script,
    leave: Script,
    heartbeat: Script,
    goodbye: Script,
    resync: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        let with_prelude =
            |body: &str| Script::new(&format!("{}{body}", include_str!("lua/prelude.lua")));
        Self {
            room: with_prelude(include_str!("lua/room.lua")),
            cut: with_prelude(include_str!("lua/cut.lua")),
            record: with_prelude(include_str!("lua/record_session.lua")),
            take_over: with_prelude(include_str!("lua/take_over.lua")),
            publish: with_prelude(include_str!("lua/publish.lua")),
            join: with_prelude(include_str!("lua/join.lua")),
            leave: with_prelude(include_str!("lua/leave.lua")),
            heartbeat: with_prelude(include_str!("lua/heartbeat.lua")),
            goodbye: with_prelude(include_str!("lua/goodbye.lua")),
            resync: with_prelude(include_str!("lua/resync.lua")),
        }
    }

    pub(crate) async fn publish(
        &self,
        conn: &mut MultiplexedConnection,
        keys: &Keys,
        head: &str,
        tail: &str,
        history: usize,
        token: &str,
    ) -> Result<u64, Failure> {
        let v: Value = self
            .publish
            .key(&keys.id)
            .key(&keys.log)
            .arg(&keys.channel)
            .arg(head)
            .arg(tail)
            .arg(history.max(1))
            .arg(token)
            .invoke_async(conn)
            .await?;
        int(&v).ok_or(Failure::Reply("publish"))
    }

    pub(crate) async fn join(
        &self,
        conn: &mut MultiplexedConnection,
        keys: &Keys,
        node: &str,
        ttl_ms: u64,
        token: u64,
        wanted: &str,
    ) -> Result<String, Failure> {
        let v: Value = on_presence(&self.join, keys)
            .arg(node)
            .arg(ttl_ms)
            .arg(token)
            .arg(wanted)
            .invoke_async(conn)
            .await?;
        text(&v).ok_or(Failure::Reply("join"))
    }

    pub(crate) async fn leave(
        &self,
        conn: &mut MultiplexedConnection,
        keys: &Keys,
        node: &str,
        name: &str,
    ) -> Result<(), Failure> {
        let _: Value = self
            .leave
            .key(&keys.members)
            .key(&keys.pseq)
            .arg(&keys.channel)
            .arg(node)
            .arg(name)
            .invoke_async(conn)
            .await?;
        Ok(())
    }

    /// `true` if the node had been given up for dead in this room.
    pub(crate) async fn heartbeat(
        &self,
        conn: &mut MultiplexedConnection,
        keys: &Keys,
        node: &str,
        ttl_ms: u64,
    ) -> Result<bool, Failure> {
        let v: Value = on_presence(&self.heartbeat, keys)
            .arg(node)
            .arg(ttl_ms)
            .invoke_async(conn)
            .await?;
        Ok(int(&v).ok_or(Failure::Reply("heartbeat"))? == 1)
    }

    pub(crate) async fn goodbye(
        &self,
        conn: &mut MultiplexedConnection,
        keys: &Keys,
        node: &str,
    ) -> Result<(), Failure> {
        let _: Value = on_presence(&self.goodbye, keys)
            .arg(node)
            .invoke_async(conn)
            .await?;
        Ok(())
    }

    /// The messages with ids in `(after, upto]` still in history, oldest first.
    pub(crate) async fn range(
        &self,
        conn: &mut MultiplexedConnection,
        keys: &Keys,
        after: u64,
        upto: u64,
    ) -> Result<Vec<LogEntry>, Failure> {
        let v: Value = ::redis::cmd("XRANGE")
            .arg(&keys.log)
            .arg(format!("(0-{after}"))
            .arg(format!("0-{upto}"))
            .query_async(conn)
            .await?;
        parse_entries(&v).ok_or(Failure::Reply("XRANGE"))
    }

    /// Records where a session is and what its cursor stands for; forgets `stale` cursors.
    /// Nothing changes if another node has taken the session over.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn record_session(
        &self,
        conn: &mut MultiplexedConnection,
        key: &str,
        room: &str,
        name: &str,
        node: &str,
        cursor: (u64, u64),
        stale: &[u64],
        ttl_ms: u64,
    ) -> Result<(), Failure> {
        let mut call = self.record.prepare_invoke();
        call.key(key)
            .arg(room)
            .arg(name)
            .arg(node)
            .arg(cursor.0)
            .arg(cursor.1)
            .arg(ttl_ms);
        for c in stale {
            call.arg(*c);
        }
        let _: Value = call.invoke_async(conn).await?;
        Ok(())
    }

    pub(crate) async fn session(
        &self,
        conn: &mut MultiplexedConnection,
        key: &str,
    ) -> Result<Option<SessionInfo>, Failure> {
        let v: Value = ::redis::cmd("HGETALL").arg(key).query_async(conn).await?;
        let fields = match &v {
            Value::Map(pairs) => pairs
                .iter()
                .map(|(k, v)| Some((text(k)?, text(v)?)))
                .collect::<Option<Vec<_>>>(),
            other => array(other).and_then(|items| {
                items
                    .chunks(2)
                    .map(|kv| Some((text(kv.first()?)?, text(kv.get(1)?)?)))
                    .collect()
            }),
        }
        .ok_or(Failure::Reply("HGETALL"))?;
        let get = |f: &str| fields.iter().find(|(k, _)| k == f).map(|(_, v)| v.clone());
        let (Some(room), Some(name), Some(node)) = (get("room"), get("name"), get("node")) else {
            return Ok(None);
        };
        let cursors = fields
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("c:")?.parse().ok()?, v.parse().ok()?)))
            .collect();
        Ok(Some(SessionInfo {
            room,
            name,
            node,
            cursors,
        }))
    }

    /// `false` if the session is gone, moved meanwhile, or its name was taken.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn take_over(
        &self,
        conn: &mut MultiplexedConnection,
        session_key: &str,
        keys: &Keys,
        node: &str,
        token: u64,
        ttl_ms: u64,
        session: &str,
        from: &str,
    ) -> Result<bool, Failure> {
        let v: Value = self
            .take_over
            .key(session_key)
            .key(&keys.members)
            .key(&keys.nodes)
            .key(&keys.pseq)
            .arg(&keys.channel)
            .arg(node)
            .arg(token)
            .arg(ttl_ms)
            .arg(session)
            .arg(from)
            .invoke_async(conn)
            .await?;
        Ok(int(&v).ok_or(Failure::Reply("take over"))? == 1)
    }

    /// Forgets a session and asks whichever node has it to close it.
    pub(crate) async fn close_session(
        &self,
        conn: &mut MultiplexedConnection,
        session_key: &str,
        keys: &Keys,
        session: &str,
    ) -> Result<(), Failure> {
        let _: Value = ::redis::pipe()
            .cmd("DEL")
            .arg(session_key)
            .ignore()
            .cmd("PUBLISH")
            .arg(&keys.channel)
            .arg(format!("X{session}"))
            .ignore()
            .query_async(conn)
            .await?;
        Ok(())
    }

    /// Asks whichever node has `name` in the room to cut it; `false` if no live node has.
    pub(crate) async fn cut(
        &self,
        conn: &mut MultiplexedConnection,
        keys: &Keys,
        name: &str,
    ) -> Result<bool, Failure> {
        let v: Value = on_presence(&self.cut, keys)
            .arg(name)
            .invoke_async(conn)
            .await?;
        Ok(int(&v).ok_or(Failure::Reply("cut"))? == 1)
    }

    /// The room's members (in the order they joined) and last id; `None` if the room never
    /// had a member nor a message.
    pub(crate) async fn room(
        &self,
        conn: &mut MultiplexedConnection,
        keys: &Keys,
    ) -> Result<Option<super::RoomState>, Failure> {
        let v: Value = on_presence(&self.room, keys)
            .key(&keys.id)
            .invoke_async(conn)
            .await?;
        if matches!(v, Value::Nil | Value::Boolean(false)) {
            return Ok(None);
        }
        let parsed = (|| {
            let [id, members] = array(&v)? else {
                return None;
            };
            let mut members = parse_members(members)?;
            members.sort_by_key(|(_, _, seq)| *seq);
            Some((members.into_iter().map(|(n, _, _)| n).collect(), int(id)?))
        })();
        parsed.ok_or(Failure::Reply("room")).map(Some)
    }

    pub(crate) async fn resync(
        &self,
        conn: &mut MultiplexedConnection,
        keys: &Keys,
        node: &str,
        ttl_ms: u64,
        state: &SyncState,
        history: usize,
    ) -> Result<Resynced, Failure> {
        let mut call = on_presence(&self.resync, keys);
        call.key(&keys.id)
            .key(&keys.log)
            .arg(node)
            .arg(ttl_ms)
            .arg(state.last_id)
            .arg(state.last_applied)
            .arg(history)
            .arg(state.presence_seq);
        for name in &state.local_names {
            call.arg(name);
        }
        let v: Value = call.invoke_async(conn).await?;
        parse_resync(&v).ok_or(Failure::Reply("resync"))
    }
}

fn parse_resync(v: &Value) -> Option<Resynced> {
    let [top, seq, members, entries, missed, conflicts] = array(v)? else {
        return None;
    };
    let members = parse_members(members)?;
    let mut messages = parse_entries(entries)?;
    messages.reverse();
    Some(Resynced {
        top: int(top)?,
        presence_seq: int(seq)?,
        members,
        messages,
        missed: int(missed)? == 1,
        conflicts: array(conflicts)?
            .iter()
            .map(text)
            .collect::<Option<Vec<_>>>()?,
    })
}

/// A members hash, flat: `(name, node, presence seq of its join)`.
fn parse_members(v: &Value) -> Option<Vec<(String, String, u64)>> {
    array(v)?
        .chunks(2)
        .map(|pair| {
            let name = text(pair.first()?)?;
            let value = text(pair.get(1)?)?;
            let (node, seq) = value.split_once(' ')?;
            Some((name, node.to_string(), seq.parse().ok()?))
        })
        .collect()
}

/// Stream entries `[[id, [field, value, ...]], ...]`; the token is optional (entries
/// written before there was one have none).
fn parse_entries(v: &Value) -> Option<Vec<LogEntry>> {
    array(v)?
        .iter()
        .map(|entry| {
            let [id, fields] = array(entry)? else {
                return None;
            };
            let id = text(id)?.strip_prefix("0-")?.parse().ok()?;
            let fields = array(fields)?;
            let field = |name: &str| {
                fields
                    .chunks(2)
                    .find(|kv| kv.first().and_then(text).as_deref() == Some(name))
                    .and_then(|kv| text(kv.get(1)?))
            };
            Some(LogEntry {
                id,
                encoded: Utf8Bytes::from(field("m")?),
                token: field("t"),
            })
        })
        .collect()
}

fn array(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(items) => Some(items),
        // Lua's empty table comes back as an empty array, or as nil from some servers.
        Value::Nil => Some(&[]),
        _ => None,
    }
}

pub(super) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => text(other)?.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_with_and_without_a_token() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entry = |id: &str, fields: &[&str]| {
            Value::Array(vec![
                bulk(id),
                Value::Array(fields.iter().map(|f| bulk(f)).collect()),
            ])
        };
        let v = Value::Array(vec![
            entry("0-4", &["m", "{}"]),
            entry("0-5", &["m", "{\"id\":5}", "t", "ab12-7"]),
        ]);
        let parsed = parse_entries(&v).unwrap();
        let got: Vec<_> = parsed
            .iter()
            .map(|m| (m.id, m.encoded.as_str(), m.token.as_deref()))
            .collect();
        assert_eq!(got, [(4, "{}", None), (5, "{\"id\":5}", Some("ab12-7"))]);
        assert!(parse_entries(&Value::Array(vec![entry("0-6", &["t", "x"])])).is_none());
    }
}
