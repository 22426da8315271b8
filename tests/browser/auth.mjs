// Headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core) against the chat
// page of a `wsduplex serve` that needs a token (--auth-token, or a JWT key): run by
// crates/wsduplex-cli/tests/auth_browser.rs, installed by ./setup.sh.
//
//   node tests/browser/auth.mjs http://HOST:PORT GOOD_TOKEN BAD_TOKEN EXPECTED_NAME [JWT_SECRET]
//
//   1. the landing form is neutral ("not connected", not a red "closed"), and #messages is a
//      live log for screen readers (role="log", aria-live="polite");
//   2. joining without a token asks for one (#auth) instead of retrying: one attempt each
//      (counted: the long-polling POSTs the page made), a wrong token asks again with the
//      server's reason;
//   3. the right token opens the room over WebSocket, with the name EXPECTED_NAME (a JWT's
//      `name` claim, whatever the page asked for), and it is kept for the tab: a reload opens
//      the room again without asking;
//   4. a page restored from the back/forward cache (`pageshow` with `persisted`) reconnects
//      and shows each message once;
//   5. with JWT_SECRET (the server's HS256 secret): a token made here that expires in
//      seconds; the server closes the socket with 4001 when it expires, the page asks for a new token, and goes on with it, missing
//      nothing.
//
// One line per check on stdout; any failure exits 1 with a message on stderr. Waits are
// Playwright waits on the page's state, never fixed sleeps.

import { createHmac } from 'node:crypto';
import { expect, fail, launchChromium, ok, reportFailure, startHardTimeout, watchPage } from './harness.mjs';

const HARD_TIMEOUT_MS = 60_000;
const STEP_MS = 10_000;
const ROOM = 'auth';

const [base, good, bad, expectedName, secret] = process.argv.slice(2);
if (!base || !good || !bad || !expectedName) {
  console.error('usage: node auth.mjs http://HOST:PORT GOOD_TOKEN BAD_TOKEN EXPECTED_NAME [JWT_SECRET]');
  process.exit(2);
}
const origin = base.replace(/\/$/, '');
const hardTimeout = startHardTimeout('auth.mjs', HARD_TIMEOUT_MS);
const started = Date.now();

let browser;
const problems = [];

/** An HS256 JWT for `claims`, signed with `key`. */
function jwt(claims, key) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${head}.${createHmac('sha256', key).update(head).digest('base64url')}`;
}

async function newPage(label) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const page = await context.newPage();
  watchPage(page, problems, `${label}: `);
  // The long-polling opens: one per attempt, so a loop shows as a growing count.
  page.pollOpens = 0;
  page.on('request', (r) => {
    if (r.method() === 'POST' && new URL(r.url()).pathname.startsWith('/poll/') && !r.url().includes('/session/')) page.pollOpens++;
  });
  return page;
}

async function waitState(page, label, state) {
  await page
    .waitForFunction((s) => document.getElementById('state').dataset.state === s, state, { timeout: STEP_MS })
    .catch(async () => fail(`${label}: #state never became "${state}" (it is "${await page.textContent('#state')}")`));
}

async function waitAuthForm(page, label) {
  await page.locator('#auth').waitFor({ state: 'visible', timeout: STEP_MS }).catch(() => fail(`${label}: the token form never showed`));
  return (await page.textContent('#auth-reason')).trim();
}

async function enterToken(page, token) {
  await page.fill('#auth-token', token);
  await page.click('#auth-button');
}

