'use strict';
// Node `ws` as a long-lived client of `wsduplex serve`'s /echo across hand-overs.
//
// Usage: node handover_client.js ws://127.0.0.1:PORT/echo
//
// Offers permessage-deflate (context takeover on both sides). Prints "open LOCAL_PORT"; then
// for each stdin line "send TEXT" sends TEXT, waits for its echo and prints "echo TEXT"; for
// "burst N" sends N messages at once, then checks their N echoes in order and prints "burst N"
// (so that messages are in flight while the server moves); for "port" prints "port LOCAL_PORT"; at EOF closes with 1000 and prints "closed". Any other
// close or error goes to stderr and exits 1. Driven by crates/wsduplex-cli/tests/handover/.

const readline = require('readline');
const WebSocket = require('ws');

function fail(msg) {
  console.error(`node client: ${msg}`);
  process.exit(1);
}

const ws = new WebSocket(process.argv[2], { perMessageDeflate: { threshold: 0 } });
let closing = false;
const waiting = [];
ws.on('error', (e) => fail(`error: ${e.message}`));
ws.on('close', (code) => {
  if (!closing) fail(`unexpected close ${code}`);
  console.log('closed');
  process.exit(0);
});
ws.on('message', (data) => {
  const w = waiting.shift();
  if (!w) fail(`unexpected message ${data}`);
  w(data.toString());
});
ws.on('open', () => {
  if (!(ws.extensions || '').includes('permessage-deflate')) fail('permessage-deflate was not agreed');
  console.log(`open ${ws._socket.localPort}`);
  const lines = readline.createInterface({ input: process.stdin });
  let chain = Promise.resolve();
  lines.on('line', (line) => {
    chain = chain.then(async () => {
      if (line.startsWith('burst ')) {
        const n = Number(line.slice(6));
        const text = (i) => `burst ${i} ` + 'compressible '.repeat(20);
        const echoes = [];
        for (let i = 0; i < n; i++) echoes.push(new Promise((resolve) => waiting.push(resolve)));
        for (let i = 0; i < n; i++) ws.send(text(i));
        for (let i = 0; i < n; i++) {
          const got = await echoes[i];
          if (got !== text(i)) fail(`burst ${i}: got ${got.slice(0, 40)}`);
        }
        console.log(`burst ${n}`);
      } else if (line === 'port') {
        console.log(`port ${ws._socket.localPort}`);
      } else if (line.startsWith('send ')) {
        const text = line.slice(5);
        const echoed = new Promise((resolve) => waiting.push(resolve));
        ws.send(text);
        const got = await echoed;
        if (got !== text) fail(`sent ${text}, got ${got}`);
        console.log(`echo ${got}`);
      }
    });
  });
  lines.on('close', () => chain.then(() => { closing = true; ws.close(1000); }));
});
