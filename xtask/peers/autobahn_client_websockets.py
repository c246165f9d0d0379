#!/usr/bin/env python3
"""Development peer: an Autobahn-protocol test client built on the
independent Python `websockets` library, following the same contract as the
crates' autobahn-client examples:

    python3 autobahn_client_websockets.py ws://127.0.0.1:PORT AGENT

Use it against `cargo xtask conformance --serve` to sanity-check the
fuzzing server. It offers permessage-deflate ("permessage-deflate;
client_max_window_bits") unless --no-compression is given.
"""

import asyncio
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

OPTS = dict(max_size=64 * 1024 * 1024, max_queue=None, compression=None,
            ping_interval=None, open_timeout=10, close_timeout=2)
if "--no-compression" not in sys.argv:
    OPTS["extensions"] = [ClientPerMessageDeflateFactory(client_max_window_bits=True)]


async def main(base, agent):
    async with connect(f"{base}/getCaseCount", **OPTS) as ws:
        count = int(await ws.recv())
    for i in range(1, count + 1):
        try:
            async with connect(f"{base}/runCase?case={i}&agent={agent}", **OPTS) as ws:
                async for msg in ws:
                    await ws.send(msg)
        except (ConnectionClosed, InvalidHandshake, OSError):
            pass
    async with connect(f"{base}/updateReports?agent={agent}", **OPTS) as ws:
        try:
            await ws.recv()
        except ConnectionClosed:
            pass


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    asyncio.run(main(args[0], args[1]))
