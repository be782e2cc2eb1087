"""``TokenService``: the three listeners, the apps on them, and the state they share.

The STS listener carries ``StsApi`` (and the registry token endpoint, for a realm that must be
known before the registry listener's port is); the registry listener carries
``RegistryTokens``; the admin listener ``AdminApi``. Only the STS listener's errors follow the
runtime ``error_codes`` switch.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from typing import TYPE_CHECKING

from aiohttp import web

from devstack.tokenservice.admin_api import AdminApi
from devstack.tokenservice.listeners import Listener
from devstack.tokenservice.ready import ReadyInfo
from devstack.tokenservice.registry_tokens import REGISTRY_TOKEN_PATH, RegistryTokens
from devstack.tokenservice.state import ServiceState
from devstack.tokenservice.sts import StsApi
from devstack.tokenservice.wire import errors_as_json, healthz

if TYPE_CHECKING:
    from devstack.tokenservice.aws.front import AwsFront
    from devstack.tokenservice.azure.front import AzureFront


class TokenService:
    """The handlers and state behind the three listeners (see the package docstring)."""

    def __init__(self, state: ServiceState) -> None:
        self._state = state
        settings = state.settings
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(settings.tls_cert, settings.tls_key)
        registry_tokens = RegistryTokens(state)

        sts_app = web.Application(middlewares=[errors_as_json(state.sts_error_codes)])
        StsApi(state).add_routes(sts_app)
        registry_tokens.add_routes(sts_app)
        sts_app.router.add_get("/healthz", healthz)
        self._sts = Listener(sts_app, settings.listen, tls)

        registry_app = web.Application(middlewares=[errors_as_json()])
        registry_tokens.add_routes(registry_app)
        registry_app.router.add_get("/healthz", healthz)
        self._registry = Listener(registry_app, settings.registry_listen, tls)

        self._admin_api = AdminApi(state, sts=self._sts)
        admin_app = web.Application(middlewares=[errors_as_json(), self._admin_api.require_admin])
        admin_app.router.add_get("/healthz", healthz)
        self._admin_api.add_routes(admin_app)

        self._aws: Listener | None = None
        self._aws_front: AwsFront | None = None
        self._warming: asyncio.Task[None] | None = None
        if settings.aws is not None:
            # NB: imported here, so a service without the AWS stand-in never loads boto3.
            from devstack.tokenservice.aws.front import AwsFront

            front = self._aws_front = AwsFront(state, settings.aws, state.issuer_keys)
            front.add_admin_routes(admin_app)
            self._aws = Listener(front.app(), settings.aws.listen, tls)
        self._gcp: Listener | None = None
        if settings.gcp is not None:
            from devstack.tokenservice.gcp.front import GcpFront

            gcp_front = GcpFront(state, state.issuer_keys)
            gcp_front.add_admin_routes(admin_app)
            self._gcp = Listener(gcp_front.app(), settings.gcp.listen, tls)
        self._azure: Listener | None = None
        if settings.azure is not None:
            from devstack.tokenservice.azure.front import AzureFront

            azure: AzureFront = AzureFront(state, state.issuer_keys)
            azure.add_admin_routes(admin_app)
            self._azure = Listener(azure.app(), settings.azure.listen, tls)
        self._admin = Listener(admin_app, settings.admin_listen, tls)

    @property
    def _listeners(self) -> tuple[Listener, ...]:
        aws = (self._aws,) if self._aws is not None else ()
        gcp = (self._gcp,) if self._gcp is not None else ()
        azure = (self._azure,) if self._azure is not None else ()
        return (self._sts, self._registry, *aws, *gcp, *azure, self._admin)

    @property
    def issuer_url(self) -> str:
        return self._state.issuer_url

    async def start(self) -> None:
        for listener in self._listeners:
            await listener.start()
        if self._aws_front is not None:
            self._warming = self._aws_front.warm_up()
        if not self._state.issuer_url:
            self._state.issuer_url = self._sts.url

    async def close(self) -> None:
        if self._warming is not None:
            self._warming.cancel()
        await self._admin_api.close()
        for listener in reversed(self._listeners):
            await listener.close()

    def ready_info(self) -> ReadyInfo:
        state = self._state
        s = state.settings
        return ReadyInfo(
            pid=os.getpid(),
            port=self._sts.port,
            registry_port=self._registry.port,
            admin_port=self._admin.port,
            issuer_url=state.issuer_url,
            sts_url=self._sts.url,
            registry_realm=f"{self._registry.url}{REGISTRY_TOKEN_PATH}",
            admin_url=self._admin.url,
            admin_token=s.admin_token,
            registry_cert=str(state.registry_cert),
            registry_service=s.registry_service,
            registry_issuer=s.registry_issuer,
            registry_audience=s.registry_audience,
            aws_url=self._aws.url if self._aws is not None else None,
            gcp_url=self._gcp.url if self._gcp is not None else None,
        )
