//! The hub's HTTP surface: the page, the WebSocket endpoint, long polling and the push API.
//! Paths that are not the hub's are handed back to the server.
//!
//! The routes and their answers are written once, over [`Exchange`]: one request, whatever
//! carries it (our own reader's [`Incoming`], or an axum request in `crate::axum`).

use crate::event::{self, Body, Limits};
use crate::identity::Access;
use crate::poll::{Batch, PollError};
use crate::sse::{self, EventStream};
use crate::subscriptions::Subscriptions;
use crate::ws::Member;
use crate::BadMessage;
use crate::{Hub, JoinError};
use bytes::Bytes;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use wsduplex::auth::{Authenticate as _, Identity, TokenAuth};
use wsduplex::proto::handshake::server::Request;
use wsduplex::server::{Incoming, Negotiated, ServerConfig};

const INDEX: &str = include_str!("../web/index.html");
const SCRIPT: &str = include_str!("../web/chat.js");
const VIEW: &str = include_str!("../web/view.js");
const STYLE: &str = include_str!("../web/chat.css");
/// The JavaScript client (docs/js-client.md): the page imports it, and so may any app; the
/// npm package in `clients/js/` holds a copy, checked by `tests/js_client.rs`.
const CLIENT_JS: &str = include_str!("../web/wsduplex.js");

/// The page may load its own script and style and connect back to this origin, nothing
/// else: no inline script, no third party.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/// Largest request body (a client message or a push), unless `max_data` asks for more.
const MAX_BODY: usize = 64 * 1024;
pub(crate) const BODY_TIMEOUT: Duration = Duration::from_secs(10);
const JSON: &str = "application/json";

/// One request as the hub answers it. Each answer ends the exchange (`respond`, `join`); a
/// refusal of the front door is answered by `admit` itself.
pub(crate) trait Exchange: Sized {
    /// A member that `join` hands back to run (`Infallible` where it runs it itself).
    type Member;
    /// The request head as the front door read it.
    fn request(&self) -> &Request;
    /// Where the hub's paths start on this server (`/hub` in an app that nests it there;
    /// empty at the root): the page's links to its script and style carry it.
    fn prefix(&self) -> &str {
        ""
    }
    /// The front door ([`ServerConfig::admit`]; for a join also
    /// [`ServerConfig::authenticate`]); `None`: refused, and answered.
    async fn admit(self, config: &ServerConfig, join: bool) -> Option<Self>;
    /// Who made the request, once a join's `admit` let it in.
    fn identity(&self) -> Option<&Identity>;
    /// The request body, at most `max` bytes, within [`BODY_TIMEOUT`].
    async fn read_body(&mut self, max: usize) -> wsduplex::Result<Bytes>;
    /// A plain HTTP answer.
    async fn respond(
        self,
        status: u16,
        headers: &[(&str, &str)],
        content_type: &str,
        body: &[u8],
    ) -> wsduplex::Result<()>;
    /// A `200` whose body is `body`'s chunks, written as they come until the stream ends or
    /// the client leaves (Server-Sent Events).
    async fn stream(
        self,
        headers: &[(&str, &str)],
        content_type: &str,
        body: EventStream,
    ) -> wsduplex::Result<()>;
    /// The `101` with `agreed`, then the member: handed back to be run, or run in a task
    /// of its own.
    async fn join(
        self,
        agreed: Negotiated,
        subs: Subscriptions,
        limits: Limits,
        access: Access,
    ) -> wsduplex::Result<Option<Self::Member>>;
}

