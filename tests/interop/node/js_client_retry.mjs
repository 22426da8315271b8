// The JavaScript client over long polling against a fake hub that refuses each request
// once with `503 handing_over` (what a hub handing over to a new process answers: docs/hub.md):
// run by crates/wsduplex-cli/tests/js_client.rs. Node's own modules only.
//
//   node tests/interop/node/js_client_retry.mjs
//
// - a message POST refused once (`Retry-After: 1`) is sent again after the delay, and
//   published exactly once: the page sees it once, with its id, and no `error`;
// - a subscribe refused once (the header hidden, as from another origin: the body's
//   `handing_over` alone) is sent again too, and the room opens;
// - a long poll refused once with `503 handing_over` asks again with the same cursor, and
//   the state stays "open" (the session is paused, not lost);
// - a `503` without `Retry-After` or `handing_over` (Redis unavailable, say) is not sent again:
//   the `error` event reports it, as before.
// Prints one line per check; any failure exits 1 with the reason on stderr.

import { createServer } from 'node:http';
import { Hub } from '../../../clients/js/wsduplex.js';
import { checks } from './assert_helpers.mjs';

const { fail, expect, next, hardTimeout } = checks('js_client_retry.mjs');

// ---- the fake hub: one session, its queue, the refusals it is told to make --------------

/** What a hub handing over answers (crates/wsduplex-hub/src/http.rs). */
const HANDING_OVER = {
  type: 'error',
  error: 'handing_over',
  message: 'the server is handing over to a new process: send the request again',
};

const SESSION = 'fake-session';
const queue = []; // every event of the session, in order; a cursor is an index into it
let waiting = null; // a GET waiting for the queue to grow
let nextId = 0;
/** Each POST to the session: when it came, its body, the status answered. */
const posts = [];
/** The answers to give the next POSTs before accepting them. */
const refusals = [];
/** GETs to refuse with `503 handing_over`, and the cursors of those refused. */
let refuseGets = 0;
const refusedGets = [];

function push(event) {
  queue.push(event);
  if (waiting) waiting();
}
const welcome = (room) => ({ type: 'welcome', room, name: 'retry', members: ['retry'], last_id: 0, history: [] });

function answer(res, status, body, headers = {}) {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', ...headers });
  res.end(body === undefined ? '' : JSON.stringify(body));
}

const server = createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    const url = new URL(req.url, 'http://fake/');
    if (req.method === 'POST' && url.pathname === '/poll/lobby') {
      return answer(res, 200, { session: SESSION, cursor: 0, events: [welcome('lobby')] });
    }
    if (req.method === 'GET' && url.pathname === `/poll/session/${SESSION}`) {
      const cursor = Number(url.searchParams.get('cursor'));
      if (refuseGets > 0) {
        refuseGets--;
        refusedGets.push(cursor);
        return answer(res, 503, HANDING_OVER, { 'Retry-After': '1' });
      }
      const reply = () => {
        waiting = null;
        answer(res, 200, { cursor: queue.length, events: queue.slice(cursor) });
      };
      if (queue.length > cursor) return reply();
      waiting = reply;
      return undefined;
    }
    if (req.method === 'POST' && url.pathname === `/poll/session/${SESSION}`) {
      const refusal = refusals.shift();
      posts.push({ at: Date.now(), body: JSON.parse(body), status: refusal ? 503 : 202 });
      if (refusal) return answer(res, 503, refusal.event, refusal.headers);
      const m = JSON.parse(body);
      answer(res, 202);
      if (m.type === 'subscribe') push(welcome(m.room));
      else if (m.type === 'message') push({ type: 'message', room: m.room, id: ++nextId, name: 'retry', text: m.text });
      return undefined;
    }
    return answer(res, 404, { type: 'error', error: 'not_found' });
  });
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const base = `http://127.0.0.1:${server.address().port}/`;

try {
  const hub = new Hub(base, { name: 'retry', transports: ['longpoll'], backoffStart: 10 });
  const problems = [];
  hub.on('error', (e) => problems.push(`hub error ${JSON.stringify(e)}`));
  hub.on('warning', (w) => problems.push(`warning ${w}`));
  const lobby = hub.subscribe('lobby');
  lobby.on('error', (e) => problems.push(`lobby error ${JSON.stringify(e)}`));
  await next(lobby, 'welcome', 'the welcome of lobby');

  // 1. A message refused once with Retry-After: 1.
  refusals.push({ event: HANDING_OVER, headers: { 'Retry-After': '1' } });
  const got = next(lobby, 'message', 'the message refused once');
  lobby.publish('sent during a hand-over');
  const [m] = await got;
  const sent = posts.filter((p) => p.body.type === 'message');
  expect(sent.length === 2 && sent[0].status === 503 && sent[1].status === 202, `posts: ${JSON.stringify(sent)}`);
  const waited = sent[1].at - sent[0].at;
  expect(waited >= 900, `sent again after ${waited} ms, before the Retry-After of 1 s`);
  expect(m.id === 1 && m.text === 'sent during a hand-over', `message ${JSON.stringify(m)}`);
  console.log(`a message refused with 503 handing_over + Retry-After: 1 is sent again after ${waited} ms, published once (id ${m.id})`);

  // 2. A subscribe refused once, the header hidden: the body says handing_over.
  refusals.push({ event: HANDING_OVER });
  const other = hub.subscribe('other');
  other.on('error', (e) => problems.push(`other error ${JSON.stringify(e)}`));
  await next(other, 'welcome', 'the welcome of a room whose subscribe was refused once');
  const subs = posts.filter((p) => p.body.type === 'subscribe');
  expect(subs.length === 2 && subs[0].status === 503 && subs[1].status === 202, `subscribes: ${JSON.stringify(subs)}`);
  console.log(`a subscribe refused with 503 handing_over (no header) is sent again after ${subs[1].at - subs[0].at} ms, and the room opens`);

  // 3. The long poll after the next message refused once: asked again, still "open".
  const states = [];
  hub.on('state', ({ state }) => states.push(state));
  refuseGets = 1;
  lobby.publish('before a refused poll');
  const [first] = await next(lobby, 'message', 'the message before a refused poll');
  lobby.publish('after');
  const [after] = await next(lobby, 'message', 'the message after');
  expect(first.id === 2 && after.id === 3, `ids ${first.id}, ${after.id}`);
  expect(refusedGets.length === 1, `refused polls: ${JSON.stringify(refusedGets)}`);
  expect(states.length === 0 && hub.state === 'open', `states ${JSON.stringify(states)}, now ${hub.state}`);
  console.log(`a long poll refused with 503 handing_over (cursor ${refusedGets[0]}) asks again; the state stayed open`);
  // Nothing else came, and nothing was said to the user.
  expect(problems.length === 0, `unexpected: ${problems.join('; ')}`);

  // 4. Any other 503 is an error, not sent again.
  refusals.push({ event: { type: 'error', error: 'unavailable', message: 'redis is unreachable' } });
  const error = next(lobby, 'error', 'the error of a 503 without Retry-After');
  const before = posts.length;
  lobby.publish('refused for good');
  const [e] = await error;
  expect(e.error === 'unavailable' && posts.length === before + 1, `error ${JSON.stringify(e)}, ${posts.length - before} posts`);
  console.log('a 503 without Retry-After or handing_over is reported as an error, not sent again');

  hub.close();
  console.log('ok');
} catch (e) {
  fail(e && e.stack ? e.stack : e);
} finally {
  clearTimeout(hardTimeout);
  server.closeAllConnections?.();
  server.close();
}
