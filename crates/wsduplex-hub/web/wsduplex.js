// wsduplex.js: the JavaScript client of the wsduplex hub (docs/hub.md, docs/js-client.md).
//
// One ES module, no build step, no dependency: served by the hub at /wsduplex.js and
// published as the npm package in clients/js/ (a copy of this file, checked by a test). It
// runs in browsers and in Node 18+ (give it a WebSocket class, such as `ws`'s).
//
// A Hub is one connection that follows any number of rooms: it opens the first room's path
// (/chat/ROOM over a WebSocket, /sse/ROOM, /poll/ROOM) and subscribes to the others over it.
// It handles, so that its user does not have to: transport fallback (a WebSocket that never
// opened here gives way at once to Server-Sent Events, then to long polling); reconnects
// with exponential backoff and full jitter, each room resumed with `since` and messages
// deduplicated by id (each delivered once, in order); a room whose ids went back (a server
// restarted without Redis: `reset`, and the room is read again); 401 (no retry loop:
// `unauthorized`, then `refresh(token)`); a request refused for now (`503` with
// `Retry-After`: a hub handing over to a new process) sent again after the delay; the
// back/forward cache (closed on `pagehide`, resumed on `pageshow`).

/** docs/hub.md: the close code of a token that expired on an open connection. */
const CLOSE_TOKEN_EXPIRED = 4001;
const CLOSE_TOO_SLOW = 4008;
const CLOSE_GOING_AWAY = 1001;
const ROOM_RE = /^[A-Za-z0-9_.-]{1,64}$/;
/** docs/hub.md: the errors of a subscribe that retrying cannot turn into a welcome. */
const REFUSALS = ['forbidden', 'bad_room', 'too_many_subscriptions', 'too_many_rooms'];
/** Every transport, in the order tried. */
export const TRANSPORTS = Object.freeze(['websocket', 'sse', 'longpoll']);
const DEFAULTS = {
  backoffStart: 250,
  backoffCap: 5000,
  // A WebSocket still CONNECTING after this long counts as one that failed to open.
  openTimeout: 8000,
  // Above the server's 25 s long-poll wait, so that only a dead request hits it.
  pollTimeout: 40000,
};
/** Ids kept per room for deduplication; older ones are below the resume point anyway. */
const SEEN_MAX = 4096;
const WS_OPEN = 1;
const WS_CLOSING = 2;

/** Exponential backoff with full jitter: uniform in [0, min(cap, start * 2^attempt)). */
export function backoff(attempt, start = DEFAULTS.backoffStart, cap = DEFAULTS.backoffCap) {
  return Math.random() * Math.min(cap, start * 2 ** Math.min(attempt, 20));
}

/** The reason in a refusal: a line of text, or an error event's `message` (JSON). */
function reasonOf(body) {
  const text = String(body || '').trim();
  try {
    const v = JSON.parse(text);
    if (v && typeof v.message === 'string') return v.message;
    if (v && typeof v.error === 'string') return v.error;
  } catch {
    // plain text
  }
  return text || 'refused by the server';
}

/** The longest `Retry-After` honoured, in ms: a longer one is the server's mistake. */
const RETRY_AFTER_MAX = 30_000;
/** What `_postUntilTaken` returns when its connection ended while the server refused. */
const LATER = Symbol('later');

/** How long to wait before sending a refused request again, in ms, or null when it is not
 * to be sent again: a `503` with `Retry-After` (seconds or a date; docs/hub.md: a hub
 * handing over to a new process answers `503 handing_over` with `Retry-After: 1`), or a
 * `503 handing_over` whose header a cross-origin fetch hides. */
async function retryAfter(response) {
  if (!response || response.status !== 503) return null;
  const header = response.headers && response.headers.get ? response.headers.get('Retry-After') : null;
  let ms = null;
  if (header !== null && header.trim() !== '') {
    const seconds = Number(header);
    ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - Date.now();
  } else {
    const event = await response.clone().json().catch(() => null);
    if (event && event.error === 'handing_over') ms = 1000;
  }
  if (ms === null || !Number.isFinite(ms)) return null;
  return Math.min(Math.max(ms, 0), RETRY_AFTER_MAX);
}

