"""``TokenServiceAdmin``: the synchronous admin client of the token service.

Tests, fixtures and ``devstack.chainctl`` use it. It imports no aiohttp (nor anything of the
server), so the stack and the tests that only drive the service stay light. Every failed call
raises ``TokenServiceError`` with the status, the code and the message of the service's JSON
error.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Self

import httpx2

from devstack.tokenservice.protocol import REGISTRY_PULL, ErrorCodes, JSONObject, code_for_status
from devstack.tokenservice.ready import ReadyInfo


class TokenServiceError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class TokenServiceAdmin:
    """Synchronous client of the admin listener (see ``admin_api`` for the endpoints)."""

    def __init__(
        self,
        admin_url: str,
        admin_token: str,
        ca_file: str | os.PathLike[str] | None = None,
        *,
        timeout: float = 10.0,
    ) -> None:
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=os.fspath(ca_file)) if ca_file else True
        )
        self._client = httpx2.Client(
            base_url=admin_url,
            headers={"Authorization": f"Bearer {admin_token}"},
            verify=verify,
            timeout=timeout,
            trust_env=False,
        )

    @classmethod
    def from_ready(cls, ready: ReadyInfo, ca_file: str | os.PathLike[str]) -> TokenServiceAdmin:
        return cls(ready.admin_url, ready.admin_token, ca_file)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, body: JSONObject | None = None) -> Any:
        response = self._client.request(method, path, json=body)
        if response.status_code >= 400:
            try:
                error = response.json()
                code, message = str(error["code"]), str(error["message"])
            except (ValueError, KeyError, TypeError):
                code, message = code_for_status(response.status_code), response.text[:200]
            raise TokenServiceError(response.status_code, code, message)
        return response.json() if response.content else None

    def call(self, method: str, path: str, body: JSONObject | None = None) -> Any:
        """Any admin route (a stand-in's own, such as ``/admin/gcp/...``); raises
        ``TokenServiceError``."""
        return self._call(method, path, body)

    # -- identities

    def create_identity(
        self,
        *,
        name: str,
        issuer: str,
        subject: str | None = None,
        subject_pattern: str | None = None,
        audience: str | None = None,
        issuer_keys: str | Mapping[str, Any] | None = None,
        roles: Iterable[str] = (REGISTRY_PULL,),
        lifetime: int | None = None,
    ) -> str:
        """Create an identity and return its UID; ``lifetime`` (seconds) overrides the
        service's token lifetime for this identity only."""
        body = {
            "name": name,
            "issuer": issuer,
            "subject": subject,
            "subject_pattern": subject_pattern,
            "audience": audience,
            "issuer_keys": issuer_keys,
            "roles": list(roles),
            "lifetime": lifetime,
        }
        created = self._call("POST", "/admin/identities", body)
        return str(created["uid"])

    def get_identity(self, uid: str) -> JSONObject:
        identity: JSONObject = self._call("GET", f"/admin/identities/{uid}")
        return identity

    def list_identities(self) -> list[JSONObject]:
        items: list[JSONObject] = self._call("GET", "/admin/identities")["items"]
        return items

    def set_identity_lifetime(self, uid: str, seconds: int | None) -> None:
        """Give one identity tokens of ``seconds``; None: the service's lifetime again."""
        self._call("PATCH", f"/admin/identities/{uid}", {"lifetime": seconds})

    def delete_identity(self, uid: str) -> None:
        self._call("DELETE", f"/admin/identities/{uid}")

    # -- what happened

    def stats(self) -> JSONObject:
        """``exchanges`` (per UID: ok/error), ``exchanges_total``, ``registry_tokens``,
        ``minted_tokens``, ``discovery_fetches``, ``jwks_fetches``, ``in_flight``."""
        stats: JSONObject = self._call("GET", "/admin/stats")
        return stats

    def reset_stats(self) -> None:
        self._call("POST", "/admin/stats/reset")

    def issued(self, kind: str | None = None) -> list[str]:
        """Every token the service has issued (``kind``: only ``sts``, ``registry``, ``aws`` or
        ``azure`` ones; ``aws``: STS secret keys and session tokens, ECR passwords; ``azure``:
        Entra access tokens and ACR refresh tokens)."""
        items: list[JSONObject] = self._call("GET", "/admin/issued")["items"]
        return [str(i["token"]) for i in items if kind is None or i["kind"] == kind]

    # -- faults and config

    def set_fault(
        self,
        mode: str,
        *,
        status: int | None = None,
        delay: float | None = None,
        count: int | None = None,
        duration: float | None = None,
        target: str | None = None,
    ) -> None:
        """Replace the active fault; ``target``: ``exchange`` (default) or ``keys`` (the
        discovery document and JWKS; modes ``status``, ``slow``, ``malformed``)."""
        body: JSONObject = {"mode": mode, "count": count, "duration": duration}
        if status is not None:
            body["status"] = status
        if delay is not None:
            body["delay"] = delay
        if target is not None:
            body["target"] = target
        self._call("POST", "/admin/faults", body)

    def faults(self) -> JSONObject:
        faults: JSONObject = self._call("GET", "/admin/faults")
        return faults

    def clear_faults(self) -> None:
        self.set_fault("none")

    def config(self) -> JSONObject:
        config: JSONObject = self._call("GET", "/admin/config")
        return config

    def set_lifetime(self, seconds: int) -> None:
        self._call("POST", "/admin/config", {"lifetime": seconds})

    def set_error_codes(self, style: ErrorCodes) -> None:
        """``numeric``: STS errors carry gRPC code numbers (``7``); ``string``: names."""
        self._call("POST", "/admin/config", {"error_codes": style})

    # -- keys and tokens

    def rotate_signing_key(self, *, keep_previous: bool = True) -> str:
        """Sign STS tokens with a new key from now on and return its ``kid``.

        ``keep_previous``: keep publishing the earlier keys in the JWKS (a graceful rotation,
        their tokens stay good); False drops them at once (their tokens stop verifying).
        """
        rotated = self._call("POST", "/admin/keys/rotate", {"keep_previous": keep_previous})
        return str(rotated["kid"])

    def mint_token(
        self,
        *,
        sub: str,
        aud: str | Sequence[str] | None = None,
        iss: str | None = None,
        iat: int | None = None,
        exp: int | None = None,
        claims: Mapping[str, Any] | None = None,
        omit: Iterable[str] = (),
    ) -> str:
        """An STS token signed with the current key, with the claims of an exchange for
        ``sub`` (``aud`` defaults to the registry audience) overridden as given; ``claims``
        adds or replaces claims, ``omit`` removes claims by name."""
        body: JSONObject = {
            "sub": sub,
            "aud": aud if aud is None or isinstance(aud, str) else list(aud),
            "iss": iss,
            "iat": iat,
            "exp": exp,
            "claims": dict(claims or {}),
            "omit": list(omit),
        }
        minted = self._call("POST", "/admin/tokens", body)
        return str(minted["token"])

    # -- the AWS stand-in (devstack.tokenservice.aws.front)

    def aws_stats(self) -> JSONObject:
        """``assume_role_with_web_identity`` and ``get_authorization_token``: per role ARN
        (``""`` when a call named or proved none), ``{"ok": n, "error": n}``."""
        stats: JSONObject = self._call("GET", "/admin/aws/stats")
        return stats

    def reset_aws_stats(self) -> None:
        self._call("POST", "/admin/aws/stats/reset")

    def aws_passwords(self) -> list[JSONObject]:
        """Every ECR password issued: ``password``, ``account``, ``region``, ``role_arn``,
        ``expires_at`` (epoch seconds)."""
        items: list[JSONObject] = self._call("GET", "/admin/aws/passwords")["items"]
        return items

    def set_aws_fault(
        self, mode: str, *, api: str | None = None, count: int | None = None, delay: float = 5.0
    ) -> None:
        """``throttle``, ``unavailable``, ``server_error`` or ``slow`` (``delay`` seconds) for
        the next ``count`` calls (None: until cleared) to ``api`` (``sts``, ``ecr``; None:
        both)."""
        self._call("POST", "/admin/aws/faults", {"mode": mode, "api": api, "count": count,
                                                 "delay": delay})  # fmt: skip

    def aws_faults(self) -> JSONObject:
        faults: JSONObject = self._call("GET", "/admin/aws/faults")
        return faults

    def clear_aws_faults(self) -> None:
        self.set_aws_fault("none")

    def aws_config(self) -> JSONObject:
        config: JSONObject = self._call("GET", "/admin/aws/config")
        return config

    def set_ecr_token_lifetime(self, seconds: int | None) -> None:
        """Seconds the next ECR passwords live; None: AWS's 12 hours again."""
        self._call("POST", "/admin/aws/config", {"ecr_token_lifetime": seconds})

    def set_aws_session_cap(self, seconds: int | None) -> None:
        """The longest STS credentials live from now on, whatever DurationSeconds asks; None:
        no cap (AWS's behaviour)."""
        self._call("POST", "/admin/aws/config", {"session_lifetime_cap": seconds})

    def set_aws_issuer_keys(self, issuer: str, jwks: Mapping[str, Any]) -> None:
        """The keys of an issuer whose OIDC discovery the stand-in cannot reach (a cluster's)."""
        self._call("POST", "/admin/aws/issuers", {"issuer": issuer, "jwks": dict(jwks)})

    # -- the Azure stand-in (devstack.tokenservice.azure.front)

    def create_azure_app(self, name: str, *, tenant: str | None = None) -> JSONObject:
        """A new app registration: ``client_id``, ``tenant``, ``name``."""
        body: JSONObject = {"name": name}
        if tenant is not None:
            body["tenant"] = tenant
        app: JSONObject = self._call("POST", "/admin/azure/apps", body)
        return app

    def azure_apps(self) -> list[JSONObject]:
        items: list[JSONObject] = self._call("GET", "/admin/azure/apps")["items"]
        return items

    def add_azure_federated_credential(
        self, client_id: str, *, issuer: str, subject: str, audience: str
    ) -> None:
        self._call("POST", f"/admin/azure/apps/{client_id}/federated-credentials",
                   {"issuer": issuer, "subject": subject, "audience": audience})  # fmt: skip

    def assign_acr_pull(self, client_id: str, registry: str) -> None:
        self._call("POST", "/admin/azure/role-assignments",
                   {"client_id": client_id, "registry": registry})  # fmt: skip

    def set_azure_issuer_keys(self, issuer: str, jwks: Mapping[str, Any]) -> None:
        """The keys of an issuer whose OIDC discovery the stand-in cannot reach (a cluster's)."""
        self._call("POST", "/admin/azure/issuers", {"issuer": issuer, "jwks": dict(jwks)})

    def azure_stats(self) -> JSONObject:
        """``token`` (Entra) and ``exchange`` (ACR): per client ID, ``{"ok": n, "error": n}``."""
        stats: JSONObject = self._call("GET", "/admin/azure/stats")
        return stats

    def reset_azure_stats(self) -> None:
        self._call("POST", "/admin/azure/stats/reset")

    def azure_refresh_tokens(self) -> list[JSONObject]:
        """Every refresh token issued: ``token``, ``registry``, ``client_id``, ``tenant``,
        ``expires_at``."""
        items: list[JSONObject] = self._call("GET", "/admin/azure/refresh-tokens")["items"]
        return items

    def set_azure_fault(
        self, mode: str, *, api: str | None = None, count: int | None = None, delay: float = 5.0
    ) -> None:
        """``throttle``, ``unavailable``, ``server_error`` or ``slow`` for the next ``count``
        calls (None: until cleared) to ``api`` (``entra``, ``acr``; None: both)."""
        self._call("POST", "/admin/azure/faults", {"mode": mode, "api": api, "count": count,
                                                   "delay": delay})  # fmt: skip

    def set_azure_lifetimes(
        self, *, access_token: int | None = None, refresh_token: int | None = None
    ) -> JSONObject:
        """Seconds the next access / refresh tokens live (0: Azure's default again)."""
        body: JSONObject = {}
        if access_token is not None:
            body["access_token_lifetime"] = access_token or None
        if refresh_token is not None:
            body["refresh_token_lifetime"] = refresh_token or None
        config: JSONObject = self._call("POST", "/admin/azure/config", body)
        return config
