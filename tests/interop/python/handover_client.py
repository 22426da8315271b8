"""Python `websockets` as a long-lived client of `wsduplex serve`'s /echo across hand-overs.

Usage: handover_client.py ws://127.0.0.1:PORT/echo

Offers permessage-deflate with context takeover (websockets' default). Prints
"open LOCAL_PORT"; then for each stdin line "send TEXT" sends TEXT, waits for its echo and
prints "echo TEXT"; for "burst N" sends N messages at once, then checks their N echoes in
order and prints "burst N" (so that messages are in flight while the server moves); for
"port" prints "port LOCAL_PORT"; at EOF closes with 1000 and prints
"closed". Any other close or error goes to stderr and exits 1. Driven by
crates/wsduplex-cli/tests/handover/.
"""

import asyncio
import sys

from websockets.asyncio.client import connect

TIMEOUT = 20  # seconds; the Rust test has its own bound


async def main(url):
    loop = asyncio.get_running_loop()
    async with connect(url, compression="deflate", open_timeout=TIMEOUT) as ws:
        port = ws.transport.get_extra_info("sockname")[1]
        if ws.response.headers.get("Sec-WebSocket-Extensions", "").find("permessage-deflate") < 0:
            sys.exit("python client: permessage-deflate was not agreed")
        print(f"open {port}", flush=True)
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            line = line.rstrip("\n")
            if line == "port":
                print(f"port {ws.transport.get_extra_info('sockname')[1]}", flush=True)
            elif line.startswith("burst "):
                n = int(line[6:])
                for i in range(n):
                    await ws.send(f"burst {i} " + "compressible " * 20)
                for i in range(n):
                    got = await asyncio.wait_for(ws.recv(), TIMEOUT)
                    if got != f"burst {i} " + "compressible " * 20:
                        sys.exit(f"python client: burst {i}: got {got[:40]!r}")
                print(f"burst {n}", flush=True)
            elif line.startswith("send "):
                text = line[5:]
                await ws.send(text)
                got = await asyncio.wait_for(ws.recv(), TIMEOUT)
                if got != text:
                    sys.exit(f"python client: sent {text!r}, got {got!r}")
                print(f"echo {got}", flush=True)
        await ws.close(1000)
    print("closed", flush=True)


try:
    asyncio.run(main(sys.argv[1]))
except Exception as e:  # one line, the test shows it
    sys.exit(f"python client: {type(e).__name__}: {e}")
