'use strict';
// Node `ws` as a client of a wsduplex echo server.
//
// Usage: node client.js [--cafile PEM] [--plain-echo] ws://127.0.0.1:PORT/
//
// The server echoes data messages, answers the text "close:CODE:REASON" by closing with that
// code and reason, and prefers subprotocol "chat.v2" over "chat". Every check prints one line
// on stdout; the first failure prints to stderr and exits 1. Driven by
// crates/wsduplex/tests/interop.rs, and through nginx by crates/wsduplex-cli/tests/nginx.rs.
//
// --cafile PEM: for wss://, trust the certificates in PEM (a test's self-signed one).
// --plain-echo: the server only echoes, as `wsduplex serve` does at /echo: no subprotocol is
// offered, and this client closes the first connection with 4001 itself.

const fs = require('fs');
const WebSocket = require('ws');

const TIMEOUT_MS = 20000; // the Rust test has its own, longer bound
const MIB = 1 << 20;

function fail(msg) {
  console.error(`node client: ${msg}`);
  process.exit(1);
}

setTimeout(() => fail(`timed out after ${TIMEOUT_MS} ms`), TIMEOUT_MS).unref();
process.on('unhandledRejection', (e) => fail(`FAILED: ${e && e.stack ? e.stack : e}`));

// Everything the socket reports, in order, as awaitable items.
class Inbox {
  constructor(ws) {
    this.items = [];
    this.waiters = [];
    ws.on('open', () => this.push({ kind: 'open' }));
    ws.on('message', (data, isBinary) => this.push({ kind: isBinary ? 'binary' : 'text', data }));
    ws.on('ping', (data) => this.push({ kind: 'ping', data }));
    ws.on('pong', (data) => this.push({ kind: 'pong', data }));
    ws.on('close', (code, reason) => this.push({ kind: 'close', code, reason: reason.toString() }));
    ws.on('error', (err) => this.push({ kind: 'error', err }));
  }
  push(item) {
    const w = this.waiters.shift();
    if (w) w(item);
    else this.items.push(item);
  }
  next() {
    if (this.items.length) return Promise.resolve(this.items.shift());
    return new Promise((resolve) => this.waiters.push(resolve));
  }
  async expect(kind, what) {
    const item = await this.next();
    if (item.kind === 'error') fail(`${what}: error: ${item.err.message}`);
    if (item.kind !== kind) {
      const detail = item.kind === 'close' ? ` ${item.code} '${item.reason}'` : '';
      fail(`${what}: expected ${kind}, got ${item.kind}${detail}`);
    }
    return item;
  }
}

function describe(kind, buf) {
  return `${kind} of ${buf.length} bytes`;
}

function firstDifference(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

async function expectEcho(inbox, kind, sent, what) {
  const got = await inbox.next();
  if (got.kind !== kind) {
    fail(`${what}: sent ${describe(kind, sent)}, got ${got.kind}` +
      (got.data ? ` of ${got.data.length} bytes` : got.kind === 'close' ? ` ${got.code}` : ''));
  }
  if (!Buffer.isBuffer(got.data) || !sent.equals(got.data)) {
    fail(`${what}: sent ${describe(kind, sent)}, got ${describe(kind, got.data)}, ` +
      `first difference at byte ${firstDifference(sent, got.data)}`);
  }
  console.log(`ok: ${what} (${describe(kind, sent)})`);
}

async function echo(ws, inbox, kind, sent, what) {
  ws.send(sent, { binary: kind === 'binary' });
  await expectEcho(inbox, kind, sent, what);
}

const usage = 'usage: node client.js [--cafile PEM] [--plain-echo] URL';
const opts = { url: null, ca: null, plainEcho: false };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === '--cafile' && i + 1 < process.argv.length) opts.ca = fs.readFileSync(process.argv[++i]);
  else if (a === '--plain-echo') opts.plainEcho = true;
  else if (!a.startsWith('--') && opts.url === null) opts.url = a;
  else fail(`unexpected argument '${a}'; ${usage}`);
}
if (opts.url === null) fail(usage);

