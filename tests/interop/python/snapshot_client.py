"""Client for crates/wsduplex/tests/handover.rs: permessage-deflate with its defaults
(context takeover both ways); each message repeats most of the one before, so each refers
back across the server's moves. Checks every echo; prints "ok"."""
import asyncio, sys
from websockets.asyncio.client import connect

async def main(url):
    async with connect(url, max_size=None) as ws:
        names = [e.name for e in ws.protocol.extensions]
        assert names == ["permessage-deflate"], names
        base = "".join(chr(0x20 + (i * 7919) % 90) for i in range(20000))
        for i in range(12):
            m = base[i * 100:] + str(i) * 50
            await ws.send(m if i % 3 else m.encode())
            got = await ws.recv()
            assert got == (m if i % 3 else m.encode()), (i, len(got))
        print("ok", flush=True)

asyncio.run(main(sys.argv[1]))
