// The JavaScript client's other promises, in Node with `ws`, against
// `wsduplex serve --auth-token TOKEN --max-subscriptions 2`: run by
// crates/wsduplex-cli/tests/js_client.rs.
//
//   node tests/interop/node/js_client_edges.mjs BASE_URL TOKEN
//
// - without a token: one WebSocket attempt, then `unauthorized` and the state "closed"
//   (no retry loop); `refresh(token)` opens it;
// - text and `data` published come back with ids, `data` as a `data` event too;
// - presence: another client's `joined` and `left`;
// - a third room over the limit: `refused`, the others kept;
// - `refresh` answered `refreshed`, over a WebSocket and over long polling;
// - `unsubscribe`: publishing to that room is a caller error.
// Prints one line per check; any failure exits 1 with the reason on stderr.

import WebSocket from 'ws';
import { Hub } from '../../../clients/js/wsduplex.js';
import { checks } from './assert_helpers.mjs';

const [base, token] = process.argv.slice(2);
const { fail, expect, next, hardTimeout } = checks('js_client_edges.mjs');

try {
  let sockets = 0;
  class Counted extends WebSocket {
    constructor(...args) {
      super(...args);
      sockets++;
    }
  }
  const hub = new Hub(base, { name: 'edge', WebSocket: Counted });
  const states = [];
  hub.on('state', ({ state }) => states.push(state));
  const refusedFirst = next(hub, 'unauthorized', 'unauthorized');
  const a = hub.subscribe('a');
  const [reason] = await refusedFirst;
  expect(sockets === 1 && hub.state === 'closed', `unauthorized after ${sockets} sockets, state ${hub.state}`);
  console.log(`no token: unauthorized ("${reason}") after one attempt, state closed`);

  const welcomed = next(a, 'welcome', 'welcome');
  hub.refresh(token);
  await welcomed;
  expect(hub.state === 'open' && hub.transport === 'websocket', `after refresh: ${hub.state} over ${hub.transport}`);
  const messages = [];
  const data = [];
  a.on('message', (m) => messages.push([m.id, m.text ?? m.data]));
  a.on('data', (d) => data.push(d));
  const second = new Promise((resolve) => a.on('message', (m) => m.id === 2 && resolve()));
  a.publish('hello');
  hub.publish('a', { x: 1 });
  await second;
  expect(JSON.stringify(messages) === '[[1,"hello"],[2,{"x":1}]]', `messages ${JSON.stringify(messages)}`);
  expect(JSON.stringify(data) === '[{"x":1}]', `data events ${JSON.stringify(data)}`);
  console.log(`with the token: open; text and data echoed as ${JSON.stringify(messages)}`);

  const other = new Hub(base, { name: 'other', WebSocket, token, transports: ['longpoll'] });
  const joined = next(a, 'presence', 'joined');
  const o = other.subscribe('a');
  const otherWelcomed = next(o, 'welcome', 'welcome over long polling');
  const [p] = await joined;
  expect(p.type === 'joined' && p.name === 'other' && p.members.includes('other'), `presence ${JSON.stringify(p)}`);
  const refreshed = next(other, 'refreshed', 'refreshed over long polling');
  await otherWelcomed;
  other.refresh(token);
  await refreshed;
  const left = next(a, 'presence', 'left');
  other.close();
  const [q] = await left;
  expect(q.type === 'left' && q.name === 'other' && !q.members.includes('other'), `presence ${JSON.stringify(q)}`);
  console.log('presence: joined and left; refresh over long polling answered');

  hub.subscribe('b');
  const c = hub.subscribe('c');
  const [why] = await next(c, 'refused', 'refused');
  expect(!c.active && JSON.stringify([...hub.subscriptions.keys()]) === '["a","b"]', `subscriptions ${[...hub.subscriptions.keys()]}`);
  console.log(`a third room over --max-subscriptions 2: refused ("${why}"), a and b kept`);

  const wsRefreshed = next(hub, 'refreshed', 'refreshed over a WebSocket');
  hub.refresh(token);
  await wsRefreshed;
  a.unsubscribe();
  let threw = false;
  try {
    hub.publish('a', 'after');
  } catch {
    threw = true;
  }
  expect(threw && !a.active, 'publishing to an unsubscribed room should throw');
  hub.close();
  expect(hub.state === 'closed', `state after close ${hub.state}`);
  console.log(`refresh over a WebSocket answered; unsubscribe; states ${states.join(' ')}`);
  clearTimeout(hardTimeout);
} catch (e) {
  fail(e && e.stack ? e.stack : e);
}
