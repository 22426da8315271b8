//! The task that owns the connections ([`RedisBackplane::run_loop`]): it connects (through
//! the sentinels if the URL names them), subscribes to the rooms this node follows and
//! resynchronizes them, applies each room's events in the order they arrive, serves the
//! requests that need the connections, heartbeats, and reconnects with backoff.

use super::*;

/// First reconnect delay; it doubles up to [`RedisConfig::max_backoff`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// What a connect yields: the command connection, the pub/sub connection, and with
/// sentinels the master they named.
struct Connected {
    link: Link,
    sink: PubSubSink,
    stream: PubSubStream,
    master: Option<Master>,
}

/// With sentinels, completes when the master moves (or its watch goes away); else never.
async fn switched(master: &mut Option<Master>) -> Result<String, SentinelGone> {
    match master {
        Some(m) => m.switched().await,
        None => std::future::pending().await,
    }
}

impl RedisBackplane {
    pub(super) async fn run_loop(self: Arc<Self>) {
        let Some(mut inbox) = lock(&self.inbox).take() else {
            return;
        };
        self.started.store(true, Ordering::SeqCst);
        let mut backoff = MIN_BACKOFF;
        let mut was_up = false;
        while !self.stopping() {
            // With sentinels: a failover announced while down ends the pause at once.
            let mut watch = None;
            match self.connect().await {
                Ok(connected) => {
                    let at = match &connected.master {
                        Some(m) => format!(" (master {} at {})", m.name, m.addr),
                        None => String::new(),
                    };
                    let rooms = lock(&self.rooms).len();
                    *lock(&self.link) = Some(connected.link.clone());
                    if was_up {
                        // As loud as the error it ends.
                        tracing::warn!(
                            "redis {}{at}: connected again ({rooms} rooms resynchronized)",
                            self.target
                        );
                    } else {
                        tracing::info!(
                            "redis {}{at}: connected as node {}",
                            self.target,
                            self.node
                        );
                    }
                    backoff = MIN_BACKOFF;
                    was_up = true;
                    let ended = self.serve(connected, &mut inbox).await;
                    self.set_down();
                    match ended {
                        Ok(()) => break,
                        Err(e) => tracing::error!(
                            "redis {}: connection lost ({e}); members of this node keep \
                             chatting among themselves, joins are refused until it is back",
                            self.target
                        ),
                    }
                }
                Err((e, master)) => {
                    watch = master;
                    self.set_down();
                    let mode = if was_up { "reconnect" } else { "connect" };
                    tracing::warn!(
                        "redis {}: cannot {mode}: {e}; next attempt in {backoff:?}",
                        self.target
                    );
                }
            }
            // Down: serve requests locally until the next attempt.
            let mut announced = false;
            let pause = tokio::time::sleep(backoff);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = &mut pause => break,
                    _ = self.stop.notified() => break,
                    Ok(to) = switched(&mut watch) => {
                        tracing::info!(
                            "redis {}: sentinels moved the master to {to}; connecting now",
                            self.target
                        );
                        announced = true;
                        break;
                    }
                    request = inbox.recv() => match request {
                        Some(r) => self.serve_down(r),
                        None => break,
                    },
                }
            }
            backoff = match announced {
                true => MIN_BACKOFF,
                false => (backoff * 2).min(self.config.max_backoff.max(MIN_BACKOFF)),
            };
        }
        self.set_down();
        self.done.send_replace(true);
    }

    /// Connects both connections, subscribes to every followed room and resynchronizes
    /// each. With sentinels, also returns the master they named (and its watch), even if
    /// connecting to it failed.
    async fn connect(&self) -> Result<Connected, (Failure, Option<Master>)> {
        let resolved = self
            .endpoint
            .resolve(self.config.timeout)
            .await
            .map_err(|e| (e, None))?;
        let master = resolved.master;
        match self.connect_to(&resolved.client, master.is_some()).await {
            Ok((link, sink, stream)) => Ok(Connected {
                link,
                sink,
                stream,
                master,
            }),
            Err(e) => Err(match master {
                Some(m) => {
                    let failure = Failure::AtMaster {
                        name: m.name.clone(),
                        addr: m.addr.clone(),
                        failure: Box::new(e),
                    };
                    (failure, Some(m))
                }
                None => (e, None),
            }),
        }
    }

    /// [`RedisBackplane::connect`] once the server is known; `sentinel`: check that it is
    /// a master.
    async fn connect_to(
        &self,
        client: &::redis::Client,
        sentinel: bool,
    ) -> Result<(Link, PubSubSink, PubSubStream), Failure> {
        let t = self.config.timeout;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(t))
            .set_response_timeout(Some(t));
        let mut conn = timeout(
            t * 2,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| Failure::Timeout(t))??;
        if sentinel {
            // What a sentinel said may be stale (the failover is not over, or the old
            // master came back as a replica): the Sentinel client protocol checks.
            let role = timeout(t, sentinel::role(&mut conn))
                .await
                .map_err(|_| Failure::Timeout(t))??;
            if role != "master" {
                return Err(Failure::NotMaster { role });
            }
        }
        let pubsub = timeout(t, client.get_async_pubsub())
            .await
            .map_err(|_| Failure::Timeout(t))??;
        let (mut sink, stream) = pubsub.split();
        let rooms: Vec<Arc<Room>> = lock(&self.rooms).values().cloned().collect();
        if !rooms.is_empty() {
            let channels: Vec<String> = rooms
                .iter()
                .map(|r| keys::channel(&self.config.key_prefix, &r.name))
                .collect();
            timeout(t, sink.subscribe(channels))
                .await
                .map_err(|_| Failure::Timeout(t))??;
        }
        let mut c = conn.clone();
        for room in &rooms {
            self.resync(&mut c, room).await?;
        }
        let link = Link {
            conn,
            broken: Arc::new(Notify::new()),
        };
        Ok((link, sink, stream))
    }

    /// Serves the connections until they fail (`Err`) or the node stops.
    async fn serve(
        &self,
        connected: Connected,
        inbox: &mut mpsc::UnboundedReceiver<Request>,
    ) -> Result<(), Failure> {
        let Connected {
            link,
            mut sink,
            mut stream,
            mut master,
        } = connected;
        let mut conn = link.conn.clone();
        let every = (self.config.presence_ttl / 3).max(Duration::from_millis(10));
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.stopping() {
                self.goodbye(&conn).await;
                return Ok(());
            }
            tokio::select! {
                biased;
                _ = self.stop.notified() => {}
                _ = link.broken.notified() => return Err(Failure::Broken),
                msg = stream.next() => match msg {
                    Some(msg) => self.on_message(&mut conn, msg).await?,
                    None => return Err(Failure::Closed),
                },
                request = inbox.recv() => match request {
                    Some(r) => self.on_request(&mut conn, &mut sink, r).await?,
                    None => return Ok(()),
                },
                switched = switched(&mut master) => match switched {
                    Ok(to) => {
                        let name = master.as_ref().map(|m| m.name.clone()).unwrap_or_default();
                        return Err(Failure::Switched { master: name, to });
                    }
                    Err(SentinelGone) => tracing::warn!(
                        "redis {}: the sentinel watched for failovers went away; \
                         another is asked at the next heartbeat",
                        self.target
                    ),
                },
                _ = beat.tick() => {
                    // A pub/sub connection that stopped answering is as good as closed.
                    let t = self.config.timeout;
                    timeout(t, sink.ping::<::redis::Value>())
                        .await
                        .map_err(|_| Failure::Timeout(t))??;
                    self.heartbeat(&mut conn).await?;
                    if let Some(m) = master.as_mut().filter(|m| m.switches.is_none()) {
                        self.endpoint.rewatch(m, t).await?;
                    }
                }
            }
        }
    }

    /// Applies one event of a room's channel.
    async fn on_message(&self, conn: &mut MultiplexedConnection, msg: Msg) -> Result<(), Failure> {
        let Some(name) = keys::room_of(&self.config.key_prefix, msg.get_channel_name()) else {
            return Ok(());
        };
        let Some(room) = lock(&self.rooms).get(name).cloned() else {
            return Ok(());
        };
        let payload = std::str::from_utf8(msg.get_payload_bytes()).unwrap_or_default();
        let Some(event) = keys::parse_event(payload) else {
            tracing::warn!("redis {}: unknown event in room {name}", self.target);
            return Ok(());
        };
        match event {
            Event::Message { id, json } => {
                let last = room.last_applied();
                if id <= last {
                    return Ok(());
                }
                if id > last + 1 {
                    // Ids jump after an outage; anything between is in the stream.
                    let keys = self.keys(&room.name);
                    for m in self.scripts.range(conn, &keys, last, id - 1).await? {
                        room.apply_message(m);
                    }
                }
                // The channel carries no token, the stream does: a message of this node
                // in doubt comes back in the resync after its failure, which reads it.
                room.apply_message(LogEntry {
                    id,
                    encoded: Utf8Bytes::from(json.to_string()),
                    token: None,
                });
            }
            Event::Joined {
                seq,
                node,
                token,
                name,
            } => {
                if node != self.node || token == 0 {
                    room.apply_joined(seq, name);
                    return Ok(());
                }
                let pending = lock(&self.pending).remove(&token);
                match pending {
                    Some(p) => match p.room.admit(seq, name, p.since, p.mailbox) {
                        Some(joined) => {
                            if let Err(joined) = p.admitted.send(joined) {
                                // The client went away meanwhile.
                                p.room.leave(joined.key);
                            }
                        }
                        None => (self.on_leave)(&room.name, name.into()),
                    },
                    None => {
                        // Its join gave up waiting: give the name back.
                        room.apply_joined(seq, name);
                        (self.on_leave)(&room.name, name.into());
                    }
                }
            }
            Event::Left { seq, name } => room.apply_left(seq, name),
            Event::Cut { name } => {
                room.cut(name);
            }
            Event::Moved {
                token,
                session,
                name,
            } => {
                let pending = lock(&self.pending).remove(&token);
                match pending {
                    Some(Pending {
                        room,
                        since,
                        mailbox,
                        moving: true,
                        admitted,
                    }) => match room.admit_moved(name, since, mailbox) {
                        Some(joined) => {
                            if let Err(joined) = admitted.send(joined) {
                                room.leave(joined.key);
                            }
                        }
                        None => (self.on_leave)(&room.name, name.into()),
                    },
                    // Not for this node: if the session was here, it is elsewhere now.
                    _ => self.session_gone(session),
                }
            }
            Event::Closed { session } => self.session_gone(session),
        }
        Ok(())
    }

    async fn on_request(
        &self,
        conn: &mut MultiplexedConnection,
        sink: &mut PubSubSink,
        request: Request,
    ) -> Result<(), Failure> {
        let t = self.config.timeout;
        match request {
            Request::Load(room, done) => {
                let followed = lock(&self.rooms)
                    .get(&room.name)
                    .is_some_and(|r| Arc::ptr_eq(r, &room));
                if !(followed && room.is_loaded()) {
                    // Subscribed first: every event after the snapshot then arrives.
                    let channel = keys::channel(&self.config.key_prefix, &room.name);
                    timeout(t, sink.subscribe(channel))
                        .await
                        .map_err(|_| Failure::Timeout(t))??;
                    lock(&self.rooms).insert(room.name.clone(), room.clone());
                    self.resync(conn, &room).await?;
                }
                let _ = done.send(true);
            }
            Request::Unload(room) => {
                if self.unfollow(&room) {
                    let channel = keys::channel(&self.config.key_prefix, &room.name);
                    timeout(t, sink.unsubscribe(channel))
                        .await
                        .map_err(|_| Failure::Timeout(t))??;
                }
            }
            Request::Leave(room, name) => {
                let keys = self.keys(&room);
                if let Err(e) = self.scripts.leave(conn, &keys, &self.node, &name).await {
                    self.left_locally(&room, &name);
                    return Err(e);
                }
            }
            Request::Forget(session) => {
                let _: ::redis::Value = ::redis::cmd("DEL")
                    .arg(self.session_key(&session))
                    .query_async(conn)
                    .await
                    .map_err(Failure::from)?;
            }
        }
        Ok(())
    }

    /// A request while disconnected.
    fn serve_down(&self, request: Request) {
        match request {
            Request::Load(_, done) => {
                let _ = done.send(false);
            }
            Request::Unload(room) => {
                self.unfollow(&room);
            }
            Request::Leave(room, name) => self.left_locally(&room, &name),
            // The session key expires with the session's TTL.
            Request::Forget(_) => {}
        }
    }

    /// Stops following `room` (if it is the one followed under its name).
    fn unfollow(&self, room: &Arc<Room>) -> bool {
        let mut rooms = lock(&self.rooms);
        let followed = rooms.get(&room.name).is_some_and(|r| Arc::ptr_eq(r, room));
        if followed {
            rooms.remove(&room.name);
        }
        followed
    }

    fn left_locally(&self, room: &str, name: &str) {
        let room = lock(&self.rooms).get(room).cloned();
        if let Some(room) = room {
            room.left_locally(name);
        }
    }

    /// Keeps this node alive in each room it has members in, and sweeps dead nodes there.
    async fn heartbeat(&self, conn: &mut MultiplexedConnection) -> Result<(), Failure> {
        let rooms: Vec<Arc<Room>> = lock(&self.rooms)
            .values()
            .filter(|r| r.has_members())
            .cloned()
            .collect();
        // All at once: the connection pipelines them.
        let beats = rooms.iter().map(|room| {
            let mut conn = conn.clone();
            async move {
                let keys = self.keys(&room.name);
                let ttl = self.ttl_ms();
                self.scripts
                    .heartbeat(&mut conn, &keys, &self.node, ttl)
                    .await
            }
        });
        let stale = futures_util::future::join_all(beats).await;
        for (room, stale) in rooms.iter().zip(stale) {
            if stale? {
                tracing::warn!(
                    "redis {}: room {} had given this node up for dead; resynchronizing",
                    self.target,
                    room.name
                );
                self.resync(conn, room).await?;
            }
        }
        Ok(())
    }

    /// Makes Redis and the room agree (see the resync script).
    async fn resync(&self, conn: &mut MultiplexedConnection, room: &Room) -> Result<(), Failure> {
        let state = room.sync_state();
        let keys = self.keys(&room.name);
        let r = self
            .scripts
            .resync(conn, &keys, &self.node, self.ttl_ms(), &state, self.history)
            .await?;
        if r.missed && !state.local_names.is_empty() {
            tracing::warn!(
                "redis {}: room {} lost messages for this node's members; they resume with since",
                self.target,
                room.name
            );
        }
        let mut members = r.members;
        members.sort_by_key(|(_, _, seq)| *seq);
        room.apply_snapshot(Snapshot {
            roster: members.into_iter().map(|(n, _, _)| n.into()).collect(),
            presence_seq: r.presence_seq,
            top: r.top,
            messages: r.messages,
            missed: r.missed && state.last_applied > 0,
            conflicts: r.conflicts,
            doubts_upto: state.doubts_upto,
        });
        Ok(())
    }

    /// This node's members leave every room (the node stops).
    async fn goodbye(&self, conn: &MultiplexedConnection) {
        let rooms: Vec<Arc<str>> = lock(&self.rooms).keys().cloned().collect();
        let byes = rooms.iter().map(|room| {
            let mut conn = conn.clone();
            async move {
                let keys = self.keys(room);
                if let Err(e) = self.scripts.goodbye(&mut conn, &keys, &self.node).await {
                    tracing::warn!("redis {}: goodbye in room {room}: {e}", self.target);
                }
            }
        });
        futures_util::future::join_all(byes).await;
    }
}
