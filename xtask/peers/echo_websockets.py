#!/usr/bin/env python3
"""Development peer: an echo server built on the independent Python
`websockets` library (pip install websockets), following the same contract
as the crates' echo-server examples:

    python3 echo_websockets.py 127.0.0.1:0

prints one first line `listening on 127.0.0.1:PORT`, then echoes every text
and binary message. Use it to sanity-check the suite:

    cargo xtask conformance --url ws://127.0.0.1:PORT/ --agent websockets

permessage-deflate is enabled and accepts whatever parameters the client
asks for (websockets declines only server_max_window_bits=8, which zlib
cannot compress with); pass --no-compression to disable it.
"""

import asyncio
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory


async def echo(ws):
    try:
        async for msg in ws:
            await ws.send(msg)
    except ConnectionClosed:
        pass


async def main(addr, compress):
    host, port = addr.rsplit(":", 1)
    extensions = [ServerPerMessageDeflateFactory()] if compress else None
    async with serve(
        echo,
        host,
        int(port),
        max_size=64 * 1024 * 1024,
        max_queue=None,
        compression=None,
        extensions=extensions,
        ping_interval=None,
    ) as server:
        sock = server.sockets[0]
        h, p = sock.getsockname()[:2]
        print(f"listening on {h}:{p}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    asyncio.run(main(args[0] if args else "127.0.0.1:9002",
                     "--no-compression" not in sys.argv))
