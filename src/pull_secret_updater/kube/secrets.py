"""Managed Secrets: read one, write one, and follow all of them by name.

Everything the controller knows about a Secret passes through `SecretObject`, a frozen value
that keeps only what the decision needs. The `.dockerconfigjson` payload is kept decoded and
out of `repr()`, the other data keys are reduced to their total size, and kubectl's
last-applied-configuration annotation (a copy of the whole object, data included) is dropped,
so that logging or printing a `SecretObject` cannot leak a credential.

Following Secrets is a list followed by a watch, both with `fieldSelector=metadata.name=...`
across all namespaces. That selector is what lets RBAC `resourceNames` confine the controller
to the Secrets it manages, and what keeps its memory independent of the rest of the cluster,
so there is no code path here that lists or watches without it.

The loop in `list_and_watch` is deliberately our own rather than lightkube's `watch()`, which
in 1.0.1 cannot ask for bookmarks, reconnects by itself when the server ends a watch (so one
watch cannot be bounded in time), lets connection errors escape its `on_error` hook, and after
a 410 silently replays the current state as ADDED events (so deletions during the gap are
never reported). Here one call to `_watch_once` is exactly one HTTP watch request.

NB: longer than our other modules because reading, writing and following share the one
conversion from the wire form to `SecretObject`; the watch loop is the part that would move
out (to a `watching` module) if this grows further.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import random
import types
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import httpx2
import lightkube
import structlog
from lightkube.core import decoders
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Secret
from lightkube.types import PatchType

from pull_secret_updater.core.backoff import Backoff
from pull_secret_updater.core.names import is_dns_subdomain
from pull_secret_updater.kube.client import http_client
from pull_secret_updater.kube.errors import (
    Gone,
    KubeError,
    NotFound,
    Transient,
    from_status,
    translated,
)

__all__ = [
    "DOCKER_CONFIG_KEY",
    "SecretObject",
    "SecretRef",
    "WatchEvent",
    "get_secret",
    "list_and_watch",
    "list_secrets",
    "secret_object",
    "write_secret",
]

log = structlog.get_logger(__name__)

DOCKER_CONFIG_KEY = ".dockerconfigjson"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

#: How long past `server_timeout` a watch may run before its connection is presumed dead.
WATCH_GRACE = 10.0

_SECRETS_PATH = "api/v1/secrets"


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretRef:
    """Which Secret (and which incarnation of it: `uid`), without any of its content."""

    namespace: str
    name: str
    uid: str
    resource_version: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretObject:
    """A Secret as the controller sees it.

    `docker_config` is the base64-decoded `.dockerconfigjson` value, None when the key is
    absent or its base64 is invalid (then `data_error` says so, without quoting it).
    `data_size` is the decoded size of all data values together; `deleting` is true once a
    deletionTimestamp is set (finalizers are holding the Secret).
    """

    namespace: str
    name: str
    uid: str
    resource_version: str
    type: str
    annotations: Mapping[str, str] = field(repr=False)
    labels: Mapping[str, str]
    docker_config: bytes | None = field(repr=False)
    data_error: str | None = None
    data_size: int = 0
    immutable: bool = False
    deleting: bool = False

    @property
    def ref(self) -> SecretRef:
        return SecretRef(
            namespace=self.namespace,
            name=self.name,
            uid=self.uid,
            resource_version=self.resource_version,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchEvent:
    """One change, or (`SYNC`) the complete set of managed Secrets after a (re)list.

    After a SYNC, any Secret the receiver knows of that is not in `objects` is gone: it was
    deleted while no watch was running, and no DELETED event will come for it.
    """

    type: Literal["SYNC", "ADDED", "MODIFIED", "DELETED"]
    object: SecretObject | None = None
    objects: tuple[SecretObject, ...] = ()


def secret_object(secret: Secret) -> SecretObject:
    """The `SecretObject` for a lightkube `Secret`."""
    meta = secret.metadata or ObjectMeta()
    data: dict[str, str] = secret.data or {}
    raw = data.get(DOCKER_CONFIG_KEY)
    docker_config: bytes | None = None
    data_error: str | None = None
    if raw is not None:
        try:
            docker_config = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            data_error = f"{DOCKER_CONFIG_KEY} is not valid base64"
    annotations = {k: v for k, v in (meta.annotations or {}).items() if k != LAST_APPLIED}
    return SecretObject(
        namespace=meta.namespace or "",
        name=meta.name or "",
        uid=meta.uid or "",
        resource_version=meta.resourceVersion or "",
        type=secret.type or "Opaque",
        annotations=types.MappingProxyType(annotations),
        labels=types.MappingProxyType(dict(meta.labels or {})),
        docker_config=docker_config,
        data_error=data_error,
        data_size=sum(_decoded_size(v) for v in data.values()),
        immutable=bool(secret.immutable),
        deleting=meta.deletionTimestamp is not None,
    )


async def get_secret(
    client: lightkube.AsyncClient, *, namespace: str, name: str
) -> SecretObject | None:
    """The Secret `namespace/name`, or None if it does not exist."""
    try:
        with translated(f"get Secret {namespace}/{name}"):
            secret = await client.get(Secret, name, namespace=namespace)
    except NotFound:
        return None
    return secret_object(secret)


async def write_secret(
    client: lightkube.AsyncClient,
    secret: SecretObject,
    *,
    docker_config: bytes | None,
    annotations: Mapping[str, str | None],
) -> SecretObject:
    """Write `docker_config` (if not None) and `annotations` (None removes one) in one request.

    Raises `Conflict` if the Secret changed since `secret` was read, `NotFound` if it is gone.
    Labels, other annotations and other data keys are left as they are.
    """
    if not secret.resource_version:
        raise ValueError("a write needs the resourceVersion it was decided on")
    # NB: a JSON merge patch that names metadata.resourceVersion makes the API server check it
    # against the stored object and answer 409 if they differ: optimistic concurrency in a
    # single request, and a patch (unlike a PUT) cannot drop fields this code does not know.
    metadata: dict[str, object] = {"resourceVersion": secret.resource_version}
    if annotations:
        metadata["annotations"] = dict(annotations)
    body: dict[str, object] = {"metadata": metadata}
    if docker_config is not None:
        body["data"] = {DOCKER_CONFIG_KEY: base64.b64encode(docker_config).decode("ascii")}
    with translated(f"patch Secret {secret.namespace}/{secret.name}"):
        written = await client.patch(
            Secret, secret.name, body, namespace=secret.namespace, patch_type=PatchType.MERGE
        )
    return secret_object(written)


async def list_secrets(
    client: lightkube.AsyncClient, *, name: str, chunk_size: int = 500
) -> tuple[tuple[SecretObject, ...], str]:
    """Every Secret called `name`, in all namespaces, and the list's resourceVersion."""
    _check_name(name)
    with translated(f"list Secrets named {name}"):
        listing = client.list(
            Secret,
            namespace=lightkube.ALL_NS,
            fields={"metadata.name": name},
            chunk_size=chunk_size,
        )
        objects = tuple([secret_object(s) async for s in listing])
        return objects, listing.resourceVersion


