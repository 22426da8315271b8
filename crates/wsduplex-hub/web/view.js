// wsduplex chat: the page's view, served by `wsduplex serve` at /view.js and loaded before
// chat.js (both classic deferred scripts: what this one declares at the top level, chat.js
// sees). It only draws: the messages, the members, the connection's state and transport.
// User text goes in as text nodes, never as markup.

'use strict';

const NAME_COLOURS = 8;

const $ = (id) => document.getElementById(id);

/** Builds an element; `text` goes in as a text node, never as markup. */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** One of NAME_COLOURS classes, stable per name (a colour per sender, without inline style). */
function colourClass(name) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.codePointAt(0)) >>> 0;
  return `c${h % NAME_COLOURS}`;
}

class ChatView {
  constructor() {
    this.state = $('state');
    this.transport = $('transport');
    this.messages = $('messages');
    this.members = $('members');
    this.count = $('count');
    this.me = $('me');
    this.roomName = $('room-name');
  }

  setState(state) {
    if (this.state.textContent !== state) this.state.textContent = state;
    this.state.dataset.state = state;
  }

  setTransport(kind) {
    if (this.transport.textContent !== kind) this.transport.textContent = kind;
  }

  clear() {
    this.messages.replaceChildren();
    this.members.replaceChildren();
    this.count.textContent = '';
    this.me.textContent = '';
  }

  /** Runs `change` and keeps the list scrolled to the bottom if it was there before. */
  stickToBottom(change) {
    const list = this.messages;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 48;
    change();
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  /** A chat message, placed by id (they arrive in order; the scan is for safety). */
  addMessage(m, mine) {
    const li = el('li', mine ? 'msg mine' : 'msg');
    li.dataset.id = String(m.id);
    const head = el('div', 'head');
    head.append(el('span', `name ${colourClass(m.name)}`, m.name));
    if (typeof m.ts === 'number') {
      const d = new Date(m.ts);
      const time = el('time', 'time', d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }));
      time.dateTime = d.toISOString();
      time.title = d.toLocaleString();
      head.append(time);
    }
    // A message carries text, or data (any JSON value: shown as JSON, as text).
    const body = typeof m.text === 'string' ? m.text : JSON.stringify(m.data);
    li.append(head, el('p', 'text', body));
    this.stickToBottom(() => {
      // Ids arrive in increasing order, so this appends; an older id (never seen so far)
      // would go before the first newer message.
      let node = this.messages.lastElementChild;
      while (node && !node.classList.contains('msg')) node = node.previousElementSibling;
      if (!node || Number(node.dataset.id) < m.id) {
        this.messages.append(li);
        return;
      }
      const newer = [...this.messages.querySelectorAll('.msg')].find((n) => Number(n.dataset.id) > m.id);
      this.messages.insertBefore(li, newer);
    });
  }

  /** A muted line: joined, left, reconnects, errors. */
  addNote(text, kind = 'info') {
    const li = el('li', `sys ${kind}`);
    li.append(el('span', '', text));
    this.stickToBottom(() => this.messages.append(li));
  }

  setMembers(names, me) {
    // You first, then everyone else in the order they came.
    const ordered = names.includes(me) ? [me, ...names.filter((n) => n !== me)] : names;
    const items = ordered.map((name) => {
      const li = el('li', name === me ? 'me' : '', name);
      li.prepend(el('span', `dot ${colourClass(name)}`));
      return li;
    });
    this.members.replaceChildren(...items);
    this.count.textContent = String(names.length);
    this.me.textContent = me;
  }
}
