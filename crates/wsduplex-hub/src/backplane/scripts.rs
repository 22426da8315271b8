//! What the backplane keeps in Redis, and the Lua scripts that change it. Each script runs
//! atomically, so every change and the event that announces it (`PUBLISH` on the room's
//! channel) happen together, in one order for every node.
//!
//! Keys of room `R` (prefix `P`, `wsduplex` by default; `{R}` keeps a room's keys in one
//! cluster slot):
//! - `P:{R}:id`: the last message id (`INCR`).
//! - `P:{R}:log`: the history, a stream whose entry ids are `0-<message id>`, capped with
//!   `MAXLEN ~ history`; field `m` is the message's JSON, `t` the token its node tagged
//!   it with (`<node>-<n>`: the node recognises its own message if the publish failed on
//!   its side but ran in Redis).
//! - `P:{R}:members`: name → `"<node> <presence seq>"`; names are unique in the room.
//! - `P:{R}:nodes`: sorted set, node → when its heartbeat expires (ms, Redis clock).
//! - `P:{R}:pseq`: the last presence change's number.
//!
//! - `P:session:<id>`: a long-polling session: `room`, `name`, `node` (where its member
//!   is), and `c:<cursor>` → the last message id among the events up to that cursor. It
//!   expires with the session.
//!
//! Channel `P:{R}` carries, in order: `M<id> <json>`, `J<seq> <node> <token> <name>`,
//! `L<seq> <name>`, `C<name>` (cut that member wherever it is: any node may ask), `T<token> <session> <name>`
//! (the session moves to the node waiting with that token) and `X<session>` (close it).

use crate::room::SharedMessage;
use ::redis::aio::MultiplexedConnection;
use ::redis::{RedisError, Script, ScriptInvocation, Value};
use wsduplex::Utf8Bytes;

/// Helpers every script starts with.
const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function int(n) return string.format('%d', n) end
local function owner(v) return string.match(v, '^(%S+)') end
-- The members of nodes whose heartbeat expired leave, each with a `left` for every node.
local function sweep(members, nodes, pseq, channel, now)
  local dead = redis.call('ZRANGEBYSCORE', nodes, '-inf', int(now))
  if #dead == 0 then return end
  local gone = {}
  for _, n in ipairs(dead) do gone[n] = true end
  local all = redis.call('HGETALL', members)
  for i = 1, #all, 2 do
    if gone[owner(all[i + 1])] then
      redis.call('HDEL', members, all[i])
      redis.call('PUBLISH', channel, 'L' .. int(redis.call('INCR', pseq)) .. ' ' .. all[i])
    end
  end
  for _, n in ipairs(dead) do redis.call('ZREM', nodes, n) end
end
"#;

/// KEYS id, log; ARGV channel, head, tail, maxlen, token. Returns the id.
const PUBLISH: &str = r#"
local id = redis.call('INCR', KEYS[1])
local m = ARGV[2] .. int(id) .. ',' .. ARGV[3]
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '0-' .. int(id), 'm', m, 't', ARGV[5])
redis.call('PUBLISH', ARGV[1], 'M' .. int(id) .. ' ' .. m)
return id
"#;

/// KEYS members, nodes, pseq; ARGV channel, node, ttl, token, wanted name. Returns the
/// name given (`name`, else `name-2`, `name-3`... as in a hub of one).
const JOIN: &str = r#"
local now = now_ms()
sweep(KEYS[1], KEYS[2], KEYS[3], ARGV[1], now)
local name = ARGV[5]
local n = 2
while redis.call('HEXISTS', KEYS[1], name) == 1 do
  name = ARGV[5] .. '-' .. n
  n = n + 1
end
local seq = int(redis.call('INCR', KEYS[3]))
redis.call('HSET', KEYS[1], name, ARGV[2] .. ' ' .. seq)
redis.call('ZADD', KEYS[2], int(now + tonumber(ARGV[3])), ARGV[2])
redis.call('PUBLISH', ARGV[1], 'J' .. seq .. ' ' .. ARGV[2] .. ' ' .. ARGV[4] .. ' ' .. name)
return name
"#;

/// KEYS members, pseq; ARGV channel, node, name. Only this node's member leaves.
const LEAVE: &str = r#"
local v = redis.call('HGET', KEYS[1], ARGV[3])
if v and owner(v) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[3])
  redis.call('PUBLISH', ARGV[1], 'L' .. int(redis.call('INCR', KEYS[2])) .. ' ' .. ARGV[3])
  return 1
