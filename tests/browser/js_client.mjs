// Headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core) running the
// JavaScript client as the hub serves it (/wsduplex.js), in a page of `wsduplex serve`: run
// by crates/wsduplex-cli/tests/js_client.rs, installed by ./setup.sh.
//
//   node tests/browser/js_client.mjs http://HOST:PORT/ API_TOKEN restart [websocket|sse|longpoll]
//
// The scenario is tests/interop/node/js_client_scenario.mjs (the Node run's too), given to
// the page as source; the page imports the module from the server, with the page's CSP. A
// line "restart" on stdout asks the harness to restart the server on the same port; the
// last line is "ok ..." on success; any failure exits 1 with the reason on stderr.

import { chromium } from 'playwright-core';
import { scenario } from '../interop/node/js_client_scenario.mjs';

const HARD_TIMEOUT_MS = 60_000;
const CHROMIUM = '/usr/bin/chromium';

const [base, token, mode, transport] = process.argv.slice(2);
if (!base || !/^https?:\/\/[^/]+\/$/.test(base) || !token || !mode) {
  console.error('usage: node js_client.mjs http://HOST:PORT/ API_TOKEN restart');
  process.exit(2);
}
const problems = [];
let browser;
const hardTimeout = setTimeout(() => {
  console.error(`js_client.mjs: FAILED: not done within ${HARD_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, HARD_TIMEOUT_MS);

try {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
  const page = await (await browser.newContext()).newPage();
  page.on('console', (m) => {
    if (/Content.Security.Policy/i.test(m.text())) problems.push(`CSP violation: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e}`));
  await page.exposeFunction('report', (line) => console.log(line));
  // The hub's page: its origin and CSP; the module is imported from the server.
  await page.goto(base, { waitUntil: 'load' });
  const args = JSON.stringify({ base, token, mode, transport });
  const result = await page.evaluate(`(async () => {
    const { Hub } = await import(${JSON.stringify(`${base}wsduplex.js`)});
    const scenario = ${scenario.toString()};
    return scenario({ ...${args}, Hub, report: (line) => window.report(line) });
  })()`);
  if (problems.length) throw new Error(`the page reported:\n  ${problems.join('\n  ')}`);
  console.log(`chromium ${browser.version()}: ok ${JSON.stringify(result.seen)} states: ${result.states}`);
} catch (e) {
  console.error(`js_client.mjs: FAILED: ${e && e.stack ? e.stack : e}`);
  if (problems.length) console.error(`the page reported:\n  ${problems.join('\n  ')}`);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
  clearTimeout(hardTimeout);
}
