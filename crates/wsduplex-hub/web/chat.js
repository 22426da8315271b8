// wsduplex chat: the browser side of docs/hub.md, served by `wsduplex serve` at /chat.js.
//
// Plain ES2020, no build step, no dependency. The page is served under a strict CSP (no
// inline script or style), so everything below builds the DOM with createElement and
// textContent: user text is never parsed as HTML.
//
// One Chat per joined room. It talks to the hub over a WebSocket (/chat/ROOM); when the
// WebSocket cannot open (an upgrade blocked on the way), over Server-Sent Events (/sse/ROOM,
// sending through /poll/session/ID); when those cannot open either, over long polling
// (/poll/...). `?transport=websocket|sse|longpoll` forces one. Whatever the transport, the
// events are the same objects and go through the same handler. A lost connection is retried with exponential backoff and
// resumed with `since=<last id seen>`; message ids are deduplicated, so a message is shown
// once whatever the transport replays.
//
// The states shown in #state: idle (nothing opened yet), connecting (first connection), open
// (welcome received), reconnecting (lost, retrying), closed (left, or refused).
//
// A server started with --auth-token or a JWT key answers 401 without a token: the page then
// asks for one (#auth) instead of retrying, keeps it for the tab (sessionStorage: a reload
// goes on with it) and sends it as `access_token` on the WebSocket URL (a browser cannot set
// headers there) and as `Authorization: Bearer` on every fetch. A token that expires on an
// open connection (close 4001) is asked for again.

'use strict';

/** docs/hub.md: the close code of a token that expired on an open connection. */
const CLOSE_TOKEN_EXPIRED = 4001;
const TOKEN_KEY = 'wsduplex-token';

/** The access token: `/?token=T` in the page's address, or the one typed when the server
 * answered 401; kept in sessionStorage, for this tab only. */
const auth = {
  token: null,
  load() {
    const given = new URLSearchParams(location.search).get('token');
    if (given) this.set(given);
    else {
      try {
        this.token = sessionStorage.getItem(TOKEN_KEY);
      } catch {
        // storage disabled: asked again after a reload
      }
    }
  },
  set(token) {
    this.token = token;
    try {
      sessionStorage.setItem(TOKEN_KEY, token);
    } catch {
      // storage disabled
    }
  },
  forget() {
    this.token = null;
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // storage disabled
    }
  },
  headers(extra = {}) {
    return this.token ? { ...extra, Authorization: `Bearer ${this.token}` } : extra;
  },
};
auth.load();
/** The hub's paths sit beside this script: `/` when the hub is served at the root, `/hub/`
 * when an app mounts it under a prefix (`Hub::router`). */
const BASE = document.currentScript ? new URL('.', document.currentScript.src).pathname : '/';
const BACKOFF_START_MS = 250;
const BACKOFF_CAP_MS = 5000;
/** A WebSocket still CONNECTING after this long counts as one that failed to open. */
const WS_OPEN_TIMEOUT_MS = 8000;
/** Above the server's 25 s long-poll wait, so that only a dead request hits it. */
const POLL_REQUEST_TIMEOUT_MS = 40000;
/** docs/hub.md: text of 1-4096 characters. */
const MAX_TEXT = 4096;
const ROOM_RE = /^[A-Za-z0-9_.-]{1,64}$/;
// eslint-disable-next-line no-control-regex
const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f]/;

/** Exponential backoff with jitter: ~250 ms, ~500 ms, ... capped at ~5 s. */
function backoff(attempt) {
  const base = Math.min(BACKOFF_CAP_MS, BACKOFF_START_MS * 2 ** Math.min(attempt, 10));
  return Math.round(base * (0.75 + Math.random() * 0.5));
}

/** The client-side half of the documented rules; the server has the last word. */
function checkRoom(room) {
  return ROOM_RE.test(room) ? null : 'a room is 1-64 characters: letters, digits, _ - .';
}
function checkName(name) {
  const n = [...name.trim()].length;
  if (n < 1 || n > 32) return 'a name is 1-32 characters';
  if (CONTROL_RE.test(name)) return 'a name cannot contain control characters';
  return null;
}

