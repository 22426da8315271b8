// Headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core) on the chat page
// of the hub nested in an axum app under /hub (crates/wsduplex-hub/examples/axum_chat.rs):
// run by crates/wsduplex-hub/tests/axum_browser.rs, installed by ./setup.sh.
//
//   node tests/browser/hub_prefix.mjs http://HOST:PORT
//
// alice joins over WebSocket and carol over long polling, both through the page at /hub (its
// script and style, its WebSocket and its polls all under the prefix); alice's message reaches
// carol. One line per check on stdout; any failure exits 1 with a message on stderr; the whole
// run is bounded by HARD_TIMEOUT_MS, each wait by STEP_MS (Playwright waits, no fixed sleeps).

import { chromium } from 'playwright-core';

const HARD_TIMEOUT_MS = 45_000;
const STEP_MS = 10_000;
const origin = (process.argv[2] || '').replace(/\/$/, '');
if (!/^https?:\/\/[^/]+$/.test(origin)) {
  console.error('usage: node hub_prefix.mjs http://HOST:PORT');
  process.exit(2);
}
setTimeout(() => {
  console.error(`hub_prefix.mjs: FAILED: timed out after ${HARD_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, HARD_TIMEOUT_MS).unref();

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium' });
const errors = [];
async function open(query, transport) {
  const page = await (await browser.newContext()).newPage();
  page.on('pageerror', (e) => errors.push(`${query}: ${e.message}`));
  const response = await page.goto(`${origin}/hub${query}`, { waitUntil: 'load' });
  if (!response || response.status() !== 200) throw new Error(`GET /hub${query}: ${response && response.status()}`);
  await page.locator('#state', { hasText: /^open$/ }).waitFor({ timeout: STEP_MS });
  const shown = (await page.textContent('#transport')).trim();
  if (shown !== transport) throw new Error(`/hub${query}: transport ${shown}, not ${transport}`);
  console.log(`ok   /hub${query}: open over ${transport}`);
  return page;
}
try {
  const alice = await open('?room=prefix&name=alice', 'websocket');
  const carol = await open('?room=prefix&name=carol&transport=longpoll', 'longpoll');
  await alice.fill('#text', 'hello under a prefix');
  await alice.press('#text', 'Enter');
  await carol.locator('#messages .msg', { hasText: 'hello under a prefix' }).waitFor({ timeout: STEP_MS });
  console.log('ok   carol (long polling) shows the message alice sent over WebSocket');
  if (errors.length) throw new Error(`page errors: ${errors.join('; ')}`);
  console.log('ok   no page error');
} catch (e) {
  console.error(`hub_prefix.mjs: FAILED: ${e.message}`);
  await browser.close();
  process.exit(1);
}
await browser.close();
