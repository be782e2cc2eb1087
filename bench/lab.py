"""What every scenario needs: a stack, identities, admin clients, objects in bulk, the
controller process, and readings of its memory, CPU and API requests.

Namespaces and managed Secrets are created as the cluster admin with a concurrent async
lightkube client; the tens of thousands of unrelated Secrets of the footprint scenario with
plain HTTP connections in threads (``bulk_create``), which cost the benchmark less CPU. The
controller runs as its ServiceAccount with the RBAC of the shipped manifests
(``devstack.controller``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import json
import os
import threading
import time
from collections import Counter
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx2
import lightkube
from lightkube import KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Namespace, Secret
from lightkube.types import PatchType

from devstack.cluster import SERVICE_ACCOUNT_ISSUER
from devstack.controller import NAMESPACE, SERVICE_ACCOUNT, ControllerProcess, install_manifests
from devstack.procs import StartupError
from devstack.stack import SA_AUDIENCE, LocalStack
from pull_secret_updater.core import annotations as psu_annotations

T = TypeVar("T")

MANAGED_NAME = "pull-secret"
DOCKER_CONFIG_TYPE = "kubernetes.io/dockerconfigjson"
DOCKER_CONFIG_KEY = ".dockerconfigjson"
CONTROLLER_USER = f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
ANNOTATION_PREFIX = "pull-secret-updater.chainguard.dev/"
IDENTITY_ANNOTATION = ANNOTATION_PREFIX + "identity"
#: The annotations the controller writes (and removes) after a fill.
STATUS_ANNOTATIONS = psu_annotations.STATUS
#: Concurrency of the admin client when setting up objects.
SETUP_CONCURRENCY = 32

EMPTY_DOCKER_CONFIG = base64.b64encode(b"{}").decode()


_STARTED = time.monotonic()


def progress(text: str) -> None:
    """A line on the terminal, stamped with the seconds since the benchmark started."""
    print(f"   [{time.monotonic() - _STARTED:6.1f} s] {text}", flush=True)


#: Starting a stack can lose a race for a free port with another process; then it is retried.
STACK_ATTEMPTS = 3


def start_stack(*, token_lifetime: int = 3600) -> LocalStack:
    """A started local stack (without the controller's manifests)."""
    for attempt in range(1, STACK_ATTEMPTS + 1):
        stack = LocalStack(token_lifetime=token_lifetime)
        try:
            stack.start()
            progress(f"stack started ({stack.workdir})")
            return stack
        except StartupError as e:
            if attempt == STACK_ATTEMPTS:
                raise
            first_line = str(e).splitlines()[0]
            progress(f"the stack did not start ({first_line}); trying again")
    raise AssertionError("unreachable")


DEFAULT_TOKEN_LIFETIME = 3600


@contextlib.contextmanager
def fresh_stack(*, token_lifetime: int = DEFAULT_TOKEN_LIFETIME) -> Iterator[LocalStack]:
    """A newly started local stack with config/ applied; stopped (and removed) afterwards."""
    stack = start_stack(token_lifetime=token_lifetime)
    try:
        install_manifests(stack)
        yield stack
    finally:
        stack.stop()


class Stacks:
    """Where the scenarios get their stack: a fresh one each, or (``shared``) one for the
    whole run, which is put back in order after each scenario: the managed Secrets deleted,
    the token lifetimes restored, faults cleared, the token service's counters reset (its
    AWS stand-in's too)."""

    def __init__(self, *, shared: bool) -> None:
        self.shared = shared
        self._stack: LocalStack | None = None

    @contextlib.asynccontextmanager
    async def stack(
        self,
        *,
        token_lifetime: int = DEFAULT_TOKEN_LIFETIME,
        cloud_lifetime: int | None = None,
    ) -> AsyncIterator[LocalStack]:
        """A stack whose token service issues tokens of `token_lifetime` seconds, and whose
        cloud stand-ins (AWS, Google, Azure) issue registry credentials of `cloud_lifetime`
        seconds (None: the real clouds' lifetimes)."""
        if not self.shared:
            with fresh_stack(token_lifetime=token_lifetime) as stack:
                if cloud_lifetime is not None:
                    set_cloud_lifetimes(stack, cloud_lifetime)
                yield stack
            return
        if self._stack is None:
            self._stack = start_stack()
            install_manifests(self._stack)
        stack = self._stack
        admin = stack.token_admin()
        admin.set_lifetime(token_lifetime)
        set_cloud_lifetimes(stack, cloud_lifetime)
        reset_counters(stack)
        try:
            yield stack
        finally:
            admin.set_lifetime(DEFAULT_TOKEN_LIFETIME)
            admin.clear_faults()
            set_cloud_lifetimes(stack, None)
            stack.aws.clear_faults()
            stack.gcp.clear_faults()
            stack.azure.clear_faults()
            reset_counters(stack)
            await delete_managed_secrets(stack)

    def close(self) -> None:
        if self._stack is not None:
            self._stack.stop()
            self._stack = None


async def delete_managed_secrets(stack: LocalStack) -> None:
    """Delete every Secret with the managed name, in every namespace."""
    async with admin_client(stack) as client:
        found = [
            secret.metadata.namespace
            async for secret in client.list(
                Secret, namespace=lightkube.ALL_NS, fields={"metadata.name": MANAGED_NAME}
            )
            if secret.metadata is not None and secret.metadata.namespace
        ]

        async def delete(namespace: str) -> None:
            await client.delete(Secret, MANAGED_NAME, namespace=namespace)

        await bounded(found, delete, concurrency=SETUP_CONCURRENCY)


async def managed_secrets(
    stack: LocalStack, count: int, *, identities: int, prefix: str
) -> tuple[list[str], dict[str, str]]:
    """`count` namespaces `<prefix>-NNNNN`, each with an empty pull Secret annotated with one of
    `identities` new identities (round robin): the namespaces, and each one's identity."""
    uids = create_identities(stack, identities, prefix=prefix)
    namespaces = [f"{prefix}-{i:05d}" for i in range(count)]
    async with admin_client(stack) as client:
        await create_namespaces(client, namespaces)
        await create_pull_secrets(client, namespaces, uids)
    return namespaces, {ns: identity_for(i, uids) for i, ns in enumerate(namespaces)}


def create_identities(stack: LocalStack, count: int, *, prefix: str) -> list[str]:
    """`count` identities that trust the controller's ServiceAccount; their UIDs."""
    admin = stack.token_admin()
    keys = json.dumps(stack.control_plane.jwks())
    return [
        admin.create_identity(
            name=f"{prefix}-{i}",
            issuer=SERVICE_ACCOUNT_ISSUER,
            subject=CONTROLLER_USER,
            issuer_keys=keys,
            roles=["registry.pull"],
        )
        for i in range(count)
    ]


@contextlib.asynccontextmanager
async def admin_client(stack: LocalStack) -> AsyncIterator[lightkube.AsyncClient]:
    client = lightkube.AsyncClient(
        config=KubeConfig.from_file(stack.kubeconfig),
        field_manager="bench",
        timeout=httpx2.Timeout(60.0),
    )
    try:
        yield client
    finally:
        await client.close()


async def bounded(
    items: Iterable[T], action: Callable[[T], Awaitable[None]], *, concurrency: int
) -> None:
    """Run `action` on every item, at most `concurrency` at a time, like a pool of workers."""
    pending = iter(items)

    async def worker() -> None:
        for item in pending:
            await action(item)

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())


