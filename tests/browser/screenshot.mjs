// Takes the README's screenshot, docs/chat.png: three people in room "design-review" of a
// running `wsduplex serve`, a short conversation typed into their pages (headless Chromium,
// Debian's /usr/bin/chromium driven by playwright-core, installed by ./setup.sh), captured
// from one of them. Not a test: run it by hand after the page changes.
//
//   cargo run --release -- serve --listen 127.0.0.1:8080 &
//   node tests/browser/screenshot.mjs http://127.0.0.1:8080 [OUT.png]
//
// Waits are Playwright waits on the page's state (the message shown on every page), never
// fixed sleeps; the whole run is bounded by HARD_TIMEOUT_MS.

import { chromium } from 'playwright-core';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HARD_TIMEOUT_MS = 60_000;
const STEP_MS = 10_000;
const ROOM = 'design-review';
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

const [base, out = join(root, 'docs', 'chat.png')] = process.argv.slice(2);
if (!base || !/^https?:\/\/[^/]+\/?$/.test(base)) {
  console.error('usage: node screenshot.mjs http://HOST:PORT [OUT.png]');
  process.exit(2);
}
const origin = base.replace(/\/$/, '');
setTimeout(() => {
  console.error(`screenshot.mjs: timed out after ${HARD_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, HARD_TIMEOUT_MS).unref();

const CONVERSATION = [
  ['maya', 'Morning! The new dashboard build is up on staging.'],
  ['jonas', 'Nice. Are the order-book updates going over the WebSocket now?'],
  ['maya', 'Yes, one socket per tab. Polling is gone, so no more 1 s refresh requests.'],
  ['jonas', 'What happens when the connection drops on a train?'],
  ['maya', 'It reconnects with backoff and resumes from the last message id, nothing lost.'],
  ['priya', 'And behind the corporate proxy it fell back to long polling by itself.'],
  ['jonas', 'Ship it.'],
];

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
try {
  const pages = new Map();
  for (const name of ['maya', 'jonas', 'priya']) {
    const context = await browser.newContext({ viewport: { width: 1100, height: 720 }, deviceScaleFactor: 1 });
    const page = await context.newPage();
    await page.goto(`${origin}/?room=${ROOM}&name=${name}`, { waitUntil: 'load' });
    await page.locator('#state', { hasText: /^open$/ }).waitFor({ timeout: STEP_MS });
    pages.set(name, page);
  }
  for (const [name, text] of CONVERSATION) {
    const page = pages.get(name);
    await page.fill('#text', text);
    await page.click('#send');
    for (const p of pages.values()) {
      await p.waitForFunction(
        (t) => [...document.querySelectorAll('#messages .msg .text')].some((e) => e.textContent === t),
        text,
        { timeout: STEP_MS },
      );
    }
  }
  await pages.get('maya').screenshot({ path: out });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
}
