// Headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core) against the chat
// page of `wsduplex serve` (crates/wsduplex-hub/web/index.html + chat.js, protocol in
// docs/hub.md): run by crates/wsduplex-cli/tests/chat_browser.rs, installed by ./setup.sh.
//
//   node tests/browser/chat.mjs http://HOST:PORT API_TOKEN
//
// Several pages, each in its own browser context, join room "e2e" through the page URL
// (/?room=e2e&name=NAME[&transport=longpoll]):
//   1. alice and bob chat over WebSocket and see each other in the members list;
//   2. carol, forced onto long polling, chats with them; everyone holds the same messages in
//      the same order (ids, senders and texts compared);
//   3. dave's WebSocket upgrade and event stream are refused (his page's sockets and streams
//      point at paths the server does not serve): the page falls back, through Server-Sent
//      Events, to long polling by itself;
//   4. alice's socket is cut by the server (DELETE /api/rooms/e2e/members/alice, no close
//      handshake) and 3 messages are pushed at once (POST /api/rooms/e2e/messages): her page
//      goes through "reconnecting" back to "open" and shows each of them once, in order;
//      the same for carol's long-poll session;
//   5. HTML in a message is shown as text: no script runs, no element is made;
//   plus the join form, a name the server refuses, no CSP violation and no page error.
// Screenshots go to target/browser/chat-*.png.
//
// One line per check on stdout; any failure exits 1 with a message on stderr; the whole run
// is bounded by HARD_TIMEOUT_MS, each wait by STEP_MS. Waits are Playwright waits on the
// page's state, never fixed sleeps.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HARD_TIMEOUT_MS = 60_000;
const STEP_MS = 10_000;
const CHROMIUM = '/usr/bin/chromium';
const ROOM = 'e2e';
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const shots = join(root, 'target', 'browser');

const [base, token] = process.argv.slice(2);
if (!base || !/^https?:\/\/[^/]+\/?$/.test(base) || !token) {
  console.error('usage: node chat.mjs http://HOST:PORT API_TOKEN');
  process.exit(2);
}
const origin = base.replace(/\/$/, '');

const hardTimeout = setTimeout(() => {
  console.error(`chat.mjs: FAILED: timed out after ${HARD_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, HARD_TIMEOUT_MS);

const started = Date.now();
const ok = (what) => console.log(`ok   ${what}`);
const fail = (what) => {
  throw new Error(what);
};
const expect = (cond, what) => {
  if (!cond) fail(what);
};

/** A call to the hub's HTTP API (or any path) with the bearer token: status and JSON body. */
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
    // not JSON: the caller looks at the status
  }
  return { status: response.status, json, text };
}

let browser;
/** Every page opened, for the CSP/page-error check at the end. */
const problems = [];

/**
 * A new browser context and page at `/?room=..&name=..` (or `query` as given); `blockUpgrade`
 * points the page's WebSockets at a path the server does not upgrade, as a proxy that strips
 * the upgrade would.
 */
async function openPage(label, query, { viewport = { width: 1100, height: 720 }, blockUpgrade = false } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (/Content.Security.Policy/i.test(m.text())) problems.push(`${label}: CSP violation: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`${label}: page error: ${e}`));
  if (blockUpgrade) {
    await page.addInitScript(() => {
      const Real = window.WebSocket;
      window.WebSocket = class extends Real {
        constructor(url, protocols) {
          super(String(url).replace('/chat/', '/no-upgrade-here/'), protocols);
        }
      };
      // A proxy that buffers responses breaks event streams too: the page's next choice
      // after WebSocket (Server-Sent Events) fails as well, and long polling is left.
      const RealSource = window.EventSource;
      window.EventSource = class extends RealSource {
        constructor(url, init) {
          super(String(url).replace('/sse/', '/no-stream-here/'), init);
        }
      };
    });
  }
  const response = await page.goto(`${origin}/${query}`, { waitUntil: 'load' });
  expect(response && response.status() === 200, `${label}: GET /${query}: status ${response && response.status()}`);
  return page;
}