async def list_and_watch(
    client: lightkube.AsyncClient,
    *,
    name: str,
    handler: Callable[[WatchEvent], Awaitable[None]],
    server_timeout: int = 60,
    backoff_cap: float = 30.0,
    backoff_base: float = 0.5,
    on_synced: Callable[[], Awaitable[None]] | None = None,
    rng: random.Random | None = None,
) -> None:
    """Report every change to the Secrets called `name` to `handler`, until cancelled.

    Each (re)list is reported as one SYNC event; `on_synced` is awaited once, after the first.
    API failures are retried here forever, with capped, jittered exponential backoff. The
    position advances only once `handler` has returned, so an event whose handler raised a
    `KubeError` is delivered again after the retry; any other exception from `handler` or
    `on_synced` ends the loop, as does cancellation. `handler` should be quick (put the event
    on a queue): the watch connection waits while it runs.
    """
    _check_name(name)
    if server_timeout < 1:
        raise ValueError("server_timeout must be at least 1 second")
    follower = _Follower(
        client,
        name=name,
        handler=handler,
        server_timeout=server_timeout,
        rng=rng or random.Random(),  # noqa: S311 - jitter, not secrecy
    )
    synced = False
    while True:
        try:
            if follower.resource_version is None:
                await follower.relist()
            if not synced:
                if on_synced is not None:
                    await on_synced()
                synced = True
            await follower.watch()
        except Gone as e:
            # NB: our resourceVersion was compacted away; only a fresh list can tell what
            # changed (deletions included) in the meantime. Relist at once, unless the
            # previous attempt ended the same way.
            follower.failures += 1
            follower.resource_version = None
            attempt = follower.failures
            delay = (
                0.0
                if attempt == 1
                else _delay(attempt - 1, backoff_base, backoff_cap, follower.rng)
            )
            _log_retry(name=name, error=e, delay=delay, attempt=attempt, relist=True)
            await asyncio.sleep(delay)
        except KubeError as e:
            follower.failures += 1
            attempt = follower.failures
            delay = _delay(attempt, backoff_base, backoff_cap, follower.rng)
            _log_retry(name=name, error=e, delay=delay, attempt=attempt, relist=False)
            await asyncio.sleep(delay)