/** The reason in a refusal: a line of text, or an error event's `message` (JSON). */
function reasonOf(body) {
  const text = body.trim();
  try {
    const v = JSON.parse(text);
    if (v && typeof v.message === 'string') return v.message;
    if (v && typeof v.error === 'string') return v.error;
  } catch {
    // plain text
  }
  return text || 'refused by the server';
}

class Chat {
  /**
   * @param {string} room
   * @param {string} name the name asked for (kept for every reconnect)
   * @param {string|null} forced `?transport=websocket|sse|longpoll`, or null to choose
   * @param {ChatView} view
   * @param {(reason: string) => void} onRefused the server refused the room or the name
   * @param {(reason: string) => void} onUnauthorized the server wants a (new) token
   */
  constructor(room, name, forced, view, onRefused, onUnauthorized) {
    this.room = room;
    this.name = name;
    this.forced = forced;
    this.view = view;
    this.onRefused = onRefused;
    this.onUnauthorized = onUnauthorized;

    this.me = null; // the name the server gave us (maybe with a suffix)
    this.members = [];
    this.seen = new Set(); // message ids shown
    this.lastId = 0; // the highest message id seen: the `since` of a resume
    this.resume = false; // send `since` (after the first welcome)
    this.welcomedOnce = false;

    this.gen = 0; // bumped by every connection attempt: callbacks of older ones are ignored
    this.attempt = 0; // consecutive failures, for the backoff
    this.conn = null; // { kind: 'websocket', ws } | { kind: 'sse', es, sid } | { kind: 'longpoll', sid, cursor, abort }
    this.welcomed = false; // the current connection has delivered its welcome
    this.retryTimer = 0;
    this.stopped = false;

    this.wsEverOpened = false;
    this.wsBlocked = false; // a WebSocket failed before it opened: use SSE
    this.sseEverOpened = false;
    this.sseBlocked = false; // an event stream failed before it opened: use long polling
    this.outbox = []; // texts not yet handed to a live connection
    this.posting = false; // a long-poll send is in flight (they go one at a time, in order)
    this.sendFailures = 0;
  }

  start() {
    this.view.setState('connecting');
    this.connect();
  }

  /** Leaves the room (the Leave button, or the page going away). */
  stop() {
    if (this.stopped) return;
    this.stopped = true;
    this.gen++;
    clearTimeout(this.retryTimer);
    const conn = this.conn;
    this.conn = null;
    if (conn && conn.kind === 'websocket') {
      conn.ws.close(1000, 'bye');
    } else if (conn) {
      if (conn.kind === 'sse') conn.es.close();
      else conn.abort.abort();
      if (conn.sid) {
        fetch(`${BASE}poll/session/${conn.sid}`, { method: 'DELETE', keepalive: true, headers: auth.headers() }).catch(() => {});
      }
    }
    this.view.setState('closed');
  }

  /** Goes on after a stop (a page restored from the back/forward cache), resuming with
   * `since` from the last message seen. */
  restart() {
    if (!this.stopped) return;
    this.stopped = false;
    this.attempt = 0;
    this.view.setState(this.welcomedOnce ? 'reconnecting' : 'connecting');
    this.connect();
  }

  /** A new token was typed: try again at once, the WebSocket first (a refusal before it
   * opens falls back to long polling, whose 401 the page can read). */
  retryWithToken() {
    this.stopped = false;
    this.attempt = 0;
    this.wsBlocked = false;
    this.wsEverOpened = false;
    this.view.setState(this.welcomedOnce ? 'reconnecting' : 'connecting');
    this.connect();
  }

  send(text) {
    if (this.stopped) return;
    this.outbox.push(text);
    this.flush();
  }

  get transport() {
    if (this.forced) return this.forced;
    if (!this.wsBlocked) return 'websocket';
    return !this.sseBlocked && typeof EventSource === 'function' ? 'sse' : 'longpoll';
  }

  connect() {
    if (this.stopped) return;
    const g = ++this.gen;
    this.welcomed = false;
    this.view.setTransport(this.transport);
    if (this.transport === 'websocket') this.openWebSocket(g);
    else if (this.transport === 'sse') this.openSse(g);
    else this.openLongPoll(g);
  }

  /** The query of a join; the token goes in it for a WebSocket only (fetches carry it as
   * a header). */
  query(withToken) {
    const q = new URLSearchParams({ name: this.name });
    if (this.resume) q.set('since', String(this.lastId));
    if (withToken && auth.token) q.set('access_token', auth.token);
    return q.toString();
  }

