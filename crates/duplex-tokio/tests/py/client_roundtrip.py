#!/usr/bin/env python3
"""A client on the Python `websockets` library (pip install websockets) for
tests/interop_python.rs:

    python3 client_roundtrip.py ws://127.0.0.1:PORT/

connects with permessage-deflate, sends text, binary and fragmented messages to
an echo server, checks every echo, closes with code 4001 and exits 0; any
failure prints why and exits 1.
"""

import asyncio
import sys

from websockets.asyncio.client import connect


def fail(why):
    print(f"client_roundtrip.py: {why}", file=sys.stderr, flush=True)
    sys.exit(1)


async def echo(ws, sent, expected, what):
    await ws.send(sent)
    got = await asyncio.wait_for(ws.recv(), timeout=10)
    if got != expected:
        fail(f"{what}: echo differs ({type(got).__name__} of {len(got)}, "
             f"expected {type(expected).__name__} of {len(expected)})")


async def main(url):
    ws = await connect(url, compression="deflate", max_size=16 * 1024 * 1024,
                       ping_interval=None)
    extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
    if "permessage-deflate" not in extensions:
        fail(f"permessage-deflate was not negotiated: {extensions!r}")

    await echo(ws, "hello", "hello", "short text")
    await echo(ws, "", "", "empty text")
    text = "κόσμε, compressible text. " * 20000
    await echo(ws, text, text, "long text")
    data = bytes(range(256)) * 2000
    await echo(ws, data, data, "binary")
    await echo(ws, b"", b"", "empty binary")
    # An iterable of strings or bytes is sent as one fragmented message.
    parts = ["fragment one, ", "fragment two, ", "κόσμε " * 5000, "the end"]
    await echo(ws, parts, "".join(parts), "fragmented text")
    chunks = [bytes([i]) * 10000 for i in range(20)]
    await echo(ws, chunks, b"".join(chunks), "fragmented binary")
    # Several messages in a row, then their echoes in order.
    for i in range(50):
        await ws.send(f"message {i} " * i)
    for i in range(50):
        got = await asyncio.wait_for(ws.recv(), timeout=10)
        if got != f"message {i} " * i:
            fail(f"message {i} arrived out of order or changed")

    await ws.close(code=4001, reason="python is done")
    if ws.close_code != 4001:
        fail(f"the server answered the close with {ws.close_code}, expected 4001")
    print("client_roundtrip.py: ok", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        fail("usage: client_roundtrip.py ws://HOST:PORT/")
    asyncio.run(asyncio.wait_for(main(sys.argv[1]), timeout=30))
