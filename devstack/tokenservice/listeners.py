"""One HTTPS app on one port that can stop accepting connections and start again."""

from __future__ import annotations

import ssl

from aiohttp import web

from devstack.tokenservice.settings import HostPort


class Listener:
    """An app on one address; ``pause`` is what the ``refuse`` fault does to the STS."""

    def __init__(self, app: web.Application, address: HostPort, tls: ssl.SSLContext) -> None:
        self._runner = web.AppRunner(app)
        self._address = address
        self._tls = tls
        self._site: web.TCPSite | None = None
        self.port = address.port

    @property
    def url(self) -> str:
        return self._address.url(self.port)

    async def start(self) -> None:
        await self._runner.setup()
        await self.resume()

    async def resume(self) -> None:
        if self._site is not None:
            return
        # NB: the first start may bind port 0; later starts rebind the port it got.
        site = web.TCPSite(
            self._runner, self._address.host, self.port, ssl_context=self._tls, reuse_address=True
        )
        await site.start()
        self._site, self.port = site, site.port

    async def pause(self) -> None:
        """Refuse new connections and drop open ones, as a dead server would."""
        if self._site is None:
            return
        await self._site.stop()
        self._site = None
        if self._runner.server is not None:
            for connection in self._runner.server.connections:
                connection.force_close()

    async def close(self) -> None:
        await self._runner.cleanup()