  /**
   * The connection `g` is gone: unless a newer one took over, retry after the backoff. The
   * state shows "reconnecting" once the room has been open, "connecting" before that.
   */
  lost(g, note) {
    if (g !== this.gen || this.stopped) return;
    this.gen++;
    const conn = this.conn;
    this.conn = null;
    if (conn && conn.kind === 'longpoll') conn.abort.abort();
    if (conn && conn.kind === 'sse') conn.es.close();
    if (conn && conn.kind === 'websocket' && conn.ws.readyState < WebSocket.CLOSING) conn.ws.close();
    if (note) this.view.addNote(note, 'warn');
    this.view.setState(this.welcomedOnce ? 'reconnecting' : 'connecting');
    const delay = backoff(this.attempt++);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /** The server wants a token (none, a wrong one, or one that expired): ask for it rather
   * than retry. */
  unauthorized(g, reason) {
    if (g !== this.gen || this.stopped) return;
    this.stop();
    auth.forget();
    this.view.addNote(`access token needed: ${reason}`, 'warn');
    this.onUnauthorized(reason);
  }

  /** The server refused the room or the name: nothing to retry. */
  refused(g, reason) {
    if (g !== this.gen || this.stopped) return;
    this.stop();
    this.view.addNote(`refused: ${reason}`, 'error');
    this.onRefused(reason);
  }

  // ---- WebSocket ----------------------------------------------------------------------

  openWebSocket(g) {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = `${scheme}//${location.host}${BASE}chat/${encodeURIComponent(this.room)}?${this.query(true)}`;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      this.wsFailedToOpen(g, String(e));
      return;
    }
    this.conn = { kind: 'websocket', ws };
    let opened = false;
    const openTimer = setTimeout(() => {
      if (!opened && g === this.gen) {
        ws.close();
        this.wsFailedToOpen(g, 'the WebSocket did not open in time');
      }
    }, WS_OPEN_TIMEOUT_MS);

    ws.onopen = () => {
      if (g !== this.gen) return;
      opened = true;
      this.wsEverOpened = true;
      clearTimeout(openTimer);
    };
    ws.onmessage = (e) => this.received(g, e.data);
    ws.onerror = () => {
      // Always followed by close, which decides what to do.
    };
    ws.onclose = (e) => {
      clearTimeout(openTimer);
      if (g !== this.gen || this.stopped) return;
      if (!opened) {
        this.wsFailedToOpen(g, `WebSocket closed before it opened (${e.code})`);
        return;
      }
      if (e.code === CLOSE_TOKEN_EXPIRED) {
        this.unauthorized(g, 'the access token expired');
        return;
      }
      let note = 'connection lost';
      if (e.code === 4008) note = 'disconnected: too slow to keep up';
      else if (e.code === 1001) note = 'the server is going away';
      else if (e.code !== 1006 && e.code !== 1005) note = `disconnected (${e.code}${e.reason ? ` ${e.reason}` : ''})`;
      this.lost(g, `${note}; reconnecting`);
    };
  }

  wsFailedToOpen(g, why) {
    if (g !== this.gen || this.stopped) return;
    if (!this.wsEverOpened && !this.forced) {
      // An upgrade that never worked here (a proxy that strips it, say): an event stream,
      // or else long polling, carries the same protocol over plain requests. Switch at
      // once, without backoff.
      this.wsBlocked = true;
      const next = this.transport === 'sse' ? 'Server-Sent Events' : 'long polling';
      this.view.addNote(`${why}: switching to ${next}`, 'warn');
      this.gen++;
      this.conn = null;
      this.connect();
      return;
    }
    // It worked before: the server is more likely down than the path blocked.
    this.lost(g, `${why}; retrying`);
  }

  // ---- Server-Sent Events -------------------------------------------------------------

