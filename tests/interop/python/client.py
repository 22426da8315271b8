"""Python `websockets` as a client of a wsduplex echo server.

Usage: client.py [--cafile PEM] [--plain-echo] ws://127.0.0.1:PORT/

The server echoes data messages, answers the text "close:CODE:REASON" by closing with that
code and reason, and prefers subprotocol "chat.v2" over "chat". Every check prints one line
on stdout; the first failure prints to stderr and exits 1. Driven by
crates/wsduplex/tests/interop.rs, and through nginx by crates/wsduplex-cli/tests/nginx.rs.

--cafile PEM: for wss://, trust the certificates in PEM (a test's self-signed one).
--plain-echo: the server only echoes, as `wsduplex serve` does at /echo: no subprotocol is
offered, and this client closes the first connection with 4001 itself.
"""

import argparse
import asyncio
import ssl
import sys

import websockets
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

TIMEOUT = 20  # seconds; the Rust test has its own, longer bound
MIB = 1 << 20


class Mismatch(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise Mismatch(what)


def describe(data):
    kind = "text" if isinstance(data, str) else "binary"
    return f"{kind} of {len(data)} {'chars' if kind == 'text' else 'bytes'}"


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


async def expect_echo(ws, sent, what):
    """Receives one message and checks it equals `sent`, type and bytes."""
    got = await ws.recv()
    if type(got) is not type(sent):
        raise Mismatch(f"{what}: sent {describe(sent)}, got {describe(got)}")
    if got != sent:
        raise Mismatch(
            f"{what}: sent {describe(sent)}, got {describe(got)}, "
            f"first difference at index {first_difference(sent, got)}"
        )
    print(f"ok: {what} ({describe(sent)})")


async def echo(ws, data, what):
    await ws.send(data)
    await expect_echo(ws, data, what)


async def fragments(parts):
    for p in parts:
        yield p


async def main(url, cafile=None, plain_echo=False):
    big = bytes(i * 31 % 251 for i in range(MIB))
    options = dict(
        max_size=16 * MIB,
        ping_interval=None,  # no unsolicited pings between our checks
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
    )
    if not plain_echo:
        options["subprotocols"] = ["chat", "chat.v2"]
    if cafile:
        options["ssl"] = ssl.create_default_context(cafile=cafile)

    # Connection 1: messages, then the server (with --plain-echo: this client) closes with
    # 4001 "bye".
    async with connect(url, **options) as ws:
        if not plain_echo:
            expect(
                ws.subprotocol == "chat.v2",
                f"subprotocol: offered chat, chat.v2; server prefers chat.v2; "
                f"got {ws.subprotocol!r}",
            )
            print("ok: subprotocol chat.v2 selected by server preference")

        await echo(ws, "hello, wsduplex", "text")
        await echo(ws, "h\u00e9llo \u2713 \U0001f600", "non-ascii text")
        await echo(ws, b"\x00\x01\x02\xfe\xff", "binary")
        await echo(ws, "", "empty text")
        await echo(ws, b"", "empty binary")
        await echo(ws, big, "1 MiB binary")

        # Fragmented by the peer: one frame per item.
        text_parts = ["frag", "mented ", "t\u00e9xt \u2713", ""]
        await ws.send(text_parts)
        await expect_echo(ws, "".join(text_parts), "text sent in 4 fragments")
        bin_parts = [big[:1000], big[1000:1001], big[1001:70000], big[70000:]]
        await ws.send(fragments(bin_parts))
        await expect_echo(ws, big, "1 MiB binary sent in 4 fragments (async iterator)")

        payload = b"ping \x00\xff payload"
        pong = await ws.ping(payload)
        await asyncio.wait_for(pong, TIMEOUT)  # resolved only by a pong with this payload
        print("ok: ping answered by a pong with the same payload")

        if plain_echo:
            await ws.close(4001, "bye")
            expect(
                ws.close_code == 4001,
                f"client close: expected the server to echo 4001, got {ws.close_code}",
            )
            print("ok: client-initiated close 4001 echoed")
        else:
            await ws.send("close:4001:bye")
            try:
                msg = await ws.recv()
                raise Mismatch(
                    f"server close: expected close 4001, got a message: {describe(msg)}"
                )
            except ConnectionClosed as e:
                expect(e.rcvd is not None, f"server close: no close frame received ({e})")
                expect(
                    (e.rcvd.code, e.rcvd.reason) == (4001, "bye"),
                    f"server close: expected 4001 'bye', got {e.rcvd.code} {e.rcvd.reason!r}",
                )
            print("ok: server-initiated close 4001 'bye'")

    # Connection 2: this client closes with 4003 "client-bye"; the server echoes the code.
    async with connect(url, **options) as ws:
        await echo(ws, "second connection", "text on a second connection")
        await ws.close(4003, "client-bye")
        expect(
            ws.close_code == 4003,
            f"client close: expected the server to echo 4003, got {ws.close_code}",
        )
        print("ok: client-initiated close 4003 echoed")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--cafile", help="wss://: trust the certificates in this PEM file")
    parser.add_argument("--plain-echo", action="store_true", help="the server only echoes")
    args = parser.parse_args()
    print(f"python websockets {websockets.__version__}")
    try:
        asyncio.run(asyncio.wait_for(main(args.url, args.cafile, args.plain_echo), TIMEOUT))
    except Mismatch as e:
        print(f"python client: MISMATCH: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:
        print(f"python client: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
