//! A typed client of the hub's WebSocket protocol (`docs/hub.md`), over `wsduplex`'s
//! [`ReconnectingClient`]: rooms to follow, messages to publish, events to read, and the
//! reconnects handled inside.
//!
//! What it keeps across connections: the rooms it follows and, for each, the last id it
//! handed out. After a connection drops, the next [`HubClient::next_event`] reconnects
//! (backoff with jitter, from the reconnecting client; the next base URL after each failed
//! attempt) and subscribes to every room again with `since` = that id. So a message is
//! handed out once (a duplicate id is dropped) and none is skipped silently: a welcome whose
//! `gap` is `true` says messages after the client's last id have already left history.
//! Messages it *publishes* are not buffered: one sent as the connection drops may be lost
//! (it comes back with its id when it was not).
//!
//! What it is not: a long-polling or SSE client (WebSocket only), or a cache of history.
//!
//! ```no_run
//! use wsduplex_hub::client::{HubClient, HubClientConfig, HubEvent};
//!
//! async fn run() -> wsduplex::Result<()> {
//!     let mut config = HubClientConfig::default();
//!     config.room = "alerts".into(); // the first room; more with `subscribe`
//!     config.name = Some("ops-bot".into());
//!     let mut hub = HubClient::connect("ws://127.0.0.1:8080", config).await?;
//!     hub.subscribe("deploys", None).await?;
//!     hub.publish_data("alerts", serde_json::json!({"disk": 0.93})).await?;
//!     while let Some(event) = hub.next_event().await {
//!         match event {
//!             HubEvent::Message(m) => println!("{} #{} {:?}", m.room, m.id, m.body),
//!             HubEvent::Welcome(w) if w.gap => eprintln!("{}: messages were lost", w.room),
//!             HubEvent::Disconnected { reason, .. } => eprintln!("reconnecting: {reason}"),
//!             _ => {}
//!         }
//!     }
//!     Ok(())
//! }
//! ```

mod events;
mod state;

pub use events::{Body, ChatMessage, ErrorEvent, HubEvent, Presence, Welcome};

use serde_json::json;
use state::State;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use wsduplex::proto::handshake::client::{RequestError, ResponseError};
use wsduplex::reconnect::{Backoff, ReconnectingClient};
use wsduplex::{ClientConfig, CloseCode, Message};

/// How a [`HubClient`] connects.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HubClientConfig {
    /// The room the client follows from the start (`lobby`).
    pub room: String,
    /// Resume that room after this id (as `since`), instead of getting its recent history.
    pub since: Option<u64>,
    /// The display name asked for (the hub makes it unique per room; with an identity the
    /// hub uses the identity's instead). `None`: `guest`.
    pub name: Option<String>,
    /// A token, sent as `Authorization: Bearer` (`--auth-token`, a JWT, an application's
    /// own); [`HubClient::refresh`] replaces it.
    pub token: Option<String>,
    /// Other nodes of the same hub (base URLs): each failed attempt moves to the next URL.
    pub fallback_urls: Vec<String>,
    /// When to try again: 250 ms doubling up to 5 s, half of it random, without end (as the
    /// chat page).
    pub backoff: Backoff,
    /// The WebSocket client's settings (TLS, proxy, timeouts).
    pub client: ClientConfig,
}

impl Default for HubClientConfig {
    fn default() -> Self {
        let mut backoff = Backoff::default();
        backoff.initial = Duration::from_millis(250);
        backoff.max = Duration::from_secs(5);
        Self {
            room: "lobby".into(),
            since: None,
            name: None,
            token: None,
            fallback_urls: Vec::new(),
            backoff,
            client: ClientConfig::default(),
        }
    }
}

/// A hub connection that follows rooms across reconnects; see the [module](self).
pub struct HubClient {
    client: ReconnectingClient,
    state: Arc<Mutex<State>>,
    ready: VecDeque<HubEvent>,
    /// Connections whose first event was handed out.
    seen_connections: u64,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClient")
            .field("client", &self.client)
            .field("rooms", &self.rooms())
            .finish()
    }
}

/// A token goes in an `Authorization` header: it must be a valid header value.
fn check_token(token: &str) -> wsduplex::Result<()> {
    match wsduplex::http::HeaderValue::from_str(token) {
        Ok(_) => Ok(()),
        Err(_) => Err(RequestError::InvalidHeader("authorization: (the token)".into()).into()),
    }
}