end
return 0
"#;

/// KEYS members, nodes, pseq; ARGV channel, node, ttl. Returns 1 if this node had been
/// given up for dead (its members may have been swept: resynchronize).
const HEARTBEAT: &str = r#"
local now = now_ms()
local old = redis.call('ZSCORE', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[2], int(now + tonumber(ARGV[3])), ARGV[2])
sweep(KEYS[1], KEYS[2], KEYS[3], ARGV[1], now)
if old and tonumber(old) > now then return 0 end
return 1
"#;

/// KEYS members, nodes, pseq; ARGV channel, node. This node's members leave.
const GOODBYE: &str = r#"
local all = redis.call('HGETALL', KEYS[1])
local n = 0
for i = 1, #all, 2 do
  if owner(all[i + 1]) == ARGV[2] then
    redis.call('HDEL', KEYS[1], all[i])
    redis.call('PUBLISH', ARGV[1], 'L' .. int(redis.call('INCR', KEYS[3])) .. ' ' .. all[i])
    n = n + 1
  end
end
redis.call('ZREM', KEYS[2], ARGV[2])
return n
"#;

/// KEYS members, nodes, pseq, id; ARGV channel. The room for `GET /api/rooms/ROOM` on a
/// node that does not follow it: `{last id, members (flat name/value pairs)}` after the
/// sweep, or `false` if the room never had a member nor a message.
const ROOM: &str = r#"
if redis.call('EXISTS', KEYS[1], KEYS[3], KEYS[4]) == 0 then return false end
sweep(KEYS[1], KEYS[2], KEYS[3], ARGV[1], now_ms())
return {tonumber(redis.call('GET', KEYS[4]) or '0'), redis.call('HGETALL', KEYS[1])}
"#;

/// KEYS members, nodes, pseq; ARGV channel, name. Asks whichever node has the member to
/// cut it (`C<name>`); 0 if no live node has it.
const CUT: &str = r#"
sweep(KEYS[1], KEYS[2], KEYS[3], ARGV[1], now_ms())
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then return 0 end
redis.call('PUBLISH', ARGV[1], 'C' .. ARGV[2])
return 1
"#;

/// KEYS session; ARGV room, name, node, cursor, last message id, ttl, stale cursors...
const RECORD: &str = r#"
local cur = redis.call('HGET', KEYS[1], 'node')
if cur and cur ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], 'room', ARGV[1], 'name', ARGV[2], 'node', ARGV[3],
  'c:' .. ARGV[4], ARGV[5])
for i = 7, #ARGV do redis.call('HDEL', KEYS[1], 'c:' .. ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return 1
"#;

/// KEYS session, members, nodes, pseq; ARGV channel, node, token, ttl, session id, the
/// node that had it. Moves the session's member to this node without a `left`/`joined`
/// (unless the old node died and its members were swept: then it joins again). Returns 0
/// if the session is gone, moved meanwhile, or its name was taken.
const TAKE_OVER: &str = r#"
local info = redis.call('HMGET', KEYS[1], 'node', 'name')
local old, name = info[1], info[2]
if not old or not name or old ~= ARGV[6] then return 0 end
local now = now_ms()
sweep(KEYS[2], KEYS[3], KEYS[4], ARGV[1], now)
local v = redis.call('HGET', KEYS[2], name)
if v and owner(v) ~= old then return 0 end
redis.call('HSET', KEYS[1], 'node', ARGV[2])
if v then
  redis.call('HSET', KEYS[2], name, ARGV[2] .. ' ' .. string.match(v, ' (%d+)$'))
else
  local seq = int(redis.call('INCR', KEYS[4]))
  redis.call('HSET', KEYS[2], name, ARGV[2] .. ' ' .. seq)
  redis.call('PUBLISH', ARGV[1], 'J' .. seq .. ' ' .. ARGV[2] .. ' 0 ' .. name)
end
redis.call('ZADD', KEYS[3], int(now + tonumber(ARGV[4])), ARGV[2])
redis.call('PUBLISH', ARGV[1], 'T' .. ARGV[3] .. ' ' .. ARGV[5] .. ' ' .. name)
return 1
"#;

