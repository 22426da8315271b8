// Headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core) on the chat page
// of a `wsduplex serve --control PATH` that hands itself over to new processes
// (`serve --take-over PATH`, docs/handover.md) while the page chats: run by
// crates/wsduplex-cli/tests/handover_browser.rs, installed by ./setup.sh.
//
//   node tests/browser/handover.mjs http://HOST:PORT/ websocket|longpoll HANDOVERS [killed]
//
// The page (alice) joins room "handover" at /?room=handover&name=alice (forced onto long
// polling with `longpoll`); bob, the Rust test's raw WebSocket, is there already. Lines on
// stdout ask the test to act:
//   say TEXT      bob sends TEXT;
//   handover N    the test starts a new process, waits for the old one to exit 0, then bob
//                 sends "bob after hand-over N".
// Meanwhile the page keeps publishing, up to WINDOW messages ahead of their echoes, until
// bob's message arrives: some of them reach the old process before it freezes, some wait in
// the socket (or, over long polling, the listen backlog, or a 503 and its Retry-After) for
// the new one. Then the page publishes once more. At the end: the page never left "open"
// (WebSocket: one socket, opened once, never closed, no error; long polling: every 503 it
// got carried `Connection: close`, and it did not show "reconnecting": the session was
// paused, not lost), no warning or error note, ids 1..N each shown once in order. The last
// line is "done JSON" (the messages shown, [id, name, text]); the test compares it with
// what bob received. Any failure exits 1 with the reason on stderr.
//
// `killed`: the new process dies once it has acknowledged the page's WebSocket (a test
// hook), and bob speaks through the push API: the page's connection dies with the new
// process, and the page reconnects by itself to the old one, which serves on, and resumes
// with `since`: #state goes reconnecting, then open; a second WebSocket opens; ids go on
// once each. The page publishes nothing meanwhile (docs/handover.md: what a dead new
// process gave an id may get that id again from the old one).

import { expect, fail, launchChromium, ok, reportFailure, startHardTimeout, watchPage } from './harness.mjs';

const HARD_TIMEOUT_MS = 60_000;
const STEP_MS = 10_000;
/** A bound on the messages published during one hand-over, in case bob's never comes. */
const MAX_DURING = 2000;
/** Messages the page publishes ahead of their echoes during a hand-over. */
const WINDOW = 10;
const ROOM = 'handover';

const [base, transport, rounds, mode] = process.argv.slice(2);
const killed = mode === 'killed';
if (!base || !/^https?:\/\/[^/]+\/$/.test(base) || !['websocket', 'longpoll'].includes(transport) || !(Number(rounds) >= 1)) {
  console.error('usage: node handover.mjs http://HOST:PORT/ websocket|longpoll HANDOVERS');
  process.exit(2);
}
const hardTimeout = startHardTimeout('handover.mjs', HARD_TIMEOUT_MS);

let browser;
const problems = [];
/** Every 503 the page got from the hub: method, path, its Connection header. */
const refusals = [];

