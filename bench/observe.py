"""Seeing what the controller did, from outside: an admin watch on the managed Secrets.

``SecretWatch`` lists the Secrets with ``fieldSelector=metadata.name=pull-secret`` across all
namespaces and follows them with a watch, timestamping every event as it arrives. It is
deliberately raw (httpx2 and ``json``, no object models) so that the observer costs as
little CPU as possible on a machine it shares with the API server and the controller.

From each Secret it keeps only the claims of the token in its registry entry (``Token``):
expiry, issue time and ID; a scenario about another provider's entries (whose passwords carry
no claims) gives the watch its own ``Reader``. ``verify_tokens`` checks, once a scenario is
over, that the tokens are real: signed by the token service, for the registry, not expired,
and written as the registry entry kubelet would use.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx2
import jwt

from bench.lab import DOCKER_CONFIG_KEY, MANAGED_NAME
from devstack.stack import LocalStack

JSON = dict[str, Any]

#: The watch is asked to run this long; it is resumed if the server ends it anyway.
WATCH_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class Token:
    """The claims that matter of the token in a Secret's registry entry."""

    exp: float
    iat: float
    jti: str


@dataclass(frozen=True, slots=True)
class Observation:
    """One watch event (or list item) about one Secret, stamped when it arrived."""

    mono: float
    wall: float
    kind: str
    namespace: str
    token: Token | None


def _b64url_json(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def registry_password(secret: Mapping[str, Any], registry: str) -> str | None:
    raw = (secret.get("data") or {}).get(DOCKER_CONFIG_KEY)
    if not raw:
        return None
    try:
        config = json.loads(base64.b64decode(raw))
        entry = config.get("auths", {}).get(registry)
    except (ValueError, AttributeError):
        return None
    password = entry.get("password") if isinstance(entry, dict) else None
    return password if isinstance(password, str) else None


def claims_of(token: str) -> Token | None:
    """The claims of `token` if it is a JWT with exp, iat and jti (the signature unchecked)."""
    if token.count(".") != 2:
        return None
    try:
        claims = _b64url_json(token.split(".")[1])
        return Token(exp=float(claims["exp"]), iat=float(claims["iat"]), jti=str(claims["jti"]))
    except (ValueError, KeyError, TypeError):
        return None


def token_of(secret: Mapping[str, Any], registry: str) -> Token | None:
    """The claims of the token in `secret`'s entry for `registry`, if it holds a JWT."""
    password = registry_password(secret, registry)
    return None if password is None else claims_of(password)


#: What a watch keeps of a Secret: the claims of the credential it follows, or None.
Reader = Callable[[Mapping[str, Any]], Token | None]


def admin_http(stack: LocalStack) -> httpx2.AsyncClient:
    admin = stack.control_plane.admin
    return httpx2.AsyncClient(
        base_url=admin.server,
        verify=admin.ssl_context(),
        timeout=httpx2.Timeout(30.0, read=None),
        trust_env=False,
    )


async def list_managed(
    http: httpx2.AsyncClient, *, name: str = MANAGED_NAME
) -> tuple[list[JSON], str]:
    """Every Secret called `name`, in all namespaces, and the list's resourceVersion."""
    items: list[JSON] = []
    params = {"fieldSelector": f"metadata.name={name}", "limit": "1000"}
    while True:
        response = await http.get("/api/v1/secrets", params=params)
        response.raise_for_status()
        page = response.json()
        items.extend(page.get("items") or [])
        meta = page.get("metadata") or {}
        if not meta.get("continue"):
            return items, str(meta.get("resourceVersion", ""))
        params["continue"] = meta["continue"]


@dataclass
class Goal:
    """Waits until every namespace in `pending` has been seen with an acceptable token."""

    pending: set[str]
    accept: Callable[[Observation], bool]
    reached: dict[str, Observation] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, seen: Observation) -> None:
        if seen.namespace in self.pending and self.accept(seen):
            self.pending.discard(seen.namespace)
            self.reached[seen.namespace] = seen
            if not self.pending:
                self.done.set()

    async def wait(self, seconds: float) -> bool:
        """True if reached within `seconds`, False if not (what is missing stays pending)."""
        if not self.pending:
            return True
        try:
            async with asyncio.timeout(seconds):
                await self.done.wait()
        except TimeoutError:
            return False
        return True


