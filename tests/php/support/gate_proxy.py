"""A TCP proxy on 127.0.0.1 that lets nothing through until it is told to.

Requests reach the upstream server only after SIGUSR1 (answers flow back
as usual), so a test can hold an upload in flight for as long as it needs:

    python gate_proxy.py <upstream port>     # prints the port it listens on

Stopped by SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys

HOST = "127.0.0.1"


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gate=None) -> None:
    try:
        while data := await reader.read(65536):
            if gate is not None:
                await gate.wait()
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(upstream_port: int) -> None:
    gate = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, gate.set)

    async def handle(client_reader, client_writer):
        upstream_reader, upstream_writer = await asyncio.open_connection(HOST, upstream_port)
        await asyncio.gather(
            pipe(client_reader, upstream_writer, gate), pipe(upstream_reader, client_writer)
        )

    server = await asyncio.start_server(handle, HOST, 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
