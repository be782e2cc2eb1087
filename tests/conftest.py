"""Session-wide fixtures: one local stack (real etcd, kube-apiserver, token service, registry),
the controller's manifests installed into it, controller processes on demand, and the stack's
node (containerd, kubelet, controller-manager, scheduler) for the tests that run real Pods.

Tests that use the node run last: it starts with the first of them, and from then on the
controller-manager and scheduler act on everything in the cluster (the Deployment from
``config/`` included), which the other tests do not expect. Node tests that start a node of
their own (a whole demo) run just before them, while no other kubelet runs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Generator, Iterator

import pytest
import structlog

from devstack import shutdown
from devstack.binaries import MissingBinary
from devstack.controller import NAMESPACE, SERVICE_ACCOUNT, ControllerProcess, install_manifests
from devstack.hoststate import HostError
from devstack.kubeversions import selected
from devstack.node import Node, NodeError
from devstack.procs import StartupError
from devstack.stack import LocalStack
from tests import matrix
from tests.helpers import (
    ClusterHelper,
    LogEvents,
    service_account_client,
    unique,
    wait_until_enforced,
)

# Short timings so refreshes, retries and failovers happen within seconds.
FAST = {
    "PSU_EXCHANGE_TIMEOUT": "2",
    "PSU_REFRESH_MARGIN": "3",
    "PSU_MIN_TOKEN_LIFETIME": "4",
    "PSU_BACKOFF_BASE": "0.5",
    "PSU_BACKOFF_CAP": "4",
    "PSU_LEASE_DURATION": "4",
    "PSU_RENEW_DEADLINE": "3",
    "PSU_RETRY_PERIOD": "0.5",
    "PSU_LOG_LEVEL": "debug",
}


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    # SIGTERM, SIGHUP and a closed output interrupt the session as Ctrl-C does, so pytest
    # tears this down; a second signal does not cut the teardown short. pytest's capture swaps
    # the standard streams itself.
    shutdown.install(std_streams=False)
    with LocalStack() as running:
        yield running


@pytest.fixture(scope="session")
def node(stack: LocalStack) -> Node:
    """The stack's node, Ready. A machine that cannot run one fails these tests with the reason
    (root, binaries from ``hack/build-testbins.sh node``, runc and the CNI plugins from
    ``hack/setup.sh``); ``PSU_SKIP_NODE=1`` skips them instead, visibly."""
    if os.environ.get("PSU_SKIP_NODE") == "1":
        pytest.skip("PSU_SKIP_NODE=1: tests on a real node are skipped")
    try:
        return stack.start_node()
    except (MissingBinary, NodeError, HostError, StartupError) as e:
        pytest.fail(f"the node did not start: {e}", pytrace=False)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kubernetes versions (tests/matrix.py)")
    group.addoption(
        "--kubernetes-version",
        help="the Kubernetes version the stack runs (as KUBERNETES_VERSION does; default: the "
        "newest pinned in hack/versions.env); its binaries come from hack/build-testbins.sh",
    )
    group.addoption(
        "--compat",
        action="store_true",
        help="only the compatibility subset that make test runs on the older versions",
    )


def pytest_configure(config: pytest.Config) -> None:
    # The environment carries the choice, so the stack, the build script and every process
    # the tests start agree on it.
    chosen = config.getoption("--kubernetes-version")
    if chosen:
        os.environ["KUBERNETES_VERSION"] = chosen


def pytest_report_header(config: pytest.Config) -> str:
    subset = " (compatibility subset)" if config.getoption("--compat") else ""
    return f"kubernetes: {selected()}{subset}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # What this version cannot do is deselected, not skipped: under CI a skip fails the run.
    kept, dropped = matrix.select(
        items, version=selected(), compat=bool(config.getoption("--compat"))
    )
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
    # Marked by what they use, so `-m "not stack"` (make unit) runs every test that needs no
    # stack, whether or not its module says so.
    for item in items:
        used = getattr(item, "fixturenames", ())
        if "stack" in used:
            item.add_marker(pytest.mark.stack)
        if "node" in used:
            item.add_marker(pytest.mark.node)

    # Node tests that start a node of their own (tests/node/test_stopping_the_demo.py) come
    # before the session's node starts: one kubelet at a time on a machine.
    def order(item: pytest.Item) -> int:
        if "node" in getattr(item, "fixturenames", ()):
            return 2
        return 1 if item.get_closest_marker("node") else 0

    items.sort(key=order)


@pytest.fixture(scope="session")
def installed(stack: LocalStack) -> str:
    """config/ applied as a user would; returns the UID of the KinD-style identity.

    config/ includes the admission policy on the controller's writes: every test runs with it,
    as a user's controller does, once the API server enforces it.
    """
    install_manifests(stack)
    with service_account_client(stack, NAMESPACE, SERVICE_ACCOUNT) as as_controller:
        wait_until_enforced(ClusterHelper(stack), as_controller, prefix="installed-probe")
    return stack.create_kind_identity()


@pytest.fixture
def cluster(stack: LocalStack) -> ClusterHelper:
    return ClusterHelper(stack)


@pytest.fixture
def new_identity(stack: LocalStack, installed: str) -> Callable[[str], str]:
    """Creates an identity the controller may assume, so a test can count its exchanges alone."""

    def create(prefix: str = "identity") -> str:
        return stack.create_kind_identity(name=unique(prefix))

    return create


@pytest.fixture
def logged() -> Iterator[LogEvents]:
    """Every line our code logs during the test, as structlog event dicts, in order."""
    with structlog.testing.capture_logs() as events:
        yield events


@pytest.fixture
def token_lifetime(stack: LocalStack) -> Iterator[Callable[[int], None]]:
    """Set the lifetime of the tokens the token service issues; restored afterwards."""
    admin = stack.token_admin()

    def set_lifetime(seconds: int) -> None:
        admin.set_lifetime(seconds)

    yield set_lifetime
    admin.set_lifetime(stack.token_lifetime)
    admin.clear_faults()


@pytest.fixture
def start_controller(
    stack: LocalStack, installed: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., ControllerProcess]]:
    """Start controller processes (as the controller ServiceAccount); all stopped at the end."""
    started: list[ControllerProcess] = []

    def start(
        name: str = "controller",
        *,
        env: dict[str, str] | None = None,
        wait_ready: bool = True,
        audiences: tuple[str, ...] = (),
    ) -> ControllerProcess:
        process = ControllerProcess(
            stack, name=name, env={**FAST, **(env or {})}, audiences=audiences
        )
        started.append(process)
        return process.start(wait_ready=wait_ready)

    yield start
    for process in started:
        process.stop()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for process in started:
            with contextlib.suppress(OSError):
                print(f"--- {process.name} log (tail) ---\n{process.process.log_tail(80)}")


def _skips_fail() -> bool:
    """Under CI (``CI=true``, which ``.ci/run`` sets) a skipped test fails: a tool missing on
    the CI machine must not turn into a green run that tested less."""
    return os.environ.get("CI", "").lower() in {"true", "1"}


def _failed_instead(report: pytest.TestReport) -> None:
    if isinstance(report.longrepr, tuple):
        why = report.longrepr[2].removeprefix("Skipped: ")  # (path, line, "Skipped: why")
    else:
        why = f"marked xfail: {getattr(report, 'wasxfail', '') or report.longrepr}"
    report.outcome = "failed"
    report.longrepr = f"under CI=true a skip or an expected failure fails the run: {why}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if _skips_fail() and (report.skipped or hasattr(report, "wasxfail")):
        _failed_instead(report)
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    # What the hook above cannot turn into a failure: a whole module skipped at collection.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if not _skips_fail() or reporter is None or not reporter.stats.get("skipped"):
        return
    if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        reporter.write_line("a skip under CI=true fails the run", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