async function open(url) {
  const protocols = opts.plainEcho ? [] : ['chat', 'chat.v2'];
  const ws = new WebSocket(url, protocols, { maxPayload: 16 * MIB, ...(opts.ca && { ca: opts.ca }) });
  const inbox = new Inbox(ws);
  await inbox.expect('open', 'opening handshake');
  return { ws, inbox };
}

async function main(url) {
  const big = Buffer.alloc(MIB);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31) % 251;
  const utf8 = (s) => Buffer.from(s, 'utf8');

  // Connection 1: messages, then the server (with --plain-echo: this client) closes with
  // 4001 "bye".
  {
    const { ws, inbox } = await open(url);
    if (!opts.plainEcho) {
      if (ws.protocol !== 'chat.v2') {
        fail(`subprotocol: offered chat, chat.v2; server prefers chat.v2; got '${ws.protocol}'`);
      }
      console.log('ok: subprotocol chat.v2 selected by server preference');
    }

    await echo(ws, inbox, 'text', utf8('hello, wsduplex'), 'text');
    await echo(ws, inbox, 'text', utf8('h\u00e9llo \u2713 \u{1f600}'), 'non-ascii text');
    await echo(ws, inbox, 'binary', Buffer.from([0, 1, 2, 0xfe, 0xff]), 'binary');
    await echo(ws, inbox, 'text', Buffer.alloc(0), 'empty text');
    await echo(ws, inbox, 'binary', Buffer.alloc(0), 'empty binary');
    await echo(ws, inbox, 'binary', big, '1 MiB binary');

    // Fragmented by the peer: one frame per send, fin on the last. The text is split inside
    // a multi-byte character, which only the reassembled message must get right.
    const text = utf8('frag\u00e9mented t\u00e9xt \u2713');
    const cuts = [0, 5, 6, 17, text.length];
    for (let i = 0; i + 1 < cuts.length; i++) {
      ws.send(text.subarray(cuts[i], cuts[i + 1]), { binary: false, fin: i + 2 === cuts.length });
    }
    await expectEcho(inbox, 'text', text, 'text sent in 4 fragments, split inside a character');
    const binCuts = [0, 1000, 1001, 70000, big.length];
    for (let i = 0; i + 1 < binCuts.length; i++) {
      ws.send(big.subarray(binCuts[i], binCuts[i + 1]), { binary: true, fin: i + 2 === binCuts.length });
    }
    await expectEcho(inbox, 'binary', big, '1 MiB binary sent in 4 fragments');

    const payload = Buffer.from('ping \u0000\u00ff payload', 'latin1');
    ws.ping(payload);
    const pong = await inbox.expect('pong', 'ping');
    if (!payload.equals(pong.data)) fail(`ping: pong payload ${pong.data.toString('hex')} != ${payload.toString('hex')}`);
    console.log('ok: ping answered by a pong with the same payload');

    if (opts.plainEcho) {
      ws.close(4001, 'bye');
      const close = await inbox.expect('close', 'client close');
      if (close.code !== 4001) fail(`client close: expected the server to echo 4001, got ${close.code}`);
      console.log('ok: client-initiated close 4001 echoed');
    } else {
      ws.send('close:4001:bye');
      const close = await inbox.expect('close', 'server close');
      if (close.code !== 4001 || close.reason !== 'bye') {
        fail(`server close: expected 4001 'bye', got ${close.code} '${close.reason}'`);
      }
      console.log("ok: server-initiated close 4001 'bye'");
    }
  }

  // Connection 2: this client closes with 4003 "client-bye"; the server echoes the code.
  {
    const { ws, inbox } = await open(url);
    await echo(ws, inbox, 'text', utf8('second connection'), 'text on a second connection');
    ws.close(4003, 'client-bye');
    const close = await inbox.expect('close', 'client close');
    if (close.code !== 4003) fail(`client close: expected the server to echo 4003, got ${close.code}`);
    console.log('ok: client-initiated close 4003 echoed');
  }
}

console.log(`node ${process.version}, ws ${require('ws/package.json').version}`);
main(opts.url).then(() => process.exit(0));
