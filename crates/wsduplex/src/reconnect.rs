//! A client that reconnects by itself: exponential backoff with jitter and an upper bound,
//! and a hook that runs on every new connection (to authenticate or subscribe again).
//! Optionally, each attempt's request is made afresh (`request_with`: a resume point, a new
//! token, another server), and an error no retry will change ends it (`give_up_when`).
//!
//! Messages are not buffered across connections: a message sent while the connection is
//! down waits for the next connection; one lost in a drop is lost (resume at the
//! application level, e.g. with the hub's `since`). That includes a message sent after the
//! peer went away but before the client learned of it (the transport took it); the send
//! after it fails, and the one after that connects again.
//!
//! ```no_run
//! use wsduplex::reconnect::{Backoff, ReconnectingClient};
//! use wsduplex::{ClientConfig, Message};
//!
//! # async fn run() -> wsduplex::Result<()> {
//! let mut client = ReconnectingClient::new("ws://127.0.0.1:8080/echo", ClientConfig::default(), Backoff::default())
//!     .on_connect(|ws| Box::pin(async move { ws.send("subscribe ticker").await }));
//! while let Some(item) = client.recv().await {
//!     match item {
//!         Ok(Message::Text(t)) => println!("{t}"),
//!         Ok(_) => {}
//!         Err(e) => eprintln!("connection lost ({e}); reconnecting"),
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use crate::client::{connect_with, ClientConfig, ClientStream};
use crate::error::{Error, Result};
use crate::socket::WebSocket;
use proto::{CloseCode, Message, UsageError};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::Instant;

/// When to try again: `initial × factor^n`, capped at `max`, then multiplied by a random
/// factor in `[1 - jitter, 1]` so that many clients dropped at once do not return at once.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Backoff {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Upper bound of the delay.
    pub max: Duration,
    /// Growth per consecutive failure.
    pub factor: f64,
    /// Share of the delay that is random, from 0 (none) to 1 (anywhere in `[0, delay]`).
    pub jitter: f64,
    /// Give up after this many consecutive failed attempts (`None`: never).
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            factor: 2.0,
            jitter: 0.5,
            max_attempts: None,
        }
    }
}

impl Backoff {
    /// The delay before retry number `failures` (0: the first retry).
    pub fn delay(&self, failures: u32) -> Duration {
        let base = self.initial.as_secs_f64() * self.factor.powi(failures.min(64) as i32);
        let capped = base.min(self.max.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0);
        let scale = 1.0 - jitter * rand::random::<f64>();
        Duration::from_secs_f64(capped * scale)
    }
}

/// The hook run on each new connection, before it is used.
pub type OnConnect = Box<
    dyn for<'a> FnMut(
            &'a mut WebSocket<ClientStream>,
        ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>
        + Send,
>;

/// What makes the request of each attempt, given the consecutive failures so far.
pub type RequestFn = Box<dyn FnMut(u32) -> http::Request<()> + Send>;

/// Says whether a failed attempt's error is final.
pub type GiveUpFn = Box<dyn FnMut(&Error) -> bool + Send>;

/// A client connection that comes back after it drops.
pub struct ReconnectingClient {
    url: String,
    config: ClientConfig,
    backoff: Backoff,
    on_connect: Option<OnConnect>,
    request: Option<RequestFn>,
    give_up: Option<GiveUpFn>,
    ws: Option<WebSocket<ClientStream>>,
    /// Consecutive failures (connects that failed or connections that died at once).
    failures: u32,
    connected_at: Option<Instant>,
    connections: u64,
    closed_by_us: bool,
}

impl std::fmt::Debug for ReconnectingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconnectingClient")
            .field("url", &self.url)
            .field("connected", &self.ws.is_some())
            .field("connections", &self.connections)
            .finish()
    }
}

impl ReconnectingClient {
    /// A client for `url`; nothing happens until the first `recv` or `send`.
    pub fn new(url: impl Into<String>, config: ClientConfig, backoff: Backoff) -> Self {
        Self {
            url: url.into(),
            config,
            backoff,
            on_connect: None,
            request: None,
            give_up: None,
            ws: None,
            failures: 0,
            connected_at: None,
            connections: 0,
            closed_by_us: false,
        }
    }

    /// Runs `hook` on every new connection before it is used; an error from it counts as a
    /// failed attempt.
    pub fn on_connect<F>(mut self, hook: F) -> Self
    where
        F: for<'a> FnMut(
                &'a mut WebSocket<ClientStream>,
            ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>
            + Send
            + 'static,
    {
        self.on_connect = Some(Box::new(hook));
        self
    }

    /// Makes the request of each attempt instead of connecting to the URL given to
    /// [`Self::new`] (which then only names the client in logs): `make` gets the number of
    /// consecutive failures so far, so it can put a resume point in the query (the hub's
    /// `since`), a fresh token in a header, or try another server after a failure.
    pub fn request_with<F>(mut self, make: F) -> Self
    where
        F: FnMut(u32) -> http::Request<()> + Send + 'static,
    {
        self.request = Some(Box::new(make));
        self
    }

