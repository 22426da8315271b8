// Headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core) on the chat page's
// Server-Sent Events transport (crates/wsduplex-hub/web/chat.js, GET /sse/ROOM in
// docs/hub.md): run by `chromium_sse_transport` in crates/wsduplex-cli/tests/chat_browser.rs,
// installed by ./setup.sh.
//
//   node tests/browser/sse.mjs http://HOST:PORT API_TOKEN
//
// In room "sse":
//   1. ann forced onto SSE (?transport=sse) and bob on WebSocket chat both ways;
//   2. erin's WebSocket upgrade is refused (her sockets point at a path the server does not
//      upgrade): the page's next choice is SSE, not long polling, and she chats;
//   3. ann's stream is cut by the server (DELETE /api/rooms/sse/members/ann) and messages are
//      pushed right after: the browser's EventSource reconnects by itself, sending the last
//      id it saw as Last-Event-ID (seen on the request), and each message shows once, in
//      order.
// One line per check on stdout; any failure exits 1. Waits are Playwright waits on the
// page's state, never fixed sleeps; the run is bounded by HARD_TIMEOUT_MS.

import { chromium } from 'playwright-core';

const HARD_TIMEOUT_MS = 60_000;
const STEP_MS = 10_000;
const ROOM = 'sse';

const [base, token] = process.argv.slice(2);
if (!base || !/^https?:\/\/[^/]+\/?$/.test(base) || !token) {
  console.error('usage: node sse.mjs http://HOST:PORT API_TOKEN');
  process.exit(2);
}
const origin = base.replace(/\/$/, '');
const hardTimeout = setTimeout(() => {
  console.error(`sse.mjs: FAILED: timed out after ${HARD_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, HARD_TIMEOUT_MS);

const ok = (what) => console.log(`ok   ${what}`);
const expect = (cond, what) => {
  if (!cond) throw new Error(what);
};

async function api(method, path, body) {
  const response = await fetch(origin + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(STEP_MS),
  });
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    // not JSON
  }
  return { status: response.status, json, text };
}

let browser;
const problems = [];

async function openPage(label, query, { blockUpgrade = false } = {}) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`${label}: page error: ${e}`));
  page.on('console', (m) => {
    if (/Content.Security.Policy/i.test(m.text())) problems.push(`${label}: CSP violation: ${m.text()}`);
  });
  if (blockUpgrade) {
    await page.addInitScript(() => {
      const Real = window.WebSocket;
      window.WebSocket = class extends Real {
        constructor(url, protocols) {
          super(String(url).replace('/chat/', '/no-upgrade-here/'), protocols);
        }
      };
    });
  }
  await page.goto(`${origin}/?room=${ROOM}&name=${label}${query}`, { waitUntil: 'load' });
  return page;
}

async function waitOpen(page, label, transport) {
  await page
    .locator('#state', { hasText: /^open$/ })
    .waitFor({ timeout: STEP_MS })
    .catch(() => expect(false, `${label}: never open`));
  const shown = (await page.textContent('#transport')).trim();
  expect(shown === transport, `${label}: transport should be ${transport}, is ${shown}`);
}

/** The ids of the messages the page shows with `text`, once it shows at least one. */
async function shown(page, label, text) {
  await page
    .waitForFunction(
      (t) => [...document.querySelectorAll('#messages .msg .text')].some((e) => e.textContent === t),
      text,
      { timeout: STEP_MS },
    )
    .catch(() => expect(false, `${label}: ${JSON.stringify(text)} never shown`));
  return page.evaluate(
    (t) =>
      [...document.querySelectorAll('#messages .msg')]
        .filter((m) => m.querySelector('.text')?.textContent === t)
        .map((m) => Number(m.dataset.id)),
    text,
  );
}

async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

try {
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });

  // ---- 1. SSE and WebSocket in one room ----------------------------------------------------
  const streams = [];
  const ann = await openPage('ann', '&transport=sse');
  ann.on('request', (r) => {
    if (new URL(r.url()).pathname.startsWith('/sse/')) streams.push(r.allHeaders());
  });
  await waitOpen(ann, 'ann', 'sse');
  const bob = await openPage('bob', '');
  await waitOpen(bob, 'bob', 'websocket');
  await say(ann, 'ann over an event stream');
  await shown(bob, 'bob', 'ann over an event stream');
  await say(bob, 'bob over a WebSocket');
  await shown(ann, 'ann', 'bob over a WebSocket');
  ok('ann (?transport=sse) and bob (WebSocket) chat both ways');

  // ---- 2. the fallback order: WebSocket, then SSE ------------------------------------------
  const erin = await openPage('erin', '', { blockUpgrade: true });
  await waitOpen(erin, 'erin', 'sse');
  await say(erin, 'erin fell back to SSE');
  await shown(ann, 'ann', 'erin fell back to SSE');
  await shown(bob, 'bob', 'erin fell back to SSE');
  ok('erin (upgrade refused): fell back to SSE, not long polling, and chats');

  // ---- 3. a cut stream resumes through Last-Event-ID ---------------------------------------
  const before = streams.length;
  const cut = await api('DELETE', `/api/rooms/${ROOM}/members/ann`);
  expect(cut.status === 204, `cut ann: ${cut.status} ${cut.text}`);
  const texts = ['pushed one', 'pushed two', 'pushed three'];
  for (const text of texts) {
    const pushed = await api('POST', `/api/rooms/${ROOM}/messages`, { text, name: 'pusher' });
    expect(pushed.status === 201, `push: ${pushed.status} ${pushed.text}`);
  }
  const ids = [];
  for (const text of texts) {
    const found = await shown(ann, 'ann', text);
    expect(found.length === 1, `ann shows ${JSON.stringify(text)} ${found.length} times`);
    ids.push(found[0]);
  }
  expect(ids[0] < ids[1] && ids[1] < ids[2], `out of order: ${ids}`);
  await waitOpen(ann, 'ann', 'sse');
  expect(streams.length > before, 'ann opened no new stream');
  const resumed = await streams[streams.length - 1];
  const lastEventId = Number(resumed['last-event-id']);
  expect(Number.isInteger(lastEventId) && lastEventId > 0, `the reconnect sent Last-Event-ID ${resumed['last-event-id']}`);
  ok(`ann's stream cut: EventSource came back with Last-Event-ID ${lastEventId}, the 3 pushed messages shown once each, in order`);

  expect(problems.length === 0, `the pages reported:\n  ${problems.join('\n  ')}`);
  ok('no CSP violation and no uncaught error');
} catch (e) {
  console.error(`sse.mjs: FAILED: ${e && e.stack ? e.stack : e}`);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
  clearTimeout(hardTimeout);
}
