// Headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core) against
// `wsduplex serve`: run by crates/wsduplex-cli/tests/browser.rs, installed by ./setup.sh.
//
//   node tests/browser/deflate.mjs http://HOST:PORT               # serve --deflate
//   node tests/browser/deflate.mjs http://HOST:PORT --no-deflate  # plain serve
//
// Opens the echo page at URL, then a WebSocket to /echo from inside the page. With deflate
// the browser's default offer must be accepted (`ws.extensions` names permessage-deflate);
// without it `ws.extensions` must be empty. Either way: echoes of short text, 100 KiB of
// repetitive text, 1 MiB of random-ish text, non-ASCII text, Blob and ArrayBuffer binary
// messages, then close 4000 (the close event must carry 4000 and wasClean). The handshake
// headers as Chromium sent and received them are printed (from the DevTools protocol), and
// a screenshot of the page goes to target/browser/{deflate,no-deflate}.png.
//
// One line per check on stdout; any failure exits 1 with a message on stderr; the whole
// run is bounded by HARD_TIMEOUT_MS.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HARD_TIMEOUT_MS = 60_000;
const CHROMIUM = '/usr/bin/chromium';
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

const [url, flag] = process.argv.slice(2);
if (!url || !/^https?:\/\//.test(url) || (flag !== undefined && flag !== '--no-deflate')) {
  console.error('usage: node deflate.mjs http://HOST:PORT [--no-deflate]');
  process.exit(2);
}
const expectDeflate = flag !== '--no-deflate';
const shot = join(root, 'target', 'browser', expectDeflate ? 'deflate.png' : 'no-deflate.png');

const hardTimeout = setTimeout(() => {
  console.error(`deflate.mjs: FAILED: timed out after ${HARD_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, HARD_TIMEOUT_MS);

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
    ],
  });
  console.log(`chromium ${browser.version()} (playwright-core)`);
  const page = await browser.newPage();
  page.on('console', (m) => console.log(`page console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => console.log(`page error: ${e}`));

  // The opening handshake as the browser saw it: its Sec-WebSocket-Extensions offer and
  // the server's answer are what a failure here is about.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  const handshakes = new Map();
  const entry = (id) => handshakes.get(id) ?? handshakes.set(id, {}).get(id);
  cdp.on('Network.webSocketCreated', (e) => (entry(e.requestId).url = e.url));
  cdp.on('Network.webSocketWillSendHandshakeRequest', (e) => (entry(e.requestId).request = e.request.headers));
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => {
    entry(e.requestId).status = e.response.status;
    entry(e.requestId).response = e.response.headers;
  });

  const response = await page.goto(url, { waitUntil: 'load' });
  if (!response || response.status() !== 200) {
    throw new Error(`GET ${url}: status ${response && response.status()}`);
  }
  // The page's own socket (echo.html connects at load) shows up in the screenshot.
  await page.locator('#state').filter({ hasText: 'open' }).waitFor({ timeout: 10_000 });

  const result = await page.evaluate(inPage, { expectDeflate });

  for (const [, h] of handshakes) {
    const header = (headers, name) => {
      const key = Object.keys(headers ?? {}).find((k) => k.toLowerCase() === name);
      return key === undefined ? '(none)' : headers[key];
    };
    console.log(`handshake ${h.url}: status ${h.status}`);
    console.log(`  sent     Sec-WebSocket-Extensions: ${header(h.request, 'sec-websocket-extensions')}`);
    console.log(`  received Sec-WebSocket-Extensions: ${header(h.response, 'sec-websocket-extensions')}`);
  }
  for (const line of result.log) console.log(line);

  // The artifact: the echo page after one message typed into its form.
  await page.fill('#text', 'hello from headless chromium');
  await page.press('#text', 'Enter');
  await page.locator('#log .recv').first().waitFor({ timeout: 10_000 });
  mkdirSync(dirname(shot), { recursive: true });
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);

  if (result.error) throw new Error(result.error);
  console.log(`deflate.mjs: all checks passed (${expectDeflate ? 'with' : 'without'} permessage-deflate)`);
} catch (e) {
  console.error(`deflate.mjs: FAILED: ${e && e.stack ? e.stack : e}`);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
  clearTimeout(hardTimeout);
}

