// WebSocket over HTTP/2 (RFC 8441) with Node's own node:http2 as the client, no packages:
//   node h2_client.js http://HOST:PORT     (h2c, prior knowledge)
//   node h2_client.js https://HOST:PORT    (TLS with ALPN h2; any certificate is accepted)
// On one connection: checks that the server's SETTINGS enable the extended CONNECT,
// opens two WebSockets to /echo, exchanges messages on both at once, GETs /healthz,
// closes both sockets with 1000, prints "ok" and exits 0. Anything else: a message on
// stderr and exit status 1.
'use strict';
const http2 = require('node:http2');

const base = new URL(process.argv[2]);
const ROUNDS = 50;

function fail(why) {
  console.error(`h2_client: ${why}`);
  process.exit(1);
}
setTimeout(() => fail('timed out'), 10000).unref();

function maskedFrame(opcode, payload) {
  if (payload.length > 125) throw new Error('short frames only');
  const key = Buffer.from([0x12, 0x34, 0x56, 0x78]);
  const out = Buffer.alloc(6 + payload.length);
  out[0] = 0x80 | opcode;
  out[1] = 0x80 | payload.length;
  key.copy(out, 2);
  for (let i = 0; i < payload.length; i++) out[6 + i] = payload[i] ^ key[i % 4];
  return out;
}

// A WebSocket on an extended CONNECT stream: resolves when the server answers 200.
function openWebSocket(session, path) {
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ':method': 'CONNECT',
      ':protocol': 'websocket',
      ':scheme': base.protocol.replace(':', ''),
      ':path': path,
      ':authority': base.host,
      'sec-websocket-version': '13',
    });
    let buffered = Buffer.alloc(0);
    const waiting = [];
    const frames = [];
    stream.on('data', (chunk) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        if (buffered.length < 2) return;
        if (buffered[1] & 0x80) return fail('a masked server frame');
        let len = buffered[1] & 0x7f;
        let start = 2;
        if (len === 126) {
          if (buffered.length < 4) return;
          len = buffered.readUInt16BE(2);
          start = 4;
        }
        if (buffered.length < start + len) return;
        const frame = { opcode: buffered[0] & 0x0f, payload: buffered.subarray(start, start + len) };
        buffered = buffered.subarray(start + len);
        const w = waiting.shift();
        if (w) w(frame); else frames.push(frame);
      }
    });
    stream.on('error', reject);
    stream.on('response', (headers) => {
      if (headers[':status'] !== 200) return reject(new Error(`${path}: status ${headers[':status']}`));
      resolve({
        send: (opcode, payload) => stream.write(maskedFrame(opcode, Buffer.from(payload))),
        next: () => new Promise((res) => { const f = frames.shift(); if (f) res(f); else waiting.push(res); }),
        stream,
      });
    });
  });
}

function get(session, path) {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':path': path });
    let status;
    let body = '';
    req.on('response', (h) => { status = h[':status']; });
    req.setEncoding('utf8');
    req.on('data', (d) => { body += d; });
    req.on('end', () => resolve({ status, body }));
    req.on('error', reject);
  });
}

async function main() {
  const session = http2.connect(base.origin, { rejectUnauthorized: false });
  session.on('error', (e) => fail(`session: ${e.message}`));
  const settings = await new Promise((res) => session.once('remoteSettings', res));
  if (settings.enableConnectProtocol !== true) fail('the server did not enable the extended CONNECT');
  const [a, b] = await Promise.all([openWebSocket(session, '/echo'), openWebSocket(session, '/echo')]);
  for (let i = 0; i < ROUNDS; i++) {
    a.send(0x1, `a ${i}`);
    b.send(0x2, `b ${i}`);
  }
  for (let i = 0; i < ROUNDS; i++) {
    const [fa, fb] = await Promise.all([a.next(), b.next()]);
    if (fa.opcode !== 0x1 || fa.payload.toString() !== `a ${i}`) fail(`stream a echoed ${fa.opcode} ${fa.payload}`);
    if (fb.opcode !== 0x2 || fb.payload.toString() !== `b ${i}`) fail(`stream b echoed ${fb.opcode} ${fb.payload}`);
  }
  const health = await get(session, '/healthz');
  if (health.status !== 200 || health.body !== 'ok\n') fail(`/healthz: ${health.status} ${health.body}`);
  for (const ws of [a, b]) {
    ws.send(0x8, Buffer.from([0x03, 0xe8]));
    const close = await ws.next();
    if (close.opcode !== 0x8 || close.payload.readUInt16BE(0) !== 1000) fail('no close reply');
    ws.stream.end();
  }
  session.close();
  console.log('ok');
}

main().catch((e) => fail(e.stack || e.message));
