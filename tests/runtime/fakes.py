"""An in-memory API server and a harness, to drive `Controller` without a stack.

The clock and the token provider are the shared ones of `tests.fakes`, re-exported here.

The controller talks to the fake API server through a real `lightkube.AsyncClient` whose
transport is an `httpx2.MockTransport`, so every request goes through the same lightkube
encoding, error translation and `kube.secrets` code as in a cluster. The server keeps what a
real one would for these requests: Secrets (GET, and JSON merge PATCH guarded by
metadata.resourceVersion), Events (POST, PATCH) and namespace labels (GET).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
import json
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx2
import lightkube
from lightkube import KubeConfig

from pull_secret_updater.core.backoff import Backoff
from pull_secret_updater.core.decision import DOCKER_CONFIG_JSON
from pull_secret_updater.core.policy import ALLOW_ALL, Policy
from pull_secret_updater.core.ratelimit import NamespaceBudget
from pull_secret_updater.core.schedule import Schedule
from pull_secret_updater.kube.events import EventRecorder
from pull_secret_updater.kube.leader import LeaderElector
from pull_secret_updater.kube.namespaces import NamespaceLabels
from pull_secret_updater.kube.secrets import DOCKER_CONFIG_KEY, WatchEvent, get_secret
from pull_secret_updater.runtime.controller import Controller, ControllerConfig, Key, Outcome
from pull_secret_updater.runtime.failures import Failures
from pull_secret_updater.runtime.health import Health
from pull_secret_updater.runtime.metrics import Metrics
from pull_secret_updater.runtime.workqueue import WorkQueue
from pull_secret_updater.tokens.cache import TokenCache
from pull_secret_updater.tokens.provider import Subject, TokenProvider
from tests.fakes import REGISTRY, FakeClock, FakeTokenProvider, status_reply

SECRET_NAME = "pull-secret"
IDENTITY = "45a0c61ea6fd977f050c5fb9ac06a69eed764595/d6bd5ea6e3ba0f1e"
OTHER_IDENTITY = "45a0c61ea6fd977f050c5fb9ac06a69eed764595/0000000000000000"
CONTROLLER = Subject(namespace="pull-secret-updater", service_account="controller")
SCHEDULE = Schedule()
BACKOFF = Backoff(base=1.0, cap=300.0)

Json = dict[str, Any]


# -- the API server -------------------------------------------------------------------------

_SECRET = re.compile(r"/api/v1/namespaces/([^/]+)/secrets/([^/]+)")
_EVENTS = re.compile(r"/api/v1/namespaces/([^/]+)/events(?:/([^/]+))?")
_NAMESPACE = re.compile(r"/api/v1/namespaces/([^/]+)")


def merge_patch(target: object, patch: object) -> object:
    """RFC 7386 JSON merge patch: objects merge, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class FakeApiServer:
    """Secrets, Events and namespaces in memory, served over HTTP to a lightkube client."""

    def __init__(self) -> None:
        self.secrets: dict[Key, Json] = {}
        self.events: list[Json] = []
        self.namespaces: dict[str, dict[str, str]] = {}
        self.requests: list[tuple[str, str]] = []
        self._versions = itertools.count(100)
        self._uids = itertools.count(1)
        self._refusals: list[tuple[str, str, int]] = []
        #: While set to an unset Event, the answer to a Secret PATCH (already applied) is held
        #: back until the Event is set: a write that raced with something else.
        self.hold_write_answers: asyncio.Event | None = None

    # -- what a test sets up and looks at ----------------------------------------------------

    def create_secret(
        self,
        namespace: str,
        name: str = SECRET_NAME,
        *,
        type: str = DOCKER_CONFIG_JSON,
        docker_config: bytes | None = None,
        annotations: Mapping[str, str] | None = None,
        data: Mapping[str, bytes] | None = None,
    ) -> None:
        encoded = {k: base64.b64encode(v).decode() for k, v in (data or {}).items()}
        if docker_config is not None:
            encoded[DOCKER_CONFIG_KEY] = base64.b64encode(docker_config).decode()
        self.secrets[(namespace, name)] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": f"uid-{next(self._uids)}",
                "resourceVersion": str(next(self._versions)),
                "annotations": dict(annotations or {}),
            },
            "type": type,
            "data": encoded,
        }

    def edit_secret(self, namespace: str, name: str, patch: Json) -> None:
        """Someone else's write: merged in, with a new resourceVersion."""
        key = (namespace, name)
        self.secrets[key] = self._merged(self.secrets[key], patch)

    def delete_secret(self, namespace: str, name: str = SECRET_NAME) -> None:
        del self.secrets[(namespace, name)]

    def refuse_next(self, method: str, resource: str, status: int) -> None:
        """Answer the next `method` request on `resource` ("secrets", ...) with `status`."""
        self._refusals.append((method, resource, status))

    def raw_data(self, namespace: str, name: str = SECRET_NAME) -> dict[str, str]:
        data: dict[str, str] = self.secrets[(namespace, name)].get("data") or {}
        return dict(data)

    def docker_config(self, namespace: str, name: str = SECRET_NAME) -> object:
        """The stored `.dockerconfigjson`, parsed; None when there is none."""
        raw = self.raw_data(namespace, name).get(DOCKER_CONFIG_KEY)
        return None if raw is None else json.loads(base64.b64decode(raw))

    def annotations(self, namespace: str, name: str = SECRET_NAME) -> dict[str, str]:
        meta = self.secrets[(namespace, name)]["metadata"]
        return dict(meta.get("annotations") or {})

    def resource_version(self, namespace: str, name: str = SECRET_NAME) -> str:
        return str(self.secrets[(namespace, name)]["metadata"]["resourceVersion"])

    @property
    def secret_writes(self) -> list[str]:
        """The paths of every PATCH of a Secret that was asked for, answered or not."""
        return [path for method, path in self.requests if method == "PATCH" and "/secrets/" in path]

    def recorded_events(self, type: str | None = None) -> list[tuple[str, str, str]]:
        """(type, reason, message) of every Event created, oldest first."""
        return [
            (e["type"], e["reason"], e["message"])
            for e in self.events
            if type is None or e["type"] == type
        ]

    # -- HTTP ---------------------------------------------------------------------------------

    def client(self) -> lightkube.AsyncClient:
        config = KubeConfig.from_dict(
            {
                "clusters": [{"name": "c", "cluster": {"server": "http://api.example.test"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
        return lightkube.AsyncClient(config=config, transport=httpx2.MockTransport(self.handle))

    async def handle(self, request: httpx2.Request) -> httpx2.Response:
        response = self._answer(request)
        held = self.hold_write_answers
        if held is not None and request.method == "PATCH" and _SECRET.fullmatch(request.url.path):
            await held.wait()
        return response

    def _answer(self, request: httpx2.Request) -> httpx2.Response:
        method, path = request.method, request.url.path
        self.requests.append((method, path))
        if match := _SECRET.fullmatch(path):
            refused = self._refusal(method, "secrets")
            if refused is not None:
                return refused
            return self._secret(method, (match[1], match[2]), request)
        if match := _EVENTS.fullmatch(path):
            refused = self._refusal(method, "events")
            if refused is not None:
                return refused
            return self._event(method, match[1], match[2], request)
        if (match := _NAMESPACE.fullmatch(path)) and method == "GET":
            refused = self._refusal(method, "namespaces")
            if refused is not None:
                return refused
            if match[1] not in self.namespaces:
                return status_reply(404, f'namespaces "{match[1]}" not found')
            meta = {"name": match[1], "labels": self.namespaces[match[1]]}
            return httpx2.Response(200, json={"apiVersion": "v1", "kind": "Namespace",
                                              "metadata": meta})  # fmt: skip
        return status_reply(404, f"no route for {method} {path}")

    def _refusal(self, method: str, resource: str) -> httpx2.Response | None:
        for i, (m, r, status) in enumerate(self._refusals):
            if (m, r) == (method, resource):
                del self._refusals[i]
                return status_reply(status, f"refused {method} on {resource} as asked")
        return None

    def _secret(self, method: str, key: Key, request: httpx2.Request) -> httpx2.Response:
        stored = self.secrets.get(key)
        if stored is None:
            return status_reply(404, f'secrets "{key[1]}" not found')
        if method == "GET":
            return httpx2.Response(200, json=stored)
        if method != "PATCH":
            return status_reply(405, f"{method} is not served here")
        if request.headers.get("content-type") != "application/merge-patch+json":
            return status_reply(415, "only JSON merge patches are served here")
        patch = json.loads(request.content)
        wanted = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != stored["metadata"]["resourceVersion"]:
            return status_reply(409, "the object has been modified; please apply your changes "
                                     "to the latest version and try again")  # fmt: skip
        written = self._merged(stored, patch)
        for value in (written.get("data") or {}).values():
            try:
                base64.b64decode(value, validate=True)
            except ValueError:
                return status_reply(422, "data values must be base64")
        self.secrets[key] = written
        return httpx2.Response(200, json=written)

    def _merged(self, stored: Json, patch: Json) -> Json:
        merged = merge_patch(stored, patch)
        assert isinstance(merged, dict)
        meta = merged["metadata"]
        for fixed in ("name", "namespace", "uid"):
            meta[fixed] = stored["metadata"][fixed]
        meta["resourceVersion"] = str(next(self._versions))
        return merged

    def _event(
        self, method: str, namespace: str, name: str | None, request: httpx2.Request
    ) -> httpx2.Response:
        body = json.loads(request.content)
        if method == "POST" and name is None:
            body["metadata"]["resourceVersion"] = str(next(self._versions))
            self.events.append(body)
            return httpx2.Response(201, json=body)
        if method == "PATCH" and name is not None:
            for i, event in enumerate(self.events):
                meta = event["metadata"]
                if (meta["namespace"], meta["name"]) == (namespace, name):
                    merged = merge_patch(event, body)
                    assert isinstance(merged, dict)
                    self.events[i] = merged
                    return httpx2.Response(200, json=merged)
            return status_reply(404, f'events "{name}" not found')
        return status_reply(405, f"{method} is not served here")


# -- docker config documents -----------------------------------------------------------------


def auth_of(username: str, password: str) -> str:
    return base64.b64encode(f"{username}:{password}".encode()).decode()


def entry(token: str) -> Json:
    """The entry the controller writes for `token`."""
    return {"username": "_token", "password": token, "auth": auth_of("_token", token)}


def config_holding(token: str, **others: Json) -> bytes:
    """A `.dockerconfigjson` whose cgr.dev entry holds `token`, beside `others`."""
    return json.dumps({"auths": {**others, REGISTRY: entry(token)}}).encode()


# -- the controller under test ---------------------------------------------------------------


@dataclass
class Harness:
    """A controller wired to the fakes, and the fakes themselves."""

    server: FakeApiServer
    provider: FakeTokenProvider
    clock: FakeClock
    controller: Controller
    client: lightkube.AsyncClient

    async def observe(self, namespace: str, name: str = SECRET_NAME) -> Key:
        """Read the Secret as the watch would report it, and hand it to the controller."""
        secret = await get_secret(self.client, namespace=namespace, name=name)
        assert secret is not None
        await self.controller.handle_event(name, WatchEvent(type="ADDED", object=secret))
        return (namespace, name)

    async def reconcile(self, namespace: str, name: str = SECRET_NAME) -> Outcome:
        """Observe the Secret as it is on the server now, then reconcile it once."""
        key = await self.observe(namespace, name)
        return await self.controller.reconcile(key)

    def password(self, namespace: str, name: str = SECRET_NAME) -> str | None:
        config = self.server.docker_config(namespace, name)
        if not isinstance(config, dict):
            return None
        found = config.get("auths", {}).get(REGISTRY)
        return None if found is None else str(found["password"])

    async def aclose(self) -> None:
        await self.controller.events.aclose()
        await self.controller.tokens.aclose()
        await self.client.close()


def harness(
    *,
    policy: Policy = ALLOW_ALL,
    leader: bool = True,
    read_labels: bool = False,
    subject_for: Callable[[str], Subject] = lambda namespace: CONTROLLER,
    seed: int = 7,
    failure_hold: float = 0.0,
    extra: Callable[[FakeClock], Mapping[str, TokenProvider]] | None = None,
    budget: tuple[float, float] | None = None,
) -> Harness:
    """A controller against fresh fakes; `leader` False gives it an elector that never leads."""
    server = FakeApiServer()
    clock = FakeClock()
    provider = FakeTokenProvider(clock)
    providers: dict[str, TokenProvider] = {"chainguard": provider}
    if extra is not None:
        providers.update(extra(clock))
    client = server.client()
    elector = None
    if not leader:
        # A real elector that was never run: it does not lead, and its is_leader says so.
        elector = LeaderElector(client, namespace="pull-secret-updater", name="lease",
                                identity="replica-2", clock=clock)  # fmt: skip
    controller = Controller(
        config=ControllerConfig(
            secret_names=(SECRET_NAME,),
            schedule=SCHEDULE,
            policy=policy,
            subject_for=subject_for,
        ),
        client=client,
        tokens=TokenCache(
            providers,
            schedule=SCHEDULE,
            clock=clock,
            failure_hold=failure_hold,
            budget=None if budget is None else NamespaceBudget(*budget, clock=clock),
        ),
        providers=providers,
        events=EventRecorder(client, instance="replica-1", clock=clock, now=clock.utc),
        metrics=Metrics(),
        health=Health(clock=clock),
        failures=Failures(backoff=BACKOFF, rng=random.Random(seed)),
        labels=NamespaceLabels(client, clock=clock) if read_labels else None,
        elector=elector,
        clock=clock,
        queue=WorkQueue(clock=clock),
    )
    return Harness(server=server, provider=provider, clock=clock, controller=controller,
                   client=client)  # fmt: skip