const joinQuery = (name, extra = '') => `?room=${ROOM}&name=${encodeURIComponent(name)}${extra}`;

async function waitState(page, label, state) {
  await page.locator('#state', { hasText: new RegExp(`^${state}$`) }).waitFor({ timeout: STEP_MS }).catch(async () => {
    fail(`${label}: #state never became "${state}" (it is "${await page.textContent('#state')}")`);
  });
}

async function transport(page) {
  return (await page.textContent('#transport')).trim();
}

/** Waits until the page shows a message whose text is exactly `text`; returns its id. */
async function waitMessage(page, label, text) {
  const handle = await page
    .waitForFunction(
      (t) => {
        const m = [...document.querySelectorAll('#messages .msg')].find((e) => e.querySelector('.text')?.textContent === t);
        return m ? Number(m.dataset.id) : null;
      },
      text,
      { timeout: STEP_MS },
    )
    .catch(() => fail(`${label}: message ${JSON.stringify(text)} never shown`));
  return handle.jsonValue();
}

/** Waits until the members list is exactly `names` (in any order). */
async function waitMembers(page, label, names) {
  const want = [...names].sort();
  await page
    .waitForFunction(
      (w) => JSON.stringify([...document.querySelectorAll('#members li')].map((li) => li.textContent.trim()).sort()) === JSON.stringify(w),
      want,
      { timeout: STEP_MS },
    )
    .catch(async () => {
      const have = await page.$$eval('#members li', (lis) => lis.map((li) => li.textContent.trim()));
      fail(`${label}: members should be ${JSON.stringify(want)}, are ${JSON.stringify(have)}`);
    });
}

/** Every chat message shown, in page order: {id, name, text}. */
function messages(page) {
  return page.$$eval('#messages .msg', (els) =>
    els.map((e) => ({ id: Number(e.dataset.id), name: e.querySelector('.name')?.textContent, text: e.querySelector('.text')?.textContent })),
  );
}

/** Ids strictly increasing (so none twice) on one page. */
async function checkIdsIncreasing(page, label) {
  const ids = (await messages(page)).map((m) => m.id);
  for (let i = 1; i < ids.length; i++) {
    expect(ids[i] > ids[i - 1], `${label}: ids out of order or repeated: ${JSON.stringify(ids)}`);
  }
  return ids;
}

/** All pages hold exactly the same messages in the same order, once `lastId` reached each. */
async function checkSameMessages(pages, lastId) {
  const seen = [];
  for (const [label, page] of pages) {
    await page
      .locator(`#messages .msg[data-id="${lastId}"]`)
      .waitFor({ timeout: STEP_MS })
      .catch(() => fail(`${label}: message ${lastId} never shown`));
    await checkIdsIncreasing(page, label);
    seen.push([label, JSON.stringify(await messages(page))]);
  }
  const [first, want] = seen[0];
  for (const [label, have] of seen.slice(1)) {
    expect(have === want, `${label} and ${first} differ:\n  ${label}: ${have}\n  ${first}: ${want}`);
  }
  return JSON.parse(want).length;
}

async function send(page, text, how = 'enter') {
  await page.fill('#text', text);
  if (how === 'enter') await page.press('#text', 'Enter');
  else await page.click('#send');
}

/** Starts recording every value #state takes (a MutationObserver in the page). */
async function recordStates(page) {
  await page.evaluate(() => {
    const state = document.getElementById('state');
    window.__states = [state.textContent];
    new MutationObserver(() => window.__states.push(state.textContent)).observe(state, {
      childList: true,
      characterData: true,
      subtree: true,
    });
  });
}

/**
 * Cuts `name`'s connection from the server side, pushes `texts` at once, and checks that
 * the page went through "reconnecting" back to "open" and shows each text once, in order.
 */