async def create_namespaces(client: lightkube.AsyncClient, names: Sequence[str]) -> None:
    async def create(name: str) -> None:
        await client.create(Namespace(metadata=ObjectMeta(name=name)))

    await bounded(names, create, concurrency=SETUP_CONCURRENCY)


def pull_secret(
    namespace: str, identity: str | None, *, also: Mapping[str, str] | None = None
) -> Secret:
    """The quickstart's Secret: empty `.dockerconfigjson`, the identity annotation (none when
    `identity` is None), and the annotations in `also` (another provider's)."""
    annotations = {} if identity is None else {IDENTITY_ANNOTATION: identity}
    return Secret(
        metadata=ObjectMeta(
            name=MANAGED_NAME, namespace=namespace, annotations={**annotations, **(also or {})}
        ),
        type=DOCKER_CONFIG_TYPE,
        data={DOCKER_CONFIG_KEY: EMPTY_DOCKER_CONFIG},
    )


def identity_for(index: int, identities: Sequence[T]) -> T:
    return identities[index % len(identities)]


async def create_pull_secrets(
    client: lightkube.AsyncClient,
    namespaces: Sequence[str],
    identities: Sequence[str],
    *,
    also: Callable[[int], Mapping[str, str]] | None = None,
) -> None:
    """One annotated empty pull Secret per namespace, identities assigned round robin (none
    when `identities` is empty); `also(index)` gives the Secret's further annotations."""

    async def create(indexed: tuple[int, str]) -> None:
        index, namespace = indexed
        identity = identity_for(index, identities) if identities else None
        extra = also(index) if also is not None else None
        await client.create(pull_secret(namespace, identity, also=extra))

    await bounded(enumerate(namespaces), create, concurrency=SETUP_CONCURRENCY)


