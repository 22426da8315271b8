'use strict';
// Node `ws` as a client through `wsduplex relay`, for the relay's trace test
// (crates/wsduplex-cli/tests/relay.rs). Offers subprotocol "chat" and permessage-deflate
// with no size threshold, so every message is compressed unless told otherwise, and sends:
//   1. the text "hello relay", compressed, in one frame;
//   2. the text "part one, part two, part three" in three compressed fragments;
//   3. the binary 00 01 02 03 04 05 in two uncompressed fragments ([0..3], [3..6]).
// The upstream echoes each message; a wrong echo exits 1. Then it closes with 4000 "bye"
// and waits for the close. Prints "ok" and the subprotocol on success.
//
// Usage: node relay_client.js ws://127.0.0.1:PORT/

const WebSocket = require('ws');

const TIMEOUT_MS = 20000; // the Rust test has its own, longer bound

function fail(msg) {
  console.error(`node relay client: ${msg}`);
  process.exit(1);
}

setTimeout(() => fail(`timed out after ${TIMEOUT_MS} ms`), TIMEOUT_MS).unref();

const ws = new WebSocket(process.argv[2], ['chat'], {
  perMessageDeflate: { threshold: 0 },
});
const expected = [
  { binary: false, data: 'hello relay' },
  { binary: false, data: 'part one, part two, part three' },
  { binary: true, data: Buffer.from([0, 1, 2, 3, 4, 5]) },
];
let received = 0;

ws.on('error', (e) => fail(`error: ${e.message}`));
ws.on('open', () => {
  ws.send('hello relay', { compress: true });
  ws.send('part one, ', { compress: true, fin: false });
  ws.send('part two, ', { compress: true, fin: false });
  ws.send('part three', { compress: true, fin: true });
  ws.send(Buffer.from([0, 1, 2]), { binary: true, compress: false, fin: false });
  ws.send(Buffer.from([3, 4, 5]), { binary: true, compress: false, fin: true });
});
ws.on('message', (data, isBinary) => {
  const want = expected[received++];
  if (!want) fail('more echoes than messages sent');
  const same = isBinary === want.binary &&
    (isBinary ? Buffer.compare(data, want.data) === 0 : data.toString() === want.data);
  if (!same) fail(`echo ${received}: got ${isBinary ? data.toString('hex') : data}`);
  if (received === expected.length) ws.close(4000, 'bye');
});
ws.on('close', (code) => {
  if (received !== expected.length) fail(`closed (${code}) after ${received} echoes`);
  console.log(`ok ${ws.protocol}`);
  process.exit(0);
});