impl<S: AsyncRead + AsyncWrite + Unpin + 'static> Exchange for Incoming<S> {
    type Member = Member<S>;

    fn request(&self) -> &Request {
        Incoming::request(self)
    }

    async fn admit(self, config: &ServerConfig, join: bool) -> Option<Self> {
        let admitted = if join {
            Incoming::authenticate(self, config).await
        } else {
            Incoming::admit(self, config, None).await
        };
        admitted.ok()
    }

    fn identity(&self) -> Option<&Identity> {
        Incoming::identity(self)
    }

    async fn read_body(&mut self, max: usize) -> wsduplex::Result<Bytes> {
        Incoming::read_body(self, max, BODY_TIMEOUT).await
    }

    async fn respond(
        self,
        status: u16,
        headers: &[(&str, &str)],
        content_type: &str,
        body: &[u8],
    ) -> wsduplex::Result<()> {
        Incoming::respond(self, status, headers, content_type, body).await
    }

    async fn stream(
        self,
        headers: &[(&str, &str)],
        content_type: &str,
        mut body: EventStream,
    ) -> wsduplex::Result<()> {
        use futures_util::StreamExt as _;
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        // Over HTTP/1.1 the end of the request side is the client leaving; over HTTP/2 a
        // GET's request ends at once, and a reset shows in the writes.
        let read_end_is_goodbye = !self.is_http2();
        let mut io = self.respond_streamed(200, headers, content_type).await?;
        let mut reading = true;
        let mut sink = [0u8; 256];
        loop {
            tokio::select! {
                chunk = body.next() => match chunk {
                    Some(chunk) => {
                        io.write_all(&chunk).await?;
                        io.flush().await?;
                    }
                    None => break,
                },
                read = io.read(&mut sink), if reading => match read {
                    Ok(0) | Err(_) if read_end_is_goodbye => break,
                    Ok(0) | Err(_) => reading = false,
                    Ok(_) => {}
                },
            }
        }
        let _ = io.shutdown().await;
        Ok(())
    }

    async fn join(
        self,
        agreed: Negotiated,
        subs: Subscriptions,
        limits: Limits,
        access: Access,
    ) -> wsduplex::Result<Option<Member<S>>> {
        let close_timeout = agreed.socket.close_timeout;
        let running = subs.hub().member_running();
        let ws = self.accept_negotiated(agreed).await?;
        Ok(Some(Member::new(
            ws,
            subs,
            limits,
            close_timeout,
            access,
            running,
        )))
    }
}

/// What [`Hub::accept`] did with a request.
// Returned once, straight into the caller's match: boxing the member would cost an
// allocation per member.
#[allow(clippy::large_enum_variant)]
pub enum Accepted<S> {
    /// Answered (or refused, with its answer): nothing left to do.
    Answered,
    /// Not one of the hub's paths: the request, untouched.
    NotMine(Incoming<S>),
    /// A WebSocket member, upgraded and seated in its room: run it.
    Member(Member<S>),
}

impl Hub {
    /// A member's frames and messages: a chat message is at most max_text characters (4
    /// bytes each, 6 escaped), or max_data bytes of data (6 bytes each at worst once escaped
    /// in a string); anything far larger is not a chat message.
    pub(crate) fn limit_member(&self, protocol: &mut wsduplex::proto::Config) {
        let limits = self.limits();
        let text = limits.max_text as u64 * 6;
        let max = (text.max(limits.max_data as u64 * 6) + 1024).max(64 * 1024);
        protocol.max_message_size = protocol.max_message_size.min(max);
        protocol.max_frame_size = protocol.max_frame_size.min(max);
    }
}

