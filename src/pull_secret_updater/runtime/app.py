"""Assemble the controller from settings and run it until SIGTERM or SIGINT.

Graceful stop: cancel the watches and workers, release the Lease (so another replica takes
over at once instead of after the lease duration), close the clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal

import structlog
from lightkube import AsyncClient

from pull_secret_updater import wiring
from pull_secret_updater.kube.client import make_client
from pull_secret_updater.kube.errors import KubeError
from pull_secret_updater.kube.events import EventRecorder
from pull_secret_updater.kube.leader import LeaderElector
from pull_secret_updater.kube.namespaces import NamespaceLabels
from pull_secret_updater.kube.secrets import WatchEvent, list_and_watch
from pull_secret_updater.kube.server import limitations, read_server_facts
from pull_secret_updater.runtime import health as health_server
from pull_secret_updater.runtime.controller import Controller, ControllerConfig
from pull_secret_updater.runtime.failures import Failures
from pull_secret_updater.runtime.health import Health
from pull_secret_updater.runtime.metrics import MeteredProvider, Metrics
from pull_secret_updater.settings import Settings
from pull_secret_updater.tokens.cache import TokenCache
from pull_secret_updater.tokens.provider import TokenProvider
from pull_secret_updater.wiring import ConfigurationError

__all__ = ["ConfigurationError", "run"]

log = structlog.get_logger("pull_secret_updater")

_HEARTBEAT = 2.0
# How often the age of the token service's keys is checked (they are refetched at max_age).
_KEY_CHECK = 30.0


async def run(settings: Settings) -> None:
    """Run the controller until SIGTERM or SIGINT; raises ConfigurationError at start."""
    policy = wiring.load_policy(settings)
    metrics = Metrics()
    if settings.token_subject == "controller" and settings.policy_file is None:
        metrics.open_policy.set(1)
        log.warning(
            "allow_any_identity is set: any namespace can obtain the tokens of any identity "
            "that trusts this controller by creating a Secret with a managed name; set "
            "policy_file, or use token_subject namespace, to confine identities to namespaces"
        )
    client = make_client(kubeconfig=settings.kubeconfig)
    await _log_server(client, metrics)
    providers: dict[str, TokenProvider] = {
        name: MeteredProvider(provider, metrics=metrics)
        for name, provider in wiring.providers(settings, client=lambda: client).items()
    }
    # A failed exchange is shared for one backoff base: during an outage the token service
    # sees at most about one exchange per identity per `backoff_base`, however many Secrets.
    # A namespace may start only so many exchanges; over that, its Secrets wait their turn
    # and nobody else's do (core.ratelimit).
    tokens = TokenCache(
        providers,
        schedule=settings.schedule,
        failure_hold=settings.backoff_base,
        budget=settings.budget(),
    )
    health = Health()
    identity = f"{settings.pod_name}_{secrets.token_hex(4)}"
    events = EventRecorder(client, instance=identity, on_dropped=metrics.events_dropped.inc)
    controller = Controller(
        config=ControllerConfig(
            secret_names=tuple(settings.secret_names),
            schedule=settings.schedule,
            policy=policy,
            subject_for=wiring.subject_for(settings),
        ),
        client=client,
        tokens=tokens,
        providers=providers,
        events=events,
        metrics=metrics,
        health=health,
        failures=Failures(backoff=settings.backoff),
        labels=NamespaceLabels(client) if policy.needs_labels else None,
    )
    # Tokens signed with a key the token service withdrew no longer pull: replace them now.
    for provider in providers.values():
        provider.on_withdrawn(controller.recheck_all)
    elector: LeaderElector | None = None
    if settings.leader_election:
        elector = LeaderElector(
            client,
            namespace=settings.namespace,
            name=settings.lease_name,
            identity=identity,
            lease_duration=settings.lease_duration,
            renew_deadline=settings.renew_deadline,
            retry_period=settings.retry_period,
            on_started=controller.on_started_leading,
            on_stopped=controller.on_stopped_leading,
        )
        controller.elector = elector
    else:
        metrics.leader.set(1)
    server = health_server.serve(
        host=settings.metrics_host, port=settings.metrics_port, health=health,
        registry=metrics.registry,
    )  # fmt: skip
    log.info(
        "starting",
        instance=identity,
        secret_names=list(settings.secret_names),
        providers=[section.summary() for section in settings.sections],
        token_source=settings.token_source,
        token_subject=settings.token_subject,
        leader_election=settings.leader_election,
        metrics=f"{settings.metrics_host}:{settings.metrics_port}",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(_watch(controller, name, settings.watch_timeout))
                for name in settings.secret_names
            ]
            tasks += [group.create_task(controller.work()) for _ in range(settings.workers)]
            tasks.append(group.create_task(_heartbeat(controller, health)))
            tasks.append(group.create_task(_keep_keys_fresh(list(providers.values()))))
            if elector is not None:
                tasks.append(group.create_task(elector.run()))
            await stop.wait()
            log.info("stopping")
            for task in tasks:
                task.cancel()
    finally:
        if elector is not None:
            with contextlib.suppress(Exception):
                await elector.release()
        server.shutdown()
        await tokens.aclose()
        await events.aclose()
        for provider in providers.values():
            with contextlib.suppress(Exception):
                await provider.aclose()
        with contextlib.suppress(Exception):
            await client.close()
        log.info("stopped")


async def _log_server(client: AsyncClient, metrics: Metrics) -> None:
    """Say which API server this is, and warn when it lacks what the install's safety relies
    on; never stops the start (the watches will say if the server cannot be reached)."""
    try:
        facts = await read_server_facts(client)
    except KubeError as e:
        log.warning("could not read the API server's version", error=str(e))
        return
    metrics.admission_policy_api.set(1 if facts.admission_policies else 0)
    log.info("API server", version=facts.version)
    for limitation in limitations(facts):
        report = log.warning if limitation.severe else log.info
        report(limitation.message, version=facts.version)


async def _watch(controller: Controller, name: str, server_timeout: int) -> None:
    async def handler(event: WatchEvent) -> None:
        await controller.handle_event(name, event)

    await list_and_watch(
        controller.client, name=name, handler=handler, server_timeout=server_timeout
    )


async def _heartbeat(controller: Controller, health: Health) -> None:
    while True:
        health.beat()
        controller.update_gauges()
        await asyncio.sleep(_HEARTBEAT)


async def _keep_keys_fresh(providers: list[TokenProvider]) -> None:
    """Refetch the token services' keys when they are older than their max_age, so a
    withdrawn key's Secrets are refilled within that time even when nothing is due."""
    while True:
        await asyncio.sleep(_KEY_CHECK)
        for provider in providers:
            await provider.refresh_if_stale()
