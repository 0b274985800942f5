"""A TCP proxy on 127.0.0.1 that holds every answer back by a fixed delay.

moto's server answers in about 2 ms from one Python process, so on loopback
uploading in parallel gains little; S3 answers after a network round trip of
tens of milliseconds, which is what parallel uploads hide. Put this in front
of moto to see that.

    python bench/latency_proxy.py <upstream port> <delay ms>

Prints the port it listens on, then proxies until stopped (SIGTERM).
"""

from __future__ import annotations

import asyncio
import sys

HOST = "127.0.0.1"


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    try:
        while data := await reader.read(65536):
            if delay:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(upstream_port: int, delay_ms: float) -> None:
    async def handle(client_reader, client_writer):
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(HOST, upstream_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pipe(client_reader, upstream_writer, 0),
            pipe(upstream_reader, client_writer, delay_ms / 1000),
        )

    server = await asyncio.start_server(handle, HOST, 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