async function send(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

/** How many times the message `text` is shown (waits until at least once). */
async function shownOnce(page, label, text) {
  await page
    .waitForFunction((t) => [...document.querySelectorAll('#messages .msg .text')].some((e) => e.textContent === t), text, { timeout: STEP_MS })
    .catch(() => fail(`${label}: message ${JSON.stringify(text)} never shown`));
  const n = await page.$$eval('#messages .msg .text', (els, t) => els.filter((e) => e.textContent === t).length, text);
  expect(n === 1, `${label}: message ${JSON.stringify(text)} shown ${n} times`);
}

try {
  browser = await launchChromium();
  console.log(`chromium ${browser.version()} (playwright-core)`);

  // ---- 1. the landing form, and the log ----------------------------------------------------
  const page = await newPage('page');
  await page.goto(`${origin}/`, { waitUntil: 'load' });
  await page.locator('#join').waitFor({ state: 'visible', timeout: STEP_MS });
  const landing = await page.evaluate(() => {
    const s = document.getElementById('state');
    const m = document.getElementById('messages');
    return { state: s.dataset.state, text: s.textContent, colour: getComputedStyle(s, '::before').backgroundColor, role: m.getAttribute('role'), live: m.getAttribute('aria-live') };
  });
  expect(landing.state === 'idle' && landing.text === 'not connected', `landing state: ${JSON.stringify(landing)}`);
  ok(`landing form: #state "${landing.text}" (data-state=idle, dot ${landing.colour}), not a red "closed"`);
  expect(landing.role === 'log' && landing.live === 'polite', `#messages: ${JSON.stringify(landing)}`);
  ok('#messages has role="log" and aria-live="polite"');

  // ---- 2. no token, then a wrong one: asked, not retried ---------------------------------------
  await page.goto(`${origin}/?room=${ROOM}&name=typed`, { waitUntil: 'load' });
  const reason = await waitAuthForm(page, 'page');
  expect(page.pollOpens === 1, `one attempt before asking, saw ${page.pollOpens} long-polling opens`);
  ok(`no token: the page asks for one ("${reason}") after one attempt`);
  await enterToken(page, bad);
  await page
    .waitForFunction(
      () => !document.getElementById('auth').hidden && [...document.querySelectorAll('#messages .sys.warn')].filter((e) => e.textContent.startsWith('access token needed')).length === 2,
      null,
      { timeout: STEP_MS },
    )
    .catch(() => fail('a wrong token was not refused'));
  const reason2 = (await page.textContent('#auth-reason')).trim();
  expect(page.pollOpens === 2, `one attempt per token, saw ${page.pollOpens} long-polling opens`);
  ok(`a wrong token: asked again ("${reason2}"), ${page.pollOpens} attempts in all`);

  // ---- 3. the right token; kept across a reload ---------------------------------------------
  await enterToken(page, good);
  await waitState(page, 'page', 'open');
  const me = (await page.textContent('#me')).trim();
  const via = (await page.textContent('#transport')).trim();
  expect(me === expectedName, `name ${JSON.stringify(me)}, expected ${JSON.stringify(expectedName)}`);
  expect(via === 'websocket', `transport ${via} once the token is known`);
  ok(`the right token: open over ${via} as "${me}"`);
  await send(page, 'before the reload');
  await shownOnce(page, 'page', 'before the reload');
  const stored = await page.evaluate(() => sessionStorage.getItem('wsduplex-token'));
  expect(stored === good, 'the token is in sessionStorage');
  await page.reload({ waitUntil: 'load' });
  await waitState(page, 'page after reload', 'open');
  expect(await page.locator('#auth').isHidden(), 'asked again after a reload');
  await shownOnce(page, 'page after reload', 'before the reload');
  ok('a reload opens the room again with the kept token, without asking');

  // ---- 4. back/forward cache -----------------------------------------------------------
  // Chromium keeps a page in the cache only when nothing holds it: the page closes its
  // socket on pagehide. The events are the browser's own when it restores the page; headless
  // Chromium may not use the cache, so they are sent as it would send them.
  await page.evaluate(() => window.dispatchEvent(new PageTransitionEvent('pagehide', { persisted: true })));
  await waitState(page, 'page hidden', 'closed');
  await page.evaluate(() => window.dispatchEvent(new PageTransitionEvent('pageshow', { persisted: true })));
  await waitState(page, 'page restored', 'open');
  await send(page, 'after the restore');
  await shownOnce(page, 'page restored', 'after the restore');
  await shownOnce(page, 'page restored', 'before the reload');
  ok('restored from the back/forward cache (pageshow persisted): reconnected, each message once');

  // ---- 5. a token that expires on an open connection -----------------------------------
  if (secret) {
    // Expires within two to three seconds (exp counts whole seconds).
    const short = jwt({ sub: 'u-short', name: 'Shorty', exp: Math.floor(Date.now() / 1000) + 3 }, secret);
    const p2 = await newPage('short');
    await p2.goto(`${origin}/?room=${ROOM}&name=typed&token=${encodeURIComponent(short)}`, { waitUntil: 'load' });
    await waitState(p2, 'short', 'open');
    await shownOnce(p2, 'short', 'after the restore');
    const why = await waitAuthForm(p2, 'short');
    expect(/expired/.test(why), `asked with the reason ${JSON.stringify(why)}`);
    ok(`a token that expires on an open connection (close 4001): the page asks for a new one ("${why}")`);
    await send(page, 'while the token was renewed');
    await enterToken(p2, good);
    await waitState(p2, 'short', 'open');
    await shownOnce(p2, 'short', 'while the token was renewed');
    await shownOnce(p2, 'short', 'after the restore');
    ok('with the new token it resumes: the message sent meanwhile shows once, nothing twice');
  }

  expect(problems.length === 0, `the pages reported:\n  ${problems.join('\n  ')}`);
  ok('no CSP violation and no uncaught error');
  console.log(`auth.mjs: all checks passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
} catch (e) {
  reportFailure('auth.mjs', e, problems, 'the pages');
} finally {
  if (browser) await browser.close().catch(() => {});
  clearTimeout(hardTimeout);
}