  openSse(g) {
    const url = `${BASE}sse/${encodeURIComponent(this.room)}?${this.query()}`;
    let es;
    try {
      es = new EventSource(url);
    } catch (e) {
      this.sseFailedToOpen(g, String(e));
      return;
    }
    const conn = { kind: 'sse', es, sid: null };
    this.conn = conn;
    let opened = false;
    // The stream names its session first: what we say goes to POST /poll/session/ID.
    es.addEventListener('session', (e) => {
      if (g !== this.gen) return;
      try {
        conn.sid = JSON.parse(e.data).session;
      } catch {
        return;
      }
      opened = true;
      this.sseEverOpened = true;
    });
    es.onmessage = (e) => this.received(g, e.data);
    es.onerror = () => {
      if (g !== this.gen || this.stopped) return;
      if (!opened) {
        es.close();
        this.sseFailedToOpen(g, 'the event stream did not open');
      } else if (es.readyState === EventSource.CLOSED) {
        this.lost(g, 'connection lost; reconnecting');
      } else {
        // The browser reconnects by itself and sends the last id it saw (Last-Event-ID):
        // the next welcome resumes from there, under a new session.
        this.welcomed = false;
        this.view.setState('reconnecting');
      }
    };
  }

  sseFailedToOpen(g, why) {
    if (g !== this.gen || this.stopped) return;
    if (!this.sseEverOpened && !this.forced) {
      this.sseBlocked = true;
      this.view.addNote(`${why}: switching to long polling`, 'warn');
      this.gen++;
      this.conn = null;
      this.connect();
      return;
    }
    this.lost(g, `${why}; retrying`);
  }

  // ---- Long polling -------------------------------------------------------------------

  async openLongPoll(g) {
    const abort = new AbortController();
    this.conn = { kind: 'longpoll', sid: null, cursor: 0, abort };
    let response;
    try {
      response = await fetch(`${BASE}poll/${encodeURIComponent(this.room)}?${this.query(false)}`, {
        method: 'POST',
        headers: auth.headers(),
        signal: abort.signal,
        cache: 'no-store',
      });
    } catch {
      if (g !== this.gen) return;
      // Plain HTTP failed too: the server is down, not the upgrade blocked; unless long
      // polling was asked for, give the WebSocket another chance next time.
      if (!this.forced && !this.wsEverOpened) {
        this.wsBlocked = false;
        this.sseBlocked = false;
      }
      this.lost(g, this.welcomedOnce ? 'cannot reach the server; retrying' : null);
      return;
    }
    if (g !== this.gen) return;
    if (response.status === 400 || response.status === 403) {
      this.refused(g, reasonOf(await response.text().catch(() => '')));
      return;
    }
    if (response.status === 401) {
      this.unauthorized(g, reasonOf(await response.text().catch(() => '')));
      return;
    }
    if (!response.ok) {
      this.lost(g, `long polling: ${response.status}; retrying`);
      return;
    }
    let body;
    try {
      body = await response.json();
    } catch {
      if (g === this.gen) this.lost(g, 'long polling: unreadable answer; retrying');
      return;
    }
    if (g !== this.gen) return;
    this.conn.sid = body.session;
    this.conn.cursor = body.cursor;
    for (const event of body.events || []) this.handle(g, event);
    this.pollLoop(g);
  }

  async pollLoop(g) {
    let failures = 0;
    while (g === this.gen && !this.stopped) {
      const conn = this.conn;
      const timer = setTimeout(() => conn.abort.abort(), POLL_REQUEST_TIMEOUT_MS);
      let response;
      let body;
      try {
        response = await fetch(`${BASE}poll/session/${conn.sid}?cursor=${conn.cursor}`, {
          headers: auth.headers(),
          signal: conn.abort.signal,
          cache: 'no-store',
        });
        if (response.ok) body = await response.json();
      } catch {
        response = null;
      } finally {
        clearTimeout(timer);
      }
      if (g !== this.gen || this.stopped) return;
      if (response && response.status === 404) {
        // Expired or cut: a new session resumes from the last id seen.
        this.lost(g, 'session ended; reconnecting');
        return;
      }
      if (response && response.status === 401) {
        this.unauthorized(g, 'the access token expired');
        return;
      }
      if (!response || !body) {
        // The session outlives a failed request (60 s): ask again for the same cursor,
        // which loses nothing. A fresh AbortController replaces a timed-out one.
        failures++;
        if (conn.abort.signal.aborted) conn.abort = new AbortController();
        this.view.setState('reconnecting');
        await new Promise((r) => setTimeout(r, backoff(failures - 1)));
        continue;
      }
      if (failures) this.view.setState('open');
      failures = 0;
      conn.cursor = body.cursor;
      for (const event of body.events || []) this.handle(g, event);
    }
  }