try {
  browser = await launchChromium();
  const page = await (await browser.newContext()).newPage();
  watchPage(page, problems);
  page.on('response', (r) => {
    if (r.status() === 503) {
      const path = new URL(r.url()).pathname;
      refusals.push({ method: r.request().method(), path, connection: r.headers().connection ?? null });
    }
  });
  // Before the page's scripts: every WebSocket it makes, counted with its events.
  await page.addInitScript(() => {
    window.__ws = { made: 0, opened: 0, closed: 0, errors: 0 };
    const Real = window.WebSocket;
    window.WebSocket = class extends Real {
      constructor(url, protocols) {
        super(url, protocols);
        window.__ws.made++;
        this.addEventListener('open', () => window.__ws.opened++);
        this.addEventListener('close', () => window.__ws.closed++);
        this.addEventListener('error', () => window.__ws.errors++);
      }
    };
  });
  const query = `?room=${ROOM}&name=alice${transport === 'longpoll' ? '&transport=longpoll' : ''}`;
  const response = await page.goto(`${base}${query}`, { waitUntil: 'load' });
  expect(response && response.status() === 200, `GET /${query}: ${response && response.status()}`);
  await page.locator('#state', { hasText: /^open$/ }).waitFor({ timeout: STEP_MS });
  expect((await page.textContent('#transport')).trim() === transport, `transport ${await page.textContent('#transport')}`);
  // Every value #state takes from now on.
  await page.evaluate(() => {
    const state = document.getElementById('state');
    window.__states = [state.textContent];
    new MutationObserver(() => window.__states.push(state.textContent)).observe(state, { childList: true, characterData: true, subtree: true });
  });
  const members = killed ? 'alice' : 'alice,bob';
  await page
    .waitForFunction((want) => [...document.querySelectorAll('#members li')].map((li) => li.textContent.trim()).sort().join() === want, members, { timeout: STEP_MS })
    .catch(() => fail(`the members list never became ${members}`));
  ok(`the page is open over ${transport}, with ${members}`);

  const shown = (text) =>
    page.evaluate((t) => [...document.querySelectorAll('#messages .msg .text')].some((e) => e.textContent === t), text);
  const waitShown = (text) =>
    page
      .waitForFunction((t) => [...document.querySelectorAll('#messages .msg .text')].some((e) => e.textContent === t), text, { timeout: STEP_MS })
      .catch(() => fail(`message ${JSON.stringify(text)} never shown`));
  const type = async (text) => {
    await page.fill('#text', text);
    await page.press('#text', 'Enter');
  };
  const send = async (text) => {
    await type(text);
    await waitShown(text);
  };

  await send('alice before');
  console.log('say bob before');
  await waitShown('bob before');
  ok('alice and bob chat before the hand-over');

  for (let round = 1; round <= Number(rounds); round++) {
    const signal = `bob after hand-over ${round}`;
    console.log(`handover ${round}`);
    let during = 0;
    const unseen = [];
    while (!killed && !(await shown(signal))) {
      expect(during < MAX_DURING, `${signal}: not shown after ${MAX_DURING} messages`);
      if (unseen.length === WINDOW) await waitShown(unseen.shift());
      during++;
      unseen.push(`alice during ${round}.${during}`);
      await type(unseen[unseen.length - 1]);
    }
    for (const text of unseen) await waitShown(text);
    if (killed) await waitShown(signal);
    await send(`alice after hand-over ${round}`);
    ok(`hand-over ${round}: ${during} messages published while it ran, then bob's and alice's after it`);
  }

  const messages = await page.$$eval('#messages .msg', (els) =>
    els.map((e) => [Number(e.dataset.id), e.querySelector('.name')?.textContent, e.querySelector('.text')?.textContent]),
  );
  const ids = JSON.stringify(messages.map((m) => m[0]));
  if (killed) {
    // A hand-over that failed after the hub was written down moves every room's ids on by
    // 2^32 (the new process may have given some before it died: docs/handover.md): the ids
    // go 1..k, then once k + 2^32 + 1 and on by one.
    const JUMP = 2 ** 32;
    let jumps = 0;
    messages.forEach(([id], i) => {
      const prev = i === 0 ? 0 : messages[i - 1][0];
      if (id === prev + JUMP + 1 && i > 0) jumps++;
      else expect(id === prev + 1, `ids not 1..k then k + 2^32 + 1 on: ${ids}`);
    });
    expect(jumps === 1, `ids jumped ${jumps} times, not once: ${ids}`);
    ok(`ids ${ids}: each shown once, in order, past the dead process's after the failed hand-over`);
  } else {
    messages.forEach(([id], i) => expect(id === i + 1, `ids not 1..${messages.length} in order: ${ids}`));
    ok(`ids 1..${messages.length}, each shown once, in order`);
  }
  const states = await page.evaluate(() => window.__states);
  const ws = await page.evaluate(() => window.__ws);
  if (killed) {
    const r = states.indexOf('reconnecting');
    expect(r > 0 && states.every((st, i) => st === (i === r ? 'reconnecting' : 'open')), `#state went ${states.join(' -> ')}`);
    expect(ws.made === 2 && ws.opened === 2 && ws.closed === 1, `WebSockets: ${JSON.stringify(ws)}`);
    ok(`the socket died with the new process; the page reconnected by itself: #state went ${states.join(' -> ')}, WebSockets ${JSON.stringify(ws)}`);
  } else if (transport === 'websocket') {
    expect(states.every((s) => s === 'open'), `#state went ${states.join(' -> ')}`);
    expect(ws.made === 1 && ws.opened === 1 && ws.closed === 0 && ws.errors === 0, `WebSockets: ${JSON.stringify(ws)}`);
    ok('one WebSocket, opened once, never closed, no error; #state stayed "open"');
  } else {
    expect(ws.made === 0, `WebSockets: ${JSON.stringify(ws)}`);
    expect(states.every((st) => st === 'open'), `#state went ${states.join(' -> ')}`);
    const refused = refusals.filter((r) => r.path.startsWith('/poll/'));
    expect(refused.length === refusals.length, `503 outside the long-poll paths: ${JSON.stringify(refusals)}`);
    expect(refused.every((r) => r.connection === 'close'), `a 503 without Connection: close: ${JSON.stringify(refused)}`);
    const by = (m) => refused.filter((r) => r.method === m).length;
    ok(`#state stayed "open"; 503 handing_over: ${by('GET')} polls, ${by('POST')} posts (each with Connection: close)`);
  }
  const notes = await page.$$eval('#messages .sys.warn, #messages .sys.error', (els) => els.map((e) => e.textContent));
  // Killed: the client says why it reconnects.
  expect(killed ? notes.length >= 1 && notes.every((n) => /reconnecting/.test(n)) : notes.length === 0, `the page warned: ${JSON.stringify(notes)}`);
  if (problems.length) fail(`the page reported:\n  ${problems.join('\n  ')}`);
  console.log(`done ${JSON.stringify(messages)}`);
} catch (e) {
  reportFailure('handover.mjs', e, problems);
} finally {
  if (browser) await browser.close().catch(() => {});
  clearTimeout(hardTimeout);
}
