// The JavaScript client (clients/js, the npm package) in Node with `ws` as its WebSocket,
// against `wsduplex serve`: run by crates/wsduplex-cli/tests/js_client.rs.
//
//   node tests/interop/node/js_client.mjs BASE_URL API_TOKEN restart|failover [websocket|longpoll]
//
// The scenario is js_client_scenario.mjs. A line "restart" or "subscribed" on stdout asks
// the harness to act (restart the server, kill a node); the last line is "ok ..." on
// success; any failure exits 1 with the reason on stderr.

import WebSocket from 'ws';
import { Hub } from '../../../clients/js/wsduplex.js';
import { scenario } from './js_client_scenario.mjs';

const [base, token, mode, transport] = process.argv.slice(2);
if (!base || !token || !mode) {
  console.error('usage: node js_client.mjs BASE_URL API_TOKEN restart|failover');
  process.exit(2);
}
const hardTimeout = setTimeout(() => {
  console.error('js_client.mjs: FAILED: not done within 60 s');
  process.exit(1);
}, 60_000);

try {
  const result = await scenario({ Hub, WebSocket, base, token, mode, transport, report: async (line) => console.log(line) });
  console.log(`ok ${JSON.stringify(result.seen)} states: ${result.states}`);
  clearTimeout(hardTimeout);
} catch (e) {
  console.error(`js_client.mjs: FAILED: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
}