class _Follower:
    """The state `list_and_watch` carries between attempts: where to resume, how it went."""

    def __init__(
        self,
        client: lightkube.AsyncClient,
        *,
        name: str,
        handler: Callable[[WatchEvent], Awaitable[None]],
        server_timeout: int,
        rng: random.Random,
    ) -> None:
        self.client = client
        self.http = http_client(client)
        self.name = name
        self.handler = handler
        self.server_timeout = server_timeout
        self.rng = rng
        self.resource_version: str | None = None
        self.failures = 0

    async def relist(self) -> None:
        # NB: a successful list does not reset `failures`: were every watch after it to fail
        # at once (410 included), relisting must still slow down.
        objects, resource_version = await list_secrets(self.client, name=self.name)
        await self.handler(WatchEvent(type="SYNC", objects=objects))
        self.resource_version = resource_version

    async def watch(self) -> None:
        """Follow one watch request to its end, keeping `resource_version` current."""
        assert self.resource_version is not None
        loop = asyncio.get_running_loop()
        watch = _watch_once(
            self.http,
            name=self.name,
            resource_version=self.resource_version,
            server_timeout=self.server_timeout,
        )
        deadline = asyncio.timeout(self.server_timeout + WATCH_GRACE)
        try:
            async with deadline, aclosing(watch) as seen_events:
                async for seen in seen_events:
                    self.failures = 0  # the server is answering: any next failure is a first
                    if seen.event is not None:
                        # NB: the deadline bounds the connection, not the handler: it is
                        # paused while the handler runs, so an event is never cancelled
                        # half-handled.
                        when, paused_at = deadline.when(), loop.time()
                        deadline.reschedule(None)
                        try:
                            await self.handler(seen.event)
                        finally:
                            if when is not None:
                                deadline.reschedule(when + loop.time() - paused_at)
                    self.resource_version = seen.resource_version or self.resource_version
            self.failures = 0
        except TimeoutError as e:
            if not deadline.expired():
                raise
            raise Transient(
                f"watch Secrets named {self.name}: no end after {self.server_timeout}s "
                f"+ {WATCH_GRACE:g}s; connection presumed dead"
            ) from e


@dataclass(frozen=True, slots=True)
class _Seen:
    resource_version: str
    event: WatchEvent | None


async def _watch_once(
    http: httpx2.AsyncClient, *, name: str, resource_version: str, server_timeout: int
) -> AsyncGenerator[_Seen, None]:
    """One watch request: a `_Seen` per event or bookmark, until the server ends it."""
    params = {
        "watch": "true",
        "fieldSelector": f"metadata.name={name}",
        "resourceVersion": resource_version,
        # NB: bookmarks carry a fresh resourceVersion through quiet periods, so resuming after
        # a reconnect does not fall behind the compaction window and force a relist.
        "allowWatchBookmarks": "true",
        "timeoutSeconds": str(server_timeout),
    }
    configured = http.timeout
    timeout = httpx2.Timeout(
        connect=configured.connect, read=None, write=configured.write, pool=configured.pool
    )
    with translated(f"watch Secrets named {name}"):
        async with http.stream("GET", _SECRETS_PATH, params=params, timeout=timeout) as response:
            if response.status_code != 200:
                await response.aread()
                response.raise_for_status()
            async for line in response.aiter_lines():
                if line.strip():
                    yield _parse_line(line)


def _parse_line(line: str) -> _Seen:
    try:
        event = decoders.decode_watch_event(line.encode())
        if event.type == "ERROR":
            status = decoders.decode_status(event.object)
        else:
            secret = cast(Secret, decoders.decode_object(event.object, Secret))
    except ValueError as e:  # msgspec's decode and validation errors
        raise Transient("watch Secrets: an event could not be decoded") from e
    if event.type == "ERROR":
        # NB: an expired resourceVersion usually arrives here, as a Status with code 410 inside
        # a 200 reply, rather than as an HTTP 410.
        raise from_status(status.code, status.reason, status.message, what="watch Secrets")
    resource_version = (secret.metadata.resourceVersion if secret.metadata else None) or ""
    if event.type in ("ADDED", "MODIFIED", "DELETED"):
        kind = cast(Literal["ADDED", "MODIFIED", "DELETED"], event.type)
        return _Seen(resource_version, WatchEvent(type=kind, object=secret_object(secret)))
    # BOOKMARK (an object with nothing but a resourceVersion), or a type we do not know.
    return _Seen(resource_version, None)


def _delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    return Backoff(base=base, cap=cap).delay(attempt=attempt, rng=rng)


def _log_retry(
    *, name: str, error: BaseException, delay: float, attempt: int, relist: bool
) -> None:
    status = error.status if isinstance(error, KubeError) else None
    message = str(error) if isinstance(error, KubeError) else "watch deadline passed"
    log.warning(
        "relisting Secrets" if relist else "watching Secrets failed; retrying",
        name=name,
        error=message,
        error_class=type(error).__name__,
        status=status,
        attempt=attempt,
        retry_in_s=round(delay, 3),
    )


def _check_name(name: str) -> None:
    if not is_dns_subdomain(name):
        raise ValueError("the managed Secret name must be a DNS subdomain name")


def _decoded_size(value: Any) -> int:
    if not isinstance(value, str):
        return 0
    stripped = value.rstrip("=")
    return len(stripped) * 3 // 4
