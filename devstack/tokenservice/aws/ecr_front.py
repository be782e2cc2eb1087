"""ECR ``GetAuthorizationToken``: a SigV4-signed JSON 1.1 call answered with a fresh password.

moto checks no signature and answers a fixed token that expired in 2015. Here the signature
is checked (``sigv4``) against the temporary credentials STS issued, and each call mints a
new random password for each registry asked for (the caller's own account's when none is
named), recorded with its account, region, role and a real expiry: now plus the configured
lifetime (AWS: 12 hours). moto gives the answer's ``proxyEndpoint``; the stand-in's registry
listens on its own port, which the endpoint then names.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from devstack.tokenservice.aws.errors import JSON_CONTENT_TYPE, AwsError
from devstack.tokenservice.aws.ledger import AWS_SECRET, AwsConfig, Ledger, Password
from devstack.tokenservice.aws.moto_backend import MotoBackend
from devstack.tokenservice.aws.sigv4 import SignedRequest, verify
from devstack.tokenservice.stats import IssuedTokens

TARGET_PREFIX: Final = "AmazonEC2ContainerRegistry_V20150921."
GET_AUTHORIZATION_TOKEN: Final = TARGET_PREFIX + "GetAuthorizationToken"
USERNAME: Final = "AWS"
_REGISTRY_ID = re.compile(r"[0-9]{12}")


def parse_registry_ids(body: bytes) -> list[str]:
    try:
        data: Any = json.loads(body or b"{}")
    except ValueError:
        raise AwsError("SerializationException", "the request body is not JSON") from None
    if not isinstance(data, dict):
        raise AwsError("SerializationException", "the request body must be a JSON object")
    ids = data.get("registryIds")
    if ids is None:
        return []
    if not isinstance(ids, list) or not 1 <= len(ids) <= 10:
        raise AwsError("ValidationException", "registryIds must have between 1 and 10 members")
    for registry_id in ids:
        if not isinstance(registry_id, str) or not _REGISTRY_ID.fullmatch(registry_id):
            message = f"registryIds member {registry_id!r} must match [0-9]{{12}}"
            raise AwsError("ValidationException", message)
    return list(ids)


def new_password() -> str:
    """Random, and shaped like ECR's: standard base64, so '+', '/' and '=' occur."""
    return base64.b64encode(secrets.token_bytes(96)).decode()


class EcrFront:
    def __init__(
        self,
        *,
        moto: MotoBackend,
        ledger: Ledger,
        config: Callable[[], AwsConfig],
        registry_port: int | None,
        issued: IssuedTokens,
    ) -> None:
        self._moto = moto
        self._ledger = ledger
        self._config = config
        self._registry_port = registry_port
        self._issued = issued

    async def get_authorization_token(
        self, request: SignedRequest, on_caller: Callable[[str], None]
    ) -> web.Response:
        """The answer; ``on_caller`` learns the caller's role ARN once the signature holds."""
        caller = verify(request, service="ecr", ledger=self._ledger)
        on_caller(caller.session.role_arn)
        registry_ids = parse_registry_ids(request.body)
        endpoints = await self._moto.proxy_endpoints(
            caller.session.account, caller.region, registry_ids
        )
        accounts = registry_ids or [caller.session.account]
        expires_at = time.time() + self._config().ecr_token_lifetime
        data = []
        for account, endpoint in zip(accounts, endpoints, strict=True):
            password = Password(
                password=new_password(),
                account=account,
                region=caller.region,
                role_arn=caller.session.role_arn,
                expires_at=expires_at,
            )
            self._ledger.passwords.add(password.password, password)
            self._issued.add(AWS_SECRET, password.password)
            token = base64.b64encode(f"{USERNAME}:{password.password}".encode()).decode()
            if self._registry_port is not None:
                endpoint = f"{endpoint}:{self._registry_port}"
            data.append(
                {"authorizationToken": token, "expiresAt": expires_at, "proxyEndpoint": endpoint}
            )
        return web.json_response({"authorizationData": data}, content_type=JSON_CONTENT_TYPE)
