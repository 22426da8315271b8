// What the Chromium scripts share (handover.mjs, js_client.mjs, auth.mjs): Debian's
// Chromium launched headless; a check that fails throws, the script's outer `catch` prints
// one line `SCRIPT: FAILED: ...` (and what the pages reported) on stderr and sets exit code
// 1, which the Rust test that runs the script reports; a hard timeout bounds the whole run.

import { chromium } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';

/** Debian's Chromium, headless, without its background traffic and QUIC. */
export function launchChromium() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

/** One passed check on stdout. */
export const ok = (what) => console.log(`ok   ${what}`);

export function fail(what) {
  throw new Error(what);
}

export function expect(cond, what) {
  if (!cond) fail(what);
}

/**
 * Exits 1 with `SCRIPT: FAILED: not done within N s` unless cleared (`clearTimeout`) within
 * `ms`: a page that hangs fails the test instead of blocking it.
 */
export function startHardTimeout(script, ms) {
  return setTimeout(() => {
    console.error(`${script}: FAILED: not done within ${ms / 1000} s`);
    process.exit(1);
  }, ms);
}

/** Collects the page's CSP violations and uncaught errors into `problems`, each after `prefix`. */
export function watchPage(page, problems, prefix = '') {
  page.on('console', (m) => {
    if (/Content.Security.Policy/i.test(m.text())) problems.push(`${prefix}CSP violation: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`${prefix}page error: ${e}`));
}

/** What the outer `catch` does with `e`: the reason and the pages' problems on stderr, exit code 1. */
export function reportFailure(script, e, problems, who = 'the page') {
  console.error(`${script}: FAILED: ${e && e.stack ? e.stack : e}`);
  if (problems.length) console.error(`${who} reported:\n  ${problems.join('\n  ')}`);
  process.exitCode = 1;
}