/// KEYS members, nodes, pseq, id, log; ARGV channel, node, ttl, last id, last shared id,
/// history, presence seq, then this node's member names.
///
/// Makes Redis agree with this node (its members exactly those given; ids and presence
/// numbers never below what it has seen, even if Redis lost them in a restart) and returns
/// the room: `{id counter, presence seq, members (flat name/value pairs), messages after
/// the last shared id (newest first, at most history), missed (0/1), names another node
/// holds}`.
const RESYNC: &str = r#"
local now = now_ms()
sweep(KEYS[1], KEYS[2], KEYS[3], ARGV[1], now)
local function raise(key, floor)
  local cur = tonumber(redis.call('GET', key) or '0')
  if cur < floor then
    redis.call('SET', key, int(floor))
    return floor
  end
  return cur
end
local top = raise(KEYS[4], tonumber(ARGV[4]))
raise(KEYS[3], tonumber(ARGV[7]))
local node = ARGV[2]
local mine = {}
for i = 8, #ARGV do mine[ARGV[i]] = true end
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if owner(all[i + 1]) == node then
    if mine[all[i]] then
      mine[all[i]] = nil
    else
      redis.call('HDEL', KEYS[1], all[i])
      redis.call('PUBLISH', ARGV[1], 'L' .. int(redis.call('INCR', KEYS[3])) .. ' ' .. all[i])
    end
  end
end
local conflicts = {}
for name in pairs(mine) do
  if redis.call('HEXISTS', KEYS[1], name) == 1 then
    table.insert(conflicts, name)
  else
    local seq = int(redis.call('INCR', KEYS[3]))
    redis.call('HSET', KEYS[1], name, node .. ' ' .. seq)
    redis.call('PUBLISH', ARGV[1], 'J' .. seq .. ' ' .. node .. ' 0 ' .. name)
  end
end
if #ARGV >= 8 then
  redis.call('ZADD', KEYS[2], int(now + tonumber(ARGV[3])), node)
end
local last = tonumber(ARGV[5])
local count = tonumber(ARGV[6])
local entries = {}
local missed = 0
if count > 0 then
  local low = '-'
  if last > 0 then low = '(0-' .. int(last) end
  entries = redis.call('XREVRANGE', KEYS[5], '+', low, 'COUNT', count)
  if last > 0 and #entries == count then
    local older = redis.call('XREVRANGE', KEYS[5], '(' .. entries[#entries][1], low, 'COUNT', 1)
    if #older > 0 then missed = 1 end
  end
end
if last > 0 and redis.call('EXISTS', KEYS[5]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[5])
  for i = 1, #info, 2 do
    if info[i] == 'max-deleted-entry-id' then
      local deleted = tonumber(string.match(info[i + 1], '^0%-(%d+)$') or '0')
      if deleted > last then missed = 1 end
    end
  end
end
return {top, tonumber(redis.call('GET', KEYS[3]) or '0'), redis.call('HGETALL', KEYS[1]),
  entries, missed, conflicts}
"#;

pub(crate) fn session_key(prefix: &str, session: &str) -> String {
    format!("{prefix}:session:{session}")
}

/// The keys and channel of one room.
pub(crate) struct Keys {
    id: String,
    log: String,
    members: String,
    nodes: String,
    pseq: String,
    pub(crate) channel: String,
}

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

impl Keys {
    pub(crate) fn new(prefix: &str, room: &str) -> Self {
        Self {
            id: format!("{prefix}:{{{room}}}:id"),
            log: format!("{prefix}:{{{room}}}:log"),
            members: format!("{prefix}:{{{room}}}:members"),
            nodes: format!("{prefix}:{{{room}}}:nodes"),
            pseq: format!("{prefix}:{{{room}}}:pseq"),
            channel: channel(prefix, room),
        }
    }
}

pub(crate) fn channel(prefix: &str, room: &str) -> String {
    format!("{prefix}:{{{room}}}")
}

/// The room a channel belongs to.
pub(crate) fn room_of<'a>(prefix: &str, channel: &'a str) -> Option<&'a str> {
    channel
        .strip_prefix(prefix)?
        .strip_prefix(":{")?
        .strip_suffix('}')
}

/// An event on a room's channel.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event<'a> {
    Message {
        id: u64,
        json: &'a str,
    },
    Joined {
        seq: u64,
        node: &'a str,
        token: u64,
        name: &'a str,
    },
    Left {
        seq: u64,
        name: &'a str,
    },
    Cut {
        name: &'a str,
    },
    Moved {
        token: u64,
        session: &'a str,
        name: &'a str,
    },
    Closed {
        session: &'a str,
    },
}

