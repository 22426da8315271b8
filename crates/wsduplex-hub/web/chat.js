// wsduplex chat: the page of docs/hub.md, served by `wsduplex serve` at /chat.js.
//
// An ES module, no build step. The connection is the hub's client module (wsduplex.js,
// docs/js-client.md): transports and their fallback (WebSocket, Server-Sent Events, long
// polling), reconnects with backoff, resuming with `since`, deduplication, the back/forward
// cache. This file is the page's half: the forms, the token, and drawing the client's
// events with view.js (a classic deferred script run before this one: its `$` and
// `ChatView` are globals here). `?transport=websocket|sse|longpoll` forces one transport.
// The page is served under a strict CSP (no inline script or style): user text is never
// parsed as HTML.
//
// The states shown in #state: idle (nothing opened yet), connecting (first connection), open
// (welcome received), reconnecting (lost, retrying), closed (left, or refused).
//
// A server started with --auth-token or a JWT key answers 401 without a token: the page then
// asks for one (#auth) instead of retrying, keeps it for the tab (sessionStorage: a reload
// goes on with it), and hands it to the client (`refresh`), which sends it as `access_token`
// where no header can be set and as `Authorization: Bearer` on every fetch. A token that
// expires on an open connection (close 4001) is asked for again.

import { Hub } from './wsduplex.js';

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
};
auth.load();
/** The hub's paths sit beside this script: `/` when the hub is served at the root, `/hub/`
 * when an app mounts it under a prefix (`Hub::router`). */
const BASE = new URL('.', import.meta.url).href;
/** docs/hub.md: text of 1-4096 characters. */
const MAX_TEXT = 4096;
const ROOM_RE = /^[A-Za-z0-9_.-]{1,64}$/;
// eslint-disable-next-line no-control-regex
const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f]/;

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

/**
 * One joined room: a Hub following it, its events drawn by `view`.
 * @param {string} room
 * @param {string} name the name asked for (kept for every reconnect)
 * @param {string|null} forced `?transport=websocket|sse|longpoll`, or null to choose
 * @param {ChatView} view
 * @param {(reason: string) => void} onRefused the server refused the room or the name
 * @param {(reason: string) => void} onUnauthorized the server wants a (new) token
 */
function openRoom(room, name, forced, view, onRefused, onUnauthorized) {
  const hub = new Hub(BASE, { name, token: auth.token, transports: forced ? [forced] : undefined });
  const errorNote = (e) => view.addNote(`error: ${e.message || e.error || 'unknown'}`, 'error');
  hub.on('state', ({ state, transport }) => {
    view.setTransport(transport);
    view.setState(state);
  });
  hub.on('warning', (text) => view.addNote(text, 'warn'));
  hub.on('error', errorNote);
  hub.on('unauthorized', (reason) => {
    auth.forget();
    view.addNote(`access token needed: ${reason}`, 'warn');
    onUnauthorized(reason);
  });

  const sub = hub.subscribe(room);
  let welcomedOnce = false;
  sub.on('error', errorNote);
  sub.on('refused', (reason) => {
    hub.close();
    view.setState('closed');
    view.addNote(`refused: ${reason}`, 'error');
    onRefused(reason);
  });
  sub.on('reset', () => {
    view.messages.replaceChildren();
    view.addNote('the room was reset by the server', 'warn');
  });
  sub.on('welcome', (w) => {
    if (w.gap) view.addNote('some messages were missed while disconnected', 'warn');
    if (!welcomedOnce) view.addNote(`joined #${room} as ${sub.name}`);
    else view.addNote(`reconnected${sub.name !== name ? ` as ${sub.name}` : ''}`);
    welcomedOnce = true;
  });
  sub.on('presence', (p) => {
    view.setMembers(p.members, sub.name);
    if (p.type === 'joined' && p.name !== sub.name) view.addNote(`${p.name} joined`);
    if (p.type === 'left') view.addNote(`${p.name} left`);
  });
  sub.on('message', (m) => view.addMessage({ ...m, name: String(m.name ?? '') }, m.name === sub.name));
  return { hub, sub };
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
    if (chat) chat.hub.close();
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
    chat = openRoom(room, name.trim(), transport, view, (reason) => showJoin(reason), askToken);
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
    if (chat) chat.hub.refresh(token);
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
    chat.sub.publish(value);
    text.value = '';
  });

  $('leave').addEventListener('click', () => {
    if (chat) chat.hub.close();
    chat = null;
    history.replaceState(null, '', location.pathname);
    showJoin(null);
  });

  // The client closes its connection on pagehide (a clean goodbye, and a page that holds
  // no socket can enter the back/forward cache) and resumes it on pageshow.

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