async function cutAndResume(page, label, name, texts) {
  await recordStates(page);
  const cut = await api('DELETE', `/api/rooms/${ROOM}/members/${encodeURIComponent(name)}`);
  expect(cut.status === 204, `DELETE /api/rooms/${ROOM}/members/${name}: expected 204, got ${cut.status} ${cut.text}`);
  const ids = [];
  for (const text of texts) {
    const pushed = await api('POST', `/api/rooms/${ROOM}/messages`, { text, name: 'pusher' });
    expect(pushed.status === 201 && Number.isInteger(pushed.json?.id), `POST /api/rooms/${ROOM}/messages: expected 201 {"id":N}, got ${pushed.status} ${pushed.text}`);
    ids.push(pushed.json.id);
  }
  for (let i = 1; i < ids.length; i++) expect(ids[i] === ids[i - 1] + 1, `pushed ids not consecutive: ${ids}`);
  ok(`${name} cut (204), ${texts.length} messages pushed right after: ids ${ids.join(', ')}`);

  await page
    .waitForFunction(
      () => {
        const s = window.__states;
        const r = s.indexOf('reconnecting');
        return r >= 0 && s.indexOf('open', r) > r && document.getElementById('state').textContent === 'open';
      },
      null,
      { timeout: STEP_MS },
    )
    .catch(async () => fail(`${label}: #state should go reconnecting -> open, went ${JSON.stringify(await page.evaluate(() => window.__states))}`));
  const states = await page.evaluate(() => window.__states);
  ok(`${label}: #state went ${states.join(' -> ')}`);

  await page
    .locator(`#messages .msg[data-id="${ids[ids.length - 1]}"]`)
    .waitFor({ timeout: STEP_MS })
    .catch(() => fail(`${label}: pushed message ${ids[ids.length - 1]} never shown after the reconnect`));
  const shown = await messages(page);
  const mine = shown.filter((m) => ids.includes(m.id));
  expect(
    JSON.stringify(mine) === JSON.stringify(ids.map((id, i) => ({ id, name: 'pusher', text: texts[i] }))),
    `${label}: expected the pushed messages once each, in order, got ${JSON.stringify(mine)}`,
  );
  await checkIdsIncreasing(page, label);
  ok(`${label}: the ${texts.length} messages pushed while cut are shown exactly once, in order, no id twice`);
  return ids;
}

