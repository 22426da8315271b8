// WebSocket over HTTP/2 (RFC 8441) with Node's own node:http2 as the SERVER, no packages:
//   node h2_server.js            (h2c with prior knowledge on 127.0.0.1, a free port)
// Prints "listening on PORT" once it accepts. Each extended CONNECT for `websocket` with
// `sec-websocket-version: 13` is answered 200 and its stream runs a minimal WebSocket
// echo: client frames must be masked (else close 1002); text, binary and continuation
// frames come back unmasked, frame by frame; a ping gets its pong; a close gets the same
// code back, then the stream ends and "closed CODE" is printed. No extension or
// subprotocol is agreed. Anything else gets 400 (the stream only).
'use strict';
const http2 = require('node:http2');

function frame(opcode, payload, fin = true) {
  const len = payload.length;
  const head = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const out = Buffer.alloc(head + len);
  out[0] = (fin ? 0x80 : 0) | opcode;
  if (len < 126) {
    out[1] = len;
  } else if (len < 65536) {
    out[1] = 126;
    out.writeUInt16BE(len, 2);
  } else {
    out[1] = 127;
    out.writeBigUInt64BE(BigInt(len), 2);
  }
  payload.copy(out, head);
  return out;
}

// The next complete frame at the start of `buf`, unmasked, or null if more is needed.
function parse(buf) {
  if (buf.length < 2) return null;
  const fin = (buf[0] & 0x80) !== 0;
  const opcode = buf[0] & 0x0f;
  const masked = (buf[1] & 0x80) !== 0;
  let len = buf[1] & 0x7f;
  let at = 2;
  if (len === 126) {
    if (buf.length < 4) return null;
    len = buf.readUInt16BE(2);
    at = 4;
  } else if (len === 127) {
    if (buf.length < 10) return null;
    len = Number(buf.readBigUInt64BE(2));
    at = 10;
  }
  const keyAt = at;
  if (masked) at += 4;
  if (buf.length < at + len) return null;
  const payload = Buffer.from(buf.subarray(at, at + len));
  if (masked) {
    for (let i = 0; i < len; i++) payload[i] ^= buf[keyAt + (i % 4)];
  }
  return { fin, opcode, masked, payload, size: at + len };
}

function echo(stream) {
  let buf = Buffer.alloc(0);
  let closed = false;
  const closeWith = (code, payload) => {
    if (closed) return;
    closed = true;
    stream.end(frame(0x8, payload));
    console.log(`closed ${code}`);
  };
  stream.on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    for (let f = parse(buf); f && !closed; f = parse(buf)) {
      buf = buf.subarray(f.size);
      if (!f.masked) {
        // RFC 6455 §5.1 (kept by RFC 8441): a client's frames are masked.
        const reason = Buffer.from('unmasked client frame');
        const p = Buffer.concat([Buffer.from([0x03, 0xea]), reason]);
        closeWith(1002, p);
      } else if (f.opcode === 0x8) {
        const code = f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005;
        closeWith(code, f.payload.subarray(0, 2));
      } else if (f.opcode === 0x9) {
        stream.write(frame(0xa, f.payload));
      } else if (f.opcode === 0xa) {
        // An unsolicited pong needs no answer.
      } else {
        stream.write(frame(f.opcode, f.payload, f.fin));
      }
    }
  });
  stream.on('error', () => {});
}

const server = http2.createServer({ settings: { enableConnectProtocol: true } });
server.on('stream', (stream, headers) => {
  const ok =
    headers[':method'] === 'CONNECT' &&
    headers[':protocol'] === 'websocket' &&
    headers['sec-websocket-version'] === '13' &&
    headers['sec-websocket-key'] === undefined;
  if (!ok) {
    stream.respond({ ':status': 400 });
    stream.end('not a websocket extended connect\n');
    return;
  }
  stream.respond({ ':status': 200 });
  echo(stream);
});
server.listen(0, '127.0.0.1', () => {
  console.log(`listening on ${server.address().port}`);
});