/** Listeners by event name; a listener that throws does not stop the others, nor the hub. */
class Emitter {
  constructor() {
    this._listeners = new Map();
  }

  /** Calls `fn` on each `type` event; returns this. */
  on(type, fn) {
    if (typeof fn !== 'function') throw new TypeError('a listener is a function');
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return this;
  }

  /** Removes a listener added with `on`; returns this. */
  off(type, fn) {
    this._listeners.get(type)?.delete(fn);
    return this;
  }

  _emit(type, ...args) {
    for (const fn of [...(this._listeners.get(type) || [])]) {
      try {
        fn(...args);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }
}

/** One room the hub follows. Events: `welcome`, `message`, `data`, `presence`, `reset`,
 * `error`, `refused` (the room cannot be joined; the subscription is over). */
export class Subscription extends Emitter {
  constructor(hub, room, since) {
    super();
    this.hub = hub;
    this.room = room;
    /** The name the server gave us in this room (maybe with a suffix); null before the welcome. */
    this.name = null;
    /** The room's members, as the last welcome, `joined` and `left` said. */
    this.members = [];
    /** The highest id seen: the `since` of the next resume. */
    this.lastId = since ?? 0;
    this.resume = since !== undefined && since !== null;
    this.active = true;
    this._seen = new Set();
    this._resetting = false;
  }

  /** Sends `value` to this room: a string as chat text, anything else as `data`. */
  publish(value) {
    this.hub.publish(this.room, value);
  }

  /** Leaves the room; no event of it comes after. */
  unsubscribe() {
    this.hub._unsubscribe(this);
  }

  _message(m) {
    if (typeof m.id !== 'number' || this._seen.has(m.id)) return;
    this._seen.add(m.id);
    if (this._seen.size > SEEN_MAX) this._seen.delete(this._seen.values().next().value);
    // A message delivered by one node alone while Redis was unreachable has an id above
    // the shared ones (docs/hub.md): resuming from it would skip the shared messages.
    if (!m.local) this.lastId = Math.max(this.lastId, m.id);
    this._emit('message', m);
    if ('data' in m) this._emit('data', m.data, m);
  }

  _clear() {
    this._seen.clear();
    this.lastId = 0;
    this.resume = false;
  }
}

/**
 * A connection to a hub. `url` is where the hub's paths start (`https://host/`, or
 * `https://host/hub/` for a hub nested under a prefix; `ws:`/`wss:` work too); in a page,
 * it defaults to where this module was loaded from.
 *
 * Events: `state` ({state, transport}), `warning` (text: what went wrong and what is done
 * about it), `error` (an error event naming no room), `unauthorized` (reason: give a token
 * with `refresh`), `refreshed` (expiry in seconds, or null).
 */
export class Hub extends Emitter {
  constructor(url, options = {}) {
    super();
    const here = typeof import.meta !== 'undefined' && /^https?:/.test(import.meta.url) ? new URL('.', import.meta.url) : null;
    const base = new URL(url ?? here ?? '', here ?? undefined);
    if (!base.pathname.endsWith('/')) base.pathname += '/';
    base.search = '';
    base.hash = '';
    if (base.protocol === 'ws:' || base.protocol === 'wss:') base.protocol = base.protocol === 'wss:' ? 'https:' : 'http:';
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new TypeError(`not a hub URL: ${url}`);
    this.url = base.href;
    this.name = options.name ?? null;
    this.token = options.token ?? null;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this._fetch = options.fetch ?? (globalThis.fetch ? globalThis.fetch.bind(globalThis) : undefined);
    this._EventSource = options.EventSource ?? globalThis.EventSource;
    this._timing = { ...DEFAULTS, ...options };
    const asked = options.transports ?? TRANSPORTS;
    const usable = {
      websocket: typeof this._WebSocket === 'function',
      sse: typeof this._EventSource === 'function' && typeof this._fetch === 'function',
      longpoll: typeof this._fetch === 'function',
    };
    for (const t of asked) if (!TRANSPORTS.includes(t)) throw new TypeError(`unknown transport ${t}`);
    this.transports = asked.filter((t) => usable[t]);
    if (this.transports.length === 0) {
      throw new TypeError(`no usable transport among ${asked.join(', ')}: pass a WebSocket class or a fetch`);
    }

    /** idle, connecting, open, reconnecting, closed */
    this.state = 'idle';
    this.subscriptions = new Map();
    this._gen = 0; // bumped by every connection attempt: callbacks of older ones are ignored
    this._attempt = 0; // consecutive failures, for the backoff
    this._conn = null;
    this._retryTimer = null;
    this._stopped = true; // not connected, and not trying to be
    this._closed = false; // close() was called
    this._needToken = false;
    this._pausedByPage = false; // disconnected on pagehide: resumed on pageshow
    this._welcomedOnce = false;
    this._everOpened = new Set(); // transports that opened once here
    this._blocked = new Set(); // transports that failed before they ever opened
    this._outbox = []; // { room, body } not yet handed to a live connection
    this._posting = false;
    this._sendFailures = 0;

    this._pagehide = () => {
      if (this._stopped) return;
      this.disconnect();
      this._pausedByPage = true;
    };
    this._pageshow = (e) => {
      if (e.persisted && this._pausedByPage) this.connect();
    };
    if (options.lifecycle !== false && typeof window !== 'undefined' && window.addEventListener) {
      window.addEventListener('pagehide', this._pagehide);
      window.addEventListener('pageshow', this._pageshow);
    }
  }

  /** The transport in use, or tried next. */
  get transport() {
    return this.transports.find((t) => !this._blocked.has(t)) ?? this.transports[this.transports.length - 1];
  }

  /** Follows `room`; `since`: deliver the messages after that id (else the room's recent
   * history). Connects if the hub is not connected. */
  subscribe(room, { since } = {}) {
    if (this._closed) throw new Error('the hub is closed');
    if (typeof room !== 'string' || !ROOM_RE.test(room)) {
      throw new TypeError(`a room is 1-64 characters: letters, digits, _ - . (got ${JSON.stringify(room)})`);
    }
    if (since !== undefined && !(Number.isInteger(since) && since >= 0)) throw new TypeError('since is an integer >= 0');
    if (this.subscriptions.has(room)) throw new Error(`already subscribed to ${room}`);
    const sub = new Subscription(this, room, since);
    this.subscriptions.set(room, sub);
    if (this._conn && this._conn.live) this._sendControl(this._conn, this._subscribeMessage(sub));
    else if (this._stopped && !this._needToken && !this._pausedByPage) this.connect();
    return sub;
  }

  /** Sends `value` to `room` (which the hub must follow): a string as chat text, any other
   * JSON value as `data`. Queued while disconnected; sent once that room is open again. */
  publish(room, value) {
    if (!this.subscriptions.has(room)) throw new Error(`not subscribed to ${room}`);
    if (value === undefined || value === null) throw new TypeError('nothing to publish');
    const body = typeof value === 'string' ? { type: 'message', room, text: value } : { type: 'message', room, data: value };
    this._outbox.push({ room, body: JSON.stringify(body) });
    this._flush();
  }

  /** A new access token: sent at once on an open connection (`refresh`), used by every
   * later connect, and it resumes a hub that stopped on `unauthorized`. */
  refresh(token) {
    this.token = token;
    if (this._needToken) {
      this._needToken = false;
      // A WebSocket refused for the token looked like a blocked upgrade: try it first again.
      this._blocked.delete('websocket');
      this._everOpened.delete('websocket');
      this.connect();
    } else if (this._conn && this._conn.live) {
      this._sendControl(this._conn, { type: 'refresh', token });
    }
  }

  /** Connects (again, after `disconnect`), resuming every room with `since`. */
  connect() {
    if (this._closed) throw new Error('the hub is closed');
    if (!this._stopped) return;
    this._stopped = false;
    this._pausedByPage = false;
    this._attempt = 0;
    this._setState(this._welcomedOnce ? 'reconnecting' : 'connecting');
    this._open();
  }

  /** Closes the connection but keeps the rooms and where each was: `connect` resumes. */
  disconnect() {
    if (this._stopped) return;
    this._stopped = true;
    this._drop(true);
    this._setState('closed');
  }

  /** Leaves every room and closes for good. */
  close() {
    this.disconnect();
    this._closed = true;
    for (const sub of this.subscriptions.values()) sub.active = false;
    this.subscriptions.clear();
    this._outbox = [];
    if (typeof window !== 'undefined' && window.removeEventListener) {
      window.removeEventListener('pagehide', this._pagehide);
      window.removeEventListener('pageshow', this._pageshow);
    }
  }

  // ---- connections ---------------------------------------------------------------------

  _setState(state) {
    const transport = this.transport;
    if (state === this.state && transport === this._shownTransport) return;
    this.state = state;
    this._shownTransport = transport;
    this._emit('state', { state, transport });
  }

  /** Ends the current connection; `goodbye`: tell the server (a session is deleted). */
  _drop(goodbye) {
    this._gen++;
    clearTimeout(this._retryTimer);
    const conn = this._conn;
    this._conn = null;
    if (!conn) return;
    conn.live = false;
    // A socket or stream whose constructor threw was never set.
    if (conn.kind === 'websocket') {
      if (conn.ws && conn.ws.readyState < WS_CLOSING) conn.ws.close(1000, goodbye ? 'bye' : undefined);
      return;
    }
    if (conn.kind === 'sse') conn.es?.close();
    else conn.abort.abort();
    if (goodbye && conn.sid) {
      this._fetch(this._http(`poll/session/${conn.sid}`), { method: 'DELETE', keepalive: true, headers: this._headers() }).catch(() => {});
    }
  }

  /** The room whose path the next connection opens: the first one followed. */
  get _firstRoom() {
    return this.subscriptions.keys().next().value;
  }

  _open() {
    if (this._stopped) return;
    const room = this._firstRoom;
    if (room === undefined) {
      // Nothing to follow: connect again with the next subscribe.
      this._stopped = true;
      this._setState('idle');
      return;
    }
    const g = ++this._gen;
    this._setState(this.state);
    const conn = { kind: this.transport, room, g, live: false, ready: new Set() };
    this._conn = conn;
    for (const sub of this.subscriptions.values()) sub._resetting = false;
    if (conn.kind === 'websocket') this._openWebSocket(conn);
    else if (conn.kind === 'sse') this._openSse(conn);
    else this._openLongPoll(conn);
  }

  _backoff(attempt) {
    return backoff(attempt, this._timing.backoffStart, this._timing.backoffCap);
  }
  _http(path) {
    return new URL(path, this.url).href;
  }
  _headers(extra = {}) {
    return this.token ? { ...extra, Authorization: `Bearer ${this.token}` } : extra;
  }

  /** The query of a join. The token goes in it where no header can be set (a WebSocket in
   * a browser, an EventSource); fetches carry it as a header. */
  _query(room, withToken) {
    const q = new URLSearchParams();
    if (this.name !== null) q.set('name', this.name);
    const sub = this.subscriptions.get(room);
    if (sub && sub.resume) q.set('since', String(sub.lastId));
    if (withToken && this.token) q.set('access_token', this.token);
    const s = q.toString();
    return s ? `?${s}` : '';
  }

  _subscribeMessage(sub) {
    return sub.resume ? { type: 'subscribe', room: sub.room, since: sub.lastId } : { type: 'subscribe', room: sub.room };
  }

  /** The connection opened: subscribe to every room but the one of its path. */
  _opened(conn) {
    conn.live = true;
    this._everOpened.add(conn.kind);
    for (const sub of this.subscriptions.values()) {
      if (sub.room !== conn.room) this._sendControl(conn, this._subscribeMessage(sub));
    }
  }

  /** Connection `g` is gone: unless a newer one took over, retry after the backoff. */
  _lost(g, why) {
    if (g !== this._gen || this._stopped) return;
    this._drop(false);
    if (why) this._emit('warning', why);
    this._setState(this._welcomedOnce ? 'reconnecting' : 'connecting');
    this._retryTimer = setTimeout(() => this._open(), this._backoff(this._attempt++));
  }

  /** A transport that never opened here gives way to the next at once; one that worked
   * before is retried (the server is more likely down than the path blocked). */
  _failedToOpen(g, kind, why) {
    if (g !== this._gen || this._stopped) return;
    const i = this.transports.indexOf(kind);
    if (!this._everOpened.has(kind) && i < this.transports.length - 1) {
      this._blocked.add(kind);
      const next = { sse: 'Server-Sent Events', longpoll: 'long polling', websocket: 'WebSocket' }[this.transport];
      this._emit('warning', `${why}: switching to ${next}`);
      this._drop(false);
      this._open();
      return;
    }
    this._lost(g, `${why}; retrying`);
  }

  /** The server wants a token (none, a wrong one, or one that expired): stop, and wait for
   * `refresh(token)` rather than retry. */
  _unauthorized(g, reason) {
    if (g !== this._gen || this._stopped) return;
    this._stopped = true;
    this._drop(true);
    this.token = null;
    this._needToken = true;
    this._setState('closed');
    this._emit('unauthorized', reason);
  }

  /** The server refused to open the room of the path (400, 403): that subscription is
   * over; the others go on over a connection opened with the next room. */
  _refused(g, room, reason) {
    if (g !== this._gen || this._stopped) return;
    this._drop(true);
    const sub = this.subscriptions.get(room);
    if (sub) {
      this._end(sub);
      sub._emit('refused', reason);
    }
    if (this.subscriptions.size === 0) {
      this._stopped = true;
      this._setState('closed');
    } else {
      this._open();
    }
  }

  _end(sub) {
    sub.active = false;
    this.subscriptions.delete(sub.room);
    this._outbox = this._outbox.filter((o) => o.room !== sub.room);
  }

  _unsubscribe(sub) {
    if (!sub.active || this.subscriptions.get(sub.room) !== sub) return;
    this._end(sub);
    const conn = this._conn;
    if (conn && conn.live) this._sendControl(conn, { type: 'unsubscribe', room: sub.room });
    if (this.subscriptions.size === 0 && !this._stopped) {
      // Nothing left to follow: the next subscribe connects again.
      this._stopped = true;
      this._drop(true);
      this._setState('idle');
    }
  }

  // ---- WebSocket -----------------------------------------------------------------------

  _openWebSocket(conn) {
    const url = new URL(`chat/${encodeURIComponent(conn.room)}${this._query(conn.room, true)}`, this.url);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const g = conn.g;
    let ws;
    try {
      ws = new this._WebSocket(url.href);
    } catch (e) {
      this._failedToOpen(g, 'websocket', String(e));
      return;
    }
    conn.ws = ws;
    let opened = false;
    let refusal = null;
    const openTimer = setTimeout(() => {
      if (!opened && g === this._gen) {
        ws.close();
        this._failedToOpen(g, 'websocket', 'the WebSocket did not open in time');
      }
    }, this._timing.openTimeout);
    ws.onopen = () => {
      if (g !== this._gen) return;
      opened = true;
      clearTimeout(openTimer);
      this._opened(conn);
    };
    ws.onmessage = (e) => this._received(conn, typeof e.data === 'string' ? e.data : String(e.data));
    ws.onerror = (e) => {
      // Browsers hide why an upgrade failed; Node's `ws` names the status, which says
      // whether retrying can help.
      const status = /Unexpected server response: (\d{3})/.exec(e && e.message)?.[1];
      if (status) refusal = Number(status);
    };
    ws.onclose = (e) => {
      clearTimeout(openTimer);
      if (g !== this._gen || this._stopped) return;
      if (!opened) {
        if (refusal === 401) this._unauthorized(g, 'the server needs an access token');
        else if (refusal === 400 || refusal === 403) this._refused(g, conn.room, `the server answered ${refusal}`);
        else this._failedToOpen(g, 'websocket', `WebSocket closed before it opened (${e.code})`);
        return;
      }
      if (e.code === CLOSE_TOKEN_EXPIRED) {
        this._unauthorized(g, 'the access token expired');
        return;
      }
      let why = 'connection lost';
      if (e.code === CLOSE_TOO_SLOW) why = 'disconnected: too slow to keep up';
      else if (e.code === CLOSE_GOING_AWAY) why = 'the server is going away';
      else if (e.code !== 1006 && e.code !== 1005) why = `disconnected (${e.code}${e.reason ? ` ${e.reason}` : ''})`;
      this._lost(g, `${why}; reconnecting`);
    };
  }

  // ---- Server-Sent Events --------------------------------------------------------------

  _openSse(conn) {
    const g = conn.g;
    let es;
    try {
      es = new this._EventSource(this._http(`sse/${encodeURIComponent(conn.room)}${this._query(conn.room, true)}`));
    } catch (e) {
      this._failedToOpen(g, 'sse', String(e));
      return;
    }
    conn.es = es;
    conn.sid = null;
    let opened = false;
    // The stream names its session first (again after each of the browser's own
    // reconnects): what we say goes to POST /poll/session/ID, and the rooms other than the
    // stream's are subscribed again there, each with its `since`.
    es.addEventListener('session', (e) => {
      if (g !== this._gen) return;
      try {
        conn.sid = JSON.parse(e.data).session;
      } catch {
        return;
      }
      opened = true;
      conn.ready.clear();
      this._opened(conn);
    });
    es.onmessage = (e) => this._received(conn, e.data);
    es.onerror = () => {
      if (g !== this._gen || this._stopped) return;
      if (!opened) {
        es.close();
        this._failedToOpen(g, 'sse', 'the event stream did not open');
      } else if (es.readyState === 2) {
        this._lost(g, 'connection lost; reconnecting');
      } else {
        // The browser reconnects by itself and sends the last id it saw (Last-Event-ID):
        // the next welcome resumes from there, under a new session.
        conn.live = false;
        conn.ready.clear();
        this._setState('reconnecting');
      }
    };
  }

  // ---- long polling --------------------------------------------------------------------

  async _openLongPoll(conn) {
    const g = conn.g;
    conn.abort = new AbortController();
    conn.sid = null;
    conn.cursor = 0;
    let response;
    try {
      response = await this._fetch(this._http(`poll/${encodeURIComponent(conn.room)}${this._query(conn.room, false)}`), {
        method: 'POST',
        headers: this._headers(),
        signal: conn.abort.signal,
        cache: 'no-store',
      });
    } catch {
      if (g !== this._gen) return;
      // Plain HTTP failed too: the server is down, not an upgrade blocked; give the
      // transports before this one another chance next time, unless one ever opened.
      if (!this._everOpened.has(this.transports[0])) this._blocked.clear();
      this._lost(g, this._welcomedOnce ? 'cannot reach the server; retrying' : null);
      return;
    }
    if (g !== this._gen) return;
    if (response.status === 400 || response.status === 403) {
      this._refused(g, conn.room, reasonOf(await response.text().catch(() => '')));
      return;
    }
    if (response.status === 401) {
      this._unauthorized(g, reasonOf(await response.text().catch(() => '')));
      return;
    }
    if (!response.ok) {
      this._lost(g, `long polling: ${response.status}; retrying`);
      return;
    }
    let body;
    try {
      body = await response.json();
    } catch {
      this._lost(g, 'long polling: unreadable answer; retrying');
      return;
    }
    if (g !== this._gen) return;
    conn.sid = body.session;
    conn.cursor = body.cursor;
    this._opened(conn);
    for (const event of body.events || []) this._handle(conn, event);
    this._pollLoop(conn);
  }

  async _pollLoop(conn) {
    const g = conn.g;
    let failures = 0;
    while (g === this._gen && !this._stopped) {
      const timer = setTimeout(() => conn.abort.abort(), this._timing.pollTimeout);
      let response;
      let body;
      try {
        response = await this._fetch(this._http(`poll/session/${conn.sid}?cursor=${conn.cursor}`), {
          headers: this._headers(),
          signal: conn.abort.signal,
          cache: 'no-store',
        });
        if (response.ok) body = await response.json();
      } catch {
        response = null;
      } finally {
        clearTimeout(timer);
      }
      if (g !== this._gen || this._stopped) return;
      if (response && response.status === 404) {
        // Expired, cut, or held by another node: a new session resumes every room.
        this._lost(g, 'session ended; reconnecting');
        return;
      }
      if (response && response.status === 401) {
        this._unauthorized(g, 'the access token expired');
        return;
      }
      if (!response || !body) {
        // The session outlives a failed request (60 s): ask again for the same cursor,
        // which loses nothing. A fresh AbortController replaces a timed-out one.
        failures++;
        if (conn.abort.signal.aborted) conn.abort = new AbortController();
        // A hub handing over to a new process asks to come back (503, Retry-After): the
        // session moves with it, so the connection is paused, not lost.
        if ((await retryAfter(response)) === null) this._setState('reconnecting');
        await new Promise((r) => setTimeout(r, this._backoff(failures - 1)));
        continue;
      }
      if (failures && conn.ready.size) this._setState('open');
      failures = 0;
      conn.cursor = body.cursor;
      for (const event of body.events || []) this._handle(conn, event);
    }
  }

  // ---- sending -------------------------------------------------------------------------

  /** A subscribe, unsubscribe or refresh: sent at once (over HTTP, its own POST). */
  _sendControl(conn, message) {
    if (conn.kind === 'websocket') {
      if (conn.ws.readyState === WS_OPEN) conn.ws.send(JSON.stringify(message));
      return;
    }
    // One at a time, in order: concurrent requests may arrive in any order, and a reset's
    // subscribe must not overtake its unsubscribe.
    const sent = (conn.controls || Promise.resolve()).then(() => this._postUntilTaken(conn, JSON.stringify(message)));
    conn.controls = sent.then(() => {});
    sent.then(async (response) => {
      if (conn.g !== this._gen || response === LATER) return;
      // Unsent, it would leave a room unfollowed: a new connection subscribes them all.
      if (!response) this._lost(conn.g, 'cannot reach the server; reconnecting');
      else if (response.status === 404) this._lost(conn.g, 'session ended; reconnecting');
      else if (response.status === 401 && message.type !== 'refresh') this._unauthorized(conn.g, 'the access token expired');
      else if (response.status !== 202) {
        // A refusal (or a refresh's answer) has the event as its body.
        const event = await response.json().catch(() => null);
        if (event && typeof event === 'object') this._handle(conn, event);
      }
    });
  }

  /** `_post`, sent again while the server refuses it for now (`503` with `Retry-After`: a
   * hand-over to a new process, a connection limit): it was not taken, so sending it again
   * cannot duplicate it. Each attempt is a new request, answered by whichever process holds
   * the listening socket by then. Stops once `conn` is no longer the hub's connection (the
   * next one sends what is still queued): then it returns LATER. */
  async _postUntilTaken(conn, body) {
    for (;;) {
      const response = await this._post(conn, body);
      const delay = await retryAfter(response);
      if (delay === null) return response;
      if (conn.g !== this._gen || this._stopped) return LATER;
      await new Promise((r) => setTimeout(r, delay));
      if (conn.g !== this._gen || this._stopped) return LATER;
    }
  }

  async _post(conn, body) {
    try {
      return await this._fetch(this._http(`poll/session/${conn.sid}`), {
        method: 'POST',
        headers: this._headers({ 'Content-Type': 'application/json' }),
        body,
      });
    } catch {
      return null;
    }
  }

  /** Hands queued messages to the live connection, in order, each once its room is open. */
  _flush() {
    const conn = this._conn;
    if (!conn || !conn.live || this._stopped) return;
    if (conn.kind === 'websocket') {
      this._outbox = this._outbox.filter((o) => {
        if (!conn.ready.has(o.room) || conn.ws.readyState !== WS_OPEN) return true;
        conn.ws.send(o.body);
        return false;
      });
    } else if (!this._posting) {
      this._postQueued(conn);
    }
  }

  async _postQueued(conn) {
    const g = conn.g;
    this._posting = true;
    try {
      for (;;) {
        const next = this._outbox.find((o) => conn.ready.has(o.room));
        if (!next || g !== this._gen || this._stopped) break;
        const response = await this._postUntilTaken(conn, next.body);
        // Still refused when this connection ended: the next one sends it.
        if (response === LATER) break;
        if (!response) {
          // Kept and tried again after a pause; if the session is gone meanwhile, the poll
          // loop finds out and the next session sends it.
          setTimeout(() => this._flush(), this._backoff(this._sendFailures++));
          return;
        }
        this._sendFailures = 0;
        if (response.status === 404) {
          this._lost(g, 'session ended; reconnecting');
          return;
        }
        if (response.status === 401) {
          this._unauthorized(g, 'the access token expired');
          return;
        }
        this._outbox = this._outbox.filter((o) => o !== next);
        if (!response.ok) {
          const event = await response.json().catch(() => null);
          if (event && event.type === 'error') this._handle(conn, { room: next.room, ...event });
          else this._emit('warning', `sending failed (${response.status})`);
        }
      }
    } finally {
      this._posting = false;
    }
    // Messages queued while the last POST was in flight, for a connection that took over.
    if (this._outbox.length && g !== this._gen) this._flush();
  }

  // ---- events (the same for every transport) -------------------------------------------

  _received(conn, text) {
    if (conn.g !== this._gen) return;
    let event;
    try {
      event = JSON.parse(text);
    } catch {
      this._emit('warning', 'the server sent something that is not JSON');
      return;
    }
    this._handle(conn, event);
  }

  _handle(conn, event) {
    if (conn.g !== this._gen || !event || typeof event !== 'object') return;
    if (event.type === 'refreshed') {
      this._emit('refreshed', event.expires ?? null);
      return;
    }
    const room = typeof event.room === 'string' ? event.room : null;
    const sub = room === null ? null : this.subscriptions.get(room);
    if (event.type === 'error') {
      if (sub && !conn.ready.has(room) && REFUSALS.includes(event.error)) {
        // A subscribe refused for good (a forbidden room, too many): retrying cannot help.
        this._end(sub);
        sub._emit('refused', event.message || event.error);
      } else (sub || this)._emit('error', event);
      return;
    }
    // Events of a room no longer followed, or being read again from its start, are not ours.
    if (!sub || (sub._resetting && event.type !== 'welcome')) return;
    switch (event.type) {
      case 'welcome':
        this._welcome(conn, sub, event);
        break;
      case 'message':
        sub._message(event);
        break;
      case 'joined':
        if (event.name !== sub.name && !sub.members.includes(event.name)) sub.members.push(event.name);
        sub._emit('presence', { type: 'joined', name: event.name, members: sub.members.slice() });
        break;
      case 'left':
        sub.members = sub.members.filter((n) => n !== event.name);
        sub._emit('presence', { type: 'left', name: event.name, members: sub.members.slice() });
        break;
      default:
        break; // `unsubscribed`, and what newer servers may add
    }
  }

  _welcome(conn, sub, w) {
    const lastId = typeof w.last_id === 'number' ? w.last_id : 0;
    if (sub.resume && lastId < sub.lastId) {
      // The room's ids started again (a restarted server without Redis): what we hold is
      // from another life of the room. Read it again from its start.
      sub._clear();
      sub._resetting = true;
      sub._emit('reset');
      this._sendControl(conn, { type: 'unsubscribe', room: sub.room });
      this._sendControl(conn, { type: 'subscribe', room: sub.room });
      return;
    }
    sub._resetting = false;
    sub.name = typeof w.name === 'string' ? w.name : this.name;
    sub.members = Array.isArray(w.members) ? w.members.slice() : [sub.name];
    if (!sub.members.includes(sub.name)) sub.members.push(sub.name);
    sub._emit('welcome', w);
    sub._emit('presence', { type: 'welcome', name: sub.name, members: sub.members.slice() });
    for (const m of w.history || []) sub._message(m);
    sub.lastId = Math.max(sub.lastId, lastId);
    sub.resume = true;
    conn.ready.add(sub.room);
    this._attempt = 0;
    this._welcomedOnce = true;
    this._setState('open');
    this._flush();
  }
}