// Runs inside the page. Returns { log: [lines], error: message or null }: the checks up to
// the first failure, so the caller can print what passed before it.
async function inPage({ expectDeflate }) {
  const log = [];
  const STEP_MS = 15_000;
  const within = (what, promise) =>
    Promise.race([
      promise,
      new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer within ${STEP_MS} ms`)), STEP_MS)),
    ]);

  // Every event in arrival order; waiters take them one at a time.
  const events = [];
  let wake = null;
  const next = async (what) => {
    while (events.length === 0) await within(what, new Promise((r) => (wake = r)));
    return events.shift();
  };

  const ws = new WebSocket(location.origin.replace('http', 'ws') + '/echo');
  ws.binaryType = 'arraybuffer';
  for (const type of ['open', 'message', 'error', 'close']) {
    ws.addEventListener(type, (e) => {
      events.push(e);
      if (wake) wake();
    });
  }

  const describe = (x) =>
    typeof x === 'string' ? `text of ${x.length} UTF-16 units` : `${x.constructor.name} of ${x.byteLength} bytes`;
  const firstDifference = (a, b) => {
    let i = 0;
    while (i < a.length && i < b.length && a[i] === b[i]) i++;
    return i;
  };
  const expectEcho = async (what, sent) => {
    ws.send(sent);
    const e = await next(what);
    if (e.type !== 'message') throw new Error(`${what}: expected the echo, got a ${e.type} event` + (e.type === 'close' ? ` (code ${e.code} "${e.reason}" wasClean ${e.wasClean})` : ''));
    let want = sent;
    if (sent instanceof Blob) want = await sent.arrayBuffer();
    if (typeof want === 'string') {
      if (typeof e.data !== 'string') throw new Error(`${what}: sent text, got ${describe(e.data)}`);
      if (e.data !== want) throw new Error(`${what}: echo differs: sent ${describe(want)}, got ${describe(e.data)}, first difference at unit ${firstDifference(want, e.data)}`);
    } else {
      if (!(e.data instanceof ArrayBuffer)) throw new Error(`${what}: sent binary, got ${describe(e.data)}`);
      const a = new Uint8Array(want);
      const b = new Uint8Array(e.data);
      if (a.length !== b.length || firstDifference(a, b) !== a.length) throw new Error(`${what}: echo differs: sent ${a.length} bytes, got ${b.length}, first difference at byte ${firstDifference(a, b)}`);
    }
    log.push(`ok   ${what} (${describe(want)})`);
  };

  try {
    const opened = await next('open');
    if (opened.type !== 'open') throw new Error(`open: got a ${opened.type} event instead`);
    log.push(`ok   open, ws.extensions = ${JSON.stringify(ws.extensions)}`);
    if (expectDeflate && !ws.extensions.includes('permessage-deflate')) {
      throw new Error(`permessage-deflate was not negotiated: ws.extensions = ${JSON.stringify(ws.extensions)}`);
    }
    if (!expectDeflate && ws.extensions !== '') {
      throw new Error(`expected no extension from a server without --deflate, got ws.extensions = ${JSON.stringify(ws.extensions)}`);
    }
    log.push(`ok   extensions ${expectDeflate ? 'include permessage-deflate' : 'are empty'}`);

    // Deterministic "random-ish" text: a xorshift PRNG over printable ASCII, hard to compress.
    let seed = 0x2545f491;
    const rand = () => ((seed ^= seed << 13), (seed ^= seed >>> 17), (seed ^= seed << 5), seed >>> 0);
    let randomText = '';
    const chunk = [];
    for (let i = 0; i < 1 << 20; i++) {
      chunk.push(String.fromCharCode(32 + (rand() % 95)));
      if (chunk.length === 4096) randomText += chunk.splice(0).join('');
    }
    const bytes = new Uint8Array(64 * 1024).map((_, i) => (i * 31) % 251);

    await expectEcho('short text', 'hello, wsduplex');
    await expectEcho('100 KiB repetitive text', 'wsduplex deflate '.repeat(6024).slice(0, 100 * 1024));
    await expectEcho('1 MiB random-ish text', randomText);
    await expectEcho('non-ASCII text', 'h\u00e9llo \u2713 \u{1f600} \u65e5\u672c\u8a9e '.repeat(500));
    await expectEcho('ArrayBuffer binary', bytes.buffer);
    await expectEcho('Blob binary', new Blob([bytes.subarray(0, 1000), new Uint8Array([0, 0xfe, 0xff])]));
    await expectEcho('short text after the big ones (context takeover)', 'hello again, wsduplex');

    ws.close(4000, 'browser-bye');
    const closed = await next('close');
    if (closed.type !== 'close') throw new Error(`close: expected the close event, got a ${closed.type} event`);
    if (closed.code !== 4000 || !closed.wasClean) {
      throw new Error(`close: expected code 4000 and wasClean, got code ${closed.code} "${closed.reason}" wasClean ${closed.wasClean}`);
    }
    log.push(`ok   close 4000 "${closed.reason}", wasClean`);
    return { log, error: null };
  } catch (e) {
    return { log, error: String(e && e.message ? e.message : e) };
  }
}
