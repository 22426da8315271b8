// The JavaScript client's resume scenario (docs/js-client.md), shared by the Node run
// (js_client.mjs, with `ws`) and the Chromium run (tests/browser/js_client.mjs, which hands
// this function's source to a page: so it uses nothing from outside its body).
//
// One Hub follows three rooms and publishes `data` ({"n": N}) to each; per room it records
// [id, n] for every message delivered, and "reset" where the room's ids started again.
// - mode "restart" (one `wsduplex serve` with --api-token): 1-3 published; the connection
//   is cut by the server (DELETE /api/rooms/ROOM/members/NAME, no close handshake) and 4-6
//   pushed meanwhile through the push API; then the server is restarted on the same port
//   (`report("restart")` asks the harness) and 7-9 are published while it is down. Expected
//   per room: [1,1]...[6,6], "reset" (the new server's rooms start at id 1), [1,7] [2,8] [3,9].
// - mode "failover" (three nodes on Redis behind nginx): 1-3 published; `report("subscribed")`
//   and the harness kills the node holding the connection and pushes 4-6 through a live node;
//   then 7-9 are published. Expected per room: [1,1]...[9,9] (Redis keeps the ids).
// `transport` (optional) forces one transport: websocket, sse (browsers) or longpoll.
// Throws on anything else: a loss, a duplicate, a reorder, a timeout.

export async function scenario({ Hub, WebSocket, base, token, mode, transport, report }) {
  const ROOMS = ['alpha', 'beta', 'gamma'];
  const NAME = 'jsclient';
  const STEP_MS = 25000;
  const transports = transport ? [transport] : undefined;
  const hub = new Hub(base, { name: NAME, WebSocket, transports, backoffCap: 1000 });
  if (transport && hub.transport !== transport) throw new Error(`transport ${hub.transport}, asked for ${transport}`);
  const seen = {};
  const states = [];
  const errors = [];
  const waiters = new Set();
  const changed = () => waiters.forEach((w) => w());
  const until = (what, done) =>
    new Promise((resolve, reject) => {
      if (done()) return resolve();
      const w = () => {
        if (!done()) return;
        waiters.delete(w);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        waiters.delete(w);
        reject(new Error(`no ${what} within ${STEP_MS} ms: seen ${JSON.stringify(seen)}, states ${states.join(' ')}, errors ${JSON.stringify(errors)}`));
      }, STEP_MS);
      waiters.add(w);
    });
  const lastN = (room) => {
    const last = seen[room][seen[room].length - 1];
    return Array.isArray(last) ? last[1] : null;
  };
  const allAt = (n) => until(`message ${n} in every room`, () => ROOMS.every((r) => lastN(r) === n));
  const publish = (from, to) => {
    for (let n = from; n <= to; n++) for (const room of ROOMS) hub.publish(room, { n });
  };
  const api = async (method, path, body) => {
    const response = await fetch(new URL(path, hub.url), {
      method,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return response.status;
  };

  hub.on('state', ({ state }) => {
    states.push(state);
    changed();
  });
  hub.on('error', (e) => errors.push(e));
  for (const room of ROOMS) {
    seen[room] = [];
    const sub = hub.subscribe(room);
    sub.on('message', (m) => {
      seen[room].push([m.id, m.data ? m.data.n : null]);
      changed();
    });
    sub.on('reset', () => {
      seen[room].push('reset');
      changed();
    });
    sub.on('error', (e) => errors.push(e));
  }

  publish(1, 3);
  await allAt(3);
  const expected = [];
  if (mode === 'restart') {
    let mark = states.length;
    const status = await api('DELETE', `api/rooms/${ROOMS[0]}/members/${NAME}`);
    if (status !== 204) throw new Error(`cutting the member: ${status}`);
    for (let n = 4; n <= 6; n++) {
      for (const room of ROOMS) {
        const pushed = await api('POST', `api/rooms/${room}/messages`, { data: { n } });
        if (pushed !== 201) throw new Error(`pushing ${n} to ${room}: ${pushed}`);
      }
    }
    await allAt(6);
    await until('a reconnect after the cut', () => states.indexOf('reconnecting', mark) >= 0 && hub.state === 'open');
    mark = states.length;
    await report('restart');
    await until('the server going away', () => states.indexOf('reconnecting', mark) >= 0);
    publish(7, 9);
    await allAt(9);
    for (let n = 1; n <= 6; n++) expected.push([n, n]);
    expected.push('reset', [1, 7], [2, 8], [3, 9]);
  } else if (mode === 'failover') {
    await report('subscribed');
    // 4-6 went through a live node: only a reconnect to another node brings them.
    await allAt(6);
    if (!states.includes('reconnecting')) throw new Error(`no reconnect: states ${states.join(' ')}`);
    publish(7, 9);
    await allAt(9);
    for (let n = 1; n <= 9; n++) expected.push([n, n]);
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  hub.close();
  const want = JSON.stringify(expected);
  for (const room of ROOMS) {
    if (JSON.stringify(seen[room]) !== want) {
      throw new Error(`room ${room}: delivered ${JSON.stringify(seen[room])}, expected ${want}`);
    }
  }
  if (errors.length) throw new Error(`error events: ${JSON.stringify(errors)}`);
  return { seen, states: states.join(' ') };
}