/// A hub route, decided from the method and path alone.
pub(crate) enum Route<'a> {
    Asset(&'static str, &'static str),
    Chat(&'a str),
    PollOpen(&'a str),
    Sse(&'a str),
    PollRead(&'a str),
    PollSend(&'a str),
    PollClose(&'a str),
    Push(&'a str),
    Cut(&'a str, &'a str),
    Room(&'a str),
    WrongMethod(&'static str),
}

pub(crate) fn route<'a>(method: &str, path: &'a str) -> Option<Route<'a>> {
    let get = method == "GET" || method == "HEAD";
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let r = match (segments.as_slice(), method) {
        ([""] | ["index.html"], _) if get => Route::Asset("text/html; charset=utf-8", INDEX),
        (["chat.js"], _) if get => Route::Asset("text/javascript; charset=utf-8", SCRIPT),
        (["view.js"], _) if get => Route::Asset("text/javascript; charset=utf-8", VIEW),
        (["chat.css"], _) if get => Route::Asset("text/css; charset=utf-8", STYLE),
        (["wsduplex.js"], _) if get => Route::Asset("text/javascript; charset=utf-8", CLIENT_JS),
        ([""] | ["index.html"] | ["chat.js"] | ["view.js"] | ["chat.css"] | ["wsduplex.js"], _) => {
            Route::WrongMethod("GET, HEAD")
        }
        (["chat"], _) => Route::Chat("lobby"),
        (["chat", room], _) => Route::Chat(room),
        (["poll"], "POST") => Route::PollOpen("lobby"),
        (["poll", room], "POST") => Route::PollOpen(room),
        (["poll"] | ["poll", _], _) => Route::WrongMethod("POST"),
        (["sse"], "GET") => Route::Sse("lobby"),
        (["sse", room], "GET") => Route::Sse(room),
        (["sse"] | ["sse", _], _) => Route::WrongMethod("GET"),
        (["poll", "session", id], _) if get => Route::PollRead(id),
        (["poll", "session", id], "POST") => Route::PollSend(id),
        (["poll", "session", id], "DELETE") => Route::PollClose(id),
        (["poll", "session", _], _) => Route::WrongMethod("GET, POST, DELETE"),
        (["api", "rooms", room, "messages"], "POST") => Route::Push(room),
        (["api", "rooms", _, "messages"], _) => Route::WrongMethod("POST"),
        (["api", "rooms", room, "members", name], "DELETE") => Route::Cut(room, name),
        (["api", "rooms", _, "members", _], _) => Route::WrongMethod("DELETE"),
        (["api", "rooms", room], _) if get => Route::Room(room),
        (["api", "rooms", _], _) => Route::WrongMethod("GET, HEAD"),
        _ => return None,
    };
    Some(r)
}

/// The page with its links under `prefix` (its script finds the hub's paths from its own
/// address).
fn index_under(prefix: &str) -> String {
    INDEX
        .replace(
            r#"href="chat.css""#,
            &format!(r#"href="{prefix}/chat.css""#),
        )
        .replace(r#"src="chat.js""#, &format!(r#"src="{prefix}/chat.js""#))
        .replace(r#"src="view.js""#, &format!(r#"src="{prefix}/view.js""#))
}

/// The query parameters the hub reads.
struct Query {
    name: Option<String>,
    since: Option<u64>,
    cursor: Option<u64>,
}

fn query(target: &str) -> Result<Query, &'static str> {
    let mut q = Query {
        name: None,
        since: None,
        cursor: None,
    };
    let Some((_, raw)) = target.split_once('?') else {
        return Ok(q);
    };
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        match &*k {
            "name" => q.name = Some(v.into_owned()),
            "since" => q.since = Some(v.parse().map_err(|_| "since must be a message id")?),
            "cursor" => q.cursor = Some(v.parse().map_err(|_| "cursor must be a number")?),
            _ => {}
        }
    }
    Ok(q)
}

fn decode_segment(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// `{"cursor":K,"events":[...]}` (plus the session id when opening), events spliced in as
/// they were encoded.
fn batch_json(session: Option<&str>, (cursor, events): &Batch) -> Vec<u8> {
    let mut out = String::with_capacity(64 + events.iter().map(|e| e.len() + 1).sum::<usize>());
    out.push('{');
    if let Some(id) = session {
        out.push_str(&format!(r#""session":"{id}","#));
    }
    out.push_str(&format!(r#""cursor":{cursor},"events":["#));
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(e.as_str());
    }
    out.push_str("]}");
    out.into_bytes()
}

fn error_json(error: &str, message: &str) -> Vec<u8> {
    event::error(error, message).as_bytes().to_vec()
}

impl Hub {
    /// Largest request body: room for `max_data` bytes of data, escaped at worst.
    fn max_body(&self) -> usize {
        MAX_BODY.max(self.inner.config.max_data.saturating_mul(6) + 1024)
    }

    /// Whether `path` (without its query) is one of the hub's, whatever the method: what
    /// [`Hub::serve`] answers rather than hands back.
    pub fn owns(path: &str) -> bool {
        route("GET", path).is_some()
    }

    /// Serves `incoming` if its path is the hub's: `/` (the chat page), `/chat.js`,
    /// `/chat.css`, `/wsduplex.js` (the JavaScript client), `/chat[/ROOM]` (WebSocket),
    /// `/poll/...` (long polling), `/api/rooms/...` (push API). A WebSocket member is served
    /// until it leaves. Any other path is handed back.
    ///
    /// The server's front door applies (see [`wsduplex::server::admission`]): the Origin
    /// allow-list to every request it has not admitted yet, and [`ServerConfig::auth`] with
    /// the same-origin rule for cookies to joining (`/chat`, opening a `/poll` session).
    pub async fn serve<S>(
        &self,
        incoming: Incoming<S>,
        config: &ServerConfig,
    ) -> Option<Incoming<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        match self.accept(incoming, config).await {
            Accepted::NotMine(incoming) => Some(incoming),
            Accepted::Answered => None,
            Accepted::Member(member) => {
                if let Err(e) = member.run().await {
                    tracing::debug!("hub member: {e}");
                }
                None
            }
        }
    }

    /// [`Hub::serve`] up to a WebSocket member, which is handed back to be run
    /// ([`Member::run`]), in a task of its own if the caller likes: the task then holds the
    /// member alone (about 1.8 KB with a `TcpStream`), not the request's stages before it
    /// (about 8 KB in `wsduplex serve`); or parked without a task once idle
    /// ([`Member::run_or_idle`], [`Member::park`]).
    pub async fn accept<S>(&self, incoming: Incoming<S>, config: &ServerConfig) -> Accepted<S>
    where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let target = incoming.path().to_string();
        let path = target.split('?').next().unwrap_or_default();
        let method = incoming.request().method().to_string();
        let Some(route) = route(&method, path) else {
            return Accepted::NotMine(incoming);
        };
        let mut member = None;
        if let Err(e) = self
            .answer(incoming, route, &target, config, &mut member)
            .await
        {
            tracing::debug!("{method} {path}: {e}");
        }
        match member {
            Some(member) => Accepted::Member(member),
            None => Accepted::Answered,
        }
    }

    /// Answers a request of the hub's; a member `join` hands back goes to `member`.
    pub(crate) async fn answer<E: Exchange>(
        &self,
        incoming: E,
        route: Route<'_>,
        target: &str,
        config: &ServerConfig,
        member: &mut Option<E::Member>,
    ) -> wsduplex::Result<()> {
        // Joining needs what the server asks of any WebSocket (its auth hook); a session id,
        // once issued, is its own credential. Refusals are answered by the front door.
        let joins = matches!(route, Route::Chat(_) | Route::PollOpen(_) | Route::Sse(_));
        let Some(mut incoming) = incoming.admit(config, joins).await else {
            return Ok(());
        };
        if incoming.request().is_upgrade() && !matches!(route, Route::Chat(_)) {
            // Not a 200 with the page: over HTTP/2 a 2xx to an extended CONNECT opens the
            // WebSocket (RFC 8441 §5), and the client would read the page as frames.
            let body = b"no websocket endpoint here; try /chat/ROOM\n";
            return incoming.respond(404, &[], "text/plain", body).await;
        }
        let q = match query(target) {
            Ok(q) => q,
            Err(why) => return respond_error(incoming, 400, "bad_request", why).await,
        };
        let access = Access::new(
            incoming.identity().cloned().unwrap_or_default(),
            config.auth.clone(),
        );
        // A session whose member has an identity stays on the node that checked it: another
        // node answers 404, and the client opens a session there with its token and `since`.
        let adopt = config.auth.as_ref().is_none_or(|hook| !hook.identifies());
        if let Route::Chat(room) | Route::PollOpen(room) | Route::Sse(room) = route {
            if !access.may_read(room) {
                let why = "you may not read this room";
                return respond_error(incoming, 403, "forbidden", why).await;
            }
        }
        match route {
            Route::Asset(content_type, body) => {
                let headers = [
                    ("Content-Security-Policy", CSP),
                    ("X-Content-Type-Options", "nosniff"),
                    ("Referrer-Policy", "no-referrer"),
                    ("Cache-Control", "no-cache"),
                    // The client module may be imported by pages of other origins (module
                    // scripts are fetched with CORS); it is public, like the page.
                    ("Access-Control-Allow-Origin", "*"),
                ];
                let headers = match body == CLIENT_JS {
                    true => &headers[..],
                    false => &headers[..4],
                };
                let page;
                let body = match incoming.prefix() {
                    prefix if body == INDEX && !prefix.is_empty() => {
                        page = index_under(prefix);
                        &page
                    }
                    _ => body,
                };
                incoming
                    .respond(200, headers, content_type, body.as_bytes())
                    .await
            }
            Route::WrongMethod(allow) => {
                let headers = [("Allow", allow)];
                incoming
                    .respond(405, &headers, "text/plain", b"method not allowed\n")
                    .await
            }
            Route::Chat(room) => {
                if !incoming.request().is_upgrade() {
                    let headers = [("Upgrade", "websocket")];
                    let body = b"a WebSocket endpoint: open the page at / or connect with ws://\n";
                    return incoming.respond(426, &headers, "text/plain", body).await;
                }
                let name = access.name(q.name.as_deref());
                let first = match self.join(room, name, q.since).await {
                    Ok(m) => m,
                    Err(e) => {
                        let body = format!("{e}\n");
                        let retry: &[(&str, &str)] = match self.is_frozen() {
                            true => &[("Retry-After", "1")],
                            false => &[],
                        };
                        return incoming
                            .respond(e.status(), retry, "text/plain", body.as_bytes())
                            .await;
                    }
                };
                let mut agreed = config.negotiate(incoming.request());
                // Members speak the hub's own JSON events, not a subprotocol.
                agreed.subprotocol = None;
                self.limit_member(&mut agreed.socket.protocol);
                let limits = self.limits();
                let subs = Subscriptions::new(self.clone(), first, name);
                *member = incoming.join(agreed, subs, limits, access).await?;
                Ok(())
            }
            Route::PollOpen(room) => {
                let name = access.name(q.name.as_deref()).to_string();
                match self.poll_open(room, &name, q.since, access).await {
                    Ok((id, batch)) => {
                        let body = batch_json(Some(&id), &batch);
                        incoming.respond(200, &no_store(), JSON, &body).await
                    }
                    Err(e) => respond_poll_error(incoming, e, self.is_frozen()).await,
                }
            }
            Route::Sse(room) => {
                let name = access.name(q.name.as_deref()).to_string();
                let since = sse::resume_from(incoming.request(), q.since);
                match self.sse_open(room, &name, since, access).await {
                    Ok((id, first)) => {
                        // No caching, and no buffering in nginx (it would hold events back).
                        let headers = [("Cache-Control", "no-store"), ("X-Accel-Buffering", "no")];
                        let body = sse::stream(self.clone(), id, room.to_string(), first);
                        incoming.stream(&headers, "text/event-stream", body).await
                    }
                    Err(e) => respond_poll_error(incoming, e, self.is_frozen()).await,
                }
            }
            Route::PollRead(id) => match self.poll_read(id, q.cursor.unwrap_or(0), adopt).await {
                Ok(batch) => {
                    let body = batch_json(None, &batch);
                    incoming.respond(200, &no_store(), JSON, &body).await
                }
                Err(e) => respond_poll_error(incoming, e, self.is_frozen()).await,
            },
            Route::PollSend(id) => {
                let body = match incoming.read_body(self.max_body()).await {
                    Ok(b) => b,
                    Err(e) => return respond_body_error(incoming, e).await,
                };
                match self.poll_send(id, &body, adopt, config.auth.clone()).await {
                    Ok(None) => incoming.respond(202, &[], JSON, br#"{"ok":true}"#).await,
                    Ok(Some(event)) => incoming.respond(200, &[], JSON, event.as_bytes()).await,
                    Err(e) => respond_poll_error(incoming, e, self.is_frozen()).await,
                }
            }
            Route::PollClose(id) => match self.poll_close(id).await {
                Ok(()) => incoming.respond(204, &[], JSON, b"").await,
                Err(e) => respond_poll_error(incoming, e, self.is_frozen()).await,
            },
            Route::Push(room) => {
                if let Some(refused) = self.check_token(incoming.request()) {
                    return refused.send(incoming).await;
                }
                let body = match incoming.read_body(self.max_body()).await {
                    Ok(b) => b,
                    Err(e) => return respond_body_error(incoming, e).await,
                };
                #[derive(serde::Deserialize)]
                struct Push {
                    text: Option<String>,
                    data: Option<serde_json::Value>,
                    name: Option<String>,
                }
                let why =
                    r#"expected {"text":"..."} or {"data":ANY}, and "name":"optional sender""#;
                let push: Push = match serde_json::from_slice(&body) {
                    Ok(p) => p,
                    Err(_) => return respond_error(incoming, 400, "bad_message", why).await,
                };
                let payload = match event::check_payload(push.text, push.data, self.limits()) {
                    Ok(p) => p,
                    Err(BadMessage::Malformed) => {
                        return respond_error(incoming, 400, "bad_message", why).await
                    }
                    Err(bad) => {
                        return respond_error(incoming, 400, bad.code(), &bad.to_string()).await
                    }
                };
                let name = push.name.as_deref().unwrap_or("api");
                let body: Body<'_> = payload.body();
                match self.publish_body(room, name, body).await {
                    Ok(id) => {
                        let body = format!(r#"{{"id":{id}}}"#);
                        incoming.respond(201, &[], JSON, body.as_bytes()).await
                    }
                    Err(e) => respond_join_error(incoming, e, self.is_frozen()).await,
                }
            }
            Route::Cut(room, name) => {
                if let Some(refused) = self.check_token(incoming.request()) {
                    return refused.send(incoming).await;
                }
                match self.cut(room, &decode_segment(name)).await {
                    Ok(0) => respond_error(incoming, 404, "unknown_member", "no such member").await,
                    Ok(_) => incoming.respond(204, &[], JSON, b"").await,
                    Err(e) => respond_join_error(incoming, e, self.is_frozen()).await,
                }
            }
            Route::Room(room) => {
                if let Some(refused) = self.check_token(incoming.request()) {
                    return refused.send(incoming).await;
                }
                match self.members(room).await {
                    Err(e) => respond_join_error(incoming, e, self.is_frozen()).await,
                    Ok(Some((members, last_id))) => {
                        let body = serde_json::json!({
                            "room": room, "members": members, "last_id": last_id,
                        });
                        incoming
                            .respond(200, &no_store(), JSON, body.to_string().as_bytes())
                            .await
                    }
                    Ok(None) => respond_error(incoming, 404, "unknown_room", "no such room").await,
                }
            }
        }
    }

    /// `None` if the request carries the API token as `Authorization: Bearer` (never a
    /// cookie: a page must not push with its user's credentials); else why not. Without a
    /// configured token the API does not exist (`404`).
    fn check_token(&self, request: &Request) -> Option<Refused> {
        let Some(token) = &self.inner.config.api_token else {
            return Some(Refused::Off);
        };
        match TokenAuth::new([token]).bearer_only().check(request) {
            Ok(()) => None,
            Err(_) => Some(Refused::Token),
        }
    }
}

enum Refused {
    Off,
    Token,
}

impl Refused {
    async fn send<E: Exchange>(self, incoming: E) -> wsduplex::Result<()> {
        match self {
            Self::Off => {
                let why = "the push API is off (start the server with --api-token)";
                respond_error(incoming, 404, "api_off", why).await
            }
            Self::Token => {
                let body = error_json("unauthorized", "missing or wrong bearer token");
                let headers = [("WWW-Authenticate", r#"Bearer realm="wsduplex""#)];
                incoming.respond(401, &headers, JSON, &body).await
            }
        }
    }
}

fn no_store() -> [(&'static str, &'static str); 1] {
    [("Cache-Control", "no-store")]
}

async fn respond_error<E: Exchange>(
    incoming: E,
    status: u16,
    error: &str,
    message: &str,
) -> wsduplex::Result<()> {
    let body = error_json(error, message);
    incoming.respond(status, &[], JSON, &body).await
}

/// `frozen`: see [`respond_poll_error`]; a join refused then is a `503 handing_over`.
async fn respond_join_error<E: Exchange>(
    incoming: E,
    e: JoinError,
    frozen: bool,
) -> wsduplex::Result<()> {
    if frozen && e == JoinError::ShuttingDown {
        return respond_handing_over(incoming).await;
    }
    let code = match e {
        JoinError::Name(crate::NameError::Room) => "bad_room",
        JoinError::Name(_) => "bad_name",
        JoinError::TooManyRooms => "too_many_rooms",
        JoinError::Unavailable => "unavailable",
        _ => "shutting_down",
    };
    respond_error(incoming, e.status(), code, &e.to_string()).await
}

/// `frozen`: the hub is being handed over (a refusal then asks the client to come back).
async fn respond_poll_error<E: Exchange>(
    incoming: E,
    e: PollError,
    frozen: bool,
) -> wsduplex::Result<()> {
    match e {
        PollError::UnknownSession => {
            let why = "no such session (it expired or ended): open a new one with since";
            respond_error(incoming, 404, "unknown_session", why).await
        }
        PollError::Join(e) => respond_join_error(incoming, e, frozen).await,
        PollError::TooManySessions => {
            respond_error(incoming, 503, "too_many_sessions", "too many sessions").await
        }
        PollError::Bad(bad) => {
            let body = bad.to_event();
            incoming.respond(400, &[], JSON, body.as_bytes()).await
        }
        PollError::Expired => {
            let why = "the token expired: open a new session with a new token and since";
            let body = error_json("token_expired", why);
            let headers = [(
                "WWW-Authenticate",
                r#"Bearer realm="wsduplex", error="invalid_token""#,
            )];
            incoming.respond(401, &headers, JSON, &body).await
        }
        PollError::Event(status, event) => {
            incoming.respond(status, &[], JSON, event.as_bytes()).await
        }
        PollError::HandingOver => respond_handing_over(incoming).await,
    }
}

/// A `503` while the hub is handed to a new process: the client sends the request again,
/// and reaches the new one.
async fn respond_handing_over<E: Exchange>(incoming: E) -> wsduplex::Result<()> {
    let why = "the server is handing over to a new process: send the request again";
    let body = error_json("handing_over", why);
    incoming
        .respond(503, &[("Retry-After", "1")], JSON, &body)
        .await
}

async fn respond_body_error<E: Exchange>(incoming: E, e: wsduplex::Error) -> wsduplex::Result<()> {
    match e {
        wsduplex::Error::Body(b) => {
            respond_error(incoming, b.status(), "bad_body", &b.to_string()).await
        }
        other => Err(other),
    }
}
