"""A TCP proxy on 127.0.0.1 in front of the local stand-in, for tests and benchmarks.

- ``--delay-ms N`` holds every answer back by N ms: moto answers in about 2 ms,
  S3 after a network round trip of tens of ms, which is what parallel
  uploads hide (``bench/enqueue.php``).
- ``--gated`` lets no request through until the proxy gets SIGUSR1 (answers
  flow back as usual), so a test can hold an upload in flight as long as it
  needs (``tests/php/integration/Postbag_PhpFpmTest.php``).

    python -m standin.proxy <upstream port> [--delay-ms N] [--gated]

Prints the port it listens on, then proxies until stopped (SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import signal

HOST = "127.0.0.1"


async def pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    delay: float = 0.0,
    gate: asyncio.Event | None = None,
) -> None:
    try:
        while data := await reader.read(65536):
            if gate is not None:
                await gate.wait()
            if delay:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(upstream_port: int, delay_ms: float, gated: bool) -> None:
    gate = asyncio.Event() if gated else None
    if gate is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, gate.set)

    async def handle(client_reader, client_writer):
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(HOST, upstream_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pipe(client_reader, upstream_writer, gate=gate),
            pipe(upstream_reader, client_writer, delay=delay_ms / 1000),
        )

    server = await asyncio.start_server(handle, HOST, 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("upstream_port", type=int)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="hold each answer back")
    parser.add_argument("--gated", action="store_true", help="hold requests until SIGUSR1")
    args = parser.parse_args()
    asyncio.run(serve(args.upstream_port, args.delay_ms, args.gated))


if __name__ == "__main__":
    main()