    /// Ends the client at an attempt whose error `stop` says is final (a `403` that no
    /// retry will change, say), as exhausted `max_attempts` would: that error is returned,
    /// then `recv` returns `None`.
    pub fn give_up_when<F>(mut self, stop: F) -> Self
    where
        F: FnMut(&Error) -> bool + Send + 'static,
    {
        self.give_up = Some(Box::new(stop));
        self
    }

    /// How many connections were established so far.
    pub fn connections(&self) -> u64 {
        self.connections
    }

    /// Whether a connection is up right now.
    pub fn is_connected(&self) -> bool {
        self.ws.is_some()
    }

    /// Connects (waiting out the backoff) unless connected. Fails only when
    /// `max_attempts` consecutive attempts failed, or `give_up_when` says so.
    async fn ensure_connected(&mut self) -> Result<&mut WebSocket<ClientStream>> {
        while self.ws.is_none() {
            if self.failures > 0 || self.connections > 0 {
                let delay = self.backoff.delay(self.failures.saturating_sub(1));
                tracing::info!(url = %self.url, ?delay, attempt = self.failures + 1, "reconnecting");
                tokio::time::sleep(delay).await;
            }
            let request = self.request.as_mut().map(|make| make(self.failures));
            let attempt = async {
                let (mut ws, _) = match request {
                    Some(request) => connect_with(request, &self.config).await?,
                    None => connect_with(&self.url, &self.config).await?,
                };
                if let Some(hook) = self.on_connect.as_mut() {
                    hook(&mut ws).await?;
                }
                Ok::<_, crate::Error>(ws)
            };
            match attempt.await {
                Ok(ws) => {
                    self.ws = Some(ws);
                    self.connections += 1;
                    self.connected_at = Some(Instant::now());
                }
                Err(e) => {
                    self.failures += 1;
                    tracing::warn!(url = %self.url, error = %e, "connect failed");
                    let exhausted = self
                        .backoff
                        .max_attempts
                        .is_some_and(|m| self.failures >= m);
                    if exhausted || self.give_up.as_mut().is_some_and(|stop| stop(&e)) {
                        return Err(e);
                    }
                }
            }
        }
        Ok(self.ws.as_mut().expect("connected above"))
    }

    /// A connection ended: the next attempt backs off unless it had lived a while.
    fn dropped(&mut self) {
        self.ws = None;
        let lived = self
            .connected_at
            .take()
            .map_or(Duration::ZERO, |t| t.elapsed());
        self.failures = if lived >= self.backoff.max {
            0
        } else {
            self.failures + 1
        };
    }

    /// The next message. A lost connection is reported once (`Err`, or the server's
    /// `Close`), and the call after that reconnects. `None` only after [`Self::close`], or
    /// once `max_attempts` is exhausted or an error was final for
    /// [`Self::give_up_when`] (then that error came first).
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        loop {
            if self.closed_by_us && self.ws.is_none() {
                return None;
            }
            let ws = match self.ensure_connected().await {
                Ok(ws) => ws,
                Err(e) => {
                    self.closed_by_us = true;
                    return Some(Err(e));
                }
            };
            match ws.recv().await {
                Some(Ok(m @ Message::Close(_))) => {
                    self.dropped();
                    return Some(Ok(m));
                }
                Some(Ok(m)) => {
                    if m.is_data() {
                        self.failures = 0;
                    }
                    return Some(Ok(m));
                }
                Some(Err(e)) => {
                    self.dropped();
                    return Some(Err(e));
                }
                None => self.dropped(),
            }
        }
    }

    /// Sends on the current connection, connecting first if it is down. An error that
    /// means the connection is gone (I/O, a protocol error, a closed connection) lets go of
    /// it: the next call connects again.
    pub async fn send(&mut self, msg: impl Into<Message>) -> Result<()> {
        let sent = self.ensure_connected().await?.send(msg).await;
        if let Err(Error::Io(_) | Error::Protocol(_) | Error::Usage(UsageError::Closed)) = &sent {
            self.dropped();
        }
        sent
    }

    /// Closes the current connection for good: no reconnect follows. Keep calling
    /// [`Self::recv`] until `None` to finish the closing handshake.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        self.closed_by_us = true;
        match self.ws.as_mut() {
            Some(ws) => ws.close(code, reason).await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_capped_and_jittered() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            factor: 2.0,
            jitter: 0.5,
            max_attempts: None,
        };
        for (n, full) in [
            (0, 100),
            (1, 200),
            (2, 400),
            (3, 800),
            (4, 1000),
            (40, 1000),
        ] {
            for _ in 0..100 {
                let d = b.delay(n).as_millis() as u64;
                assert!(
                    d >= full / 2 && d <= full,
                    "failure {n}: {d} ms not in [{}, {full}]",
                    full / 2
                );
            }
        }
        let none = Backoff { jitter: 0.0, ..b };
        assert_eq!(none.delay(1), Duration::from_millis(200));
    }
}