class SecretWatch:
    """Follows the managed Secrets as the cluster admin and records every change.

    `current` maps namespace to the token its Secret holds now (as far as the watch has told);
    `history` holds every observation if `keep_history`. Listeners are called with each
    observation as it arrives, on the event loop: they must be quick. `read` tells what a
    Secret holds (default: the token in the stack's registry entry).
    """

    def __init__(
        self,
        stack: LocalStack,
        *,
        name: str = MANAGED_NAME,
        namespaces: Collection[str] | None = None,
        keep_history: bool = True,
        read: Reader | None = None,
    ) -> None:
        self.registry = stack.registry.host
        registry = self.registry
        self.read: Reader = read or (lambda secret: token_of(secret, registry))
        self.name = name
        self._only = set(namespaces) if namespaces is not None else None
        self._http = admin_http(stack)
        self.keep_history = keep_history
        self.current: dict[str, Token | None] = {}
        self.history: list[Observation] = []
        self.listeners: list[Callable[[Observation], None]] = []
        self.relists = 0
        self._resource_version = ""
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self._relist()
        self._task = asyncio.create_task(self._follow(), name="secret watch")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._http.aclose()

    @property
    def http(self) -> httpx2.AsyncClient:
        return self._http

    def follows(self, namespace: str) -> bool:
        """Whether the Secret in `namespace` is one this watch reports on."""
        return self._only is None or namespace in self._only

    def goal(self, namespaces: Collection[str], accept: Callable[[Observation], bool]) -> Goal:
        """A `Goal` over `namespaces`, checked against what is known now and every event."""
        goal = Goal(pending=set(namespaces), accept=accept)
        now_mono, now_wall = time.monotonic(), time.time()
        for namespace in list(goal.pending):
            if namespace in self.current:
                goal.offer(
                    Observation(now_mono, now_wall, "KNOWN", namespace, self.current[namespace])
                )
        self.listeners.append(goal.offer)
        return goal

    def _observe(self, kind: str, secret: Mapping[str, Any], mono: float, wall: float) -> None:
        meta = secret.get("metadata") or {}
        namespace = str(meta.get("namespace", ""))
        if self._only is not None and namespace not in self._only:
            return
        token = None if kind == "DELETED" else self.read(secret)
        seen = Observation(mono, wall, kind, namespace, token)
        if kind == "DELETED":
            self.current.pop(namespace, None)
        else:
            self.current[namespace] = token
        if self.keep_history:
            self.history.append(seen)
        for listener in self.listeners:
            listener(seen)

    async def _relist(self) -> None:
        items, self._resource_version = await list_managed(self._http, name=self.name)
        mono, wall = time.monotonic(), time.time()
        listed = set()
        for item in items:
            self._observe("LISTED", item, mono, wall)
            listed.add(str((item.get("metadata") or {}).get("namespace", "")))
        for gone in set(self.current) - listed:
            self.current.pop(gone, None)

    async def _follow(self) -> None:
        while True:
            try:
                await self._watch_once()
            except (httpx2.HTTPError, _Expired):
                self.relists += 1
                await asyncio.sleep(0.2)
                await self._relist()

    async def _watch_once(self) -> None:
        params = {
            "watch": "true",
            "fieldSelector": f"metadata.name={self.name}",
            "resourceVersion": self._resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        async with self._http.stream("GET", "/api/v1/secrets", params=params) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                mono, wall = time.monotonic(), time.time()
                event = json.loads(line)
                kind, obj = str(event.get("type")), event.get("object") or {}
                if kind == "ERROR":
                    raise _Expired(str(obj.get("message", "watch error")))
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._observe(kind, obj, mono, wall)
                if version:
                    self._resource_version = str(version)


class _Expired(Exception):
    """The watch's resourceVersion is gone (or it failed otherwise): list again."""


# -- checking the tokens for real -----------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    secrets: int
    valid: int
    problems: dict[str, int]


async def verify_tokens(stack: LocalStack, namespaces: Collection[str]) -> Verification:
    """Check every Secret in `namespaces`: a token signed by the STS, for the registry, not
    expired, with the `_token` user name and a matching `auth`; count what is wrong."""
    wanted = set(namespaces)
    async with admin_http(stack) as http:
        items, _ = await list_managed(http)
    with httpx2.Client(verify=str(stack.ca_file), timeout=10.0, trust_env=False) as client:
        jwks = client.get(f"{stack.token_service.url}/.well-known/jwks.json").json()
    keys = {str(key.key_id): key for key in jwt.PyJWKSet.from_dict(jwks).keys}
    registry = stack.registry.host
    problems: dict[str, int] = {}
    valid = 0
    checked = 0
    for item in items:
        if str((item.get("metadata") or {}).get("namespace")) not in wanted:
            continue
        checked += 1
        problem = _token_problem(item, registry=registry, keys=keys)
        if problem is None:
            valid += 1
        else:
            problems[problem] = problems.get(problem, 0) + 1
    missing = len(wanted) - checked
    if missing:
        problems["Secret missing"] = missing
    return Verification(secrets=len(wanted), valid=valid, problems=problems)


def _token_problem(secret: JSON, *, registry: str, keys: Mapping[str, jwt.PyJWK]) -> str | None:
    raw = (secret.get("data") or {}).get(DOCKER_CONFIG_KEY)
    try:
        entry = json.loads(base64.b64decode(raw or ""))["auths"][registry]
    except (ValueError, KeyError, TypeError):
        return "no registry entry"
    password = entry.get("password")
    if not isinstance(password, str):
        return "no password"
    if entry.get("username") != "_token":
        return "wrong username"
    if base64.b64decode(entry.get("auth", "")) != f"_token:{password}".encode():
        return "auth does not match"
    try:
        header = jwt.get_unverified_header(password)
        key = keys[str(header.get("kid"))]
        jwt.decode(password, key, algorithms=[str(header["alg"])], audience=registry)
    except KeyError:
        return "unknown signing key"
    except jwt.ExpiredSignatureError:
        return "expired"
    except jwt.PyJWTError:
        return "invalid token"
    return None