  // ---- Sending ------------------------------------------------------------------------

  /** Hands queued texts to the live connection, in order. */
  flush() {
    const conn = this.conn;
    if (!conn || !this.welcomed || this.stopped) return;
    if (conn.kind === 'websocket') {
      while (this.outbox.length && conn.ws.readyState === WebSocket.OPEN) {
        conn.ws.send(JSON.stringify({ type: 'message', text: this.outbox.shift() }));
      }
    } else if (!this.posting) {
      this.postQueued(this.gen, conn);
    }
  }

  async postQueued(g, conn) {
    this.posting = true;
    try {
      while (this.outbox.length && g === this.gen && !this.stopped) {
        let response;
        try {
          response = await fetch(`${BASE}poll/session/${conn.sid}`, {
            method: 'POST',
            headers: auth.headers({ 'Content-Type': 'application/json' }),
            body: JSON.stringify({ type: 'message', text: this.outbox[0] }),
          });
        } catch {
          // Kept in the outbox and tried again after a pause; if the session is gone
          // meanwhile, the poll loop finds out and the next session sends it.
          setTimeout(() => this.flush(), backoff(this.sendFailures++));
          return;
        }
        this.sendFailures = 0;
        if (response.status === 404) {
          this.lost(g, 'session ended; reconnecting');
          return;
        }
        if (response.status === 401) {
          this.unauthorized(g, 'the access token expired');
          return;
        }
        this.outbox.shift();
        if (!response.ok) {
          const event = await response.json().catch(() => null);
          if (event && event.type === 'error') this.handle(g, event);
          else this.view.addNote(`sending failed (${response.status})`, 'error');
        }
      }
    } finally {
      this.posting = false;
    }
    // Texts queued while the last POST was in flight, for a connection that took over.
    if (this.outbox.length && g !== this.gen) this.flush();
  }

  // ---- Events (the same for every transport) ------------------------------------------

  /** One event as text from a WebSocket message or an SSE `data:` line. */
  received(g, text) {
    if (g !== this.gen) return;
    let event;
    try {
      event = JSON.parse(text);
    } catch {
      this.view.addNote('the server sent something that is not JSON', 'error');
      return;
    }
    this.handle(g, event);
  }

  handle(g, event) {
    if (g !== this.gen || !event || typeof event !== 'object') return;
    switch (event.type) {
      case 'welcome':
        this.onWelcome(g, event);
        break;
      case 'message':
        this.onMessage(event);
        break;
      case 'joined':
        if (event.name !== this.me && !this.members.includes(event.name)) {
          this.members.push(event.name);
          this.view.setMembers(this.members, this.me);
        }
        if (event.name !== this.me) this.view.addNote(`${event.name} joined`);
        break;
      case 'left':
        this.members = this.members.filter((n) => n !== event.name);
        this.view.setMembers(this.members, this.me);
        this.view.addNote(`${event.name} left`);
        break;
      case 'error':
        this.view.addNote(`error: ${event.message || event.error || 'unknown'}`, 'error');
        break;
      default:
        break; // newer servers may send more; ignore what we do not know
    }
  }

  onWelcome(g, w) {
    const lastId = typeof w.last_id === 'number' ? w.last_id : 0;
    if (this.resume && lastId < this.lastId) {
      // The room starts its ids again (a restarted server): what we hold is from another
      // life of the room. Start over without `since`, from its history.
      this.view.messages.replaceChildren();
      this.seen.clear();
      this.lastId = 0;
      this.resume = false;
      this.view.addNote('the room was reset by the server', 'warn');
      this.attempt = 0;
      this.lost(g, null);
      return;
    }
    this.attempt = 0;
    this.me = typeof w.name === 'string' ? w.name : this.name;
    this.members = Array.isArray(w.members) ? w.members.slice() : [this.me];
    if (!this.members.includes(this.me)) this.members.push(this.me);
    this.view.setMembers(this.members, this.me);
    if (w.gap) this.view.addNote('some messages were missed while disconnected', 'warn');
    for (const m of w.history || []) this.onMessage(m);
    this.lastId = Math.max(this.lastId, lastId);
    if (!this.welcomedOnce) {
      this.view.addNote(`joined #${this.room} as ${this.me}`);
    } else {
      this.view.addNote(`reconnected${this.me !== this.name ? ` as ${this.me}` : ''}`);
    }
    this.welcomedOnce = true;
    this.resume = true;
    this.welcomed = true;
    this.view.setState('open');
    this.flush();
  }

