"""A test app for TCP ports: listens on 127.0.0.1:$PORT, speaks first, then echoes.

On each connection it first sends one line, ``hello <instance>\\n`` (a server-first
protocol, like MySQL's greeting, and it says which instance answered), then sends back
every byte it receives until the client closes its side, then closes too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # The mesh's readiness probe connects and closes at once: any error here is fine.
    with contextlib.suppress(OSError, ConnectionError):
        writer.write(f"hello {os.environ.get('GOSSAMER_INSTANCE', '')}\n".encode())
        await writer.drain()
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError, ConnectionError):
        writer.close()
        await writer.wait_closed()


async def _main() -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", int(os.environ["PORT"]))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(_main())
    sys.exit(0)