try {
  // ---- 0. what the server serves ---------------------------------------------------------
  const index = await fetch(`${origin}/`, { signal: AbortSignal.timeout(STEP_MS) });
  const csp = index.headers.get('content-security-policy');
  expect(index.status === 200, `GET /: status ${index.status}`);
  expect(/text\/html/.test(index.headers.get('content-type') ?? ''), `GET /: content-type ${index.headers.get('content-type')}`);
  expect(csp && /script-src 'self'/.test(csp) && !/unsafe-inline/.test(csp), `GET /: expected a Content-Security-Policy with script-src 'self', got ${csp}`);
  ok(`GET / is the chat page, Content-Security-Policy: ${csp}`);
  for (const [path, type] of [
    ['/chat.js', /javascript/],
    ['/chat.css', /text\/css/],
  ]) {
    const r = await fetch(origin + path, { signal: AbortSignal.timeout(STEP_MS) });
    expect(r.status === 200 && type.test(r.headers.get('content-type') ?? ''), `GET ${path}: ${r.status} ${r.headers.get('content-type')}`);
  }
  ok('GET /chat.js and /chat.css: 200 with the right content types');

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
  console.log(`chromium ${browser.version()} (playwright-core)`);
  mkdirSync(shots, { recursive: true });

  // ---- the join form, and a name the server refuses ---------------------------------------
  const form = await openPage('form', '');
  await form.locator('#join').waitFor({ timeout: STEP_MS });
  expect((await form.textContent('#state')) === 'not connected', 'form: #state should be a neutral "not connected" before joining');
  await form.screenshot({ path: join(shots, 'chat-join.png') });
  await form.fill('#join-name', 'erin');
  await form.fill('#join-room', 'e2e-form');
  await form.click('#join-button');
  await waitState(form, 'form', 'open');
  expect(new URL(form.url()).searchParams.get('room') === 'e2e-form', `form: the URL should name the room, is ${form.url()}`);
  await waitMembers(form, 'form', ['erin']);
  ok('join form: erin joins e2e-form by clicking Join, state open, URL updated');
  await form.context().close();

  const refused = await openPage('refused', '?room=e2e-bad&name=%3Cb%3Ebad');
  await refused
    .locator('#join-error')
    .waitFor({ timeout: STEP_MS })
    .catch(() => fail('refused: a name with "<" was not refused'));
  await waitState(refused, 'refused', 'closed');
  ok(`a name the server refuses: state closed, the form shows ${JSON.stringify(await refused.textContent('#join-error'))}`);
  await refused.context().close();

  // ---- 1. alice and bob over WebSocket ---------------------------------------------------
  const alice = await openPage('alice', joinQuery('alice'));
  await waitState(alice, 'alice', 'open');
  const bob = await openPage('bob', joinQuery('bob'));
  await waitState(bob, 'bob', 'open');
  expect((await transport(alice)) === 'websocket' && (await transport(bob)) === 'websocket', 'alice and bob should use websocket');
  ok('alice and bob: state open, transport websocket');
  await waitMembers(alice, 'alice', ['alice', 'bob']);
  await waitMembers(bob, 'bob', ['alice', 'bob']);
  ok('alice and bob: members list shows both');

  await send(alice, 'hello from alice', 'enter');
  const a1 = await waitMessage(bob, 'bob', 'hello from alice');
  await waitMessage(alice, 'alice', 'hello from alice');
  await send(bob, 'hi alice, bob here', 'button');
  const b1 = await waitMessage(alice, 'alice', 'hi alice, bob here');
  expect(b1 > a1, `ids should increase: alice's ${a1}, bob's ${b1}`);
  const named = await alice.$eval(`#messages .msg[data-id="${a1}"] .name`, (e) => e.textContent);
  expect(named === 'alice', `the message's sender should read alice, reads ${named}`);
  ok(`alice (Enter) and bob (Send button) see each other's messages (ids ${a1}, ${b1}), with the sender's name`);

  // ---- 2. carol over long polling ------------------------------------------------------------
  const carol = await openPage('carol', joinQuery('carol', '&transport=longpoll'), { viewport: { width: 390, height: 760 } });
  await waitState(carol, 'carol', 'open');
  expect((await transport(carol)) === 'longpoll', `carol: transport should be longpoll, is ${await transport(carol)}`);
  ok('carol (?transport=longpoll): state open, transport longpoll');
  for (const [label, page] of [['alice', alice], ['bob', bob], ['carol', carol]]) {
    await waitMembers(page, label, ['alice', 'bob', 'carol']);
  }
  ok('alice, bob and carol: members list shows all three');
  await waitMessage(carol, 'carol', 'hi alice, bob here');
  ok('carol got the history over long polling');
  await send(carol, 'carol on long polling', 'enter');
  const c1 = await waitMessage(alice, 'alice', 'carol on long polling');
  await waitMessage(bob, 'bob', 'carol on long polling');
  await waitMessage(carol, 'carol', 'carol on long polling');
  await send(alice, 'welcome carol', 'enter');
  await send(bob, 'hello carol', 'enter');
  const a2 = await waitMessage(carol, 'carol', 'welcome carol');
  const b2 = await waitMessage(carol, 'carol', 'hello carol');
  ok(`carol's message (id ${c1}) reached alice and bob; theirs (ids ${a2}, ${b2}) reached carol`);
  let n = await checkSameMessages([['alice', alice], ['bob', bob], ['carol', carol]], Math.max(a2, b2));
  ok(`alice, bob and carol show the same ${n} messages in the same order (ids, names, texts)`);

  // ---- 3. a WebSocket that cannot open: the page falls back to long polling --------------
  const dave = await openPage('dave', joinQuery('dave'), { blockUpgrade: true });
  await waitState(dave, 'dave', 'open');
  expect((await transport(dave)) === 'longpoll', `dave: transport should have fallen back to longpoll, is ${await transport(dave)}`);
  await send(dave, 'dave fell back to long polling', 'enter');
  const d1 = await waitMessage(alice, 'alice', 'dave fell back to long polling');
  n = await checkSameMessages([['alice', alice], ['bob', bob], ['carol', carol], ['dave', dave]], d1);
  ok(`dave (upgrade refused): fell back to long polling by itself, state open, same ${n} messages as the others`);

  // ---- 4. connections cut by the server: resume without loss or duplicates -------------
  const pushedA = await cutAndResume(alice, 'alice', 'alice', ['pushed one', 'pushed two', 'pushed three']);
  expect((await transport(alice)) === 'websocket', `alice: transport should still be websocket, is ${await transport(alice)}`);
  await waitMembers(bob, 'bob', ['alice', 'bob', 'carol', 'dave']);
  ok('alice: back on websocket, and back in the members list as "alice"');
  const pushedC = await cutAndResume(carol, 'carol', 'carol', ['long-poll cut one', 'long-poll cut two']);
  expect((await transport(carol)) === 'longpoll', `carol: transport should still be longpoll, is ${await transport(carol)}`);
  await send(alice, 'after the cuts', 'enter');
  const last = await waitMessage(carol, 'carol', 'after the cuts');
  expect(last > pushedC[pushedC.length - 1] && pushedC[0] > pushedA[2], 'ids should keep increasing');
  await send(carol, 'carol still sends', 'enter');
  const last2 = await waitMessage(alice, 'alice', 'carol still sends');
  n = await checkSameMessages([['alice', alice], ['bob', bob], ['carol', carol], ['dave', dave]], last2);
  ok(`after both cuts, all four pages show the same ${n} messages in the same order`);

  // ---- 5. HTML in a message is text ----------------------------------------------------------
  const payload = '<script>window.__xss=1</script><b>bold</b>';
  await send(bob, payload, 'enter');
  const x = await waitMessage(alice, 'alice', payload);
  for (const [label, page] of [['alice', alice], ['bob', bob], ['carol', carol], ['dave', dave]]) {
    await page.locator(`#messages .msg[data-id="${x}"]`).waitFor({ timeout: STEP_MS });
    const r = await page.evaluate((id) => {
      const msg = document.querySelector(`#messages .msg[data-id="${id}"]`);
      return { text: msg.textContent, elements: msg.querySelectorAll('b, script').length, xss: typeof window.__xss };
    }, x);
    expect(r.text.includes(payload), `${label}: message ${x} should contain the literal text, has ${JSON.stringify(r.text)}`);
    expect(r.elements === 0, `${label}: message ${x} contains ${r.elements} <b>/<script> elements`);
    expect(r.xss === 'undefined', `${label}: window.__xss is ${r.xss}: the script ran`);
  }
  ok('HTML in a message shows as literal text on all four pages: no <b>, no <script>, window.__xss undefined');

  // ---- 6. screenshots, and what the pages complained about -------------------------------
  for (const [label, page] of [['alice', alice], ['bob', bob], ['carol-phone', carol], ['dave', dave]]) {
    const file = join(shots, `chat-${label}.png`);
    await page.screenshot({ path: file });
    console.log(`screenshot: ${file}`);
  }
  expect(problems.length === 0, `the pages reported:\n  ${problems.join('\n  ')}`);
  ok('no CSP violation and no uncaught error on any page');
  console.log(`chat.mjs: all checks passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
} catch (e) {
  console.error(`chat.mjs: FAILED: ${e && e.stack ? e.stack : e}`);
  if (problems.length) console.error(`the pages reported:\n  ${problems.join('\n  ')}`);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
  clearTimeout(hardTimeout);
}