  onMessage(m) {
    if (typeof m.id !== 'number' || typeof m.text !== 'string' || this.seen.has(m.id)) return;
    this.seen.add(m.id);
    this.lastId = Math.max(this.lastId, m.id);
    this.view.addMessage({ ...m, name: String(m.name ?? '') }, m.name === this.me);
  }
}

// ---- The page -------------------------------------------------------------------------

function main() {
  const view = new ChatView();
  const joinForm = $('join');
  const joinError = $('join-error');
  const authForm = $('auth');
  const chatSection = $('chat');
  const text = $('text');
  const params = new URLSearchParams(location.search);
  const asked = params.get('transport');
  const forced = ['websocket', 'sse', 'longpoll'].includes(asked) ? asked : null;
  let chat = null;

  view.setTransport(forced || 'websocket');
  $('join-longpoll').checked = forced === 'longpoll';

  const showJoin = (error) => {
    chatSection.hidden = true;
    authForm.hidden = true;
    joinForm.hidden = false;
    $('where').hidden = true;
    joinError.hidden = !error;
    joinError.textContent = error || '';
    $('join-name').focus();
  };

  const askToken = (reason) => {
    chatSection.hidden = true;
    joinForm.hidden = true;
    authForm.hidden = false;
    $('auth-reason').textContent = reason;
    $('auth-token').value = '';
    $('auth-token').focus();
  };

  const join = (room, name, transport) => {
    const problem = checkRoom(room) || checkName(name);
    if (problem) {
      // Red only once something was open: the landing form stays neutral.
      view.setState(chat ? 'closed' : 'idle');
      showJoin(problem);
      return;
    }
    if (chat) chat.stop();
    view.clear();
    joinForm.hidden = true;
    chatSection.hidden = false;
    $('where').hidden = false;
    view.roomName.textContent = room;
    document.title = `#${room} · wsduplex chat`;
    try {
      localStorage.setItem('wsduplex-chat-name', name.trim());
    } catch {
      // storage disabled: nothing to remember
    }
    chat = new Chat(room, name.trim(), transport, view, (reason) => showJoin(reason), askToken);
    chat.start();
    text.focus();
  };

  joinForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const room = $('join-room').value.trim() || 'lobby';
    const name = $('join-name').value;
    const longpoll = $('join-longpoll').checked;
    const q = new URLSearchParams({ room, name: name.trim() });
    if (longpoll) q.set('transport', 'longpoll');
    history.replaceState(null, '', `?${q}`);
    join(room, name, longpoll ? 'longpoll' : null);
  });

  authForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('auth-token').value.trim();
    if (!token) return;
    auth.set(token);
    authForm.hidden = true;
    chatSection.hidden = false;
    if (chat) chat.retryWithToken();
    text.focus();
  });

  $('compose').addEventListener('submit', (e) => {
    e.preventDefault();
    const value = text.value;
    if (!chat || value.trim() === '') return;
    // Characters as the server counts them: code points, not UTF-16 units.
    if ([...value].length > MAX_TEXT) {
      view.addNote(`a message is at most ${MAX_TEXT} characters`, 'error');
      return;
    }
    chat.send(value);
    text.value = '';
  });

  $('leave').addEventListener('click', () => {
    if (chat) chat.stop();
    chat = null;
    history.replaceState(null, '', location.pathname);
    showJoin(null);
  });

  // A clean goodbye when the page goes away (the server would notice anyway).
  window.addEventListener('pagehide', () => {
    if (chat) chat.stop();
  });
  // Back from the back/forward cache: the page is as it was, its connection is not.
  window.addEventListener('pageshow', (e) => {
    if (e.persisted && chat && authForm.hidden) chat.restart();
  });

  const room = params.get('room');
  const name = params.get('name');
  if (room !== null && name !== null) {
    join(room, name, forced);
  } else {
    let remembered = '';
    try {
      remembered = localStorage.getItem('wsduplex-chat-name') || '';
    } catch {
      // storage disabled
    }
    $('join-name').value = remembered;
    if (room) $('join-room').value = room;
    showJoin(null);
  }
}

main();