/// A lost connection, as an event.
fn disconnected(e: &wsduplex::Error) -> HubEvent {
    HubEvent::Disconnected {
        code: None,
        reason: match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl HubClient {
    /// Connects to the hub at `url`, its base (`ws://host:8080`, or `wss://host/hub` for a
    /// hub under a prefix): the connection joins `config.room` at `URL/chat/ROOM`. Waits
    /// for the room's welcome (the first event), retrying as `config.backoff` says. Fails
    /// for a URL that is not `ws://` or `wss://`, when the attempts run out, or at once
    /// when the hub refuses with a `4xx` status (`400` a bad room or name, `401` a refused
    /// token, `403` a room the token may not read): that error says which. A room that
    /// breaks the hub's rules or a token that cannot be a header value fail before any
    /// attempt.
    pub async fn connect(url: &str, config: HubClientConfig) -> wsduplex::Result<Self> {
        crate::names::validate_room(&config.room)
            .map_err(|e| wsduplex::Error::Url(format!("{}: {e}", config.room)))?;
        if let Some(token) = &config.token {
            check_token(token)?;
        }
        let mut urls = vec![url.to_string()];
        urls.extend(config.fallback_urls.iter().cloned());
        for url in &urls {
            let uri: wsduplex::http::Uri = url
                .parse()
                .map_err(|e| wsduplex::Error::Url(format!("{url}: {e}")))?;
            if !matches!(uri.scheme_str(), Some("ws" | "wss")) {
                return Err(wsduplex::Error::Url(format!("{url}: not ws:// or wss://")));
            }
            // `/chat/ROOM?...` is appended to it.
            if uri.query().is_some() {
                return Err(wsduplex::Error::Url(format!(
                    "{url}: a base URL has no query"
                )));
            }
        }
        let state = Arc::new(Mutex::new(State::new(
            urls,
            config.name,
            config.token,
            config.room,
            config.since,
        )));
        let (for_request, for_hook) = (state.clone(), state.clone());
        let connected = Arc::new(AtomicBool::new(false));
        let connected_before = connected.clone();
        let client = ReconnectingClient::new(url, config.client, config.backoff)
            .request_with(move |failures| lock(&for_request).request(failures))
            // A first connection refused with 4xx (a bad room or name, a refused token, a
            // room it may not read) will be refused again: `connect` says so at once.
            // Later, a refusal may pass (a node restarting behind a proxy, a new token),
            // so the client retries.
            .give_up_when(move |e| {
                let refused = matches!(
                    e,
                    wsduplex::Error::Response(ResponseError::Status {
                        status: 400..=499,
                        ..
                    })
                );
                refused && !connected_before.load(Ordering::Relaxed)
            })
            .on_connect(move |ws| {
                connected.store(true, Ordering::Relaxed);
                let messages = lock(&for_hook).resubscribe();
                Box::pin(async move {
                    for message in messages {
                        ws.send(message).await?;
                    }
                    Ok(())
                })
            });
        let mut hub = Self {
            client,
            state,
            ready: VecDeque::new(),
            seen_connections: 0,
        };
        while hub.ready.is_empty() {
            match hub.client.recv().await {
                Some(Ok(message)) => hub.received(message),
                Some(Err(e)) => return Err(e),
                None => return Err(wsduplex::Error::Usage(wsduplex::proto::UsageError::Closed)),
            }
        }
        Ok(hub)
    }

    /// The next event, in the order the server sent them (each room's in its order).
    /// After [`HubEvent::Disconnected`], the next call reconnects. `None` after
    /// [`HubClient::close`], or once `backoff.max_attempts` consecutive attempts failed.
    ///
    /// Cancel-safe: dropping the future loses no event, so it can wait in
    /// `tokio::select!` beside the calls that publish (a reconnect under way starts over).
    pub async fn next_event(&mut self) -> Option<HubEvent> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            match self.client.recv().await? {
                Ok(message) => self.received(message),
                Err(e) => self.ready.push_back(disconnected(&e)),
            }
        }
    }

    fn received(&mut self, message: Message) {
        let connections = self.client.connections();
        if connections > self.seen_connections {
            if self.seen_connections > 0 {
                self.ready.push_back(HubEvent::Reconnected);
            }
            self.seen_connections = connections;
        }
        let text = match message {
            Message::Text(text) => text,
            Message::Close(frame) => {
                self.ready.push_back(HubEvent::Disconnected {
                    code: frame.as_ref().map(|f| f.code.as_u16()),
                    reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                });
                return;
            }
            _ => return,
        };
        match serde_json::from_str(text.as_str()) {
            Ok(wire) => self.ready.extend(lock(&self.state).apply(wire)),
            // A newer server's event: not ours to interpret.
            Err(e) => tracing::debug!(error = %e, "hub client: event not understood"),
        }
    }

    /// Sends on the connection (connecting first if it is down). A send that finds the
    /// connection gone reports it as [`HubEvent::Disconnected`] too, as `next_event` would.
    async fn send(&mut self, message: String) -> wsduplex::Result<()> {
        let sent = self.client.send(message).await;
        if let Err(e) = &sent {
            if !self.client.is_connected() {
                self.ready.push_back(disconnected(e));
            }
        }
        sent
    }

    /// Follows `room` too (now and after every reconnect), after `since` if given (else
    /// from its recent history). Answered by a [`HubEvent::Welcome`], or an
    /// [`HubEvent::Error`] naming the room (`forbidden`, `too_many_subscriptions`...).
    pub async fn subscribe(&mut self, room: &str, since: Option<u64>) -> wsduplex::Result<()> {
        let new = lock(&self.state).follow(room, since);
        // While the connection is down, the reconnect subscribes; a room already followed
        // is left as it is.
        if self.client.is_connected() && new {
            let message = state::subscribe_message(room, since);
            self.send(message).await?;
        }
        Ok(())
    }

    /// Stops following `room`. Answered by [`HubEvent::Unsubscribed`] (at once if the
    /// connection is down).
    pub async fn unsubscribe(&mut self, room: &str) -> wsduplex::Result<()> {
        lock(&self.state).forget(room);
        if !self.client.is_connected() {
            let room = room.to_string();
            self.ready.push_back(HubEvent::Unsubscribed { room });
            return Ok(());
        }
        let message = json!({"type": "unsubscribe", "room": room}).to_string();
        self.send(message).await
    }

    /// Sends chat text to `room` (one the client follows); it comes back as a
    /// [`HubEvent::Message`] with its id, or as an [`HubEvent::Error`]. Connects first if
    /// the connection is down.
    pub async fn publish_text(&mut self, room: &str, text: &str) -> wsduplex::Result<()> {
        let message = json!({"type": "message", "room": room, "text": text}).to_string();
        self.send(message).await
    }

    /// Sends `data` (any JSON value but `null`) to `room`, as [`HubClient::publish_text`].
    pub async fn publish_data(
        &mut self,
        room: &str,
        data: serde_json::Value,
    ) -> wsduplex::Result<()> {
        let message = json!({"type": "message", "room": room, "data": data}).to_string();
        self.send(message).await
    }

    /// A new token: sent as a `refresh` on the open connection (answered by
    /// [`HubEvent::Refreshed`], then used for the next connections too, or by an error
    /// `bad_token`, then not), or kept for the next connection if it is down (as after a
    /// close `4001`, token expired: until then, the client retries with the expired one).
    pub async fn refresh(&mut self, token: &str) -> wsduplex::Result<()> {
        check_token(token)?;
        let connected = self.client.is_connected();
        lock(&self.state).set_token(token.to_string(), connected);
        if connected {
            let message = json!({"type": "refresh", "token": token}).to_string();
            self.send(message).await?;
        }
        Ok(())
    }

    /// The rooms followed, in the order subscribed, with the last id handed out in each.
    pub fn rooms(&self) -> Vec<(String, Option<u64>)> {
        lock(&self.state).rooms()
    }

    /// How many connections were established so far.
    pub fn connections(&self) -> u64 {
        self.client.connections()
    }

    /// Closes the connection for good (1000) and waits for the closing handshake.
    pub async fn close(mut self) -> wsduplex::Result<()> {
        self.client.close(CloseCode::NORMAL, "").await?;
        while let Some(item) = self.client.recv().await {
            item?;
        }
        Ok(())
    }
}
