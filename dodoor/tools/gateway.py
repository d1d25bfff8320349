"""A round-robin TCP gateway: what Swarm's routing mesh does, for hosts that cannot.

Swarm's routing mesh (a port published in ``ingress`` mode) balances each new
connection over a service's tasks with the kernel's IPVS. A kernel built without
IP_VS (some VMs and sandboxes; ``/proc/net/ip_vs`` is absent) deploys the
service but never answers on the port. ``compose/docker-stack.gateway.yml``
then runs this instead, published in ``host`` mode::

    python -m dodoor.tools.gateway --listen 0.0.0.0:8100 --backend tasks.scheduler:8100

Like the mesh, it picks a backend per connection, in turn, over the addresses
the backend name resolves to (Swarm's DNS answers ``tasks.<service>`` with one
address per running task, refreshed every ``--refresh-s``); an address that
refuses the connection is skipped. It reads no byte of HTTP: keep-alive
connections stay on one replica, as with the mesh.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import socket
import sys
import time
from typing import Sequence

log = logging.getLogger("dodoor.gateway")
CHUNK = 64 * 1024


class Backends:
    """The addresses ``host`` resolves to, re-resolved at most every ``refresh_s``."""

    def __init__(self, host: str, port: int, refresh_s: float = 1.0) -> None:
        self.host, self.port, self.refresh_s = host, port, refresh_s
        self._addresses: list[str] = []
        self._resolved_at = float("-inf")
        self._turn = itertools.count()

    async def addresses(self) -> list[str]:
        now = time.monotonic()
        if now - self._resolved_at >= self.refresh_s or not self._addresses:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
                self._addresses = sorted({info[4][0] for info in infos})
            except OSError as exc:
                log.warning("cannot resolve %s: %s", self.host, exc)
                self._addresses = []
            self._resolved_at = now
        return self._addresses

    async def connect(self, timeout_s: float = 3.0
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
        """A connection to the next backend in turn; tries each address once."""
        addresses = await self.addresses()
        if not addresses:
            raise OSError(f"{self.host} resolves to no address")
        start = next(self._turn)
        errors = []
        for i in range(len(addresses)):
            address = addresses[(start + i) % len(addresses)]
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(address, self.port), timeout_s)
                return reader, writer, address
            except (OSError, asyncio.TimeoutError) as exc:
                errors.append(f"{address}: {exc or type(exc).__name__}")
        self._resolved_at = float("-inf")  # all refused: ask the DNS again next time
        raise OSError("no backend accepted the connection (" + "; ".join(errors) + ")")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass


def handler(backends: Backends):
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            back_r, back_w, _ = await backends.connect()
        except OSError as exc:
            log.warning("%s", exc)
            await _close(client_w)
            return
        try:
            await asyncio.gather(_pipe(client_r, back_w), _pipe(back_r, client_w))
        finally:
            await _close(back_w)
            await _close(client_w)
    return handle


async def serve(listen_host: str, listen_port: int, backends: Backends,
                ready: asyncio.Event | None = None) -> None:
    server = await asyncio.start_server(handler(backends), listen_host, listen_port,
                                        reuse_address=True)
    log.info("gateway on %s:%d → %s:%d", listen_host, listen_port, backends.host, backends.port)
    if ready is not None:
        ready.set()
    async with server:
        await server.serve_forever()


def _host_port(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{what} must be HOST:PORT, got {text!r}")
    return host, int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dodoor.tools.gateway", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="0.0.0.0:8100", help="HOST:PORT to accept on")
    parser.add_argument("--backend", default="tasks.scheduler:8100",
                        help="NAME:PORT; NAME resolves to one address per replica")
    parser.add_argument("--refresh-s", type=float, default=1.0,
                        help="re-resolve the backend name at most this often")
    args = parser.parse_args(argv)
    try:
        listen = _host_port(args.listen, "--listen")
        backend = _host_port(args.backend, "--backend")
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(*listen, Backends(*backend, refresh_s=args.refresh_s)))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
