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

import { scenario } from '../interop/node/js_client_scenario.mjs';
import { fail, launchChromium, reportFailure, startHardTimeout, watchPage } from './harness.mjs';

const HARD_TIMEOUT_MS = 60_000;

const [base, token, mode, transport] = process.argv.slice(2);
if (!base || !/^https?:\/\/[^/]+\/$/.test(base) || !token || !mode) {
  console.error('usage: node js_client.mjs http://HOST:PORT/ API_TOKEN restart');
  process.exit(2);
}
const problems = [];
let browser;
const hardTimeout = startHardTimeout('js_client.mjs', HARD_TIMEOUT_MS);

try {
  browser = await launchChromium();
  const page = await (await browser.newContext()).newPage();
  watchPage(page, problems);
  await page.exposeFunction('report', (line) => console.log(line));
  // The hub's page: its origin and CSP; the module is imported from the server.
  await page.goto(base, { waitUntil: 'load' });
  const args = JSON.stringify({ base, token, mode, transport });
  const result = await page.evaluate(`(async () => {
    const { Hub } = await import(${JSON.stringify(`${base}wsduplex.js`)});
    const scenario = ${scenario.toString()};
    return scenario({ ...${args}, Hub, report: (line) => window.report(line) });
  })()`);
  if (problems.length) fail(`the page reported:\n  ${problems.join('\n  ')}`);
  console.log(`chromium ${browser.version()}: ok ${JSON.stringify(result.seen)} states: ${result.states}`);
} catch (e) {
  reportFailure('js_client.mjs', e, problems);
} finally {
  if (browser) await browser.close().catch(() => {});
  clearTimeout(hardTimeout);
}