pub(crate) fn parse_event(payload: &str) -> Option<Event<'_>> {
    let mut chars = payload.chars();
    let kind = chars.next()?;
    let rest = chars.as_str();
    Some(match kind {
        'M' => {
            let (id, json) = rest.split_once(' ')?;
            Event::Message {
                id: id.parse().ok()?,
                json,
            }
        }
        'J' => {
            let mut parts = rest.splitn(4, ' ');
            let seq = parts.next()?.parse().ok()?;
            let node = parts.next()?;
            let token = parts.next()?.parse().ok()?;
            let name = parts.next()?;
            Event::Joined {
                seq,
                node,
                token,
                name,
            }
        }
        'L' => {
            let (seq, name) = rest.split_once(' ')?;
            Event::Left {
                seq: seq.parse().ok()?,
                name,
            }
        }
        'C' => Event::Cut { name: rest },
        'T' => {
            let mut parts = rest.splitn(3, ' ');
            let token = parts.next()?.parse().ok()?;
            let session = parts.next()?;
            let name = parts.next()?;
            Event::Moved {
                token,
                session,
                name,
            }
        }
        'X' => Event::Closed { session: rest },
        _ => return None,
    })
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
    pub(crate) messages: Vec<SharedMessage>,
    pub(crate) missed: bool,
    pub(crate) conflicts: Vec<String>,
}

/// A long-polling session as Redis has it.
pub(crate) struct SessionInfo {
    pub(crate) room: String,
    pub(crate) name: String,
    pub(crate) node: String,
    /// `(cursor, last message id up to it)`.
    pub(crate) cursors: Vec<(u64, u64)>,
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
        let with_prelude = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        Self {
            room: with_prelude(ROOM),
            cut: with_prelude(CUT),
            record: with_prelude(RECORD),
            take_over: with_prelude(TAKE_OVER),
            publish: with_prelude(PUBLISH),
            join: with_prelude(JOIN),
            leave: with_prelude(LEAVE),
            heartbeat: with_prelude(HEARTBEAT),
            goodbye: with_prelude(GOODBYE),
            resync: with_prelude(RESYNC),
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
    ) -> Result<Vec<SharedMessage>, Failure> {
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
        state: &crate::room::SyncState,
        history: usize,
    ) -> Result<Resynced, Failure> {
        let mut call = on_presence(&self.resync, keys);
        call.key(&keys.id)
            .key(&keys.log)
            .arg(node)
            .arg(ttl_ms)
            .arg(state.last_id)
            .arg(state.last_shared)
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
fn parse_entries(v: &Value) -> Option<Vec<SharedMessage>> {
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
            Some(SharedMessage {
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

fn text(v: &Value) -> Option<String> {
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
    fn events() {
        assert_eq!(
            parse_event(r#"M12 {"type":"message","id":12}"#),
            Some(Event::Message {
                id: 12,
                json: r#"{"type":"message","id":12}"#
            })
        );
        assert_eq!(
            parse_event("J5 ab12 99 Zoë 2.0"),
            Some(Event::Joined {
                seq: 5,
                node: "ab12",
                token: 99,
                name: "Zoë 2.0"
            })
        );
        assert_eq!(
            parse_event("L6 a b"),
            Some(Event::Left {
                seq: 6,
                name: "a b"
            })
        );
        assert_eq!(parse_event("Cbob"), Some(Event::Cut { name: "bob" }));
        assert_eq!(
            parse_event("T7 ab12 Zoë 2"),
            Some(Event::Moved {
                token: 7,
                session: "ab12",
                name: "Zoë 2"
            })
        );
        assert_eq!(
            parse_event("Xab12"),
            Some(Event::Closed { session: "ab12" })
        );
        for bad in ["", "Q1 a", "Mx {}", "J1 n", "L1", "T1 s"] {
            assert_eq!(parse_event(bad), None, "{bad:?}");
        }
    }

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

    #[test]
    fn channels() {
        let keys = Keys::new("wsduplex", "lobby");
        assert_eq!(keys.channel, "wsduplex:{lobby}");
        assert_eq!(keys.log, "wsduplex:{lobby}:log");
        assert_eq!(room_of("wsduplex", &keys.channel), Some("lobby"));
        assert_eq!(room_of("wsduplex", "other:{lobby}"), None);
    }
}
