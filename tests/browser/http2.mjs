// Headless Chromium over HTTP/2 (RFC 8441) against `wsduplex serve --tls-self-signed`: run
// by crates/wsduplex-cli/tests/browser.rs, installed by ./setup.sh.
//
//   node tests/browser/http2.mjs https://HOST:PORT h2        # the default serve
//   node tests/browser/http2.mjs https://HOST:PORT http/1.1  # serve --no-http2 (control)
//
// Loads the echo page, then opens a WebSocket to /echo from it and exchanges messages. The
// page's protocol and the WebSocket's handshake status, as Chromium reports them through the
// DevTools protocol, must be `h2` and 200 (extended CONNECT on the page's connection), or
// `http/1.1` and 101 for the control run. Then two pages chat in a room. Prints
// `page PROTOCOL`, `websocket STATUS...`, `echo ok`, `chat ok`; any failure exits 1 with a
// message on stderr.

import { chromium } from 'playwright-core';

const HARD_TIMEOUT_MS = 60_000;
const CHROMIUM = '/usr/bin/chromium';
const [base, want] = process.argv.slice(2);
if (!base || !['h2', 'http/1.1'].includes(want)) {
  console.error('usage: node http2.mjs https://HOST:PORT h2|http/1.1');
  process.exit(2);
}
setTimeout(() => {
  console.error(`http2.mjs: FAILED: timed out after ${HARD_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, HARD_TIMEOUT_MS).unref();

let browser;
try {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-background-networking',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-component-update',
      '--disable-sync',
      // The server's certificate is generated at start.
      '--ignore-certificate-errors',
    ],
  });
  // One context: its pages share the browser's connection to the server.
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  const protocols = new Map();
  cdp.on('Network.responseReceived', (e) => protocols.set(e.response.url, e.response.protocol));
  const statuses = [];
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => statuses.push(e.response.status));

  const url = `${base}/echo.html`;
  const response = await page.goto(url, { waitUntil: 'load' });
  if (!response || response.status() !== 200) throw new Error(`GET ${url}: ${response && response.status()}`);
  const protocol = protocols.get(url);
  console.log(`page ${protocol}`);
  if (protocol !== want) throw new Error(`the page came over ${protocol}, not ${want}`);

  const echoed = await page.evaluate(async () => {
    const ws = new WebSocket(`wss://${location.host}/echo`);
    await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = () => fail(new Error('websocket error')); });
    const got = [];
    const done = new Promise((ok) => {
      ws.onmessage = (m) => { got.push(m.data); if (got.length === 3) ok(); };
    });
    for (const m of ['one', 'two', 'drei ü']) ws.send(m);
    await done;
    ws.close(1000);
    return got;
  });
  if (JSON.stringify(echoed) !== JSON.stringify(['one', 'two', 'drei ü'])) throw new Error(`echoed ${echoed}`);
  // The page's own socket (echo.html opens one at load) and ours.
  const wantStatus = want === 'h2' ? 200 : 101;
  console.log(`websocket ${statuses.join(' ')}`);
  if (statuses.length < 1 || statuses.some((s) => s !== wantStatus)) {
    throw new Error(`handshake statuses ${statuses}, expected ${wantStatus}`);
  }
  console.log('echo ok');

  // Two pages chat through the hub, each over its WebSocket.
  const pages = [page, await context.newPage()];
  await pages[1].goto(url, { waitUntil: 'load' });
  const join = (p, name) => p.evaluate(async (name) => {
    const ws = new WebSocket(`wss://${location.host}/chat/h2room?name=${name}`);
    window.heard = [];
    ws.onmessage = (m) => window.heard.push(m.data);
    await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = () => fail(new Error('chat socket error')); });
    window.chat = ws;
  }, name);
  await join(pages[0], 'ann');
  await join(pages[1], 'bob');
  await pages[0].evaluate(() => window.chat.send(JSON.stringify({ type: 'message', text: 'hello over h2' })));
  await pages[1].waitForFunction(() => window.heard.some((e) => e.includes('hello over h2')), null, { timeout: 10_000 });
  console.log('chat ok');
  await browser.close();
  process.exit(0);
} catch (e) {
  console.error(`http2.mjs: FAILED: ${e.stack || e}`);
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
