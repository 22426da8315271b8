"""Python `websockets` as an echo server for the wsduplex client.

Binds 127.0.0.1 on a free port and prints that port as the first line of stdout. Selects
subprotocol "chat" if offered, echoes data messages (text as text, binary as binary), and
answers the text "close:CODE:REASON" by closing with that code and reason. Runs until
killed. Driven by crates/wsduplex/tests/interop.rs.
"""

import asyncio
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

MIB = 1 << 20


def select_subprotocol(_connection, offered):
    return "chat" if "chat" in offered else None


async def handler(ws):
    try:
        async for msg in ws:
            if isinstance(msg, str) and msg.startswith("close:"):
                _, code, reason = msg.split(":", 2)
                await ws.close(int(code), reason)
                return
            await ws.send(msg)
    except ConnectionClosed:
        pass


async def main():
    async with serve(
        handler,
        "127.0.0.1",
        0,
        select_subprotocol=select_subprotocol,
        max_size=16 * MIB,
        ping_interval=None,  # no unsolicited pings between the client's checks
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
