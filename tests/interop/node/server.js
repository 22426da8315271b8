'use strict';
// Node `ws` as an echo server for the wsduplex client.
//
// Binds 127.0.0.1 on a free port and prints that port as the first line of stdout. Selects
// subprotocol "chat" if offered, echoes data messages (text as text, binary as binary), and
// answers the text "close:CODE:REASON" by closing with that code and reason. Runs until
// killed. Driven by crates/wsduplex/tests/interop.rs.

const { WebSocketServer } = require('ws');

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  maxPayload: 16 << 20,
  handleProtocols: (offered) => (offered.has('chat') ? 'chat' : false),
});

wss.on('listening', () => console.log(wss.address().port));
wss.on('error', (err) => {
  console.error(`node server: ${err.message}`);
  process.exit(1);
});

wss.on('connection', (ws) => {
  ws.on('error', (err) => console.error(`node server: connection error: ${err.message}`));
  ws.on('message', (data, isBinary) => {
    if (!isBinary) {
      const text = data.toString('utf8');
      if (text.startsWith('close:')) {
        const [, code, ...reason] = text.split(':');
        ws.close(Number(code), reason.join(':'));
        return;
      }
    }
    ws.send(data, { binary: isBinary });
  });
});
