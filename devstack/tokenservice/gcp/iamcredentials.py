"""IAM Credentials ``generateAccessToken``: a service account's access token, for a caller
whose bearer token (one issued here, not expired) belongs to a principal holding
``roles/iam.workloadIdentityUser`` (or ``serviceAccountTokenCreator``) on the account.

The answer's ``expireTime`` is RFC 3339 in whole seconds, as Google writes it (google-auth
parses it with ``%Y-%m-%dT%H:%M:%SZ``).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from devstack.tokenservice.gcp.directory import Directory
from devstack.tokenservice.gcp.errors import api_error
from devstack.tokenservice.gcp.ledger import (
    GCP_SECRET,
    MAX_LIFETIME,
    AccessToken,
    GcpConfig,
    Ledger,
)
from devstack.tokenservice.stats import IssuedTokens

PATH: Final = re.compile(r"/v1/projects/-/serviceAccounts/(?P<email>[^/:]+):generateAccessToken")
_LIFETIME: Final = re.compile(r"([0-9]+)(?:\.[0-9]+)?s")


def rfc3339_seconds(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class GenerateAccessToken:
    def __init__(
        self,
        *,
        directory: Directory,
        ledger: Ledger,
        config: Callable[[], GcpConfig],
        issued: IssuedTokens,
    ) -> None:
        self._directory = directory
        self._ledger = ledger
        self._config = config
        self._issued = issued

    async def generate(self, email: str, bearer: str | None, body: bytes) -> web.Response:
        caller = self._ledger.get(bearer or "")
        if caller is None or caller.expires_at <= time.time():
            raise api_error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
            )
        try:
            document: Any = json.loads(body or b"{}")
        except ValueError:
            raise api_error(400, "Invalid JSON payload received.") from None
        if not isinstance(document, dict):
            raise api_error(400, "Invalid JSON payload received.")
        scope = document.get("scope")
        if not isinstance(scope, list) or not scope or not all(isinstance(s, str) for s in scope):
            raise api_error(400, "Scope required.")
        raw = document.get("lifetime", f"{MAX_LIFETIME}s")
        match = _LIFETIME.fullmatch(raw) if isinstance(raw, str) else None
        if match is None:
            raise api_error(
                400, "Invalid value at 'lifetime' (type.googleapis.com/google.protobuf.Duration)"
            )
        requested = int(match[1])
        if not 1 <= requested <= MAX_LIFETIME:
            raise api_error(
                400,
                f"The lifetime requested ({requested}s) is beyond the maximum allowed "
                f"({MAX_LIFETIME}s).",
            )
        if email not in self._directory.service_accounts:
            raise api_error(404, f"Not found; Gaia id not found for email {email}")
        if not self._directory.may_impersonate(email, caller.principal):
            raise api_error(
                403,
                "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it "
                "may not exist).",
            )
        cap = self._config().access_token_lifetime_cap or MAX_LIFETIME
        expires_at = int(time.time()) + min(requested, cap)
        token = "ya29.c." + secrets.token_urlsafe(96)
        self._ledger.add(
            token,
            AccessToken(
                token=token,
                principal=caller.principal,
                provider=caller.provider,
                service_account=email,
                expires_at=expires_at,
            ),
        )
        self._issued.add(GCP_SECRET, token)
        return web.json_response({"accessToken": token, "expireTime": rfc3339_seconds(expires_at)})