async def empty_pull_secrets(client: lightkube.AsyncClient, namespaces: Sequence[str]) -> None:
    """Put the managed Secrets back to their quickstart state (empty, no status annotations)."""
    body: dict[str, Any] = {
        "metadata": {"annotations": dict.fromkeys(STATUS_ANNOTATIONS)},
        "data": {DOCKER_CONFIG_KEY: EMPTY_DOCKER_CONFIG},
    }

    async def empty(namespace: str) -> None:
        await client.patch(
            Secret,
            MANAGED_NAME,
            body,
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )

    await bounded(namespaces, empty, concurrency=SETUP_CONCURRENCY)


BULK_THREADS = 8


def bulk_create(stack: LocalStack, objects: Iterable[tuple[str, bytes]]) -> int:
    """POST each (path, JSON body) as the admin; the number created.

    For tens of thousands of objects: plain ``http.client`` connections in threads cost the
    benchmark about a fifth of the CPU per request that the async lightkube client does, and
    on a two-core machine that CPU is taken from the API server.
    """
    admin = stack.control_plane.admin
    context = admin.ssl_context()
    url = urlsplit(admin.server)
    pending = iter(objects)
    lock = threading.Lock()
    created = 0

    def worker() -> None:
        nonlocal created
        connection = http.client.HTTPSConnection(url.hostname or "", url.port, context=context)
        try:
            while True:
                with lock:
                    item = next(pending, None)
                if item is None:
                    return
                path, body = item
                connection.request(
                    "POST", path, body=body, headers={"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                text = response.read()
                if response.status != 201:
                    raise RuntimeError(f"POST {path}: {response.status} {text[:200]!r}")
                with lock:
                    created += 1
        finally:
            connection.close()

    with ThreadPoolExecutor(BULK_THREADS) as pool:
        for future in [pool.submit(worker) for _ in range(BULK_THREADS)]:
            future.result()
    return created


def sa_token(stack: LocalStack) -> str:
    """A token of the controller's ServiceAccount for the STS, as its projected volume holds."""
    return stack.control_plane.service_account_token(
        NAMESPACE, SERVICE_ACCOUNT, audience=SA_AUDIENCE, seconds=3600
    )


def exchange(stack: LocalStack, identity: str) -> str:
    """One token exchange at the local STS, as the controller does it; the registry token."""
    with httpx2.Client(verify=str(stack.ca_file), timeout=10.0, trust_env=False) as http:
        response = http.post(
            f"{stack.token_service.url}/sts/exchange",
            params={"aud": stack.registry.host, "identity": identity},
            headers={"Authorization": f"Bearer {sa_token(stack)}"},
        )
        response.raise_for_status()
        return str(response.json()["token"])


def exchange_counts(stack: LocalStack) -> dict[str, dict[str, int]]:
    """The token service's exchanges since its last reset, by identity: {"ok", "error"}."""
    stats = stack.token_admin().stats()
    counts: dict[str, dict[str, int]] = {}
    for identity, outcome in (stats.get("exchanges") or {}).items():
        counts[str(identity)] = {
            "ok": int(outcome.get("ok", 0)),
            "error": int(outcome.get("error", 0)),
        }
    return counts


def total_exchanges(counts: dict[str, dict[str, int]]) -> int:
    return sum(c["ok"] + c["error"] for c in counts.values())


def reset_counters(stack: LocalStack) -> None:
    """Zero the token service's exchange counts and its cloud stand-ins' call counts."""
    stack.token_admin().reset_stats()
    stack.aws.admin().reset_aws_stats()
    stack.gcp.reset_stats()
    stack.azure.reset_stats()


def set_cloud_lifetimes(stack: LocalStack, seconds: int | None) -> None:
    """The cloud stand-ins issue registry credentials of `seconds` from now on: ECR
    passwords, Google's federated and impersonated access tokens (a federated token lives no
    longer than the Kubernetes token either), ACR refresh tokens. None: the real clouds'
    lifetimes (12 h, 1 h, 3 h)."""
    stack.aws.set_ecr_token_lifetime(seconds)
    stack.gcp.set_lifetimes(federated=seconds, access_token=seconds)
    stack.azure.set_lifetimes(refresh_token=seconds or 0)


# -- the controller -------------------------------------------------------------------------


def controller(stack: LocalStack, *, name: str, workers: int, **env: str) -> ControllerProcess:
    """A controller process (not started) with `workers` workers and extra PSU_* settings."""
    return controller_with(stack, name=name, workers=workers, env=env)


def controller_with(
    stack: LocalStack,
    *,
    name: str,
    workers: int,
    env: Mapping[str, str],
    audiences: tuple[str, ...] = (),
) -> ControllerProcess:
    """`controller`, with a projected token for each of `audiences` besides the token
    service's (another provider's)."""
    settings = {"PSU_WORKERS": str(workers), **env}
    return ControllerProcess(stack, name=name, env=settings, audiences=audiences)


async def wait_leading(process: ControllerProcess, *, within: float = 30.0) -> None:
    """Until the controller reports that it holds the Lease (its leader gauge is 1)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        metrics = await asyncio.to_thread(process.metrics)
        if any(
            line.startswith("pull_secret_updater_leader ") and float(line.split()[1]) == 1
            for line in metrics.splitlines()
        ):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the controller did not become the leader within {within:.0f}s")


#: Seconds a stopping controller gets between SIGTERM and SIGKILL.
STOP_GRACE = 3.0
LEASE_NAME = "pull-secret-updater"


@dataclass(frozen=True)
class Stopped:
    """How a controller stop went: whether the process finished its own shutdown (its last
    log line says "stopped") and whether its Lease had to be cleared for the next one."""

    name: str
    seconds: float
    graceful: bool
    lease_cleared: bool


async def stop_controller(stack: LocalStack, process: ControllerProcess) -> Stopped:
    """Stop `process` (SIGTERM, SIGKILL after `STOP_GRACE` s) so the next one can lead at once.

    A controller that did not release its Lease (it was killed) would make the next one wait
    out the lease duration; its Lease is deleted instead, and the stop reported as unclean.
    """
    started = time.monotonic()
    await asyncio.to_thread(process.process.stop, timeout=STOP_GRACE)
    seconds = time.monotonic() - started
    lines = process.logs()[-4096:].strip().splitlines()
    graceful = bool(lines) and '"event": "stopped"' in lines[-1]
    cleared = False
    async with admin_client(stack) as client:
        try:
            lease = await client.get(Lease, LEASE_NAME, namespace=NAMESPACE)
        except lightkube.ApiError:
            lease = None
        holder = (lease.spec.holderIdentity if lease is not None and lease.spec else None) or ""
        if holder.startswith(f"{process.name}_"):
            await client.delete(Lease, LEASE_NAME, namespace=NAMESPACE)
            cleared = True
    return Stopped(process.name, round(seconds, 2), graceful, cleared)


def unclean(stops: Iterable[Stopped]) -> list[dict[str, Any]]:
    """The stops that were not graceful, for the results."""
    return [vars(s) for s in stops if not s.graceful or s.lease_cleared]


@dataclass(frozen=True)
class ProcessReading:
    """A process's memory and CPU at one moment."""

    at: float
    rss_bytes: int
    hwm_bytes: int
    cpu_seconds: float


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def read_process(pid: int) -> ProcessReading:
    """VmRSS and VmHWM from /proc/<pid>/status, utime+stime from /proc/<pid>/stat."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024  # reported in kB
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may contain spaces; the fields after it never do.
    after_name = stat.rsplit(")", 1)[1].split()
    utime, stime = int(after_name[11]), int(after_name[12])
    return ProcessReading(
        at=time.monotonic(),
        rss_bytes=fields["VmRSS"],
        hwm_bytes=fields["VmHWM"],
        cpu_seconds=(utime + stime) / _CLOCK_TICKS,
    )


def _machine_jiffies() -> tuple[int, int, int]:
    """(busy, total, steal) clock ticks of all CPUs since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return user + nice + system + irq + softirq, sum(fields), steal


def _cpu_seconds(pid: int) -> float:
    try:
        return read_process(pid).cpu_seconds
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


class CpuMeter:
    """CPU seconds used during a phase: by each process of the stack (and the benchmark
    itself), and by the whole machine, whose difference is load from elsewhere (noise)."""

    def __init__(self, stack: LocalStack, **extra_pids: int) -> None:
        self.pids = {
            "kube_apiserver": stack.control_plane.apiserver.pid,
            "etcd": stack.control_plane.etcd.pid,
            "token_service": stack.token_service.process.pid,
            "bench": os.getpid(),
            **extra_pids,
        }
        self._start: tuple[float, dict[str, float], tuple[int, int, int]] | None = None

    def start(self) -> CpuMeter:
        self._start = (
            time.monotonic(),
            {name: _cpu_seconds(pid) for name, pid in self.pids.items()},
            _machine_jiffies(),
        )
        return self

    def stop(self) -> dict[str, float]:
        """Seconds of wall time and of CPU per process, machine, steal and elsewhere."""
        assert self._start is not None, "start() first"
        started, before, (busy0, total0, steal0) = self._start
        busy1, total1, steal1 = _machine_jiffies()
        used = {
            f"{name}_cpu_seconds": round(_cpu_seconds(pid) - before[name], 3)
            for name, pid in self.pids.items()
        }
        machine = (busy1 - busy0) / _CLOCK_TICKS
        ours = sum(used.values())
        return {
            "wall_seconds": round(time.monotonic() - started, 3),
            **used,
            "machine_busy_cpu_seconds": round(machine, 3),
            "elsewhere_cpu_seconds": round(max(0.0, machine - ours), 3),
            "steal_seconds": round((steal1 - steal0) / _CLOCK_TICKS, 3),
            "machine_cpu_seconds_available": round((total1 - total0) / _CLOCK_TICKS, 3),
        }


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


# -- the audit log --------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditedRequest:
    at: float
    verb: str
    resource: str


def audited_requests(
    audit_log: Path, *, user: str, since: float, until: float
) -> list[AuditedRequest]:
    """Requests by `user` received in [since, until) (epoch seconds), one per audit ID.

    The local API server records secrets, events and leases at Metadata level, nothing else.
    """
    seen: dict[str, AuditedRequest] = {}
    with audit_log.open() as lines:
        for line in lines:
            if user not in line:
                continue
            record = json.loads(line)
            if (record.get("user") or {}).get("username") != user:
                continue
            received = datetime.fromisoformat(record["requestReceivedTimestamp"]).timestamp()
            if not since <= received < until:
                continue
            ref = record.get("objectRef") or {}
            resource = str(ref.get("resource", "?"))
            if ref.get("subresource"):
                resource += "/" + str(ref["subresource"])
            seen[record["auditID"]] = AuditedRequest(
                at=received, verb=str(record.get("verb", "?")), resource=resource
            )
    return list(seen.values())


def requests_by_kind(requests: Iterable[AuditedRequest]) -> dict[str, int]:
    counts = Counter(f"{r.verb} {r.resource}" for r in requests)
    return dict(sorted(counts.items()))


#: Seconds to wait for the audit log to catch up: it is written in batches of up to a second.
AUDIT_FLUSH = 1.5


@dataclass(frozen=True)
class SteadyState:
    """What a running controller did during a quiet window: its API requests and CPU."""

    window_seconds: float
    requests: list[AuditedRequest]
    cpu_seconds: float

    @property
    def requests_per_minute(self) -> float:
        return len(self.requests) * 60 / self.window_seconds

    @property
    def cpu_seconds_per_minute(self) -> float:
        return self.cpu_seconds * 60 / self.window_seconds

    def figures(self) -> dict[str, Any]:
        return {
            "steady_window_seconds": self.window_seconds,
            "steady_requests_per_minute": round(self.requests_per_minute, 1),
            "steady_requests": requests_by_kind(self.requests),
            "steady_cpu_seconds_per_minute": round(self.cpu_seconds_per_minute, 3),
        }

    def describe(self) -> str:
        kinds = ", ".join(f"{k}: {v}" for k, v in requests_by_kind(self.requests).items())
        return (
            f"{self.requests_per_minute:.0f} API requests per minute ({kinds} in "
            f"{self.window_seconds:.0f} s; the audit log records secrets, events and leases only)"
        )


async def steady_state(
    stack: LocalStack, process: ControllerProcess, *, window: float
) -> SteadyState:
    """Count the API requests (audit log) and CPU seconds of `process` over `window` s."""
    pid = process.process.pid
    since_wall, before = time.time(), read_process(pid)
    await asyncio.sleep(window)
    until_wall, after = time.time(), read_process(pid)
    await asyncio.sleep(AUDIT_FLUSH)
    requests = audited_requests(
        stack.control_plane.audit_log, user=CONTROLLER_USER, since=since_wall, until=until_wall
    )
    return SteadyState(window, requests, after.cpu_seconds - before.cpu_seconds)
